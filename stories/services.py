"""Stories, scenes and curation: primary links per role, planning locks.

Every function is one action with keyword-only arguments and its own transaction
(``atomic_write``: retried when the database reports a deadlock). Rows are locked only
through ``kernel.locks``, in its fixed order.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from artifacts.models import Artifact, LifecycleState
from artifacts.services import artifact_transition
from audit.services import acting_user, audit_record
from changes import services as change_services
from kernel import locks
from kernel.errors import (
    AlreadyLocked,
    DuplicateLink,
    InvalidInput,
    InvalidLink,
    NotLocked,
    NotPublished,
    Pruned,
)
from kernel.input_limits import INT_MAX, check_columns, check_int
from kernel.lookups import get_or_not_found, parse_uuid
from kernel.transactions import atomic_write

from . import selectors
from .models import (
    KIND_FOR_ROLE,
    ROLE_SCENE_IMAGE,
    STORY_REFERENCE_FOR_ROLE,
    PrimaryInterval,
    Role,
    Scene,
    Story,
    StoryArtifactLink,
)

STORY_EDITABLE_FIELDS = frozenset({"title", "description"})
SCENE_EDITABLE_FIELDS = frozenset({"title", "source_text", "position"})
POSITION_CONSTRAINT = "scene_unique_position_per_story"


def _require_title(title) -> str:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput("title must be a non-empty string", field="title")
    return title.strip()


def _position_taken(position) -> InvalidInput:
    return InvalidInput(f"story already has a scene at position {position}", field="position")


@contextmanager
def _position_constraint(position):
    """The database's word is final, should a position write slip past the story lock."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        if POSITION_CONSTRAINT in str(exc) or "stories_scene.story_id, stories_scene.position" in str(exc):
            raise _position_taken(position) from None
        raise


@atomic_write
def story_create(*, title: str, description: str = "") -> Story:
    check_columns(Story, title=title, description=description)
    return Story.objects.create(title=_require_title(title), description=description or "")


@atomic_write
def story_update(*, story_id, **changes) -> Story:
    unknown = set(changes) - STORY_EDITABLE_FIELDS
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a story", field=sorted(unknown)[0])
    check_columns(Story, **changes)
    story = locks.lock_story(story_id)
    if "title" in changes:
        changes["title"] = _require_title(changes["title"])
    for name, value in changes.items():
        setattr(story, name, value)
    story.save(update_fields=[*changes, "updated_at"])
    return story


@atomic_write
def scene_create(*, story_id, title: str = "", source_text: str = "", position: int | None = None) -> Scene:
    check_columns(Scene, title=title, source_text=source_text)
    if position is not None:
        check_int(position, field="position", minimum=1)
    # The story row lock orders the story's position changes: "next position" and
    # "is this position free" hold until the scene is inserted.
    story = locks.lock_story(story_id)
    if position is None:
        position = (Scene.objects.filter(story_id=story.pk).aggregate(p=Max("position"))["p"] or 0) + 1
        if position > INT_MAX:
            raise InvalidInput(f"no position left after {INT_MAX:,}: give the scene a free one", field="position")
    elif Scene.objects.filter(story_id=story.pk, position=position).exists():
        raise _position_taken(position)
    with _position_constraint(position):
        return Scene.objects.create(story=story, position=position, title=title or "", source_text=source_text or "")


@atomic_write
def scene_update(*, scene_id, **changes) -> Scene:
    unknown = set(changes) - SCENE_EDITABLE_FIELDS
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a scene", field=sorted(unknown)[0])
    check_columns(Scene, **changes)
    if "position" in changes:
        check_int(changes["position"], field="position", minimum=1)
        # A position is the story's to hand out: lock the story first (the lock order),
        # so two scenes cannot both move to one free position.
        story_id = get_or_not_found(Scene.objects.only("id", "story_id"), scene_id, what="scene").story_id
        locks.lock_story(story_id)
    scene = locks.lock_scene(scene_id)
    if (
        "position" in changes
        and Scene.objects.filter(story_id=scene.story_id, position=changes["position"]).exclude(pk=scene.pk).exists()
    ):
        raise _position_taken(changes["position"])
    for name, value in changes.items():
        setattr(scene, name, value)
    with _position_constraint(changes.get("position")):
        scene.save(update_fields=[*changes, "updated_at"])
    return scene


@atomic_write
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
    change_services.scene_planning_changed(scene, locked=True)
    audit_record(
        action="lock_planning", target=scene, actor=user, story_id=scene.story_id, from_value=False, to_value=True
    )
    return scene


