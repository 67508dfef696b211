"""Retention: which artifacts ``prune_artifacts`` prunes, pruning them, and the orphan sweep
(SPEC §9).

**Kept** is an artifact that is not intermediate, is the latest of its stream, is linked to
a story, or is younger than the cutoff ("kept by itself"); and everything a kept artifact
was made from, transitively: relations followed from ``from_artifact`` to ``to_artifact``
(every relation type: keeping more is the safe side), and runs' consumed links (what a
step produced keeps what that step consumed; for links without a step, the run and
stage). The parent chain does not keep: a tombstone keeps numbering and lineage whole.
Every other artifact not yet pruned is **pruned**: its payload and content go (the one
UPDATE the immutability triggers allow), its row stays, with ``pruned_at``.

**Planning** is SQL on temporary tables, so a million rows never travel to Python:
``unkept`` holds the artifacts not kept by themselves; the closure walks, one level per
statement, from the kept artifacts' edges into ``unkept`` and records what it reaches in
``reached``; ``targets`` is then ``unkept`` minus ``reached`` minus what is already pruned.
Planning takes no lock (plain reads).

**Pruning** goes through the targets by primary key, a batch per transaction: lock the
batch's rows (a transition, a link or a primary change of one of them waits, or has
committed), read again which of them are still prunable (the rule above, plus no edge
from an artifact that is neither pruned nor a target: an edge added since planning), prune
those, commit. Each batch holds its locks for milliseconds. Then the batch's files go, each
under its digest lock, when no artifact that is not pruned names the digest.

**The sweep** walks the storage's ``content/`` folder: a file no artifact names is removed
once it is older than the grace period (younger, it may be a create in flight); a file
only pruned artifacts name is one an interrupted prune left behind, and goes at once. Each
removal re-checks under the digest's lock, which a create holds from storing its bytes to
committing its row, so no file a create is about to reference is ever removed.

Killed at any point, a rerun plans again from what is committed and reaches the same end
state: pruned rows are not planned again, and their files are swept.
"""

from __future__ import annotations

import datetime
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from artifacts import selectors
from artifacts import services as artifact_services
from artifacts.content import storage_name
from artifacts.models import Artifact, ArtifactRelation, LifecycleState
from kernel import locks
from kernel.transactions import atomic_write
from runs.models import Direction, RunArtifactLink
from stories.models import STORY_REFERENCE_FOR_ROLE, Story, StoryArtifactLink

DEFAULT_GRACE = datetime.timedelta(hours=1)
CONTENT_FOLDER = "content"
_DIGEST = re.compile(r"[0-9a-f]{64}")

_ART = Artifact._meta.db_table
_REL = ArtifactRelation._meta.db_table
_LINK = RunArtifactLink._meta.db_table
_UNKEPT = "artifacts_prune_unkept"
_REACHED = "artifacts_prune_reached"
_FRONTIER = "artifacts_prune_frontier"
_NEXT = "artifacts_prune_next"
_TARGETS = "artifacts_prune_targets"
_TABLES = (_UNKEPT, _REACHED, _FRONTIER, _NEXT, _TARGETS)


def not_kept_by_itself(cutoff: datetime.datetime) -> QuerySet:
    """Artifacts that nothing about themselves keeps: intermediate, older than ``cutoff``,
    a later version in their stream, no story link, no story reference. Pruned ones too:
    whether a tombstone is kept decides whether what it was made from is."""
    later_in_scene = Artifact.objects.filter(
        scene_id=OuterRef("scene_id"), type=OuterRef("type"), version__gt=OuterRef("version")
    )
    later_in_story = Artifact.objects.filter(
        scene__isnull=True, story_id=OuterRef("story_id"), type=OuterRef("type"), version__gt=OuterRef("version")
    )
    referenced = Q()
    for reference in STORY_REFERENCE_FOR_ROLE.values():
        # The references should equal the primary links; kept either way should they drift.
        referenced |= Q(pk__in=Story.objects.filter(**{f"{reference}__isnull": False}).values(reference))
    return (
        Artifact.objects.filter(lifecycle_state=LifecycleState.INTERMEDIATE, created_at__lt=cutoff)
        .filter((Q(scene__isnull=False) & Exists(later_in_scene)) | (Q(scene__isnull=True) & Exists(later_in_story)))
        .exclude(Exists(StoryArtifactLink.objects.filter(artifact_id=OuterRef("pk"))))
        .exclude(referenced)
        .order_by()
    )


