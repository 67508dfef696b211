"""The writers of the change feed and of its webhooks (SPEC §14).

``events_record`` is the one event writer: every app's services call it (or one of the
typed writers below) inside the transaction of the change, beside ``audit_record``, so the
event commits or rolls back with the change; nothing writes one from a signal, which a raw
write would skip. Many events go in one statement (a batch of a thousand artifacts is one
INSERT), which also fans each event out to the webhooks that take it and, on PostgreSQL,
notifies the feed's waiting readers at commit (``pg_notify``, one round trip in all).
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from kernel.errors import InvalidInput, NotFound
from kernel.lookups import parse_uuid
from kernel.transactions import atomic_write
from stories.models import Story

from . import wakeup
from .models import Delivery, DeliveryAttempt, DeliveryStatus, Event, EventType, Webhook


@dataclass(frozen=True)
class NewEvent:
    type: str
    story_id: object
    scene_id: object
    data: dict


def _db_uuid(value):
    return Event._meta.get_field("event_id").get_db_prep_value(value, connection) if value is not None else None


def _db_time(value):
    return Event._meta.get_field("created_at").get_db_prep_value(value, connection)


def events_record(events: Iterable[NewEvent]) -> int:
    """Append ``events`` in the caller's transaction, in one statement; returns how many
    webhook deliveries they made."""
    events = list(events)
    if not events:
        return 0
    if not connection.in_atomic_block:
        raise RuntimeError("events are written in the transaction of their change")
    now = timezone.now()
    table, deliveries, webhooks = Event._meta.db_table, Delivery._meta.db_table, Webhook._meta.db_table
    db_now = _db_time(now)
    rows, params = [], []
    postgres = connection.vendor == "postgresql"
    for event in events:
        rows.append(
            "(%s, %s, %s, %s, %s, %s::jsonb, pg_current_xact_id()::text::bigint)"
            if postgres
            else "(%s, %s, %s, %s, %s, %s, 0)"
        )
        params += [
            _db_uuid(uuid.uuid4()),
            event.type,
            db_now,
            _db_uuid(event.story_id),
            _db_uuid(event.scene_id),
            json.dumps(event.data, separators=(",", ":")),
        ]
    insert = f"INSERT INTO {table} (event_id, type, created_at, story_id, scene_id, data, xid) VALUES {', '.join(rows)}"
    # A webhook takes an event when it names its type (or none) and its story (or none).
    matches = (
        "(w.types = '' OR w.types LIKE '%%,' || e.type || ',%%') AND (w.story_id IS NULL OR w.story_id = e.story_id)"
    )
    fan_out = (
        f"INSERT INTO {deliveries} (webhook_id, event_id, status, attempts, next_attempt_at, created_at)"
        f" SELECT w.id, e.seq, 'pending', 0, %s, %s FROM {{events}} e JOIN {webhooks} w ON {matches}"
    )
    with connection.cursor() as cursor:
        if postgres:
            cursor.execute(
                f"WITH e AS ({insert} RETURNING seq, type, story_id),"
                f" d AS ({fan_out.format(events='e')} RETURNING 1)"
                f" SELECT (SELECT count(*) FROM d), pg_notify('{wakeup.CHANNEL}', '')",
                [*params, db_now, db_now],
            )
            made = cursor.fetchone()[0]
        else:
            cursor.execute(f"{insert} RETURNING seq", params)
            seqs = [seq for (seq,) in cursor.fetchall()]
            cursor.execute(
                fan_out.format(events=table) + " WHERE e.seq BETWEEN %s AND %s",
                [db_now, db_now, min(seqs), max(seqs)],
            )
            made = cursor.rowcount
    written(deliveries=made)
    return made


def written(*, deliveries: int) -> None:
    """After events were written in the transaction in progress: wake the feed's waiters
    in this process, and the deliverer when they made deliveries, once it commits."""
    transaction.on_commit(lambda: wakeup.committed(deliveries=deliveries > 0))


_MATCHES = "(w.types = '' OR w.types LIKE '%%,' || e.type || ',%%') AND (w.story_id IS NULL OR w.story_id = e.story_id)"


def with_artifact_created(insert_sql: str) -> tuple[str, list]:
    """PostgreSQL: the INSERT of one new version (``RETURNING version, parent_id,
    fingerprint, id, story_id, scene_id, type``) wrapped so that the same statement writes
    its ``artifact.created`` event, fans it out to the webhooks and notifies the feed's
    waiters: the hot create path keeps its one round trip. The statement returns the
    version's three columns and the number of deliveries made (no row: nothing inserted).
    The caller then calls ``written``."""
    now = _db_time(timezone.now())
    sql = (
        f"WITH a AS ({insert_sql}),"
        f" e AS (INSERT INTO {Event._meta.db_table} (event_id, type, created_at, story_id, scene_id, data, xid)"
        f" SELECT gen_random_uuid(), '{EventType.ARTIFACT_CREATED.value}', %s, a.story_id, a.scene_id,"
        " jsonb_build_object('artifact_id', a.id, 'type', a.type, 'version', a.version, 'parent_id', a.parent_id),"
        " pg_current_xact_id()::text::bigint FROM a RETURNING seq, type, story_id),"
        f" d AS (INSERT INTO {Delivery._meta.db_table} (webhook_id, event_id, status, attempts, next_attempt_at,"
        f" created_at) SELECT w.id, e.seq, 'pending', 0, %s, %s FROM e JOIN {Webhook._meta.db_table} w"
        f" ON {_MATCHES} RETURNING 1)"
        f" SELECT a.version, a.parent_id, a.fingerprint, (SELECT count(*) FROM d), pg_notify('{wakeup.CHANNEL}', '')"
        " FROM a"
    )
    return sql, [now, now, now]


def event_record(*, type: str, story_id=None, scene_id=None, data: dict) -> int:
    return events_record([NewEvent(type, story_id, scene_id, data)])


def _id(value) -> str | None:
    return str(value) if value is not None else None


def artifacts_created(artifacts: Iterable) -> int:
    """``artifact.created`` for each new version (its id, type, version and parent)."""
    return events_record(
        NewEvent(
            EventType.ARTIFACT_CREATED,
            a.story_id,
            a.scene_id,
            {"artifact_id": _id(a.pk), "type": a.type, "version": a.version, "parent_id": _id(a.parent_id)},
        )
        for a in artifacts
    )


def artifacts_created_as_given(rows: list[dict]) -> int:
    """``artifact.created`` for rows an import inserted as given (attribute name -> value)."""
    return events_record(
        NewEvent(
            EventType.ARTIFACT_CREATED,
            r["story_id"],
            r["scene_id"],
            {"artifact_id": _id(r["id"]), "type": r["type"], "version": r["version"], "parent_id": _id(r["parent_id"])},
        )
        for r in rows
    )


def artifact_transitioned(artifact, *, from_state: str, to_state: str) -> int:
    return event_record(
        type=EventType.ARTIFACT_TRANSITIONED,
        story_id=artifact.story_id,
        scene_id=artifact.scene_id,
        data={"artifact_id": _id(artifact.pk), "from": from_state, "to": to_state},
    )


def artifacts_pruned(rows: Iterable[tuple]) -> int:
    """``artifact.pruned`` for each ``(artifact_id, story_id, scene_id)``."""
    return events_record(
        NewEvent(EventType.ARTIFACT_PRUNED, story, scene, {"artifact_id": _id(pk)}) for pk, story, scene in rows
    )


def primary_changed(*, story_id, role: str, scene_id, from_artifact_id, to_artifact_id) -> int:
    return event_record(
        type=EventType.PRIMARY_CHANGED,
        story_id=story_id,
        scene_id=scene_id,
        data={"role": role, "from": _id(from_artifact_id), "to": _id(to_artifact_id)},
    )


def scene_planning_changed(scene, *, locked: bool) -> int:
    return event_record(
        type=EventType.SCENE_LOCKED if locked else EventType.SCENE_UNLOCKED,
        story_id=scene.story_id,
        scene_id=scene.pk,
        data={
            "scene_id": _id(scene.pk),
            "from": "unlocked" if locked else "locked",
            "to": "locked" if locked else "unlocked",
        },
    )


def run_finished(run, *, from_status: str) -> int:
    return event_record(
        type=EventType.RUN_FINISHED,
        story_id=run.story_id,
        scene_id=run.scene_id,
        data={"run_id": _id(run.pk), "from": from_status, "to": run.status},
    )


def comment_created(*, comment_id, artifact_id, story_id, scene_id) -> int:
    """``comment.created``: for the comments app's create, in its transaction."""
    return event_record(
        type=EventType.COMMENT_CREATED,
        story_id=story_id,
        scene_id=scene_id,
        data={"comment_id": _id(comment_id), "artifact_id": _id(artifact_id)},
    )


