"""Stories, scenes and curation: primary links per role, planning locks.

Every function is one action with keyword-only arguments and its own transaction.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from artifacts.errors import (
    AlreadyLocked,
    DuplicateLink,
    InvalidInput,
    InvalidLink,
    NotLocked,
    NotPublished,
    Pruned,
)
from artifacts.models import Artifact, LifecycleState
from artifacts.services import acting_user, audit_record, get_or_not_found, parse_uuid

from .models import KIND_FOR_ROLE, ROLE_SCENE_IMAGE, STORY_REFERENCE_FOR_ROLE, Role, Scene, Story, StoryArtifactLink

STORY_EDITABLE_FIELDS = frozenset({"title", "description"})
SCENE_EDITABLE_FIELDS = frozenset({"title", "source_text", "position"})


def _check_texts(**values) -> None:
    """PostgreSQL cannot store NUL characters in text; refuse them on both backends."""
    for field, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidInput(f"{field}: NUL characters (\\u0000) cannot be stored", field=field)


def _require_title(title) -> str:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput("title must be a non-empty string", field="title")
    return title.strip()


@transaction.atomic
def story_create(*, title: str, description: str = "") -> Story:
    _check_texts(title=title, description=description)
    return Story.objects.create(title=_require_title(title), description=description or "")


@transaction.atomic
def story_update(*, story_id, **changes) -> Story:
    unknown = set(changes) - STORY_EDITABLE_FIELDS
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a story", field=sorted(unknown)[0])
    _check_texts(**changes)
    story = get_or_not_found(Story, story_id, what="story", lock=True)
    if "title" in changes:
        changes["title"] = _require_title(changes["title"])
    for name, value in changes.items():
        setattr(story, name, value)
    story.save(update_fields=[*changes, "updated_at"])
    return story


@transaction.atomic
def scene_create(*, story_id, title: str = "", source_text: str = "", position: int | None = None) -> Scene:
    _check_texts(title=title, source_text=source_text)
    # The story row lock makes "next position" race-free among concurrent creators.
    story = get_or_not_found(Story, story_id, what="story", lock=True)
    if position is None:
        position = (story.scenes.aggregate(p=Max("position"))["p"] or 0) + 1
    elif story.scenes.filter(position=position).exists():
        raise InvalidInput(f"story already has a scene at position {position}", field="position")
    return Scene.objects.create(story=story, position=position, title=title or "", source_text=source_text or "")


@transaction.atomic
def scene_update(*, scene_id, **changes) -> Scene:
    unknown = set(changes) - SCENE_EDITABLE_FIELDS
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a scene", field=sorted(unknown)[0])
    scene = get_or_not_found(Scene, scene_id, what="scene", lock=True)
    if (
        "position" in changes
        and Scene.objects.filter(story_id=scene.story_id, position=changes["position"]).exclude(pk=scene.pk).exists()
    ):
        raise InvalidInput(f"story already has a scene at position {changes['position']}", field="position")
    for name, value in changes.items():
        setattr(scene, name, value)
    scene.save(update_fields=[*changes, "updated_at"])
    return scene


@transaction.atomic
def scene_lock_planning(*, scene_id, actor=None) -> Scene:
    """Freeze the scene's planning artifacts. A conditional UPDATE: of two editors
    locking at once, exactly one succeeds and the other is told it is already locked."""
    scene_uuid = parse_uuid(scene_id, what="scene")
    now = timezone.now()
    user = acting_user(actor)
    if not Scene.objects.filter(pk=scene_uuid, planning_locked=False).update(
        planning_locked=True, planning_locked_by=user, planning_locked_at=now, updated_at=now
    ):
        get_or_not_found(Scene, scene_uuid, what="scene")
        raise AlreadyLocked(f"planning on scene {scene_uuid} is already locked")
    scene = Scene.objects.get(pk=scene_uuid)
    audit_record(
        action="lock_planning", target=scene, actor=user, story_id=scene.story_id, from_value=False, to_value=True
    )
    return scene


@transaction.atomic
def scene_unlock_planning(*, scene_id, actor=None) -> Scene:
    scene_uuid = parse_uuid(scene_id, what="scene")
    user = acting_user(actor)
    if not Scene.objects.filter(pk=scene_uuid, planning_locked=True).update(
        planning_locked=False, planning_locked_by=None, planning_locked_at=None, updated_at=timezone.now()
    ):
        get_or_not_found(Scene, scene_uuid, what="scene")
        raise NotLocked(f"planning on scene {scene_uuid} is not locked")
    scene = Scene.objects.get(pk=scene_uuid)
    audit_record(
        action="unlock_planning", target=scene, actor=user, story_id=scene.story_id, from_value=True, to_value=False
    )
    return scene


def _check_link_target(*, story: Story, artifact: Artifact, role: str, scene_id) -> Scene | None:
    if role not in Role.values:
        raise InvalidLink(f"unknown role {role!r}; one of {', '.join(Role.values)}", field="role")
    if artifact.story_id != story.pk:
        raise InvalidLink(f"artifact {artifact.pk} belongs to another story", field="artifact_id")
    if artifact.kind != KIND_FOR_ROLE[role]:
        raise InvalidLink(
            f"role {role} needs an {KIND_FOR_ROLE[role]} artifact, not {artifact.kind}", field="artifact_id"
        )
    if role != ROLE_SCENE_IMAGE:
        if scene_id is not None:
            raise InvalidLink(f"role {role} is story-wide and takes no scene", field="scene_id")
        return None
    if scene_id is None:
        scene_id = artifact.scene_id
    if scene_id is None:
        raise InvalidLink("role scene_image needs a scene", field="scene_id")
    scene = get_or_not_found(Scene, scene_id, what="scene")
    if scene.story_id != story.pk:
        raise InvalidLink(f"scene {scene.pk} belongs to another story", field="scene_id")
    if artifact.scene_id is not None and artifact.scene_id != scene.pk:
        raise InvalidLink(f"artifact {artifact.pk} belongs to another scene", field="scene_id")
    return scene


@transaction.atomic
def link_create(*, story_id, artifact_id, role: str, scene_id=None, actor=None) -> StoryArtifactLink:
    """Attach an artifact to a story role without making it primary."""
    story = get_or_not_found(Story, story_id, what="story")
    artifact = get_or_not_found(Artifact, artifact_id, what="artifact")
    scene = _check_link_target(story=story, artifact=artifact, role=role, scene_id=scene_id)
    if StoryArtifactLink.objects.filter(artifact=artifact, role=role).exists():
        raise DuplicateLink(f"artifact {artifact.pk} is already linked as {role}")
    try:
        with transaction.atomic():
            return StoryArtifactLink.objects.create(
                story=story,
                artifact=artifact,
                role=role,
                scene=scene,
                is_primary=False,
                created_by=acting_user(actor),
            )
    except IntegrityError:
        raise DuplicateLink(f"artifact {artifact.pk} is already linked as {role}") from None


@transaction.atomic
def story_set_primary(*, story_id, role: str, artifact_id, scene_id=None, actor=None) -> StoryArtifactLink:
    """Make ``artifact`` the primary of ``role``: the old primary is demoted and the story's
    derived reference follows, all in this one transaction.

    Locks, in a fixed order: the story row (one primary change per story at a time), then
    the artifact row (so it cannot be archived meanwhile).
    """
    story = get_or_not_found(Story, story_id, what="story", lock=True)
    artifact = get_or_not_found(Artifact, artifact_id, what="artifact", lock=True)
    scene = _check_link_target(story=story, artifact=artifact, role=role, scene_id=scene_id)
    if artifact.is_pruned:
        raise Pruned(f"artifact {artifact.pk} was pruned")
    if artifact.lifecycle_state != LifecycleState.PUBLISHED:
        raise NotPublished(
            f"artifact {artifact.pk} is {artifact.lifecycle_state}; only a published artifact can be primary"
        )
    user = acting_user(actor)

    current = StoryArtifactLink.objects.filter(story=story, role=role, scene=scene, is_primary=True).first()
    if current is not None and current.artifact_id == artifact.pk:
        return current
    if current is not None:
        StoryArtifactLink.objects.filter(pk=current.pk).update(is_primary=False)
    link = StoryArtifactLink.objects.filter(artifact=artifact, role=role).first()
    if link is None:
        link = StoryArtifactLink.objects.create(
            story=story, artifact=artifact, role=role, scene=scene, is_primary=True, created_by=user
        )
    else:
        StoryArtifactLink.objects.filter(pk=link.pk).update(is_primary=True)
        link.is_primary = True

    reference = STORY_REFERENCE_FOR_ROLE.get(role)
    if reference is not None:
        setattr(story, reference, artifact)
        story.save(update_fields=[reference, "updated_at"])
    audit_record(
        action="set_primary",
        target=story,
        actor=user,
        story_id=story.pk,
        from_value={
            "role": role,
            "scene_id": str(scene.pk) if scene else None,
            "artifact_id": str(current.artifact_id) if current else None,
        },
        to_value={"role": role, "scene_id": str(scene.pk) if scene else None, "artifact_id": str(artifact.pk)},
    )
    return link


def story_references_from_links(story: Story) -> dict[str, object]:
    """What each derived reference should be, read from the primary links (for drift checks)."""
    primaries = dict(
        StoryArtifactLink.objects.filter(
            story=story, is_primary=True, role__in=list(STORY_REFERENCE_FOR_ROLE)
        ).values_list("role", "artifact_id")
    )
    return {field: primaries.get(role) for role, field in STORY_REFERENCE_FOR_ROLE.items()}
