"""Creating artifacts under contention, and in batches (SPEC §6 and §7), each beside a raw baseline.

1. **One hot stream**: 1, 4, 16 and 32 writer *processes* (spawned, each its own Django
   connection) call ``ArtifactService.create_artifact`` on one (scene, render_spec) stream
   for ``--seconds`` each. Reported: artifacts/s committed, failures (exceptions), gaps (the
   stream's versions must be exactly 1..n afterwards), the p99 latency of one create, and
   the ratio to a **raw locked counter** run just before with as many processes: psycopg
   (sqlite3 on SQLite) and no Django, each create ``BEGIN; UPDATE bench_counter SET n = n + 1
   WHERE id = %s RETURNING n; INSERT INTO bench_artifact ...; COMMIT``, where bench_artifact
   has artifacts_artifact's hot columns, a primary key and a unique (stream, version) index,
   and the same payload. One planning type line (scene_intent, which also holds the scene row
   FOR SHARE) at 16 writers. Then 16 and 32 writers over **1,000 streams** (each create picks
   one of 1,000 scenes at random) against the raw counter with 1,000 rows.
2. **Batches**: ``artifacts.services.artifacts_create_batch`` with batches of ``--batch`` items on
   one stream, the same over the 11 scene types mixed, and ``POST
   /v1/scenes/{scene_id}/artifacts/batch`` through DRF's APIClient, in artifacts/s against
   the raw single-row rate (the raw counter at 1 writer, one row per transaction).

Headline figures (``FIGURE`` lines, benchmarks/figures.py: ``make bench`` judges their
medians over its runs): every ratio above, with the targets one hot stream at 16 writers
>= 0.8 of the raw rate (issue 21) with 0 failures, 1,000 streams at 16 writers >= 0.5, and
every batch line above the raw single-row rate. A gap, a lost or extra row, or a crashed
writer exits non-zero; failures are reported, not fatal.

Warm-up: before the first figure every writer process creates through the service, the raw
counter and the raw insert into artifacts_artifact for ``--warmup`` seconds (2 s; 0.5 with
``--quick``), untimed, on streams of its own: imports, Django's compiled queries, the
connection and the tables' pages are warm when the measured seconds start. Each batch
figure first makes one untimed batch.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_bench_create .venv/bin/python benchmarks/create.py
        [--seconds 6] [--batch 100] [--quick]
    DATABASE_URL=sqlite:////tmp/artifacts_bench_create.sqlite3 .venv/bin/python benchmarks/create.py --quick

The database (its name must contain "bench") is dropped, created and migrated afresh on every
run on PostgreSQL; on SQLite the file is kept and migrated (delete it for a fresh start), the
baseline's tables made afresh, and every figure writes to fresh stories. ``--quick`` runs 1
and 4 writers for 1 s each and small batches (a smoke test: under ~20 s on SQLite once the file
is migrated), so the 16-writer targets are not judged. SQLite has one write lock for the
whole file: its writers run one at a time whatever their number, the baseline's too. Other
processes on the machine skew the figures: the load average is printed before and after, and
only ratios within one run mean anything.
"""

import argparse
import functools
import json
import multiprocessing
import os
import random
import sqlite3
import sys
import time
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

import django  # noqa: E402

django.setup()  # in the parent and, through the spawned import of this module, in every writer
# WhiteNoise warns that STATIC_ROOT was never collected; the API does not need it here.
warnings.filterwarnings("ignore", message="No directory at")

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from artifacts import services as artifact_services  # noqa: E402
from artifacts.payloads import ARTIFACT_TYPES, MEDIA_KINDS, SCOPE_SCENE  # noqa: E402
from artifacts.services import ArtifactService  # noqa: E402
from benchmarks import databases  # noqa: E402
from benchmarks.figures import figure  # noqa: E402
from stories.models import Scene, Story  # noqa: E402

HOT_TYPE = "render_spec"  # not a planning type: the stream's lock is the only one
PLANNING_TYPE = "scene_intent"  # also holds its scene row FOR SHARE
STREAMS = 1_000
BATCH_TYPES = [
    name for name, t in ARTIFACT_TYPES.items() if SCOPE_SCENE in t.scopes and t.default_kind not in MEDIA_KINDS
]
HOT_TARGET, SPREAD_TARGET = 0.80, 0.50  # of the raw locked counter's rate, at 16 writers
WARMUP_STREAMS = 4
REQUEST_ID = "benchmark-create"