def _edges(*, targets: str, sources: str = "", source_filter: str = "", target_filter: str = "") -> list[str]:
    """SELECTs of the ids of ``targets`` (a table, or a row set, of ids) that one edge
    reaches from a source: a relation from the source, or a consumed link of the step (or,
    without a step, the run and stage) that produced the source. ``sources`` names a table
    of source ids to start from; ``source_filter`` a condition on the source, written with
    ``{src}`` for its id; ``target_filter`` one on the target ``t``."""

    def select(column: str, edge: str, target_column: str, source_column: str, where: str) -> str:
        join_sources = f" JOIN {sources} s ON s.id = {source_column}" if sources else ""
        conditions = [where] if where else []
        if source_filter:
            conditions.append(source_filter.format(src=source_column))
        if target_filter:
            conditions.append(target_filter)
        return f"SELECT {column} FROM {edge}{join_sources} JOIN {targets} t ON t.id = {target_column}" + (
            f" WHERE {' AND '.join(conditions)}" if conditions else ""
        )

    consumed, produced = f"'{Direction.CONSUMED.value}'", f"'{Direction.PRODUCED.value}'"
    by_step = f"{_LINK} p JOIN {_LINK} c ON c.run_id = p.run_id AND c.step_id = p.step_id AND c.direction = {consumed}"
    by_stage = (
        f"{_LINK} p JOIN {_LINK} c ON c.run_id = p.run_id AND c.stage = p.stage"
        f" AND c.step_id IS NULL AND c.direction = {consumed}"
    )
    return [
        select("r.to_artifact_id", f"{_REL} r", "r.to_artifact_id", "r.from_artifact_id", ""),
        select("c.artifact_id", by_step, "c.artifact_id", "p.artifact_id", f"p.direction = {produced}"),
        select(
            "c.artifact_id",
            by_stage,
            "c.artifact_id",
            "p.artifact_id",
            f"p.direction = {produced} AND p.step_id IS NULL",
        ),
    ]


def _id_rows(count: int) -> str:
    """A row set of ``count`` ids given as parameters, usable in a FROM on both databases
    (VALUES names its column ``column1`` on both; SQLite's cap on compound SELECTs does not
    apply to it)."""
    return f"(SELECT column1 AS id FROM (VALUES {', '.join(['(%s)'] * count)}) AS v)"


@dataclass
class Plan:
    cutoff: datetime.datetime
    targets: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    bytes: int = 0  # of the files no artifact would name once the targets are pruned
    files: int = 0
    closure_levels: int = 0
    kept_by_closure: int = 0
    seconds: float = 0.0


# A prune batch's row locks: about this long (its size follows the pace of the batch before).
BATCH_LOCK_TARGET = 0.25
FIRST_BATCH, MIN_BATCH = 100, 10


@dataclass
class BatchOutcome:
    pruned: list[uuid.UUID] = field(default_factory=list)
    kept: list[uuid.UUID] = field(default_factory=list)  # changed since planning: kept after all
    files_removed: int = 0
    bytes_freed: int = 0
    lock_seconds: float = 0.0