@atomic_write
def scene_unlock_planning(*, scene_id, actor=None) -> Scene:
    scene_uuid = parse_uuid(scene_id, what="scene")
    user = acting_user(actor)
    if not Scene.objects.filter(pk=scene_uuid, planning_locked=True).update(
        planning_locked=False, planning_locked_by=None, planning_locked_at=None, updated_at=timezone.now()
    ):
        get_or_not_found(Scene, scene_uuid, what="scene")
        raise NotLocked(f"planning on scene {scene_uuid} is not locked")
    scene = Scene.objects.get(pk=scene_uuid)
    change_services.scene_planning_changed(scene, locked=False)
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
    scene = get_or_not_found(Scene.objects.only("id", "story_id"), scene_id, what="scene")
    if scene.story_id != story.pk:
        raise InvalidLink(f"scene {scene.pk} belongs to another story", field="scene_id")
    if artifact.scene_id is not None and artifact.scene_id != scene.pk:
        raise InvalidLink(f"artifact {artifact.pk} belongs to another scene", field="scene_id")
    return scene


@atomic_write
def link_create(*, story_id, artifact_id, role: str, scene_id=None, actor=None) -> StoryArtifactLink:
    """Attach an artifact to a story role without making it primary.

    The artifact's row lock orders this check-then-insert with set-primary's own (which
    may create the same artifact's link): the second is told the link exists. It also
    conflicts with a prune's batch, which locks the rows it prunes: the row read under it is
    either pruned already (refused) or stays unpruned, since a prune keeps a linked artifact.
    """
    story = get_or_not_found(Story.objects.only("id"), story_id, what="story")
    artifact = locks.lock_artifact(artifact_id)
    scene = _check_link_target(story=story, artifact=artifact, role=role, scene_id=scene_id)
    if artifact.is_pruned:
        raise Pruned(f"artifact {artifact.pk} was pruned: it takes no new reference", field="artifact_id")
    if StoryArtifactLink.objects.filter(artifact_id=artifact.pk, role=role).exists():
        raise DuplicateLink(f"artifact {artifact.pk} is already linked as {role}")
    return StoryArtifactLink.objects.create(
        story=story,
        artifact=artifact,
        role=role,
        scene=scene,
        is_primary=False,
        created_by=acting_user(actor),
    )


@atomic_write
def story_set_primary(*, story_id, role: str, artifact_id, scene_id=None, actor=None) -> StoryArtifactLink:
    """Make ``artifact`` the primary of ``role``: the old primary is demoted and the story's
    derived reference follows, all in this one transaction.

    Locks, in the fixed order: the story row (one primary change per story at a time),
    then the artifact row (so it cannot be archived meanwhile).
    """
    story = locks.lock_story(story_id)
    artifact = locks.lock_artifact(artifact_id)
    return _make_primary(story=story, artifact=artifact, role=role, scene_id=scene_id, actor=actor)


@atomic_write
def story_publish_and_set_primary(
    *, story_id, role: str, artifact_id, scene_id=None, actor=None, note: str | None = None
) -> StoryArtifactLink:
    """Publish a candidate and make it the primary of ``role`` in one transaction: both or
    neither (an editor's "approve and make primary"). An artifact published already is only
    made primary. The link's rules are checked before anything changes, so a candidate that
    could not be primary (another story's, a kind the role does not take) stays a candidate.

    Locks as ``story_set_primary``: the story row, then the artifact row (the transition
    takes the same artifact row again, at its own level)."""
    story = locks.lock_story(story_id)
    artifact = locks.lock_artifact(artifact_id)
    _check_link_target(story=story, artifact=artifact, role=role, scene_id=scene_id)
    if artifact.lifecycle_state != LifecycleState.PUBLISHED:
        artifact = artifact_transition(artifact_id=artifact.pk, to=LifecycleState.PUBLISHED, actor=actor, note=note)
    return _make_primary(story=story, artifact=artifact, role=role, scene_id=scene_id, actor=actor)