# -- retention ------------------------------------------------------------------------------


def retention_cutoff(now: datetime.datetime | None = None) -> datetime.datetime:
    return (now or timezone.now()) - datetime.timedelta(days=settings.CHANGES_RETENTION_DAYS)


@atomic_write
def events_prune_batch(*, cutoff: datetime.datetime, batch_size: int) -> int:
    """Delete up to ``batch_size`` of the oldest events written before ``cutoff``, with their
    deliveries and attempts: one batch, one transaction."""
    # The oldest first, along the primary key: no index on the time, which every write would pay for.
    seqs = list(Event.objects.filter(created_at__lt=cutoff).order_by("seq").values_list("seq", flat=True)[:batch_size])
    if not seqs:
        return 0
    DeliveryAttempt.objects.filter(delivery__event_id__in=seqs)._raw_delete(connection.alias)
    Delivery.objects.filter(event_id__in=seqs)._raw_delete(connection.alias)
    return Event.objects.filter(seq__in=seqs)._raw_delete(connection.alias)


# -- webhooks --------------------------------------------------------------------------------


def _check_types(types) -> str:
    if types is None:
        return ""
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise InvalidInput("types must be a list of event types", field="types")
    unknown = [t for t in types if t not in EventType.values]
    if unknown:
        raise InvalidInput(f"unknown event type {unknown[0]!r}; one of {', '.join(EventType.values)}", field="types")
    return "," + ",".join(sorted(set(types))) + "," if types else ""


