"""The batch commands at scale (SPEC §9): import_artifacts on 100,000 lines, prune_artifacts on
1,000,000 prunable artifacts, each beside the one-at-a-time way in the same run.

- **import**: ``import_artifacts`` (``call_command``, batches of 1,000) on a JSON Lines file of
  100,000 artifacts (500 scenes, 4 pipeline types, 50 versions, each the parent of the
  next), against ``ArtifactService.create_artifact`` line by line on 2,000 more; then the
  same file again, every line skipped (the idempotent rerun).
- **prune**: ``operations.retention`` (what ``prune_artifacts --yes`` runs) on 10,000 streams of
  101 versions, 400 days old, the latest of each derived_from its version 50 (so the
  closure keeps 10,000 more): 1,000,000 rows prunable, 990,000 pruned. Meanwhile a probe
  thread locks a random target row every 20 ms (what a transition or a link would do) and
  records how long it waited: the longest lock a prune batch holds, seen from outside.
  Against it, pruning 2,000 rows one transaction each.

Headline figures (``FIGURE`` lines, benchmarks/figures.py: ``make bench`` judges their
medians over its runs): import and prune in rows/s (target: 5,000 or more), the longest a
prune batch holds its row locks and the longest a concurrent transition waits (target: under
1 s each), and each command's ratio to its one-at-a-time way.

Warm-up, untimed: before the import, 200 creates through the service and an import of 400
lines, on scenes of their own; before the prune, 50 rows pruned one per transaction (the
rows the prune's plan then finds pruned already). The prune's plan reads every row before
the batches start.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_bench_commands .venv/bin/python benchmarks/commands.py
        [--lines 100000] [--prunable 1000000] [--only import|prune]

The database (its name must contain "bench") is dropped, created and migrated afresh on every
run. Data for the prune is loaded with INSERT ... SELECT generate_series, not the ORM. Drop
it afterwards with
``dropdb -h 127.0.0.1 -U postgres artifacts_bench_commands``. Other processes on the machine
skew the figures: the load average is printed before and after.
"""

import argparse
import datetime
import gc
import io
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from artifacts.models import Artifact  # noqa: E402
from artifacts.payloads import ARTIFACT_TYPES  # noqa: E402
from artifacts.services import ArtifactService  # noqa: E402
from benchmarks import databases  # noqa: E402
from benchmarks.figures import figure  # noqa: E402
from kernel import locks  # noqa: E402
from kernel.commands import without_statement_timeout  # noqa: E402
from operations import retention  # noqa: E402

IMPORT_TYPES = ("scene_intent", "panel_plan", "render_spec", "qc_report")
BASELINE_LINES = 2_000
WARMUP_CREATES, WARMUP_IMPORT, WARMUP_PRUNES = 200, 400, 50  # untimed, before each figure
PRUNE_VERSIONS = 101  # per stream: 100 prunable, the latest kept; the latest keeps v50
PROBE_EVERY = 0.02
# The targets: import and prune at least 5,000 per second, no row lock held over 1 s.
TARGET_RATE, TARGET_LOCK = 5_000, 1.0


def prepare_database() -> None:
    if connection.vendor != "postgresql":
        sys.exit("run this against a PostgreSQL database whose name contains 'bench': DATABASE_URL=postgres://...")
    # Afresh on every run: what an earlier run left (its tombstones, its imports) would
    # change what a prune plans and how fast.
    databases.prepare(fresh=True)
    call_command("migrate", verbosity=0)


def new_story(title: str, scenes: int) -> tuple[str, list[str]]:
    """A story and its scenes, inserted with SQL; returns their ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO stories_story (id, title, description, created_at, updated_at)"
            " VALUES (gen_random_uuid(), %s, '', now(), now()) RETURNING id",
            [title],
        )
        story_id = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO stories_scene (id, story_id, position, title, source_text, planning_locked, created_at,"
            " updated_at) SELECT gen_random_uuid(), %s, n, 'scene ' || n, '', false, now(), now()"
            " FROM generate_series(1, %s) n RETURNING id",
            [story_id, scenes],
        )
        scene_ids = [str(row[0]) for row in cursor.fetchall()]
    return str(story_id), scene_ids


# -- import -------------------------------------------------------------------------------


def export_lines(scene_ids: list[str], versions: int) -> Iterator[dict]:
    """A seed export: every stream's versions in order, streams interleaved as by time."""
    heads, count = {}, 0
    start = timezone.now() - datetime.timedelta(days=1)  # younger than the prune cutoff
    for version in range(1, versions + 1):
        for scene_id in scene_ids:
            for type_name in IMPORT_TYPES:
                artifact_id = str(uuid.uuid4())
                payload = json.loads(json.dumps(ARTIFACT_TYPES[type_name].example))
                payload["note"] = f"v{version} of {scene_id[:8]} — ünïcödé"
                yield {
                    "artifact_id": artifact_id,
                    "scene_id": scene_id,
                    "type": type_name,
                    "version": version,
                    "parent_id": heads.get((scene_id, type_name)),
                    "payload": payload,
                    "request_id": f"export-{version}",
                    "created_at": (start + datetime.timedelta(milliseconds=count)).isoformat(),
                }
                heads[(scene_id, type_name)] = artifact_id
                count += 1


