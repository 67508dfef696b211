import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from kernel.errors import ImmutableRow

from .payloads import KINDS


class LifecycleState(models.TextChoices):
    INTERMEDIATE = "intermediate"
    CANDIDATE = "candidate"
    PUBLISHED = "published"
    ARCHIVED = "archived"


# SPEC §5: every transition not listed here is refused.
ALLOWED_TRANSITIONS = {
    LifecycleState.INTERMEDIATE: {LifecycleState.CANDIDATE, LifecycleState.ARCHIVED},
    LifecycleState.CANDIDATE: {LifecycleState.PUBLISHED, LifecycleState.ARCHIVED},
    LifecycleState.PUBLISHED: {LifecycleState.ARCHIVED},
    LifecycleState.ARCHIVED: {LifecycleState.CANDIDATE},
}

# The only columns an UPDATE may touch. The database triggers (migration 0002) say the
# same: a lifecycle change alone, or the retention path of prune_artifacts.
MUTABLE_FIELDS = frozenset({"lifecycle_state"})
PRUNE_FIELDS = frozenset({"payload", "content", "pruned_at"})


class ArtifactQuerySet(models.QuerySet):
    def delete(self):
        raise ImmutableRow("artifacts are never deleted")

    def update(self, **kwargs):
        fields = set(kwargs)
        if not (fields <= MUTABLE_FIELDS or fields == PRUNE_FIELDS):
            raise ImmutableRow(f"artifact columns {sorted(fields - MUTABLE_FIELDS)} cannot change")
        return super().update(**kwargs)

    def for_stream(self, *, story_id, scene_id, type):
        """One version stream: (scene, type), or (story, type) for a story-level stream."""
        if scene_id is not None:
            return self.filter(scene_id=scene_id, type=type)
        return self.filter(story_id=story_id, scene__isnull=True, type=type)


