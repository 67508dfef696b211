"""The audit trail (SPEC §3): who did what, when, from what to what, under which request.
Every lifecycle transition, planning lock and unlock, primary change and edit appends one
event, in the transaction of the change; nothing updates or deletes one (triggers on both
databases say so too: artifacts/migrations/0003 and 0009)."""

import uuid

from django.conf import settings
from django.db import models

from kernel.errors import ImmutableRow


class AuditEvent(models.Model):
    """Append-only record of curation: transitions, locks, primary changes, edits."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action = models.CharField(max_length=40, db_index=True)
    target_type = models.CharField(max_length=40)
    target_id = models.UUIDField()
    story = models.ForeignKey(
        "stories.Story", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    from_value = models.JSONField(null=True, blank=True)
    to_value = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # Why the editor did it ("hands are wrong in panel 2"), when they said. Nullable on purpose:
    # SQLite adds a nullable column in place, where a NOT NULL one would rebuild the table and
    # drop its immutability triggers.
    note = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        # The table it had when it lived in the artifacts app: its triggers and grants name it.
        db_table = "artifacts_auditevent"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id", "-created_at"], name="audit_target_idx"),
            models.Index(fields=["action", "-created_at"], name="audit_action_created_idx"),
        ]

    def __str__(self):
        return f"{self.action} {self.target_type} {self.target_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableRow("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRow("audit events are append-only")