def write_export(path: str, rows: Iterator[dict]) -> int:
    """Rows written as generated, nothing kept: the command runs as an operator's would, with
    only its batch in memory (100,000 rows held here would slow every garbage collection)."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def import_file(path: str) -> float:
    started = time.perf_counter()
    call_command("import_artifacts", path, batch_size=1000, verbosity=0, stdout=io.StringIO())
    return time.perf_counter() - started


def bench_import(lines: int) -> dict:
    versions = 50
    scenes = max(1, lines // (versions * len(IMPORT_TYPES)))
    per_scene = len(IMPORT_TYPES)  # one version of each type: the baseline's and the warm-ups' scenes
    baseline_scenes = BASELINE_LINES // per_scene
    warm_scenes = (WARMUP_CREATES + WARMUP_IMPORT) // per_scene
    _, scene_ids = new_story(f"import benchmark {time.time()}", scenes + baseline_scenes + warm_scenes)
    baseline_ids, warm_ids = scene_ids[scenes : scenes + baseline_scenes], scene_ids[scenes + baseline_scenes :]

    service = ArtifactService(request_id="benchmark-baseline")
    with tempfile.TemporaryDirectory(prefix="bench-import-") as scratch:  # the warm-up, untimed
        for row in itertools.islice(export_lines(warm_ids[: WARMUP_CREATES // per_scene], 1), WARMUP_CREATES):
            service.create_artifact(row["scene_id"], row["type"], row["payload"], artifact_id=row["artifact_id"])
        write_export(f"{scratch}/warm.jsonl", export_lines(warm_ids[WARMUP_CREATES // per_scene :], 1))
        import_file(f"{scratch}/warm.jsonl")
    baseline_rows = list(itertools.islice(export_lines(baseline_ids, 1), BASELINE_LINES))
    started = time.perf_counter()
    for row in baseline_rows:  # one by one, each its own transaction: the way W&B users had to
        service.create_artifact(row["scene_id"], row["type"], row["payload"], artifact_id=row["artifact_id"])
    baseline = len(baseline_rows) / (time.perf_counter() - started)
    del baseline_rows

    with tempfile.TemporaryDirectory(prefix="bench-import-") as scratch:
        path = f"{scratch}/export.jsonl"
        count = write_export(path, export_lines(scene_ids[:scenes], versions))
        gc.collect()
        first = import_file(path)
        again = import_file(path)
    assert Artifact.objects.filter(scene_id__in=scene_ids[:scenes]).count() == count
    return {"lines": count, "rate": count / first, "rerun": count / again, "baseline": baseline}


# -- prune ----------------------------------------------------------------------------------

ARTIFACT_INSERT = """
INSERT INTO artifacts_artifact (id, story_id, scene_id, type, version, parent_id, kind, payload, content,
    content_sha256, content_size, mime_type, lifecycle_state, request_id, created_by_step_id, created_by_id,
    created_at, pruned_at, fingerprint)
SELECT md5(s.id::text || ':' || v)::uuid, s.story_id, s.id, 'render_spec', v,
       CASE WHEN v > 1 THEN md5(s.id::text || ':' || (v - 1))::uuid END,
       'json', %s::jsonb, '', '', NULL, '', 'intermediate', 'prune-benchmark', NULL, NULL,
       now() - interval '400 days' + v * interval '1 minute', NULL, ''
FROM stories_scene s CROSS JOIN generate_series(1, %s) v WHERE s.story_id = %s
"""
RELATION_INSERT = """
INSERT INTO artifacts_artifactrelation (id, from_artifact_id, to_artifact_id, relation_type, request_id, created_at)
SELECT gen_random_uuid(), md5(s.id::text || ':' || %s)::uuid, md5(s.id::text || ':' || 50)::uuid,
       'derived_from', 'prune-benchmark', now()
