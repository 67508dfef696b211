"""The audit trail's one write: who did what to which object, from what to what (SPEC §3)."""

from __future__ import annotations

from artifacts.models import AuditEvent
from artifacts_project.request_id import get_request_id


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
) -> AuditEvent:
    """Append one audit event. Call it inside the action's transaction, so the event and
    the change it records commit or roll back together."""
    return AuditEvent.objects.create(
        action=action,
        target_type=target._meta.model_name,
        target_id=target.pk,
        story_id=story_id,
        actor=acting_user(actor),
        from_value=from_value,
        to_value=to_value,
        request_id=request_id if request_id is not None else get_request_id(),
    )