class Retention:
    """One prune: plan it into temporary tables, then prune by batches. Use as a context
    manager: the temporary tables go when it ends (and with the connection anyway)."""

    def __init__(self, *, older_than: datetime.timedelta, now: datetime.datetime | None = None):
        self.now = now or timezone.now()
        self.cutoff = self.now - older_than

    def __enter__(self):
        self._drop()
        id_type = "uuid" if connection.vendor == "postgresql" else "char(32)"
        with connection.cursor() as cursor:
            for table in _TABLES:
                cursor.execute(f"CREATE TEMPORARY TABLE {table} (id {id_type} PRIMARY KEY)")
        return self

    def __exit__(self, *exc):
        self._drop()

    def _drop(self):
        with connection.cursor() as cursor:
            for table in _TABLES:
                cursor.execute(f"DROP TABLE IF EXISTS {table}")

    # -- planning -----------------------------------------------------------------------

    def plan(self) -> Plan:
        started = time.monotonic()
        plan = Plan(cutoff=self.cutoff)
        unkept_sql, params = not_kept_by_itself(self.cutoff).values("pk").query.sql_with_params()
        self._execute(f"INSERT INTO {_UNKEPT} (id) {unkept_sql}", params)
        self._analyze(_UNKEPT)
        # Level 0: what an artifact kept by itself (not in unkept) reaches in one edge.
        kept_by_itself = f"NOT EXISTS (SELECT 1 FROM {_UNKEPT} x WHERE x.id = {{src}})"
        seeds = " UNION ".join(_edges(targets=_UNKEPT, source_filter=kept_by_itself))
        self._execute(f"INSERT INTO {_FRONTIER} (id) {seeds}")
        self._execute(f"INSERT INTO {_REACHED} (id) SELECT id FROM {_FRONTIER}")
        # Then one level per statement, from what the last level reached, until nothing new.
        not_reached = f"NOT EXISTS (SELECT 1 FROM {_REACHED} y WHERE y.id = t.id)"
        while True:
            plan.closure_levels += 1
            steps = " UNION ".join(_edges(targets=_UNKEPT, sources=_FRONTIER, target_filter=not_reached))
            self._execute(f"DELETE FROM {_NEXT}")
            if not self._execute(f"INSERT INTO {_NEXT} (id) {steps}"):
                break
            self._execute(f"INSERT INTO {_REACHED} (id) SELECT id FROM {_NEXT}")
            self._execute(f"DELETE FROM {_FRONTIER}")
            self._execute(f"INSERT INTO {_FRONTIER} (id) SELECT id FROM {_NEXT}")
        self._analyze(_REACHED)
        self._execute(
            f"INSERT INTO {_TARGETS} (id) SELECT u.id FROM {_UNKEPT} u JOIN {_ART} a ON a.id = u.id"
            f" WHERE a.pruned_at IS NULL AND NOT EXISTS (SELECT 1 FROM {_REACHED} y WHERE y.id = u.id)"
        )
        self._analyze(_TARGETS)
        plan.kept_by_closure = self._scalar(
            f"SELECT COUNT(*) FROM {_REACHED} y JOIN {_ART} a ON a.id = y.id WHERE a.pruned_at IS NULL"
        )
        plan.by_type = dict(
            self._rows(f"SELECT a.type, COUNT(*) FROM {_TARGETS} t JOIN {_ART} a ON a.id = t.id GROUP BY a.type")
        )
        plan.targets = sum(plan.by_type.values())
        # Files whose every live user is a target: pruning the targets frees them.
        freed = self._rows(
            f"SELECT a.content_sha256, MAX(a.content_size) FROM {_TARGETS} t JOIN {_ART} a ON a.id = t.id"
            f" WHERE a.content_sha256 <> '' AND NOT EXISTS (SELECT 1 FROM {_ART} b WHERE"
            f" b.content_sha256 = a.content_sha256 AND b.pruned_at IS NULL"
            f" AND NOT EXISTS (SELECT 1 FROM {_TARGETS} t2 WHERE t2.id = b.id))"
            " GROUP BY a.content_sha256"
        )
        plan.files = len(freed)
        plan.bytes = sum(size or 0 for _, size in freed)
        plan.seconds = time.monotonic() - started
        return plan

    def target_rows(self, *, batch_size: int) -> Iterator[list[tuple]]:
        """The targets, a batch at a time by primary key: (id, type, version, scene_id, story_id)."""
        last = None
        while rows := self._targets_after(last, batch_size):
            last = rows[-1][0]
            yield rows

    def _targets_after(self, last, size: int) -> list[tuple]:
        # Both sides bounded: PostgreSQL does not carry "t.id > x" over to a.id, and a merge
        # join would walk the artifacts' key from the start for every batch.
        after = "" if last is None else "WHERE t.id > %s AND a.id > %s"
        rows = self._rows(
            f"SELECT a.id, a.type, a.version, a.scene_id, a.story_id FROM {_TARGETS} t"
            f" JOIN {_ART} a ON a.id = t.id {after} ORDER BY t.id LIMIT %s",
            ([] if last is None else [_db_id(last), _db_id(last)]) + [size],
        )
        return [
            (_uuid(pk), type_name, version, _uuid(scene), _uuid(story)) for pk, type_name, version, scene, story in rows
        ]

    # -- pruning ------------------------------------------------------------------------

    def prune(self, *, batch_size: int) -> Iterator[BatchOutcome]:
        """Prune the planned targets, one transaction per batch, yielding after each.

        A batch holds its rows' locks until it commits, and a transition or a primary change
        of one of them waits that long: each batch is sized from the pace of the one before
        it to take about ``BATCH_LOCK_TARGET`` seconds (at most ``batch_size`` rows, at least
        ``MIN_BATCH``), so a slow disk or a busy machine shrinks the batches instead of
        stretching the waits (SPEC §9; the budget is one second).
        """
        size, last = min(batch_size, FIRST_BATCH), None
        while rows := self._targets_after(last, size):
            last = rows[-1][0]
            outcome = self.prune_batch([row[0] for row in rows])
            yield outcome
            pace = len(rows) / max(outcome.lock_seconds, 1e-3)  # rows a second, under the locks
            size = min(batch_size, max(MIN_BATCH, int(pace * BATCH_LOCK_TARGET)))

    def prune_batch(self, ids: list[uuid.UUID]) -> BatchOutcome:
        started = time.monotonic()
        outcome, digests = self._prune_rows(ids)
        outcome.lock_seconds = time.monotonic() - started
        for digest in sorted(digests):
            size = remove_unreferenced_file(digest)
            if size is not None:
                outcome.files_removed += 1
                outcome.bytes_freed += size
        return outcome

    @atomic_write
    def _prune_rows(self, ids: list[uuid.UUID]) -> tuple[BatchOutcome, set[str]]:
        outcome = BatchOutcome()
        locks.lock_artifacts(ids)
        # Under the rows' locks, the rule again: a batch prunes only what is prunable now.
        alive = set(Artifact.objects.filter(pk__in=ids, pruned_at__isnull=True).values_list("pk", flat=True))
        candidates = alive & set(not_kept_by_itself(self.cutoff).filter(pk__in=ids).values_list("pk", flat=True))
        kept = alive - candidates
        # An edge into a candidate from an artifact neither pruned nor a target keeps it:
        # an edge added since planning (at planning, every edge into a target came from a
        # target or a pruned artifact), or one from a target kept after all, in an earlier
        # batch or in this one (hence the loop: what it keeps may keep more).
        live_outsider = (
            f"EXISTS (SELECT 1 FROM {_ART} o WHERE o.id = {{src}} AND o.pruned_at IS NULL)"
            f" AND NOT EXISTS (SELECT 1 FROM {_TARGETS} x WHERE x.id = {{src}})"
        )
        newly_kept = set(kept)
        while True:
            if newly_kept:
                # No longer targets: from now on they count as kept sources.
                self._execute(
                    f"DELETE FROM {_TARGETS} WHERE id IN ({', '.join(['%s'] * len(newly_kept))})",
                    [_db_id(pk) for pk in newly_kept],
                )
            if not candidates:
                break
            selects = _edges(targets=_id_rows(len(candidates)), source_filter=live_outsider)
            params = [_db_id(pk) for pk in sorted(candidates)] * len(selects)
            newly_kept = {_uuid(pk) for (pk,) in self._rows(" UNION ".join(selects), params)}
            if not newly_kept:
                break
            candidates -= newly_kept
            kept |= newly_kept
        prune = sorted(candidates)
        digests = set(
            Artifact.objects.filter(pk__in=prune)
            .exclude(content_sha256="")
            .order_by()
            .values_list("content_sha256", flat=True)
            .distinct()
        )
        artifact_services.prune_rows(prune, at=self.now)
        outcome.pruned, outcome.kept = prune, sorted(kept)
        return outcome, digests

    # -- SQL helpers ----------------------------------------------------------------------

    def _analyze(self, table: str) -> None:
        """Autovacuum never analyzes temporary tables: without statistics PostgreSQL plans
        a million-row table as a small one (a hash join where a probe was meant)."""
        if connection.vendor == "postgresql":
            self._execute(f"ANALYZE {table}")

    @staticmethod
    def _execute(sql: str, params=()) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    @staticmethod
    def _rows(sql: str, params=()) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def _scalar(self, sql: str, params=()):
        return self._rows(sql, params)[0][0]