FROM stories_scene s WHERE s.story_id = %s
"""


def load_prunable(prunable: int) -> tuple[str, int]:
    streams = max(1, prunable // (PRUNE_VERSIONS - 1))
    story_id, _ = new_story(f"prune benchmark {time.time()}", streams)
    payload = json.dumps(ARTIFACT_TYPES["render_spec"].example)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(ARTIFACT_INSERT, [payload, PRUNE_VERSIONS, story_id])
        cursor.execute(RELATION_INSERT, [PRUNE_VERSIONS, story_id])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE artifacts_artifact")
        cursor.execute("ANALYZE artifacts_artifactrelation")
    return story_id, streams


class LockProbe(threading.Thread):
    """Locks a random one of ``ids`` every PROBE_EVERY seconds, as a transition would, and
    records how long each lock took to get."""

    def __init__(self, ids: list):
        super().__init__(daemon=True)
        self.ids, self.waits, self.stop = ids, [], threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                with transaction.atomic():
                    locks.lock_artifact(random.choice(self.ids))
                self.waits.append(time.perf_counter() - started)
                time.sleep(PROBE_EVERY)
        finally:
            connection.close()


def bench_prune(prunable: int) -> dict:
    story_id, streams = load_prunable(prunable)
    loaded = streams * PRUNE_VERSIONS
    targets = list(
        Artifact.objects.filter(story_id=story_id, version__lt=PRUNE_VERSIONS)
        .exclude(version=50)
        .values_list("pk", flat=True)[:100_000]
    )

    # Baseline: one artifact per transaction, on 2,000 targets, after the warm-up's 50.
    now = timezone.now()

    def prune_one(pk):
        with transaction.atomic():
            locks.lock_artifact(pk)
            Artifact.objects.filter(pk=pk, pruned_at__isnull=True).update(payload=None, content="", pruned_at=now)

    for pk in targets[:WARMUP_PRUNES]:
        prune_one(pk)
    started = time.perf_counter()
    for pk in targets[WARMUP_PRUNES : WARMUP_PRUNES + BASELINE_LINES]:
        prune_one(pk)
    baseline = BASELINE_LINES / (time.perf_counter() - started)

    probe = LockProbe(targets[WARMUP_PRUNES + BASELINE_LINES :])
    with retention.Retention(older_than=datetime.timedelta(days=30)) as run:
        plan = run.plan()
        probe.start()
        started = time.perf_counter()
        pruned, lock_times = 0, []
        for outcome in run.prune(batch_size=1000):
            pruned += len(outcome.pruned)
            lock_times.append(outcome.lock_seconds)
        elapsed = time.perf_counter() - started
        probe.stop.set()
        probe.join()
    return {
        "loaded": loaded,
        "planned": plan.targets,
        "plan_seconds": plan.seconds,
        "kept_by_closure": plan.kept_by_closure,
        "pruned": pruned,
        "rate": pruned / elapsed,
        "baseline": baseline,
        "longest_batch": max(lock_times),
        "median_batch": statistics.median(lock_times),
        "batches": len(lock_times),
        "probe_longest": max(probe.waits),
        "probe_median": statistics.median(probe.waits),
        "probes": len(probe.waits),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--prunable", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["import", "prune"], help="run one of the two")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4,000 lines, 40,000 prunable rows")
    options = parser.parse_args()
    if options.quick:
        options.lines, options.prunable = 4_000, 40_000
    prepare_database()
    without_statement_timeout()  # as the commands do: the bulk load and the plan read whole tables
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if options.only != "prune":
        report_import(bench_import(options.lines))
    if options.only != "import":
        report_prune(bench_prune(options.prunable))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def report_import(result: dict) -> None:
    print(
        f"import_artifacts: {result['lines']:,} lines at {result['rate']:,.0f} artifacts/s"
        f" (rerun, all skipped: {result['rerun']:,.0f} lines/s);"
        f" one by one through ArtifactService: {result['baseline']:,.0f}/s;"
        f" ratio {result['rate'] / result['baseline']:.1f}x"
    )
    figure("import_artifacts", result["rate"], "rows/s", (">=", TARGET_RATE))
    figure("import_artifacts / one by one through ArtifactService", result["rate"] / result["baseline"], "x")


def report_prune(result: dict) -> None:
    print(
        f"prune_artifacts: {result['loaded']:,} rows loaded, {result['planned']:,} planned in"
        f" {result['plan_seconds']:.1f} s ({result['kept_by_closure']:,} kept by the closure);"
        f" {result['pruned']:,} pruned at {result['rate']:,.0f} rows/s in {result['batches']:,} batches;"
        f" one per transaction: {result['baseline']:,.0f} rows/s; ratio {result['rate'] / result['baseline']:.1f}x"
    )
    print(
        f"  row locks held per batch: longest {result['longest_batch'] * 1000:.0f} ms,"
        f" median {result['median_batch'] * 1000:.0f} ms;"
        f" a concurrent transition's wait ({result['probes']:,} probes): longest"
        f" {result['probe_longest'] * 1000:.0f} ms, median {result['probe_median'] * 1000:.1f} ms"
    )
    figure("prune_artifacts", result["rate"], "rows/s", (">=", TARGET_RATE))
    figure("prune_artifacts / one per transaction", result["rate"] / result["baseline"], "x")
    limit = ("<", TARGET_LOCK * 1000)
    figure("prune: longest row-lock hold of a batch", result["longest_batch"] * 1000, "ms", limit)
    figure("prune: a concurrent transition's longest wait", result["probe_longest"] * 1000, "ms", limit)


if __name__ == "__main__":
    main()