RAW_DDL = {
    "postgresql": [
        "CREATE TABLE bench_counter (id integer PRIMARY KEY, n bigint NOT NULL)",
        """CREATE TABLE bench_artifact (
            id uuid PRIMARY KEY, stream_id integer NOT NULL, type varchar(64) NOT NULL, version integer NOT NULL,
            parent_id uuid NULL, kind varchar(10) NOT NULL, payload jsonb NULL, lifecycle_state varchar(20) NOT NULL,
            request_id varchar(64) NOT NULL, created_at timestamptz NOT NULL, fingerprint varchar(64) NOT NULL,
            UNIQUE (stream_id, type, version))""",
    ],
    "sqlite": [
        "CREATE TABLE bench_counter (id integer PRIMARY KEY, n integer NOT NULL)",
        """CREATE TABLE bench_artifact (
            id char(32) PRIMARY KEY, stream_id integer NOT NULL, type varchar(64) NOT NULL, version integer NOT NULL,
            parent_id char(32) NULL, kind varchar(10) NOT NULL, payload text NULL, lifecycle_state varchar(20) NOT NULL,
            request_id varchar(64) NOT NULL, created_at datetime NOT NULL, fingerprint varchar(64) NOT NULL,
            UNIQUE (stream_id, type, version))""",
    ],
}
SCHEMA_INSERT = (
    "INSERT INTO artifacts_artifact (id, story_id, scene_id, type, version, parent_id, kind, payload, content,"
    " content_sha256, content_size, mime_type, lifecycle_state, request_id, created_by_step_id, created_by_id,"
    " created_at, pruned_at, fingerprint) VALUES ({p}, {p}, {p}, {p}, {p}, NULL, 'json', {p}, '', '', NULL, '',"
    f" 'intermediate', '{REQUEST_ID}', NULL, NULL, {{now}}, NULL, '')"
)
RAW_UPDATE = "UPDATE bench_counter SET n = n + 1 WHERE id = {p} RETURNING n"
RAW_INSERT = (
    "INSERT INTO bench_artifact (id, stream_id, type, version, parent_id, kind, payload, lifecycle_state, request_id,"
    " created_at, fingerprint) VALUES ({p}, {p}, {p}, {p}, NULL, 'json', {p}, 'intermediate', {p}, {now}, '')"
)


# -- the writers ---------------------------------------------------------------------------


class RawWriter:
    """The baseline's connection, opened on first use and kept, outside Django."""

    def __init__(self):
        self.conn = None
        params = connection.settings_dict
        self.vendor = connection.vendor
        if self.vendor == "postgresql":
            self.update, self.insert = RAW_UPDATE.format(p="%s"), RAW_INSERT.format(p="%s", now="now()")
            self.insert_artifact = SCHEMA_INSERT.format(p="%s", now="now()")
            self.connect = lambda: psycopg.connect(
                dbname=params["NAME"],
                user=params["USER"] or None,
                password=params["PASSWORD"] or None,
                host=params["HOST"] or None,
                port=params["PORT"] or None,
                autocommit=True,  # conn.transaction() sends BEGIN and COMMIT
                # No prepared statements, as Django sends none (client-side binding), like
                # dataset.py's baselines: psycopg would otherwise skip planning from a
                # statement's sixth run on, which the service cannot do.
                prepare_threshold=None,
            )
        else:
            self.update, self.insert = RAW_UPDATE.format(p="?"), RAW_INSERT.format(p="?", now="datetime('now')")
            self.insert_artifact = SCHEMA_INSERT.format(p="?", now="datetime('now')")
            self.connect = lambda: sqlite3.connect(params["NAME"], timeout=20, isolation_level=None)

    def create(self, counter_id: int, *, payload: dict) -> None:
        """The baseline: the counter's next n, and a row into bench_artifact."""
        self._write(
            counter_id, self.insert, lambda n, uid, doc: [uid, counter_id, HOT_TYPE, n, doc, REQUEST_ID], payload
        )

    def create_artifact(self, target: tuple, *, payload: dict) -> None:
        """The same into artifacts_artifact itself (``target``: counter, scene, story): what
        the table's indexes and foreign keys cost, without the service."""
        counter_id, scene_id, story_id = target
        self._write(
            counter_id, self.insert_artifact, lambda n, uid, doc: [uid, story_id, scene_id, HOT_TYPE, n, doc], payload
        )

    def _write(self, counter_id: int, insert: str, params, payload: dict) -> None:
        if self.conn is None:
            self.conn = self.connect()
        if self.vendor == "postgresql":
            with self.conn.transaction():
                (n,) = self.conn.execute(self.update, [counter_id]).fetchone()
                self.conn.execute(insert, params(n, uuid.uuid4(), Jsonb(payload)))
        else:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                (n,) = self.conn.execute(self.update, [counter_id]).fetchone()
                self.conn.execute(insert, params(n, uuid.uuid4().hex, json.dumps(payload)))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise


