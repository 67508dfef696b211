"""Reads at 1,000,000 artifacts and ~800,000 relations (SPEC §11, figures 3 and 5).

Every figure is the median of several rounds, printed beside a raw SQL baseline measured in
the same process, on the same database, in the same round:

- the latest version of a stream and a scene's newest 100 artifacts, through the selectors
  and through the API, beside the one statement each needs, run directly through psycopg;
- lineage through ``artifacts.lineage.walk`` and through ``GET /v1/artifacts/{id}/lineage``,
  beside the same three statements the walk sends (root row, ``artifact_lineage`` joined to
  its nodes' columns, edges between them): the ratio is what Django and Python add;
- a naive recursive CTE with no visited set on the dense DAG, beside the visit-once walk:
  rows walked against distinct artifacts;
- the admin's changelist, change page and lineage page (django.test.Client, a superuser),
  with their database time (each execute, timed through ``connection.execute_wrapper``);
  the target is under 300 ms of server time.

Warm-up: each function runs once, untimed, before the timed rounds (caches, each
connection's visited-set table, URL resolution, the pages the figure reads).

Headline figures (``FIGURE`` lines, benchmarks/figures.py: ``make bench`` judges their
medians over its runs): the selectors' and the walk's ratios to their raw SQL (target: 2x at
most), the API's Python per lineage node on top of the walk's SQL (target: 0.1 ms at most,
issue 21), and the admin pages' server time (target: under 300 ms for the changelist and
the change page).

The data is ``dataset.py``'s, loaded on first use. Other processes on the machine skew the
figures: the load average is printed before and after.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_bench_reads .venv/bin/python benchmarks/reads.py
        [--reload] [--runs 7]
"""

import argparse
import gc
import os
import statistics
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

import django  # noqa: E402

django.setup()
# WhiteNoise warns that STATIC_ROOT was never collected; the admin's pages don't need it here.
warnings.filterwarnings("ignore", message="No directory at")

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from artifacts import lineage, selectors  # noqa: E402
from benchmarks.databases import raw_connection  # noqa: E402
from benchmarks.dataset import (  # noqa: E402
    CHAIN,
    CHAIN_SCENE,
    CHAIN_START,
    DAG_LAYERS,
    SCENES,
    counts,
    dag_n,
    ensure,
    pipeline_n,
    py_id,
)
from benchmarks.figures import figure  # noqa: E402

RATIO_TARGET = ("<=", 2)  # of the raw SQL: Django and Python add at most as much again
PER_NODE_TARGET = ("<=", 0.1)  # ms of the API's Python per lineage node, on top of the walk's SQL
PAGE_TARGET = ("<", 300)  # ms of server time, the admin's changelist and change page


@dataclass
class Timed:
    seconds: list[float]  # wall clock, one per round
    result: object  # what the warm-up call returned
    cpu: list[float] = field(default_factory=list)  # this process's CPU time, one per round

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def python_over(self, baseline: "Timed") -> float:
        """Median extra CPU seconds this process spent over the baseline: what Python adds,
        measured without the database and far less disturbed by other load than wall time."""
        return statistics.median(self.cpu) - statistics.median(baseline.cpu)

    def ratio(self, baseline: "Timed") -> float:
        """The median of the per-round ratios: a round runs the baseline and the measured code
        back to back, so both see the same load from whatever else runs on the machine."""
        return statistics.median(a / b for a, b in zip(self.seconds, baseline.seconds, strict=True))


def beside(timed: Timed, baseline: Timed) -> str:
    return f"{timed.median * 1e3:>7.1f} ms {timed.ratio(baseline):>5.2f}x {timed.python_over(baseline) * 1e3:>+6.0f} ms"


def measure(functions: dict, runs: int) -> dict[str, Timed]:
    """Each function once to warm up (caches, each connection's visited-set table, URL
    resolution), then ``runs`` rounds calling each in turn."""
    timed = {name: Timed([], function()) for name, function in functions.items()}
    for _ in range(runs):
        for name, function in functions.items():
            gc.collect()  # each call pays for its own garbage, not for the previous call's
            start, cpu = time.perf_counter(), time.process_time()
            function()
            timed[name].seconds.append(time.perf_counter() - start)
            timed[name].cpu.append(time.process_time() - cpu)
    return timed


