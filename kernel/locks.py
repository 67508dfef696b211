"""Every lock the services take: one module, one order (after Saleor's ``lock_objects.py``).

A transaction that needs several locks takes them in this order, skipping those it does
not need, so two transactions can never wait on each other in a circle:

    1. story row            lock_story, lock_stories (several: by primary key)
    2. scene row            lock_scene, share_scene
    3. content digest       lock_content          (advisory)
    4. version stream       lock_stream, lock_streams (several: by stream key)  (advisory)
    5. relation graph       lock_relation_graph   (advisory)
    6. artifact row         lock_artifact, lock_artifacts (several: by primary key)
    7. run row              lock_run
    8. step row             lock_step

Each function below takes its lock at its level; with the ``LOCK_ORDER_CHECK`` setting on
(the test suite turns it on), taking a lock of a lower level than one already held in the
same transaction raises ``LockOrderViolation``, so a change that breaks the order fails a
test instead of deadlocking in production once in a while.

Outside this order, because they are session-level and held across transactions:
- ``prune_artifacts`` holds ``lock_prune_run`` for its whole run (one prune at a time),
  while each of its batches is an ordinary short transaction taking the locks above;
- the process driving a pipeline run holds it (``hold_runs``) for as long as it drives it,
  and ``unheld_run`` tells whether a run's holder is gone (SPEC §10, "Crash-safe runs").

Row locks are ``FOR NO KEY UPDATE`` of the row alone (``of=("self",)``):
- Inserting a row that references a story, scene, artifact or run makes PostgreSQL take
  ``FOR KEY SHARE`` on the referenced row (the foreign-key check). ``FOR UPDATE`` conflicts
  with that and turns an ordinary insert beside a curation into a deadlock; ``FOR NO KEY
  UPDATE`` does not, and no service ever changes a primary key.
- Without ``of``, Django locks every table the query joins, and a model whose
  ``Meta.ordering`` follows a foreign key joins its parent: locking a scene would lock its
  story too. ``order_by("pk")`` replaces that ordering, and fixes the order in which
  several rows of one table are locked.

Advisory locks are PostgreSQL's, transaction-scoped, keyed by a namespace and a 32-bit
hash of the key. On SQLite none of this is needed: transactions are IMMEDIATE (see
settings), so one writer at a time holds the database, and ``select_for_update`` is a no-op.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterable

import psycopg
from django.conf import settings
from django.db import connection

from artifacts.models import Artifact
from kernel.errors import NotFound
from kernel.lookups import parse_uuid
from runs.models import AgentStep, Run
from stories.models import Scene, Story

_NAMESPACE_STREAM = 0x5354  # "ST"
_NAMESPACE_RELATIONS = 0x5245  # "RE"
_NAMESPACE_CONTENT = 0x4354  # "CT"
_NAMESPACE_PRUNE = 0x5052  # "PR"
_NAMESPACE_RUN = 0x524E  # "RN"

# The order above, as levels.
STORY, SCENE, CONTENT, STREAM, RELATION_GRAPH, ARTIFACT, RUN, STEP = range(1, 9)


class LockOrderViolation(RuntimeError):
    """A lock taken after one of a higher level in the same transaction: a programming
    error (two such transactions can deadlock), raised only with ``LOCK_ORDER_CHECK``."""


_order = threading.local()


def _taking(level: int, what: str) -> None:
    """Record that ``what`` (at ``level``) is being taken; refuse it when a lock of a higher
    level is held already in this transaction. A transaction is told apart by its outermost
    ``atomic`` block (a test case's own blocks set aside: each action of a test is its own
    transaction in production); outside one, a lock lasts one statement and orders nothing."""
    if not getattr(settings, "LOCK_ORDER_CHECK", False) or not connection.in_atomic_block:
        return
    blocks = [block for block in connection.atomic_blocks if not getattr(block, "_from_testcase", False)]
    if not blocks:
        return
    outermost = blocks[0]
    held = getattr(_order, "held", None)
    if held is None or held[0] is not outermost:
        _order.held = (outermost, level, what)
        return
    if level < held[1]:
        raise LockOrderViolation(
            f"{what} (level {level}) taken after {held[2]} (level {held[1]}) in one transaction: "
            "kernel/locks.py fixes the order"
        )
    if level > held[1]:
        _order.held = (outermost, level, what)


_LEVEL_OF_MODEL = {"story": STORY, "scene": SCENE, "artifact": ARTIFACT, "run": RUN, "step": STEP}


def _lock_row(model, pk, *, what: str):
    _taking(_LEVEL_OF_MODEL[what], f"the {what} row")
    row = (
        model.objects.filter(pk=parse_uuid(pk, what=what))
        .order_by("pk")
        .select_for_update(of=("self",), no_key=True)
        .first()
    )
    if row is None:
        raise NotFound(f"{what} {pk} does not exist", field=f"{what}_id")
    return row


def lock_story(story_id) -> Story:
    """One curation of a story at a time: primaries, scene positions."""
    return _lock_row(Story, story_id, what="story")


def lock_stories(story_ids: Iterable) -> list:
    """Several story rows, in primary-key order (so two holders never wait in a circle);
    returns the primary keys locked (those that exist)."""
    return _lock_rows(Story, story_ids, level=STORY)


def lock_scene(scene_id) -> Scene:
    return _lock_row(Scene, scene_id, what="scene")


def share_scene(scene_id) -> Scene | None:
    """Hold the scene row ``FOR SHARE`` and read its planning lock.

    A shared lock is all a create needs: creates on one scene do not wait for each other,
    but locking planning (an UPDATE of the row) waits for them, and they for it, so no
    planning artifact slips in after the lock.
    """
    _taking(SCENE, "the scene row (shared)")
    sql = f"SELECT id, story_id, planning_locked FROM {Scene._meta.db_table} WHERE id = %s"
    if connection.vendor == "postgresql":
        sql += " FOR SHARE"
    pk = Scene._meta.pk.get_db_prep_value(parse_uuid(scene_id, what="scene"), connection)
    rows = list(Scene.objects.raw(sql, [pk]))
    return rows[0] if rows else None


def lock_artifact(artifact_id) -> Artifact:
    return _lock_row(Artifact, artifact_id, what="artifact")


def lock_artifacts(artifact_ids: Iterable) -> list:
    """Several artifact rows, in primary-key order; returns the primary keys locked."""
    return _lock_rows(Artifact, artifact_ids, level=ARTIFACT)


def share_artifacts(artifact_ids: Iterable) -> dict:
    """Hold several artifact rows ``FOR SHARE`` and read when each was pruned: id ->
    ``pruned_at`` (None: not pruned) of those that exist. A prune's batch locks the rows it
    prunes for update, which conflicts with this: a new reference either sees the prune, or
    the prune waits for it and then sees the reference. References to one artifact do not
    wait for each other. One query."""
    _taking(ARTIFACT, "artifact rows (shared)")
    ids = sorted({parse_uuid(pk, what="artifact") for pk in artifact_ids})
    if not ids:
        return {}
    key = Artifact._meta.pk
    sql = (
        f"SELECT id, pruned_at FROM {Artifact._meta.db_table} WHERE id IN ({', '.join(['%s'] * len(ids))})"
        " ORDER BY id"  # the order two holders lock rows in: never in a circle
    )
    if connection.vendor == "postgresql":
        sql += " FOR SHARE"
    rows = Artifact.objects.raw(sql, [key.get_db_prep_value(pk, connection) for pk in ids])
    return {row.pk: row.pruned_at for row in rows}


def _lock_rows(model, pks: Iterable, *, level: int) -> list:
    _taking(level, f"{model._meta.model_name} rows")
    return list(
        model.objects.filter(pk__in=list(pks))
        .order_by("pk")
        .select_for_update(of=("self",), no_key=True)
        .values_list("pk", flat=True)
    )


def lock_run(run_id) -> Run:
    return _lock_row(Run, run_id, what="run")


def share_run(run_id) -> str | None:
    """Hold the run row ``FOR SHARE`` and read its status (None: no such run).

    The pipeline's reuse records take it before writing their steps: a cancel (an UPDATE of
    the row, under ``lock_run``) waits for a record in flight, and a record after the cancel
    sees it and writes nothing.
    """
    _taking(RUN, "the run row (shared)")
    sql = f"SELECT status FROM {Run._meta.db_table} WHERE id = %s"
    if connection.vendor == "postgresql":
        sql += " FOR SHARE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [Run._meta.pk.get_db_prep_value(parse_uuid(run_id, what="run"), connection)])
        row = cursor.fetchone()
    return row[0] if row else None


def lock_step(step_id) -> AgentStep:
    return _lock_row(AgentStep, step_id, what="step")


def _advisory(namespace: int, key: str, then: tuple[str, list] | None = None) -> list | None:
    """Take the lock; then run ``then`` (one statement and its parameters), if given, and
    return its rows.

    Both go in one round trip when the cursor binds parameters on the client (psycopg's
    ClientCursor, Django's default; not with the ``server_side_binding`` option), as two
    statements of one simple query: the second starts once the lock is granted and, in READ
    COMMITTED, reads a snapshot of its own taken then, so it sees everything the previous
    holder committed. The lock's holder thus waits for one round trip fewer.
    """
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            if then is None:
                return None
            cursor.execute(*then)
            return cursor.fetchall()
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big", signed=True)
        if then is None:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, digest])
            return None
        if isinstance(cursor.cursor, psycopg.ClientCursor):
            cursor.execute(f"SELECT pg_advisory_xact_lock(%s, %s); {then[0]}", [namespace, digest, *then[1]])
            cursor.nextset()
        else:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, digest])
            cursor.execute(*then)
        return cursor.fetchall()


def _advisory_many(namespace: int, keys: list[str]) -> None:
    """Take the locks of ``keys`` in the order given, in one round trip (a batch may write
    a thousand streams): unnest yields an array's elements in order, so the locks are taken
    one after the other in that order, each hashed as ``_advisory`` hashes it."""
    if connection.vendor != "postgresql" or not keys:
        return
    digests = [int.from_bytes(hashlib.blake2b(k.encode(), digest_size=4).digest(), "big", signed=True) for k in keys]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::integer[]) AS k", [namespace, digests]
        )


def lock_stream(*, story_id, scene_id, type: str, then: tuple[str, list] | None = None) -> list | None:
    """Serialize the writers of one version stream until the transaction ends.

    ``then``: the statement that needs the lock, ``(sql, params)``, run as soon as the lock
    is granted, in the same round trip on PostgreSQL; returns its rows. A create's INSERT
    goes this way, so the stream is held for the INSERT and the COMMIT, nothing more.
    """
    _taking(STREAM, f"the {type} stream")
    return _advisory(_NAMESPACE_STREAM, f"{scene_id or story_id}:{type}", then)


def lock_streams(streams: Iterable[tuple]) -> None:
    """Several streams, each ``(story_id, scene_id, type)``, in the order of their keys: the
    order ``create_artifacts`` takes one scene's streams in (by type), extended to many scenes."""
    keys = {f"{scene_id or story_id}:{type}" for story_id, scene_id, type in streams}
    _taking(STREAM, "several streams")
    _advisory_many(_NAMESPACE_STREAM, sorted(keys))


def lock_content(sha256: str) -> None:
    """Serialize the writers and the sweeper of one stored file (content is keyed by digest)."""
    _taking(CONTENT, "a content digest")
    _advisory(_NAMESPACE_CONTENT, sha256)


def lock_relation_graph() -> None:
    """One writer at a time checks-and-inserts an acyclic relation, or two edges could close
    a cycle together."""
    _taking(RELATION_GRAPH, "the relation graph")
    _advisory(_NAMESPACE_RELATIONS, "acyclic")


@contextlib.contextmanager
def lock_prune_run():
    """Hold the prune lock for a whole ``prune_artifacts`` run; yields False at once (without
    waiting) when another run holds it. Session-level, so it outlives the run's batch
    transactions, and PostgreSQL drops it if the process dies. On SQLite there is nothing
    to hold: two runs would only repeat each other's checks, since every batch re-reads
    its rows under the database's single write lock."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_NAMESPACE_PRUNE, 0])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_NAMESPACE_PRUNE, 0])


# -- the holders of pipeline runs (session-level) -------------------------------------------


def _run_key(run_id) -> int:
    return int.from_bytes(hashlib.blake2b(str(run_id).encode(), digest_size=4).digest(), "big", signed=True)


def hold_runs(run_ids: Iterable) -> None:
    """Hold these runs for this connection's session: PostgreSQL drops the locks when the
    process dies (killed, machine lost), which is how a lost run is found at once. Shared,
    so the workers running two nodes of one run both hold it; waits for an ``unheld_run``
    check in progress. A no-op on SQLite, where the run's heartbeat stands in."""
    keys = sorted({_run_key(run_id) for run_id in run_ids})
    if connection.vendor != "postgresql" or not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_lock_shared(%s, k)) FROM unnest(%s::integer[]) AS k", [_NAMESPACE_RUN, keys]
        )


def release_runs(run_ids: Iterable) -> None:
    keys = [_run_key(run_id) for run_id in run_ids]
    if connection.vendor != "postgresql" or not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_unlock_shared(%s, k)) FROM unnest(%s::integer[]) AS k", [_NAMESPACE_RUN, keys]
        )


@contextlib.contextmanager
def unheld_run(run_id):
    """Yields True when nobody holds the run (its holder is gone), and keeps it so while the
    block runs: a process that wants to hold it waits until the caller has marked it lost.
    Yields None on SQLite, where only the run's heartbeat can tell."""
    if connection.vendor != "postgresql":
        yield None
        return
    key = _run_key(run_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_NAMESPACE_RUN, key])
        free = cursor.fetchone()[0]
    try:
        yield free
    finally:
        if free:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_NAMESPACE_RUN, key])