def timed(create, targets: list, start_at: float, seconds: float) -> tuple:
    """Call ``create(target)`` from ``start_at`` (a monotonic time) until ``seconds`` later."""
    latencies, failures, first_error = [], 0, None
    time.sleep(max(0.0, start_at - time.monotonic()))
    deadline = start_at + seconds
    while time.monotonic() < deadline:
        target = random.choice(targets)
        started = time.perf_counter()
        try:
            create(target)
        except Exception as exc:  # what the figure counts as a failure
            failures += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            continue
        latencies.append(time.perf_counter() - started)
    return latencies, failures, first_error, time.monotonic()


def writer_main(tasks, results) -> None:
    """A writer process: runs the tasks it is sent until it gets None."""
    service = ArtifactService(request_id=REQUEST_ID)
    raw = RawWriter()
    results.put("ready")
    while (task := tasks.get()) is not None:
        if task == ("connect",):  # once the database is migrated: not inside the first timed create
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            results.put("connected")
            continue
        kind, type_name, targets, start_at, seconds = task
        payload = ARTIFACT_TYPES[type_name].example
        if kind == "service":
            create = functools.partial(service_create, service, type=type_name, payload=payload)
        elif kind == "schema":
            create = functools.partial(raw.create_artifact, payload=payload)
        else:
            create = functools.partial(raw.create, payload=payload)
        results.put(timed(create, targets, start_at, seconds))
    connection.close()


def service_create(service, scene_id, *, type, payload):
    service.create_artifact(scene_id, type, payload)


class Writers:
    """A pool of spawned writer processes, reused by every figure (spawning one costs a
    whole django.setup(); nothing is shared with the parent but the two queues)."""

    def __init__(self, count: int):
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.queues = [context.Queue() for _ in range(count)]
        self.processes = [context.Process(target=writer_main, args=(q, self.results), daemon=True) for q in self.queues]
        for process in self.processes:
            process.start()

    def wait_ready(self) -> None:
        """Every writer has run django.setup() and connected: none starts a figure late."""
        for _ in self.processes:
            if self.results.get(timeout=300) != "ready":
                raise RuntimeError("a writer spoke before it was ready")
        for queue in self.queues:
            queue.put(("connect",))
        for _ in self.processes:
            if self.results.get(timeout=300) != "connected":
                raise RuntimeError("a writer could not connect")

    def run(self, kind: str, type_name: str, targets: list, writers: int, seconds: float) -> dict:
        start_at = time.monotonic() + 0.2
        for queue in self.queues[:writers]:
            queue.put((kind, type_name, targets, start_at, seconds))
        outcomes = []
        for _ in range(writers):
            try:
                outcomes.append(self.results.get(timeout=seconds + 120))
            except Exception:
                dead = [p.pid for p in self.processes if not p.is_alive()]
                raise RuntimeError(f"a writer did not report (dead writers: {dead or 'none'})") from None
        latencies = sorted(x for outcome in outcomes for x in outcome[0])
        elapsed = max(outcome[3] for outcome in outcomes) - start_at
        return {
            "committed": len(latencies),
            "rate": len(latencies) / elapsed,
            "failures": sum(outcome[1] for outcome in outcomes),
            "error": next((outcome[2] for outcome in outcomes if outcome[2]), None),
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan"),
        }

    def close(self) -> None:
        for queue in self.queues:
            queue.put(None)
        for process in self.processes:
            process.join(timeout=30)