# The walk's statements (artifacts/lineage.py), written out as a client of the database would.
COLUMNS = "id, type, version, kind, lifecycle_state, story_id, scene_id, parent_id, created_at, pruned_at"
RAW_ROOT = f"SELECT {COLUMNS} FROM artifacts_artifact WHERE id = %s"
RAW_WALK = (
    f"SELECT {', '.join('a.' + c for c in COLUMNS.split(', '))}, w.node_depth"
    " FROM artifact_lineage(%s::uuid, %s::boolean, %s::integer, %s::integer) w"
    " JOIN artifacts_artifact a ON a.id = w.node_id"
)
RAW_EDGES = (
    "SELECT from_artifact_id, to_artifact_id, relation_type FROM artifacts_artifactrelation"
    " WHERE from_artifact_id = ANY(%s) AND to_artifact_id = ANY(%s) ORDER BY created_at, id"
)


def raw_walk(raw, root: uuid.UUID, direction: str, depth: int, limit: int):
    raw.execute(RAW_ROOT, [root]).fetchone()
    # The root is the first of the ``limit`` nodes: limit - 1 reached, and one more to tell truncation.
    rows = raw.execute(RAW_WALK, [root, direction == "descendants", depth, limit]).fetchall()
    ids = [root, *(row[0] for row in rows[: limit - 1])]
    edges = raw.execute(RAW_EDGES, [ids, ids]).fetchall()
    return len(ids), len(edges)


# The same step as artifact_lineage (migration 0005), without the visited set.
NAIVE = """
WITH RECURSIVE frontier(id, depth) AS (
    SELECT %s::uuid, 0
    UNION ALL
    SELECT step.id, frontier.depth + 1 FROM frontier CROSS JOIN LATERAL (
        SELECT a.parent_id FROM artifacts_artifact a WHERE a.id = frontier.id AND a.parent_id IS NOT NULL
        UNION ALL
        SELECT r.to_artifact_id FROM artifacts_artifactrelation r WHERE r.from_artifact_id = frontier.id
    ) AS step(id)
    WHERE frontier.depth < %s
)
SELECT count(*), count(DISTINCT id) FROM frontier WHERE depth > 0
"""
VISIT_ONCE = "SELECT count(*), count(DISTINCT node_id) FROM artifact_lineage(%s::uuid, false, %s::integer, 1000000)"


class QueryTimer:
    """Database time as Django's debug cursor measures it (each execute), unrounded: the debug
    cursor keeps milliseconds, too coarse for pages of ten sub-millisecond queries."""

    def __init__(self):
        self.seconds, self.count = 0.0, 0

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start
            self.count += 1


