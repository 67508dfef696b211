"""Comments on artifacts (SPEC §13): an editor's note on one artifact, in a thread.

A comment is never edited or deleted, only resolved once: triggers on both databases
(migration 0002) refuse a DELETE and any UPDATE but setting ``resolved_at`` and
``resolved_by`` on an unresolved comment, so raw SQL cannot rewrite a thread either."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length
from django.db.models.lookups import GreaterThanOrEqual, LessThanOrEqual

from kernel.errors import ImmutableRow

BODY_MAX_LENGTH = 10_000


class Comment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Served by comment_thread_idx (its first column).
    artifact = models.ForeignKey(
        "artifacts.Artifact", on_delete=models.PROTECT, related_name="comments", db_index=False
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField(max_length=BODY_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["artifact_id", "created_at", "id"]
        indexes = [
            # An artifact's thread, oldest first (the API's cursor, the artifact page).
            models.Index(fields=["artifact", "created_at", "id"], name="comment_thread_idx"),
            # Every comment, newest first (the admin's list).
            models.Index(fields=["-created_at", "-id"], name="comment_created_idx"),
        ]
        constraints = [
            # Characters, as the API counts them (not bytes); whitespace alone is the service's to refuse.
            models.CheckConstraint(
                condition=Q(GreaterThanOrEqual(Length("body"), 1), LessThanOrEqual(Length("body"), BODY_MAX_LENGTH)),
                name="comment_body_length",
            ),
            models.CheckConstraint(
                condition=Q(resolved_at__isnull=True, resolved_by__isnull=True)
                | Q(resolved_at__isnull=False, resolved_by__isnull=False),
                name="comment_resolved_by_whom_and_when",
            ),
        ]

    def __str__(self):
        return f"{self.author_id} on {self.artifact_id}: {self.body[:40]}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableRow("comments are never edited, only resolved (comments.services.comment_resolve)")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRow("comments are never deleted")