# -- the database --------------------------------------------------------------------------


def prepare_database() -> None:
    databases.bench_name()
    if connection.vendor == "postgresql":
        databases.prepare(fresh=True)
    elif connection.vendor == "sqlite":
        # Kept when it exists (migrating it again is then a no-op): a fresh one costs ~10 s of
        # migrations, half of what --quick may take. Every run writes to fresh stories anyway.
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_counter")
            cursor.execute("DROP TABLE IF EXISTS bench_artifact")
        connection.close()
    else:
        sys.exit(f"PostgreSQL or SQLite only, not {connection.vendor}")


def migrate_database() -> None:
    if connection.vendor == "sqlite":
        # This connection only (the writers keep the settings' durability): the migrations'
        # many commits would otherwise each wait for the disk.
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous = OFF")
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        for statement in RAW_DDL[connection.vendor]:
            cursor.execute(statement)
    connection.close()  # nothing open while the writers spawn


def new_scenes(title: str, count: int) -> tuple[str, list[str]]:
    """A story of its own with ``count`` scenes (setup, so bulk_create rather than the service)."""
    story = Story.objects.create(title=title)
    scenes = Scene.objects.bulk_create(Scene(story=story, position=n, title=f"scene {n}") for n in range(1, count + 1))
    return str(story.pk), [str(scene.pk) for scene in scenes]


_counters = 0


def new_counters(count: int) -> list[int]:
    global _counters
    ids = list(range(_counters + 1, _counters + count + 1))
    _counters += count
    with transaction.atomic(), connection.cursor() as cursor:  # one commit (on SQLite, one fsync)
        cursor.executemany("INSERT INTO bench_counter (id, n) VALUES (%s, 0)", [[i] for i in ids])
    return ids