def _make_primary(*, story: Story, artifact: Artifact, role: str, scene_id, actor) -> StoryArtifactLink:
    """The primary change itself, on the story and artifact rows the caller has locked."""
    scene = _check_link_target(story=story, artifact=artifact, role=role, scene_id=scene_id)
    if artifact.is_pruned:  # read under the row lock, which a prune's batch takes too (see link_create)
        raise Pruned(f"artifact {artifact.pk} was pruned: it takes no new reference", field="artifact_id")
    if artifact.lifecycle_state != LifecycleState.PUBLISHED:
        raise NotPublished(
            f"artifact {artifact.pk} is {artifact.lifecycle_state}; only a published artifact can be primary"
        )
    scene_pk = scene.pk if scene else None
    # One artifact is linked to one role once: a link it already has for this role must be
    # the one asked for, never another scene's (which this would silently move).
    link = StoryArtifactLink.objects.filter(artifact_id=artifact.pk, role=role).first()
    if link is not None and link.scene_id != scene_pk:
        raise DuplicateLink(
            f"artifact {artifact.pk} is already linked as {role} of scene {link.scene_id}; "
            "one artifact is linked to one role once"
        )
    user = acting_user(actor)
    current = selectors.primary_link(story_id=story.pk, role=role, scene_id=scene_pk)
    if current is not None and current.artifact_id == artifact.pk:
        return current
    if current is not None:
        StoryArtifactLink.objects.filter(pk=current.pk).update(is_primary=False)
    if link is None:
        link = StoryArtifactLink.objects.create(
            story=story, artifact=artifact, role=role, scene=scene, is_primary=True, created_by=user
        )
    else:
        StoryArtifactLink.objects.filter(pk=link.pk).update(is_primary=True)
        link.is_primary = True

    _primary_interval_open(story_id=story.pk, role=role, scene_id=scene_pk, artifact_id=artifact.pk, user=user)

    reference = STORY_REFERENCE_FOR_ROLE.get(role)
    if reference is not None:
        setattr(story, reference, artifact)
        story.save(update_fields=[reference, "updated_at"])
    change_services.primary_changed(
        story_id=story.pk,
        role=role,
        scene_id=scene_pk,
        from_artifact_id=current.artifact_id if current else None,
        to_artifact_id=artifact.pk,
    )
    audit_record(
        action="set_primary",
        target=story,
        actor=user,
        story_id=story.pk,
        from_value={
            "role": role,
            "scene_id": str(scene_pk) if scene_pk else None,
            "artifact_id": str(current.artifact_id) if current else None,
        },
        to_value={"role": role, "scene_id": str(scene_pk) if scene_pk else None, "artifact_id": str(artifact.pk)},
    )
    return link


def _primary_interval_open(*, story_id, role: str, scene_id, artifact_id, user) -> PrimaryInterval:
    """Close the role's interval in force and open the new primary's, at one instant (primary
    history, SPEC §13). Called by ``story_set_primary`` under its story lock, so changes of one
    story follow one another; a clock that went back still gives a later instant than the
    interval it closes (the database refuses ``until <= since`` and overlaps)."""
    since = timezone.now()
    previous = PrimaryInterval.objects.filter(story_id=story_id, role=role, scene_id=scene_id, until__isnull=True)
    opened = previous.values_list("since", flat=True).first()
    if opened is not None:
        since = max(since, opened + timedelta(microseconds=1))
        previous.update(until=since)
    return PrimaryInterval.objects.create(
        story_id=story_id, role=role, scene_id=scene_id, artifact_id=artifact_id, since=since, set_by=user
    )


@atomic_write
def story_sync_references(*, story_ids, actor=None) -> list[selectors.ReferenceDrift]:
    """Recompute the derived references of these stories from their primary links (the Story
    Field Policy: cover_artifact, canonical_audio, canonical_video always equal the primary
    of cover, final_audio, final_video), returning each drift found and repaired.

    One transaction for all of them: the story rows are locked first, in primary-key order,
    so a concurrent ``story_set_primary`` (which locks its story too) cannot slip between
    the read and the repair. Each repair is an audit event.
    """
    ids = sorted({parse_uuid(story_id, what="story") for story_id in story_ids})
    locks.lock_stories(ids)
    drifts = selectors.story_reference_drifts(ids)
    user = acting_user(actor)
    now = timezone.now()
    for drift in drifts:
        Story.objects.filter(pk=drift.story_id).update(**{f"{drift.field}_id": drift.primary, "updated_at": now})
        audit_record(
            action="sync_reference",
            target=Story(pk=drift.story_id),
            actor=user,
            story_id=drift.story_id,
            from_value={"field": drift.field, "artifact_id": str(drift.stored) if drift.stored else None},
            to_value={"field": drift.field, "artifact_id": str(drift.primary) if drift.primary else None},
        )
    return drifts


def stories_import(titles: dict) -> None:
    """Stories an import names but the database lacks (id -> title), in one INSERT. The
    importer holds their streams' locks."""
    Story.objects.bulk_create([Story(id=pk, title=titles[pk]) for pk in sorted(titles)])


def scenes_import(new_scenes: dict) -> None:
    """Scenes an import names but the database lacks (scene id -> story id, in the file's
    order), each placed after its story's last scene, in one INSERT."""
    positions = dict(
        Scene.objects.filter(story_id__in=set(new_scenes.values()))
        .order_by()
        .values_list("story_id")
        .annotate(top=Max("position"))
    )
    scenes = []
    for scene_id, story_id in new_scenes.items():
        positions[story_id] = positions.get(story_id, 0) + 1
        scenes.append(Scene(id=scene_id, story_id=story_id, position=positions[story_id]))
    Scene.objects.bulk_create(scenes)


def story_set_current_run(*, story_id, run_id) -> None:
    """Make a run the story's current one (SPEC §3; ``runs.services.run_create`` calls it in
    its transaction): one UPDATE, not a read-then-save, so the newest run wins without locking
    the story first; one statement needs no transaction of its own."""
    Story.objects.filter(pk=story_id).update(current_run_id=run_id, updated_at=timezone.now())