def _db_id(value: uuid.UUID):
    return Artifact._meta.pk.get_db_prep_value(value, connection)


def _uuid(value) -> uuid.UUID | None:
    return None if value is None else selectors.as_uuid(value)


# -- files ----------------------------------------------------------------------------------


def remove_unreferenced_file(sha256: str) -> int | None:
    """Delete the stored file of ``sha256`` unless an artifact that is not pruned names it;
    returns its size when deleted.

    Not ``content.remove_if_unreferenced``: that one keeps a file any row names, and a
    pruned tombstone keeps its ``content_sha256`` (the triggers let only payload, content
    and pruned_at change), so the files of pruned artifacts would never go. Under the
    digest's lock, in a transaction of its own, like that one: a create of the same bytes
    either committed its row before (the file stays) or waits and then writes it again.
    """
    name = storage_name(sha256)
    with transaction.atomic():
        locks.lock_content(sha256)
        if selectors.live_digests([sha256]) or not default_storage.exists(name):
            return None
        size = default_storage.size(name)
        default_storage.delete(name)
        return size


@dataclass
class SweptFile:
    name: str
    size: int
    age: datetime.timedelta
    reason: str  # "orphan" (no artifact names it) or "pruned" (only pruned artifacts do)
    removed: bool = False


@dataclass
class SweepOutcome:
    files: list[SweptFile] = field(default_factory=list)  # removed (or would be, in a dry run)
    young: int = 0  # unreferenced but within the grace period: kept
    unknown: list[str] = field(default_factory=list)  # not a content file's name: left alone
    seen: int = 0