def gaps(query: str, params: list) -> int:
    """Streams whose versions are not exactly 1..n (``query`` yields columns s, the stream, and v)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT s FROM ({query}) q GROUP BY s"
            " HAVING min(v) <> 1 OR max(v) <> count(*) OR count(DISTINCT v) <> count(*)) bad",
            params,
        )
        return cursor.fetchone()[0]


def db_uuid(value):
    """A uuid as the database stores it (SQLite: 32 hex digits), for raw SQL."""
    return Story._meta.pk.get_db_prep_value(uuid.UUID(str(value)), connection)


def stored(table: str, column: str, ids: list) -> int:
    with connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(f"SELECT count(*) FROM {table} WHERE {column} IN ({marks})", ids)
        return cursor.fetchone()[0]


# -- the figures -------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.errors: list[str] = []

    def check_rows(self, what: str, result: dict, *, streams_with_gaps: int, rows: int) -> str:
        """'no gap' or what is wrong; a gap or a row count other than the commits is an error."""
        problems = []
        if streams_with_gaps:
            problems.append(f"{streams_with_gaps} streams with gaps")
        if rows != result["committed"]:
            problems.append(f"{rows} rows for {result['committed']} commits")
        if problems:
            self.errors.append(f"{what}: {', '.join(problems)}")
            return "ERROR " + ", ".join(problems)
        return "no gap"


def concurrent_figure(
    writers_pool, report, *, label, type_name, writers, streams, seconds, raw=None, target=None, schema=False
):
    """One line of figure 1: the service on ``streams`` fresh streams beside the raw counter
    (and, with ``schema``, beside the raw counter writing into artifacts_artifact itself)."""
    if raw is None:
        counters = new_counters(streams)
        raw = writers_pool.run("raw", HOT_TYPE, counters, writers, seconds)
        raw["check"] = report.check_rows(
            f"raw {label} x{writers}",
            raw,
            streams_with_gaps=gaps(
                "SELECT stream_id AS s, version AS v FROM bench_artifact WHERE stream_id BETWEEN %s AND %s",
                [counters[0], counters[-1]],
            ),
            rows=stored("bench_artifact", "stream_id", counters),
        )
    story_id, scene_ids = new_scenes(f"{label} x{writers} {time.time()}", streams)
    service = writers_pool.run("service", type_name, scene_ids, writers, seconds)
    check = report.check_rows(f"{label} x{writers}", service, **story_rows(story_id))
    ratio = service["rate"] / raw["rate"] if raw["rate"] else float("nan")
    print(
        f"{label:<22} {type_name:<12} {writers:>2} writers: service {service['rate']:>7,.0f}/s"
        f" p99 {service['p99'] * 1000:>6.1f} ms {service['failures']} failures {check} | raw locked counter"
        f" {raw['rate']:>7,.0f}/s p99 {raw['p99'] * 1000:>6.1f} ms {raw['failures']} failures {raw['check']}"
        f" | ratio {ratio:.2f}",
        flush=True,
    )
    name = f"{label}, {'' if type_name == HOT_TYPE else type_name + ', '}{writers} writer{'s' * (writers != 1)}"
    figure(f"{name}: service / raw locked counter", ratio, "x", None if target is None else (">=", target))
    if target is not None:
        figure(f"{name}: failures", service["failures"], "failures", ("<=", 0))
    if schema:
        story_id, scene_ids = new_scenes(f"{label} x{writers} schema {time.time()}", streams)
        targets = [
            (c, db_uuid(scene), db_uuid(story_id)) for c, scene in zip(new_counters(streams), scene_ids, strict=True)
        ]
        into = writers_pool.run("schema", HOT_TYPE, targets, writers, seconds)
        into_check = report.check_rows(f"raw into artifacts_artifact x{writers}", into, **story_rows(story_id))
        print(
            f"    the same raw counter writing into artifacts_artifact (its indexes and foreign keys):"
            f" {into['rate']:,.0f}/s {into['failures']} failures {into_check}; service / that ="
            f" {service['rate'] / into['rate']:.2f}; that / raw = {into['rate'] / raw['rate']:.2f}",
            flush=True,
        )
    for what, outcome in (("service", service), ("raw", raw)):
        if outcome["error"]:
            print(f"    first {what} failure: {outcome['error']}")
    return raw


def story_rows(story_id: str) -> dict:
    """What ``Report.check_rows`` needs of a story's artifacts."""
    return {
        "streams_with_gaps": gaps(
            "SELECT scene_id AS s, version AS v FROM artifacts_artifact WHERE story_id = %s", [db_uuid(story_id)]
        ),
        "rows": stored("artifacts_artifact", "story_id", [db_uuid(story_id)]),
    }


def batch_items(types: list[str], size: int) -> list[dict]:
    return [
        {"type": types[i % len(types)], "payload": ARTIFACT_TYPES[types[i % len(types)]].example} for i in range(size)
    ]


def timed_batches(create, size: int, seconds: float) -> float:
    """Artifacts/s of ``create()`` (one batch of ``size``) called again and again for ``seconds``."""
    create()  # warm up: the first call pays for imports and caches
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        create()
        calls += 1
    return calls * size / (time.perf_counter() - started)


def batch_figures(report, *, raw_single: float, size: int, seconds: float) -> None:
    user, _ = get_user_model().objects.get_or_create(username="bench-create", defaults={"is_superuser": True})
    client = APIClient()
    client.force_authenticate(user=user)
    story_id, scenes = new_scenes(f"batches {time.time()}", 3)
    one_stream, mixed = batch_items([HOT_TYPE], size), batch_items(BATCH_TYPES, size)

    def api_post():
        response = client.post(f"/v1/scenes/{scenes[2]}/artifacts/batch", {"artifacts": mixed}, format="json")
        if response.status_code != 201:
            raise RuntimeError(f"batch API answered {response.status_code}: {response.content[:300]!r}")

    figures = [
        (
            f"create_artifacts, {size} x {HOT_TYPE}",
            lambda: artifact_services.artifacts_create_batch(scene_id=scenes[0], items=one_stream),
        ),
        (
            f"create_artifacts, {size} of {len(BATCH_TYPES)} types",
            lambda: artifact_services.artifacts_create_batch(scene_id=scenes[1], items=mixed),
        ),
        (f"POST .../artifacts/batch, {size} of {len(BATCH_TYPES)} types", api_post),
    ]
    for label, create in figures:
        rate = timed_batches(create, size, seconds)
        print(
            f"{label:<45} {rate:>7,.0f} artifacts/s | raw single-row (1 writer) {raw_single:>7,.0f}/s"
            f" | ratio {rate / raw_single:.2f}",
            flush=True,
        )
        figure(f"{label}: artifacts/s / raw single-row rate", rate / raw_single, "x", (">", 1))
    bad = gaps(
        "SELECT scene_id || type AS s, version AS v FROM artifacts_artifact WHERE story_id = %s", [db_uuid(story_id)]
    )
    if bad:
        report.errors.append(f"batches: {bad} streams with gaps")
        print(f"ERROR batches: {bad} streams with gaps")


