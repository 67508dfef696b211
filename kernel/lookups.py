"""Ids that come from input, and the rows they name.

Every app's services resolve ids the same way: a malformed id names nothing, so it is
reported as not found, with the field that carried it.
"""

from __future__ import annotations

import uuid

from kernel.errors import NotFound


def parse_uuid(value, *, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise NotFound(f"{what} {value!r} does not exist", field=f"{what}_id") from None


def get_or_not_found(model_or_queryset, pk, *, what: str):
    """The row named ``pk``, or NotFound naming ``<what>_id``. Takes no lock: rows that a
    write must hold are locked through ``kernel.locks``."""
    queryset = getattr(model_or_queryset, "objects", model_or_queryset)
    obj = queryset.filter(pk=parse_uuid(pk, what=what)).first()
    if obj is None:
        raise NotFound(f"{what} {pk} does not exist", field=f"{what}_id")
    return obj


def ensure_exists(model, pk, *, what: str) -> None:
    """NotFound naming ``<what>_id`` unless a row of ``model`` has the primary key ``pk``."""
    if not model.objects.filter(pk=parse_uuid(pk, what=what)).exists():
        raise NotFound(f"{what} {pk} does not exist", field=f"{what}_id")
