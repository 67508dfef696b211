"""The change feed and its webhooks (SPEC §14).

``Event``: one row per change, written in the transaction of the change by
``changes.services`` (never by a signal, which a raw write would skip). Its position in
the feed is ``(xid, seq)``: on PostgreSQL ``xid`` is the writing transaction's id, and the
feed serves only the events of transactions older than the oldest still in flight, so a
transaction that commits late can never land behind a reader's cursor (see
``changes.selectors``). On SQLite one writer at a time holds the database until it commits,
so ``seq`` alone is commit order and ``xid`` stays 0.

Events are never changed (a trigger refuses an UPDATE on both databases); ``prune_changes``
deletes those older than ``CHANGES_RETENTION_DAYS``.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from kernel.errors import ImmutableRow


class EventType(models.TextChoices):
    ARTIFACT_CREATED = "artifact.created"
    ARTIFACT_TRANSITIONED = "artifact.transitioned"
    ARTIFACT_PRUNED = "artifact.pruned"
    PRIMARY_CHANGED = "primary.changed"
    SCENE_LOCKED = "scene.locked"
    SCENE_UNLOCKED = "scene.unlocked"
    RUN_FINISHED = "run.finished"
    COMMENT_CREATED = "comment.created"


class Event(models.Model):
    seq = models.BigAutoField(primary_key=True)
    # Not indexed: nothing looks an event up by it, and every create would pay for the index.
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=40, choices=EventType.choices)
    created_at = models.DateTimeField(default=timezone.now)
    # Plain ids, not foreign keys: an event outlives nothing and locks nothing it names.
    story_id = models.UUIDField(null=True, blank=True)
    scene_id = models.UUIDField(null=True, blank=True)
    data = models.JSONField(default=dict)
    xid = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["xid", "seq"]
        indexes = [
            # The feed's order and its cursor's position.
            models.Index(fields=["xid", "seq"], name="changes_event_position_idx"),
            models.Index(fields=["story_id", "xid", "seq"], name="changes_event_story_idx"),
        ]

    def __str__(self):
        return f"{self.type} {self.event_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableRow("events are never changed")
        super().save(*args, **kwargs)


class Webhook(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000)
    # The event types it takes, as ",a,b," (empty: every type): matched in SQL on both
    # databases by the INSERT that fans an event out to its deliveries.
    types = models.CharField(max_length=400, blank=True, default="")
    story_id = models.UUIDField(null=True, blank=True)
    secret = models.CharField(max_length=100, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.url

    @property
    def type_list(self) -> list[str]:
        return [t for t in self.types.split(",") if t]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(models.Model):
    """One event to one webhook: pending until a 2xx, failed after the last attempt."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When it is due next: a claim moves it ahead by the lease, so one deliverer takes it.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["webhook", "event"], name="changes_delivery_once")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="changes_delivery_due_idx",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self):
        return f"{self.event_id} to {self.webhook_id}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="+")
    event_id = models.UUIDField()
    attempt = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["webhook", "-at", "-id"], name="changes_attempt_webhook_idx")]

    def __str__(self):
        return f"attempt {self.attempt} of {self.event_id}"
