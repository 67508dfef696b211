import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

ROLE_COVER = "cover"
ROLE_FINAL_AUDIO = "final_audio"
ROLE_FINAL_VIDEO = "final_video"
ROLE_SCENE_IMAGE = "scene_image"


class Role(models.TextChoices):
    COVER = ROLE_COVER, "Cover"
    FINAL_AUDIO = ROLE_FINAL_AUDIO, "Final audio"
    FINAL_VIDEO = ROLE_FINAL_VIDEO, "Final video"
    SCENE_IMAGE = ROLE_SCENE_IMAGE, "Scene image"


# The Story Field Policy: each curated reference mirrors the primary link of one role.
STORY_REFERENCE_FOR_ROLE = {
    ROLE_COVER: "cover_artifact",
    ROLE_FINAL_AUDIO: "canonical_audio",
    ROLE_FINAL_VIDEO: "canonical_video",
}
# What a role may point at: the artifact's kind.
KIND_FOR_ROLE = {
    ROLE_COVER: "image",
    ROLE_FINAL_AUDIO: "audio",
    ROLE_FINAL_VIDEO: "video",
    ROLE_SCENE_IMAGE: "image",
}


def role_of(artifact) -> str | None:
    """The role an artifact could be the primary of (SPEC §3): a role takes one kind, and an
    image is a scene's image in a scene, the story's cover at story level; audio and video
    are the story's own. JSON serves none."""
    if artifact.kind == KIND_FOR_ROLE[ROLE_SCENE_IMAGE] and artifact.scene_id is not None:
        return ROLE_SCENE_IMAGE
    for role in (ROLE_COVER, ROLE_FINAL_AUDIO, ROLE_FINAL_VIDEO):
        if artifact.kind == KIND_FOR_ROLE[role] and artifact.scene_id is None:
            return role
    return None


class Story(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    # Derived references: written only by stories.services.story_set_primary.
    cover_artifact = models.ForeignKey(
        "artifacts.Artifact", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    canonical_audio = models.ForeignKey(
        "artifacts.Artifact", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    canonical_video = models.ForeignKey(
        "artifacts.Artifact", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    current_run = models.ForeignKey("runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "stories"
        ordering = ["-created_at", "id"]

    def __str__(self):
        return self.title


class Scene(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Served by scene_unique_position_per_story and scene_story_created_idx.
    story = models.ForeignKey(Story, on_delete=models.PROTECT, related_name="scenes", db_index=False)
    position = models.PositiveIntegerField()
    title = models.CharField(max_length=200, blank=True, default="")
    source_text = models.TextField(blank=True, default="")
    planning_locked = models.BooleanField(default=False)
    planning_locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    planning_locked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # story_id, not story: ordering by the relation would join (and lock) the story.
        ordering = ["story_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["story", "position"], name="scene_unique_position_per_story"),
        ]
        # A story's scenes in creation order: the API's cursor needs an immutable column.
        indexes = [models.Index(fields=["story", "created_at", "id"], name="scene_story_created_idx")]

    def __str__(self):
        return f"{self.story.title if self.story_id else '?'} #{self.position} {self.title}".strip()


class StoryArtifactLink(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    story = models.ForeignKey(Story, on_delete=models.PROTECT, related_name="links")
    artifact = models.ForeignKey("artifacts.Artifact", on_delete=models.PROTECT, related_name="story_links")
    role = models.CharField(max_length=20, choices=Role.choices)
    scene = models.ForeignKey(Scene, null=True, blank=True, on_delete=models.PROTECT, related_name="links")
    is_primary = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["story_id", "role", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["artifact", "role"], name="link_artifact_once_per_role"),
            # Two partial indexes because a plain unique index treats NULL scenes as distinct.
            models.UniqueConstraint(
                fields=["story", "role"],
                condition=Q(is_primary=True, scene__isnull=True),
                name="link_one_primary_per_story_role",
            ),
            models.UniqueConstraint(
                fields=["story", "role", "scene"],
                condition=Q(is_primary=True, scene__isnull=False),
                name="link_one_primary_per_scene_role",
            ),
            models.CheckConstraint(
                condition=(
                    Q(role=ROLE_SCENE_IMAGE, scene__isnull=False) | (~Q(role=ROLE_SCENE_IMAGE) & Q(scene__isnull=True))
                ),
                name="link_scene_only_for_scene_image",
            ),
        ]
        indexes = [models.Index(fields=["story", "role", "is_primary"], name="link_story_role_idx")]

    def __str__(self):
        return f"{self.role}{' (primary)' if self.is_primary else ''}: {self.artifact_id}"


class PrimaryInterval(models.Model):
    """When an artifact was the primary of a role (of one scene for scene_image): from
    ``since`` until ``until`` (null while in force). Written only by
    ``stories.services.story_set_primary``, in the transaction of the change; one link may be
    primary several times, so the history is rows of its own, not columns of the link.

    The intervals of one (story, role, scene) never overlap: PostgreSQL's exclusion constraint
    ``primary_interval_no_overlap`` and SQLite's trigger say so (migration 0004), and both
    refuse a DELETE and any UPDATE but closing an open interval."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    story = models.ForeignKey(Story, on_delete=models.PROTECT, related_name="primary_intervals", db_index=False)
    role = models.CharField(max_length=20, choices=Role.choices)
    scene = models.ForeignKey(Scene, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False)
    artifact = models.ForeignKey("artifacts.Artifact", on_delete=models.PROTECT, related_name="+")
    since = models.DateTimeField()
    until = models.DateTimeField(null=True, blank=True)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["story_id", "-since", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(until__isnull=True) | Q(until__gt=models.F("since")),
                name="primary_interval_until_after_since",
            ),
            # One interval in force per (story, role, scene); two indexes because NULL scenes are distinct.
            models.UniqueConstraint(
                fields=["story", "role"],
                condition=Q(until__isnull=True, scene__isnull=True),
                name="primary_interval_one_open_per_role",
            ),
            models.UniqueConstraint(
                fields=["story", "role", "scene"],
                condition=Q(until__isnull=True, scene__isnull=False),
                name="primary_interval_one_open_per_scene",
            ),
        ]
        indexes = [
            # The story's history newest first, and what was primary at a time (since <= t).
            models.Index(fields=["story", "-since", "-id"], name="primary_interval_story_idx"),
            # One role's history newest first.
            models.Index(fields=["story", "role", "-since", "-id"], name="primary_interval_role_idx"),
            # One scene's (scene_image) history newest first; the scene's foreign-key index too.
            models.Index(fields=["scene", "-since", "-id"], name="primary_interval_scene_idx"),
        ]

    def __str__(self):
        return f"{self.role}: {self.artifact_id} from {self.since:%Y-%m-%d %H:%M} to {self.until or 'now'}"