def content_files() -> Iterator[str]:
    """Every file name under the storage's ``content/`` folder (``content/<sha[:2]>/<sha>``).

    Listed, never asked whether it exists: an object store (S3) has no folders, only keys
    under a prefix, so ``exists("content")`` is false there however many files it holds."""
    try:
        folders, files = default_storage.listdir(CONTENT_FOLDER)
    except FileNotFoundError:  # a file system storage before its first upload
        return
    for name in sorted(files):
        yield f"{CONTENT_FOLDER}/{name}"
    for folder in sorted(folders):
        for name in sorted(default_storage.listdir(f"{CONTENT_FOLDER}/{folder}")[1]):
            yield f"{CONTENT_FOLDER}/{folder}/{name}"


def sweep(
    *, grace: datetime.timedelta = DEFAULT_GRACE, dry_run: bool = True, batch_size: int = 1000
) -> Iterator[SweepOutcome]:
    """Remove the stored files no artifact uses, a batch of files at a time (two queries per
    batch: which digests live artifacts name, which only pruned ones do)."""
    names = content_files()
    while True:
        chunk = [name for _, name in zip(range(batch_size), names, strict=False)]
        if not chunk:
            return
        yield _sweep_batch(chunk, grace=grace, dry_run=dry_run)


def _sweep_batch(names: list[str], *, grace: datetime.timedelta, dry_run: bool) -> SweepOutcome:
    outcome = SweepOutcome(seen=len(names))
    digests = {}
    for name in names:
        digest = name.rsplit("/", 1)[-1]
        if _DIGEST.fullmatch(digest) and name == storage_name(digest):
            digests[digest] = name
        else:
            outcome.unknown.append(name)
    live = selectors.live_digests(digests)
    pruned_only = set(
        Artifact.objects.filter(content_sha256__in=list(set(digests) - live))
        .order_by()
        .values_list("content_sha256", flat=True)
        .distinct()
    )
    now = timezone.now()
    for digest, name in sorted(digests.items()):
        if digest in live:
            continue
        try:
            age = now - default_storage.get_modified_time(name)
            size = default_storage.size(name)
        except (OSError, NotImplementedError):
            continue  # gone meanwhile, or a storage that cannot tell: leave it
        reason = "pruned" if digest in pruned_only else "orphan"
        if reason == "orphan" and age < grace:
            outcome.young += 1
            continue
        swept = SweptFile(name, size, age, reason)
        if not dry_run:
            freed = remove_unreferenced_file(digest)
            if freed is None:
                continue  # a create named it meanwhile
            swept.removed = True
        outcome.files.append(swept)
    return outcome
