"""Reads of stories, scenes and curated links shared by the API, the admin and the services."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from kernel.lookups import get_or_not_found

from .models import ROLE_SCENE_IMAGE, STORY_REFERENCE_FOR_ROLE, PrimaryInterval, Scene, Story, StoryArtifactLink


def story_primaries(story_id) -> QuerySet:
    """The story's primary links with the columns of their artifacts (link_story_role_idx)."""
    return (
        StoryArtifactLink.objects.filter(story_id=story_id, is_primary=True)
        .select_related("artifact")
        .only(
            "id",
            "role",
            "scene_id",
            "artifact_id",
            "artifact__id",
            "artifact__type",
            "artifact__version",
            "artifact__kind",
            "artifact__lifecycle_state",
            "artifact__pruned_at",
            "artifact__mime_type",
        )
    )


def primary_link(*, story_id, role: str, scene_id) -> StoryArtifactLink | None:
    """The primary of one role (of one scene for scene_image), or None."""
    return StoryArtifactLink.objects.filter(story_id=story_id, role=role, scene_id=scene_id, is_primary=True).first()


def story_scenes(story_id) -> QuerySet:
    """A story's scenes by position (scene_unique_position_per_story)."""
    return Scene.objects.filter(story_id=story_id).order_by("position")


def stories() -> QuerySet:
    """Every story (the API's list, newest first by its cursor)."""
    return Story.objects.all()


def scenes() -> QuerySet:
    return Scene.objects.all()


def story_links(story_id) -> QuerySet:
    """A story's curated links (link_story_role_idx)."""
    return StoryArtifactLink.objects.filter(story_id=story_id)


def scene_for_pipeline(scene_id) -> Scene:
    """A scene with what the pipeline reads of it (its text, its planning lock), or NotFound."""
    return get_or_not_found(
        Scene.objects.only("id", "story_id", "position", "title", "source_text", "planning_locked"),
        scene_id,
        what="scene",
    )


def story_scene_ids(story_id) -> list:
    """A story's scenes' ids in position order (NotFound for a story that does not exist):
    what ``--story`` and the story pipeline run, one run each."""
    get_or_not_found(Story.objects.only("id"), story_id, what="story")
    return list(story_scenes(story_id).values_list("pk", flat=True))


@dataclass(frozen=True)
class ReferenceDrift:
    """A story's derived reference (``field``) that differs from the primary link of ``role``."""

    story_id: object
    role: str
    field: str
    stored: object  # the artifact id the story holds, or None
    primary: object  # the artifact id of the role's primary link, or None

    def __str__(self):
        return (
            f"story {self.story_id}: {self.field} is {self.stored or 'empty'}, "
            f"the primary {self.role} is {self.primary or 'none'}"
        )


def story_reference_drifts(story_ids) -> list[ReferenceDrift]:
    """Every derived reference of these stories (cover_artifact, canonical_audio,
    canonical_video) that is not the primary link of its role (SPEC §3). Two queries: the
    stories' references by primary key, their story-wide primaries (link_story_role_idx)."""
    ids = list(story_ids)
    fields = list(STORY_REFERENCE_FOR_ROLE.values())
    stored = {
        row[0]: dict(zip(fields, row[1:], strict=True))
        for row in Story.objects.filter(pk__in=ids).values_list("pk", *(f"{f}_id" for f in fields))
    }
    primaries = {
        (story_id, role): artifact_id
        for story_id, role, artifact_id in StoryArtifactLink.objects.filter(
            story_id__in=ids, role__in=list(STORY_REFERENCE_FOR_ROLE), is_primary=True, scene__isnull=True
        ).values_list("story_id", "role", "artifact_id")
    }
    drifts = []
    for story_id in sorted(stored):
        for role, field in STORY_REFERENCE_FOR_ROLE.items():
            primary = primaries.get((story_id, role))
            if stored[story_id][field] != primary:
                drifts.append(ReferenceDrift(story_id, role, field, stored[story_id][field], primary))
    return drifts


_INTERVAL_COLUMNS = (
    "id",
    "role",
    "scene_id",
    "artifact_id",
    "since",
    "until",
    "set_by__username",
    "artifact__type",
    "artifact__version",
)


def primary_intervals() -> QuerySet:
    """Primary intervals with their setter's name and their artifact's type and version (two
    joins by primary key), newest first."""
    return (
        PrimaryInterval.objects.select_related("set_by", "artifact").only(*_INTERVAL_COLUMNS).order_by("-since", "-id")
    )


def primaries_as_of(story_id, moment) -> QuerySet:
    """What was primary at ``moment``: the intervals that began at or before it and had not
    ended (primary_interval_story_idx: the story's intervals from ``moment`` back)."""
    return (
        primary_intervals()
        .filter(story_id=story_id, since__lte=moment)
        .filter(Q(until__isnull=True) | Q(until__gt=moment))
    )


def primary_history(story_id, *, role: str | None = None, scene_id=None) -> QuerySet:
    """The story's primary intervals, newest first, of one role (and scene) when given
    (primary_interval_story_idx; with a role, primary_interval_role_idx; with a scene,
    primary_interval_scene_idx: a scene's intervals are its story's, so a scene of another
    story has none here, nor has a role other than scene_image)."""
    if scene_id is not None:
        if role not in (None, ROLE_SCENE_IMAGE) or not Scene.objects.filter(pk=scene_id, story_id=story_id).exists():
            return PrimaryInterval.objects.none()
        # Only scene_image intervals have a scene: the role needs no filter of its own.
        return primary_intervals().filter(scene_id=scene_id)
    intervals = primary_intervals().filter(story_id=story_id)
    return intervals if role is None else intervals.filter(role=role)
