import uuid

from django.conf import settings
from django.db import models


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Direction(models.TextChoices):
    CONSUMED = "consumed"
    PRODUCED = "produced"


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    story = models.ForeignKey("stories.Story", on_delete=models.PROTECT, related_name="runs")
    scene = models.ForeignKey("stories.Scene", null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    workflow = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)
    params = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Who drives the run (SPEC §10, "Crash-safe runs"): on the workers (``queued``), or a
    # process that holds it, named by ``holder`` and, where no session lock can tell that it
    # is alive (SQLite), writing ``heartbeat_at`` while it drives.
    queued = models.BooleanField(default=False)
    holder = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["story", "-created_at"], name="run_story_created_idx"),
            # The admin list's status filter in the list's order.
            models.Index(fields=["status", "-created_at"], name="run_status_created_idx"),
            # A scene's unfinished runs: what a new run of the scene checks for lost ones.
            models.Index(fields=["scene", "status"], name="run_scene_status_idx"),
        ]

    def __str__(self):
        return f"{self.workflow} run {str(self.id)[:8]} ({self.status})"


class AgentStep(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="steps")
    sequence = models.PositiveIntegerField()
    node = models.CharField(max_length=100)
    agent = models.CharField(max_length=100, blank=True, default="")
    status = models.CharField(max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING)
    attempt = models.PositiveIntegerField(default=1)
    input_summary = models.JSONField(default=dict, blank=True)
    output_summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # run_id, not run: ordering by the relation would join (and lock) the run.
        ordering = ["run_id", "sequence"]
        constraints = [models.UniqueConstraint(fields=["run", "sequence"], name="step_unique_sequence_per_run")]
        # The admin list: newest steps first.
        indexes = [models.Index(fields=["-started_at", "-id"], name="step_started_idx")]

    def __str__(self):
        return f"#{self.sequence} {self.node} ({self.status})"


class RunArtifactLink(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="artifact_links")
    step = models.ForeignKey(AgentStep, null=True, blank=True, on_delete=models.PROTECT, related_name="artifact_links")
    artifact = models.ForeignKey("artifacts.Artifact", on_delete=models.PROTECT, related_name="run_links")
    stage = models.CharField(max_length=100)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "artifact", "stage", "direction"], name="runlink_unique_per_stage_direction"
            )
        ]
        indexes = [
            models.Index(fields=["artifact", "direction"], name="runlink_artifact_dir_idx"),
            models.Index(fields=["run", "created_at"], name="runlink_run_created_idx"),
            # The admin list: newest records first.
            models.Index(fields=["-created_at", "-id"], name="runlink_created_idx"),
        ]

    def __str__(self):
        return f"{self.stage} {self.direction} {self.artifact_id}"