@atomic_write
def webhook_create(*, url: str, types=None, story_id=None, actor=None) -> tuple[Webhook, str]:
    """A webhook and its secret (``whsec_`` + base64 of 24 random bytes), returned once:
    the caller shows it to the client and nothing shows it again. ``url`` must have been
    checked by the caller against SPEC §12 (``changes.delivery.check_url``), which resolves
    names and so is kept out of the transaction."""
    story_pk = None
    if story_id is not None:
        story_pk = parse_uuid(story_id, what="story")
        if not Story.objects.filter(pk=story_pk).exists():
            raise NotFound(f"story {story_id} does not exist", field="story_id")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    webhook = Webhook.objects.create(
        url=url,
        types=_check_types(types),
        story_id=story_pk,
        secret=secret,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    return webhook, secret


@atomic_write
def webhook_delete(*, webhook_id) -> None:
    pk = parse_uuid(webhook_id, what="webhook")
    deleted, _ = Webhook.objects.filter(pk=pk).delete()
    if not deleted:
        raise NotFound(f"webhook {webhook_id} does not exist")


@dataclass
class Claimed:
    delivery_id: int
    attempt: int
    webhook_id: uuid.UUID
    url: str
    secret: str
    event: Event


LEASE_SECONDS = 60


@atomic_write
def deliveries_claim(*, limit: int = 100, now: datetime.datetime | None = None) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for this deliverer: a conditional UPDATE moves
    each one's ``next_attempt_at`` a lease ahead, so a second deliverer (the serving
    process, ``deliver_webhooks`` from cron, a worker) skips it: on PostgreSQL the second
    UPDATE of a row waits for the first and then finds it no longer due. A deliverer that
    dies leaves its claim to expire, and the delivery is tried again (at least once)."""
    now = now or timezone.now()
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    if not due:
        return []
    lease = now + datetime.timedelta(seconds=LEASE_SECONDS)
    table = Delivery._meta.db_table
    marks = ", ".join(["%s"] * len(due))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET next_attempt_at = %s WHERE id IN ({marks}) AND status = %s AND next_attempt_at <= %s"
            " RETURNING id",
            [_db_time(lease), *due, DeliveryStatus.PENDING, _db_time(now)],
        )
        taken = [pk for (pk,) in cursor.fetchall()]
    rows = Delivery.objects.filter(pk__in=taken).select_related("webhook", "event").order_by("event_id")
    return [
        Claimed(row.pk, row.attempts + 1, row.webhook_id, row.webhook.url, row.webhook.secret, row.event)
        for row in rows
    ]


@dataclass
class Outcome:
    """One attempt's result, as the deliverer saw it."""

    claimed: Claimed
    status_code: int | None
    error: str
    duration_ms: int


