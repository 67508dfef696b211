"""Reads of the change feed (SPEC §14): its pages, its cursors, the webhooks' deliveries.

**The feed never skips an event.** A sequence number is taken when a row is inserted but
becomes visible when its transaction commits, so a reader of ``seq > cursor`` can pass over
a row that commits late and never see it. Here, on PostgreSQL, each event carries its
writing transaction's id (``xid``), and a page serves only the events whose transaction is
older than the oldest one still in flight (``pg_snapshot_xmin(pg_current_snapshot())``),
in ``(xid, seq)`` order: every transaction below that horizon has ended, so the events
below it are final, and any event still to come has a larger ``xid``, hence a position
after every cursor handed out so far. On SQLite, one writer holds the database from its
first write to its commit: ``seq`` is commit order, and ``xid`` is 0.

A cursor is opaque: the position ``(xid, seq)`` and the time of the event it follows
(retention), signed, so a cursor edited by hand is 400 ``invalid_cursor``; one older than
``CHANGES_RETENTION_DAYS`` is 410 ``cursor_expired``.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import connection
from django.utils import timezone

from kernel.api_defaults import RawJSON
from kernel.errors import CursorExpired, InvalidCursor

from .models import DeliveryAttempt, Event

_SIGNER = signing.Signer(salt="changes.cursor")
# The horizon below which every transaction that can write here has ended (PostgreSQL 13+):
# the oldest still in flight (the snapshot's xip), or else the next id to be assigned. Two
# kinds are left out: the reader's own (a test's transaction that wrote, then reads: what it
# wrote is final to itself), and those a backend of another database runs (read from pg_stat_activity
# after the snapshot: an id found there belongs to that database for good; one not found is
# kept), which can write no event here but would hold the feed back while they last.
_PG_HORIZON = (
    "(SELECT GREATEST(COALESCE((SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x"
    " WHERE xid(x) NOT IN (SELECT backend_xid FROM pg_stat_activity WHERE backend_xid IS NOT NULL"
    " AND datname IS DISTINCT FROM current_database())),"
    " pg_snapshot_xmax(pg_current_snapshot())::text::bigint),"
    " pg_current_xact_id_if_assigned()::text::bigint + 1))"
)


@dataclass(frozen=True)
class Position:
    xid: int
    seq: int
    at: int  # milliseconds since the epoch: when the event it follows was written

    def encode(self) -> str:
        signed = _SIGNER.sign(f"{self.xid}.{self.seq}.{self.at}")
        return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            xid, seq, at = (int(part) for part in _SIGNER.unsign(raw).split("."))
        except (ValueError, signing.BadSignature, UnicodeError):
            raise InvalidCursor(
                "since is not a cursor this feed made: take it from `next`, or use since=now", field="since"
            ) from None
        return cls(xid, seq, at)

    def check_retention(self) -> None:
        cutoff = timezone.now() - datetime.timedelta(days=settings.CHANGES_RETENTION_DAYS)
        if self.at < _millis(cutoff):
            raise CursorExpired(
                f"this cursor is older than the feed keeps events ({settings.CHANGES_RETENTION_DAYS} days): "
                "list again, then follow from since=now",
                field="since",
            )


def _millis(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


def start_position() -> Position:
    """Before the oldest event kept."""
    return Position(0, 0, _millis(timezone.now()))


def end_position() -> Position:
    """The current end (``since=now``): after every event served so far; on PostgreSQL the
    events of transactions still in flight come after it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A reader that has written in its own transaction (a test's) writes on below
            # the horizon: its end is after its own latest event.
            cursor.execute(
                f"SELECT {_PG_HORIZON}, pg_current_xact_id_if_assigned()::text::bigint,"
                f" (SELECT COALESCE(MAX(seq), 0) FROM {Event._meta.db_table})"
            )
            horizon, own, seq = cursor.fetchone()
            if own is not None:
                return Position(own, seq, _millis(timezone.now()))
            return Position(horizon, 0, _millis(timezone.now()))
        cursor.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {Event._meta.db_table}")
        (seq,) = cursor.fetchone()
        return Position(0, seq, _millis(timezone.now()))


@dataclass
class FeedEvent:
    position: Position
    body: dict


def feed_page(*, after: Position, limit: int, types: list[str] | None = None, story_id=None) -> list[FeedEvent]:
    """The events after ``after``, at most ``limit``, in feed order: one query on the
    ``(xid, seq)`` index (or ``(story_id, xid, seq)``), payload-free rows, ``data`` as the
    JSON text the database holds."""
    table = Event._meta.db_table
    where = ["(xid, seq) > (%s, %s)"]
    params: list = [after.xid, after.seq]
    if connection.vendor == "postgresql":
        where.append(f"xid < {_PG_HORIZON}")
        data = "data::text"
    else:
        data = "data"
    if types:
        where.append(f"type IN ({', '.join(['%s'] * len(types))})")
        params += types
    if story_id is not None:
        where.append("story_id = %s")
        params.append(Event._meta.get_field("story_id").get_db_prep_value(story_id, connection))
    params.append(limit)
    sql = (
        f"SELECT xid, seq, event_id, type, created_at, story_id, scene_id, {data} FROM {table}"
        f" WHERE {' AND '.join(where)} ORDER BY xid, seq LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    uuid_field = Event._meta.get_field("event_id")
    events = []
    for xid, seq, event_id, type_, created_at, story, scene, data_text in rows:
        created_at = _aware(created_at)
        events.append(
            FeedEvent(
                Position(xid, seq, _millis(created_at)),
                {
                    "event_id": str(uuid_field.to_python(event_id)),
                    "type": type_,
                    "timestamp": created_at.isoformat().replace("+00:00", "Z"),
                    "story_id": str(uuid_field.to_python(story)) if story is not None else None,
                    "scene_id": str(uuid_field.to_python(scene)) if scene is not None else None,
                    "data": RawJSON(data_text),
                },
            )
        )
    return events


def _aware(value) -> datetime.datetime:
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


def event_body(event: Event) -> dict:
    """An event as the feed and the webhooks show it."""
    return {
        "event_id": str(event.event_id),
        "type": event.type,
        "timestamp": event.created_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
        "story_id": str(event.story_id) if event.story_id else None,
        "scene_id": str(event.scene_id) if event.scene_id else None,
        "data": event.data,
    }


def webhook_attempts(webhook_id):
    """A webhook's delivery attempts, newest first (index changes_attempt_webhook_idx)."""
    return DeliveryAttempt.objects.filter(webhook_id=webhook_id)