def superuser():
    user, _ = get_user_model().objects.get_or_create(
        username="lineage-benchmark", defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def lineage_figures(raw, runs: int, token: str) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    middle = SCENES // 2
    cases = [
        ("ancestors", 10, 1_000, "pipeline scene", py_id("artifact", pipeline_n(middle, "blind_test_report", 5))),
        ("descendants", 10, 1_000, "pipeline scene", py_id("artifact", pipeline_n(middle, "scene_intent", 1))),
    ]
    for depth in (10, 100, 1_000):
        cases.append(("ancestors", depth, 10_000, "dense DAG", py_id("artifact", dag_n(0, DAG_LAYERS - 1))))
        cases.append(("descendants", depth, 10_000, "dense DAG", py_id("artifact", dag_n(0, 0))))
    cases.append(("ancestors", 10_000, 10_000, "chain", py_id("artifact", CHAIN_START + CHAIN - 1)))
    cases.append(("descendants", 10_000, 10_000, "chain", py_id("artifact", CHAIN_START)))

    # +cpu: the Python CPU time the walk (or the API) spends over the raw client's.
    print(f"\n{'lineage':<50} {'nodes':>6} {'edges':>6} | {'raw SQL':>10} | {'walk':>10} {'/raw':>6} {'+cpu':>9}"
          f" | {'API':>10} {'/raw':>6} {'+cpu':>9}")  # fmt: skip
    for direction, depth, limit, region, root in cases:
        url = f"/v1/artifacts/{root}/lineage?direction={direction}&depth={depth}&limit={limit}"

        def http(url=url):
            response = api.get(url)
            assert response.status_code == 200, response.content[:300]
            return len(response.content)

        def service(root=root, direction=direction, depth=depth, limit=limit):
            return lineage.walk(root, direction=direction, depth=depth, limit=limit)

        def baseline(root=root, direction=direction, depth=depth, limit=limit):
            return raw_walk(raw, root, direction, depth, limit)

        timed = measure({"raw": baseline, "walk": service, "api": http}, runs)
        base, walk_time, api_time = timed["raw"], timed["walk"], timed["api"]
        (nodes, relations), walked = base.result, walk_time.result
        # The walk adds the parent edges, which the raw client reads off the nodes' parent_id.
        assert len(walked.nodes) == nodes and len(walked.edges) >= relations, "the walk and its raw SQL disagree"
        assert len({n.id for n in walked.nodes}) == nodes, "an artifact was visited twice"
        edges = len(walked.edges)
        label = f"{direction} depth {depth:,} ({region}, limit {limit:,})"
        print(
            f"{label:<50} {nodes:>6,} {edges:>6,} | {base.median * 1e3:>7.1f} ms"
            f" | {beside(walk_time, base)} | {beside(api_time, base)}",
            flush=True,
        )
        name = f"lineage {direction} depth {depth:,} ({region})"
        figure(f"{name}: walk / raw SQL", walk_time.ratio(base), "x", RATIO_TARGET)
        if direction == "ancestors":
            per_node = api_time.python_over(base) * 1e3 / max(nodes, 1)
            figure(f"{name}: API Python per node", per_node, "ms", PER_NODE_TARGET)


def naive_figures(raw, runs: int) -> None:
    root = py_id("artifact", dag_n(0, DAG_LAYERS - 1))
    print(f"\n{'dense DAG ancestors, no limit':<30} | {'naive CTE: rows':>15} {'distinct':>8} {'time':>10} |"
          f" {'visit-once: rows':>16} {'time':>9} | naive/visit-once")  # fmt: skip
    raw.execute("SET statement_timeout = '120s'")
    for depth in (4, 6, 8, 10):
        timed = measure(
            {
                "naive": lambda depth=depth: raw.execute(NAIVE, [root, depth]).fetchone(),
                "once": lambda depth=depth: raw.execute(VISIT_ONCE, [root, depth]).fetchone(),
            },
            1 if depth >= 10 else runs,  # depth 10 walks ~12 million rows: one timed run
        )
        naive, once = timed["naive"], timed["once"]
        (walked, distinct), (once_rows, once_distinct) = naive.result, once.result
        assert once_rows == once_distinct == distinct, "the visit-once walk must reach the same artifacts, once each"
        print(
            f"{'depth ' + str(depth):<30} | {walked:>15,} {distinct:>8,} {naive.median * 1e3:>7.1f} ms |"
            f" {once_rows:>16,} {once.median * 1e3:>6.1f} ms | {naive.ratio(once):.1f}x",
            flush=True,
        )
    raw.execute("RESET statement_timeout")


def stream_figures(raw, runs: int, token: str) -> None:
    """The latest of a stream and a scene's newest 100 artifacts, through the selectors and the
    API, beside the one statement each is: the rows with every column, payload included."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    scene = py_id("scene", SCENES // 2)
    chain_scene = py_id("scene", CHAIN_SCENE)  # 10,000 versions: the list is one page of many
    cases = [
        (
            "latest of a stream (a scene's panel_plan)",
            lambda: raw.execute(
                "SELECT * FROM artifacts_artifact WHERE scene_id = %s AND type = %s ORDER BY version DESC LIMIT 1",
                [scene, "panel_plan"],
            ).fetchall(),
            lambda: selectors.stream_latest(story_id=None, scene_id=scene, type="panel_plan"),
            f"/v1/scenes/{scene}/artifacts/latest?type=panel_plan",
        ),
        (
            "a scene's newest 100 (of 10,000)",
            lambda: raw.execute(
                "SELECT * FROM artifacts_artifact WHERE scene_id = %s ORDER BY created_at DESC, id DESC LIMIT 101",
                [chain_scene],
            ).fetchall(),
            lambda: list(selectors.scene_artifacts(chain_scene).order_by("-created_at", "-id")[:101]),
            f"/v1/scenes/{chain_scene}/artifacts?page_size=100",
        ),
    ]
    print(
        f"\n{'reads':<42} | {'raw SQL':>10} | {'its SQL':>9} {'/raw':>5} | {'selector':>10} {'/raw':>6} {'+cpu':>9}"
        f" | {'API':>10} {'/raw':>6} {'+cpu':>9}"
    )
    for label, baseline, selector, url in cases:
        executes = []

        def read(selector=selector, executes=executes):
            timer = QueryTimer()
            with connection.execute_wrapper(timer):
                selector()
            executes.append(timer.seconds)

        def http(url=url):
            response = api.get(url)
            assert response.status_code == 200, response.content[:300]

        timed = measure({"raw": baseline, "selector": read, "api": http}, runs)
        base, selected, api_time = timed["raw"], timed["selector"], timed["api"]
        sql = Timed(executes[1:], None)  # the selector's own statement, the warm-up left out
        print(f"{label:<42} | {base.median * 1e3:>7.2f} ms | {sql.median * 1e3:>6.2f} ms {sql.ratio(base):>5.2f}x"
              f" | {beside(selected, base)} | {beside(api_time, base)}", flush=True)  # fmt: skip
        figure(f"{label}: selector / raw SQL", selected.ratio(base), "x", RATIO_TARGET)


def admin_figures(raw, runs: int, user) -> None:
    """Each page's server time (the client is in-process: no network), its database time and
    queries, beside the raw SQL of what the page shows."""
    from artifacts.admin import CHANGE_PAGE_LINEAGE_DEPTH, CHANGE_PAGE_LINEAGE_NODES, LINEAGE_PAGE_NODES

    client = Client()
    client.force_login(user)
    scene = py_id("scene", SCENES // 2)
    plan = py_id("artifact", pipeline_n(SCENES // 2, "panel_plan", 3))
    dag_middle = py_id("artifact", dag_n(0, DAG_LAYERS // 2))
    chain_tip = py_id("artifact", CHAIN_START + CHAIN - 1)
    change = (CHANGE_PAGE_LINEAGE_DEPTH, CHANGE_PAGE_LINEAGE_NODES)  # the depth and limit of its two walks
    newest = "SELECT * FROM artifacts_artifact {} ORDER BY created_at DESC, id DESC LIMIT 100"

    def walks(root, depth, limit):
        def both():
            raw_walk(raw, root, "ancestors", depth, limit)
            raw_walk(raw, root, "descendants", depth, limit)

        return both

    pages = [
        ("changelist (newest 100 of 1,000,000)", "", lambda: raw.execute(newest.format("")).fetchall()),
        (
            "changelist, type=panel_plan",
            "?type=panel_plan",
            lambda: raw.execute(newest.format("WHERE type = 'panel_plan'")).fetchall(),
        ),
        (
            "changelist, search by scene id",
            f"?q={scene}",
            lambda: raw.execute(newest.format("WHERE scene_id = %s"), [scene]).fetchall(),
        ),
        ("change page, pipeline panel_plan v3", f"{plan}/change/", walks(plan, *change)),
        ("change page, dense DAG middle", f"{dag_middle}/change/", walks(dag_middle, *change)),
        ("change page, chain tip (10,000 versions)", f"{chain_tip}/change/", walks(chain_tip, *change)),
        ("lineage page depth 10, pipeline", f"{plan}/lineage/?depth=10", walks(plan, 10, LINEAGE_PAGE_NODES)),
        (
            "lineage page depth 100, dense DAG",
            f"{dag_middle}/lineage/?depth=100",
            walks(dag_middle, 100, LINEAGE_PAGE_NODES),
        ),
        (
            "lineage page depth 10,000, chain tip",
            f"{chain_tip}/lineage/?depth=10000",
            walks(chain_tip, 10_000, LINEAGE_PAGE_NODES),
        ),
    ]
    print(
        f"\n{'admin (GET as a superuser)':<42} | {'raw SQL':>9} | {'db time':>8} {'queries':>7} {'db/raw':>7} |"
        f" {'server':>9}"
    )
    for label, view, baseline in pages:
        captured = []

        def get(url=f"/admin/artifacts/artifact/{view}", captured=captured):
            timer = QueryTimer()
            with connection.execute_wrapper(timer):
                response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            captured.append((timer.seconds, timer.count))

        timed = measure({"raw": baseline, "page": get}, runs)
        base, page = timed["raw"], timed["page"]
        db = Timed([seconds for seconds, _ in captured[1:]], None)  # the warm-up round left out
        queries = captured[-1][1]
        # The target (300 ms) is the changelist's and the change page's; the lineage page draws
        # up to LINEAGE_PAGE_NODES artifacts as SVG and is shown for what it costs.
        judged = label.startswith(("changelist", "change page"))
        print(
            f"{label:<42} | {base.median * 1e3:>6.1f} ms | {db.median * 1e3:>5.1f} ms {queries:>7}"
            f" {db.ratio(base):>6.2f}x | {page.median * 1e3:>6.1f} ms",
            flush=True,
        )
        figure(f"admin {label}: server time", page.median * 1e3, "ms", PAGE_TARGET if judged else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reload", action="store_true", help="drop the database and load it again")
    parser.add_argument("--runs", type=int, default=7, help="timed rounds per figure (median); default 7")
    parser.add_argument("--quick", action="store_true", help="one timed round per figure")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    ensure(args.reload)
    artifacts, relations = counts()
    print(f"{artifacts:,} artifacts, {relations:,} relations; median of {args.runs} rounds per figure")
    # Other work on the machine skews the figures: say how busy it was.
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    user = superuser()
    token, _ = Token.objects.get_or_create(user=user)
    with raw_connection() as raw:
        stream_figures(raw, args.runs, token.key)
        lineage_figures(raw, args.runs, token.key)
        naive_figures(raw, args.runs)
        admin_figures(raw, args.runs, user)
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
