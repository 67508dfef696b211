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

Before all of them, and outside any transaction, ``prune_artifacts`` holds
``lock_prune_run`` (a session-level advisory lock) for the whole run: one prune at a time,
while each of its batches is an ordinary short transaction taking the locks above.

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
from collections.abc import Iterable

import psycopg
from django.db import connection

from artifacts.models import Artifact
from artifacts_project.errors import NotFound
from artifacts_project.lookups import parse_uuid
from runs.models import AgentStep, Run
from stories.models import Scene, Story

_NAMESPACE_STREAM = 0x5354  # "ST"
_NAMESPACE_RELATIONS = 0x5245  # "RE"
_NAMESPACE_CONTENT = 0x4354  # "CT"
_NAMESPACE_PRUNE = 0x5052  # "PR"


def _lock_row(model, pk, *, what: str):
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
    return _lock_rows(Story, story_ids)


def lock_scene(scene_id) -> Scene:
    return _lock_row(Scene, scene_id, what="scene")


def share_scene(scene_id) -> Scene | None:
    """Hold the scene row ``FOR SHARE`` and read its planning lock.

    A shared lock is all a create needs: creates on one scene do not wait for each other,
    but locking planning (an UPDATE of the row) waits for them, and they for it, so no
    planning artifact slips in after the lock.
    """
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
    return _lock_rows(Artifact, artifact_ids)


def _lock_rows(model, pks: Iterable) -> list:
    return list(
        model.objects.filter(pk__in=list(pks))
        .order_by("pk")
        .select_for_update(of=("self",), no_key=True)
        .values_list("pk", flat=True)
    )


def lock_run(run_id) -> Run:
    return _lock_row(Run, run_id, what="run")


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
    return _advisory(_NAMESPACE_STREAM, f"{scene_id or story_id}:{type}", then)


def lock_streams(streams: Iterable[tuple]) -> None:
    """Several streams, each ``(story_id, scene_id, type)``, in the order of their keys: the
    order ``create_artifacts`` takes one scene's streams in (by type), extended to many scenes."""
    keys = {f"{scene_id or story_id}:{type}" for story_id, scene_id, type in streams}
    _advisory_many(_NAMESPACE_STREAM, sorted(keys))


def lock_content(sha256: str) -> None:
    """Serialize the writers and the sweeper of one stored file (content is keyed by digest)."""
    _advisory(_NAMESPACE_CONTENT, sha256)


def lock_relation_graph() -> None:
    """One writer at a time checks-and-inserts an acyclic relation, or two edges could close
    a cycle together."""
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
