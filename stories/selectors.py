"""Reads of stories, scenes and curated links shared by the API, the admin and the services."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Scene, StoryArtifactLink


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
        )
    )


def primary_link(*, story_id, role: str, scene_id) -> StoryArtifactLink | None:
    """The primary of one role (of one scene for scene_image), or None."""
    return StoryArtifactLink.objects.filter(story_id=story_id, role=role, scene_id=scene_id, is_primary=True).first()


def story_scenes(story_id) -> QuerySet:
    """A story's scenes by position (scene_unique_position_per_story)."""
    return Scene.objects.filter(story_id=story_id).order_by("position")