@atomic_write
def deliveries_record_attempts(*, outcomes: list[Outcome]) -> list[str]:
    """Record a batch of attempts in one transaction (one INSERT, one UPDATE per outcome
    kind): each delivery is delivered on a 2xx, else due again after the schedule's next
    delay (``WEBHOOK_RETRY_SCHEDULE``), or failed after the last attempt. Returns each
    one's new status ("gone": its webhook was deleted meanwhile)."""
    now = timezone.now()
    live = set(Delivery.objects.filter(pk__in=[o.claimed.delivery_id for o in outcomes]).values_list("pk", flat=True))
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    statuses, groups, attempts = [], {}, []
    for outcome in outcomes:
        claimed = outcome.claimed
        if claimed.delivery_id not in live:
            statuses.append("gone")
            continue
        attempts.append(
            DeliveryAttempt(
                delivery_id=claimed.delivery_id,
                webhook_id=claimed.webhook_id,
                event_id=claimed.event.event_id,
                attempt=claimed.attempt,
                status_code=outcome.status_code,
                error=outcome.error[:2000],
                duration_ms=outcome.duration_ms,
                at=now,
            )
        )
        if outcome.status_code is not None and 200 <= outcome.status_code < 300:
            status, delay = DeliveryStatus.DELIVERED, 0
        elif claimed.attempt <= len(schedule):
            status, delay = DeliveryStatus.PENDING, schedule[claimed.attempt - 1]
        else:
            status, delay = DeliveryStatus.FAILED, 0
        statuses.append(str(status))
        groups.setdefault((status, claimed.attempt, delay), []).append(claimed.delivery_id)
    DeliveryAttempt.objects.bulk_create(attempts)
    for (status, attempt, delay), ids in groups.items():
        Delivery.objects.filter(pk__in=ids).update(
            status=status, attempts=attempt, next_attempt_at=now + datetime.timedelta(seconds=delay)
        )
    return statuses


@atomic_write
def deliveries_redeliver(*, delivery_ids) -> int:
    """Try these deliveries again now, with a fresh schedule of attempts."""
    now = timezone.now()
    changed = Delivery.objects.filter(pk__in=list(delivery_ids)).update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now
    )
    if changed:
        transaction.on_commit(lambda: wakeup.committed(deliveries=True))
    return changed


def next_due() -> datetime.datetime | None:
    return (
        Delivery.objects.filter(status=DeliveryStatus.PENDING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
