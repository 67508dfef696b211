"""The one writer of the audit trail, which every app calls (after Wagtail's ``log()``).

Call ``audit_record`` inside the action's own transaction, so the event and the change it
records commit or roll back together.
"""

from __future__ import annotations

from kernel.request_id import get_request_id

from .models import AuditEvent


def acting_user(user):
    """The user to record as actor: anonymous or missing users are recorded as nobody."""
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def audit_record(
    *,
    action: str,
    target,
    actor=None,
    story_id=None,
    from_value=None,
    to_value=None,
    request_id: str | None = None,
    note: str | None = None,
) -> AuditEvent:
    """Append one audit event about ``target`` (any model instance: its type and id are kept)."""
    return AuditEvent.objects.create(
        action=action,
        target_type=target._meta.model_name,
        target_id=target.pk,
        story_id=story_id,
        actor=acting_user(actor),
        from_value=from_value,
        to_value=to_value,
        request_id=request_id if request_id is not None else get_request_id(),
        note=note or None,
    )
