"""Reads of the audit trail (audit_target_idx, the story's foreign-key index)."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import AuditEvent

TRAIL_LIMIT = 50


def trail(**lookup) -> QuerySet:
    """The newest events matching ``lookup`` (a target, or a story), with their actors."""
    return AuditEvent.objects.filter(**lookup).select_related("actor").order_by("-created_at")[:TRAIL_LIMIT]


def trail_of(obj) -> QuerySet:
    return trail(target_type=obj._meta.model_name, target_id=obj.pk)