def warm_up(pool: Writers, seconds: float) -> None:
    """Every writer creates each way for ``seconds``, untimed, on streams of its own."""
    writers = len(pool.processes)
    story_id, scene_ids = new_scenes(f"warm-up {time.time()}", WARMUP_STREAMS)
    counters = new_counters(WARMUP_STREAMS)
    targets = [(c, db_uuid(s), db_uuid(story_id)) for c, s in zip(new_counters(WARMUP_STREAMS), scene_ids, strict=True)]
    for kind, type_name, on in (
        ("raw", HOT_TYPE, counters),
        ("schema", HOT_TYPE, targets),
        ("service", HOT_TYPE, scene_ids),
        ("service", PLANNING_TYPE, scene_ids),
    ):
        pool.run(kind, type_name, on, writers, seconds)
    print(f"warm-up: {writers} writers, {seconds:g} s of each kind of create, untimed", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per figure (default 6)")
    parser.add_argument("--batch", type=int, default=100, help="items per batch (default 100)")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds of each kind first (default 2)")
    parser.add_argument("--quick", action="store_true", help="1 and 4 writers, 1 s each, batches of 20")
    options = parser.parse_args()
    if options.quick:
        options.seconds, options.batch, options.warmup = 1.0, 20, 0.5
    hot_writers = (1, 4) if options.quick else (1, 4, 16, 32)
    spread_writers = (4,) if options.quick else (16, 32)
    planning_writers = 4 if options.quick else 16

    prepare_database()
    # The writers spawn (each a django.setup()) while the parent migrates.
    pool = Writers(max(hot_writers + spread_writers))
    report = Report()
    try:
        migrate_database()
        pool.wait_ready()
        warm_up(pool, options.warmup)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"database: {connection.vendor}; {options.seconds:g} s per figure; ratio = service / raw, same writers")
        if connection.vendor == "sqlite":
            print("SQLite serializes writers (one write lock per file, BEGIN IMMEDIATE): more writers only queue")
        if options.quick:
            print("--quick: the targets at 16 writers are not judged")
        raws = {}
        for writers in hot_writers:
            raws[writers] = concurrent_figure(
                pool,
                report,
                label="one hot stream",
                type_name=HOT_TYPE,
                writers=writers,
                streams=1,
                seconds=options.seconds,
                target=HOT_TARGET if writers == 16 else None,
            )
        concurrent_figure(
            pool,
            report,
            label="one hot stream",
            type_name=PLANNING_TYPE,
            writers=planning_writers,
            streams=1,
            seconds=options.seconds,
            raw=raws[planning_writers],
        )
        for writers in spread_writers:
            concurrent_figure(
                pool,
                report,
                label=f"{STREAMS:,} streams",
                type_name=HOT_TYPE,
                writers=writers,
                streams=STREAMS,
                seconds=options.seconds,
                target=SPREAD_TARGET if writers == 16 else None,
                schema=True,
            )
    finally:
        pool.close()
    batch_figures(report, raw_single=raws[1]["rate"] or float("nan"), size=options.batch, seconds=options.seconds)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if report.errors:
        sys.exit(f"errors: {'; '.join(report.errors)}")


if __name__ == "__main__":
    main()