class Artifact(models.Model):
    """One immutable output of a pipeline stage; a new payload is a new version."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Both are the leading column of a composite index below, which serves them alone too.
    story = models.ForeignKey("stories.Story", on_delete=models.PROTECT, related_name="artifacts", db_index=False)
    scene = models.ForeignKey(
        "stories.Scene", null=True, blank=True, on_delete=models.PROTECT, related_name="artifacts", db_index=False
    )
    type = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    kind = models.CharField(max_length=10, choices=[(k, k) for k in KINDS], default="json")
    # NULL only on a pruned tombstone.
    payload = models.JSONField(null=True, blank=True)
    content = models.FileField(max_length=255, blank=True, default="")
    content_sha256 = models.CharField(max_length=64, blank=True, default="")
    content_size = models.PositiveBigIntegerField(null=True, blank=True)
    mime_type = models.CharField(max_length=100, blank=True, default="")
    lifecycle_state = models.CharField(
        max_length=20, choices=LifecycleState.choices, default=LifecycleState.INTERMEDIATE
    )
    request_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    created_by_step = models.ForeignKey(
        "runs.AgentStep", null=True, blank=True, on_delete=models.PROTECT, related_name="created_artifacts"
    )
    # No index: nothing looks artifacts up by author, and users are not deleted.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    pruned_at = models.DateTimeField(null=True, blank=True)
    # What the version was made from (SPEC §10): the sha256 a pipeline node computed over
    # its name, generator, inputs, scene text and params. An edit or a client's POST
    # carries its parent's: it counts as made from the same inputs. Empty when unknown.
    fingerprint = models.CharField(max_length=64, blank=True, default="")

    objects = ArtifactQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("override_planning_lock", "Can create planning artifacts on a locked scene")]
        constraints = [
            # One version number per stream, in both stream shapes: NULL scenes are distinct
            # to a plain unique index, so story-level streams get their own partial index.
            models.UniqueConstraint(
                fields=["scene", "type", "version"],
                condition=Q(scene__isnull=False),
                name="artifact_unique_scene_stream_version",
            ),
            models.UniqueConstraint(
                fields=["story", "type", "version"],
                condition=Q(scene__isnull=True),
                name="artifact_unique_story_stream_version",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="artifact_version_positive"),
            models.CheckConstraint(condition=Q(kind__in=KINDS), name="artifact_kind_known"),
            models.CheckConstraint(
                condition=Q(lifecycle_state__in=LifecycleState.values), name="artifact_lifecycle_known"
            ),
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="artifact_not_own_parent"),
        ]
        # Every index has a reader, named here; the unique constraints above serve a stream's
        # latest version, its versions and the latest of each type of a scene.
        indexes = [
            # A scene's artifacts newest first (API list, admin ?scene=), and scene_id alone.
            models.Index(fields=["scene", "-created_at", "-id"], name="artifact_scene_created_idx"),
            # A story's artifacts newest first (admin ?story=), and story_id alone.
            models.Index(fields=["story", "-created_at", "-id"], name="artifact_story_created_idx"),
            # The admin list's default order, and its date filter.
            models.Index(fields=["-created_at", "-id"], name="artifact_created_idx"),
            # The admin list's filters, each in the list's order.
            models.Index(fields=["type", "-created_at"], name="artifact_type_created_idx"),
            models.Index(fields=["lifecycle_state", "-created_at"], name="artifact_state_created_idx"),
            models.Index(fields=["kind", "-created_at"], name="artifact_kind_created_idx"),
            # Media rows only (few): who else uses a stored file, and a story's media for the
            # primary chooser.
            models.Index(
                fields=["content_sha256"], condition=~Q(content_sha256=""), name="artifact_content_sha256_idx"
            ),
            models.Index(
                fields=["story", "-created_at", "-id"], condition=~Q(content_sha256=""), name="artifact_story_media_idx"
            ),
            # Candidates only (few among millions): the review queue, newest first, alone or
            # by story or by type, and the storyboard's candidates of a story.
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(lifecycle_state="candidate"),
                name="artifact_candidate_idx",
            ),
            models.Index(
                fields=["story", "-created_at", "-id"],
                condition=Q(lifecycle_state="candidate"),
                name="artifact_candidate_story_idx",
            ),
            models.Index(
                fields=["type", "-created_at", "-id"],
                condition=Q(lifecycle_state="candidate"),
                name="artifact_candidate_type_idx",
            ),
            # The pipeline: the version of a stream a fingerprint made (resume, explain).
            models.Index(
                fields=["scene", "type", "fingerprint"], condition=~Q(fingerprint=""), name="artifact_fingerprint_idx"
            ),
        ]

    def __str__(self):
        return f"{self.type} v{self.version}"

    def save(self, *args, **kwargs):
        # Model-layer guard; the database triggers are the real guarantee.
        if not self._state.adding:
            raise ImmutableRow("artifacts are immutable: create a new version instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRow("artifacts are never deleted")

    @property
    def is_pruned(self) -> bool:
        return self.pruned_at is not None


class RelationType(models.TextChoices):
    DERIVED_FROM = "derived_from"
    VARIANT_OF = "variant_of"
    TRANSCODED_FROM = "transcoded_from"


# Relations that mean "was made from": they must never form a cycle.
ACYCLIC_RELATIONS = (RelationType.DERIVED_FROM, RelationType.TRANSCODED_FROM)


class ArtifactRelation(models.Model):
    """``from_artifact`` <relation_type> ``to_artifact``: A derived_from B means A was made from B."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Served by relation_unique_edge (from, to, type) and relation_to_idx (to, type).
    from_artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="relations_out", db_index=False)
    to_artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="relations_in", db_index=False)
    relation_type = models.CharField(max_length=20, choices=RelationType.choices)
    created_by_step = models.ForeignKey(
        "runs.AgentStep", null=True, blank=True, on_delete=models.PROTECT, related_name="created_relations"
    )
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["from_artifact", "to_artifact", "relation_type"], name="relation_unique_edge"
            ),
            models.CheckConstraint(condition=~Q(from_artifact=models.F("to_artifact")), name="relation_no_self_edge"),
            models.CheckConstraint(condition=Q(relation_type__in=RelationType.values), name="relation_type_known"),
        ]
        # from_artifact is the leading column of the unique index; lineage also walks
        # edges backwards, so the other end needs its own index.
        indexes = [
            models.Index(fields=["to_artifact", "relation_type"], name="relation_to_idx"),
            # The admin's list: filter by type, ordered by creation.
            models.Index(fields=["relation_type", "created_at"], name="relation_type_created_idx"),
            models.Index(fields=["created_at"], name="relation_created_idx"),
        ]

    def __str__(self):
        return f"{self.from_artifact_id} {self.relation_type} {self.to_artifact_id}"
