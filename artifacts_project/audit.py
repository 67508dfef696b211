"""Who acts: the user an audit event records (the one write of the trail is
``artifacts.services.audit_record``, SPEC §3)."""

from __future__ import annotations


def acting_user(user):
    """The user to record as actor: anonymous or missing users are recorded as nobody."""
    return user if user is not None and getattr(user, "is_authenticated", False) else None
