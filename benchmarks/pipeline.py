"""The pipeline, one scene end to end (SPEC §10, §11; figure 7): time and queries per node.

For each of several scenes (each a different size: more sentences, names and quoted lines
each time), made through ``stories.services``:

- **run 1**: ``driver.run_scene`` in this process, as ``run_pipeline --scene`` does, with the
  shipped generators: every node makes its first version. Beside each node, its generator
  alone, called directly with the very inputs it got in the run (the scene, the input
  artifacts its step recorded, its params), with the database shut: the ratio is what
  deciding, fingerprinting, storing and lineage add to the generator.
- **run 2**: the same again, every node reused by fingerprint. The driver decides reuses in
  a row on one read and records them in one transaction, so run 2 is measured as a whole,
  beside the raw SQL of the lookups the reuses need (per node, the latest row of its own
  stream and of each stream it consumes, by the stream's index), sent through the DB-API
  connection: the ratio is what reusing costs over those reads (it also records the run,
  a step per node and their consumed and produced links, SPEC §10).

Per node and run: wall time (the median over the scenes), SQL queries (counted with
``connection.execute_wrapper`` around ``engine.attempt_node``: decide, step, generate, record),
the time spent in those queries and in the commits ("db ms"), and the outcome. "run" is
what ``run_scene`` does outside its nodes (the scene, the run row, its holder, the run's
end, and each made node's read of its inputs). Query counts must be the same for every
scene: a count that grows with the scene is an N+1, and is flagged (exit 1).

Headline figures (``FIGURE`` lines, benchmarks/figures.py; ``make bench`` judges their
medians over its runs): at most 10 queries per made node and 4 per reused node; a made scene
at most 4 times its generators, a reused scene at most 4 times its raw lookups.

Warm-up: a first scene is run twice (made, then reused) and not counted: imports, fonts,
Django's compiled queries and the connection are warm before the measured scenes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_bench_pipeline .venv/bin/python benchmarks/pipeline.py
        [--scenes 5] [--quick]
    DATABASE_URL=sqlite:////tmp/bench_pipeline.sqlite3 .venv/bin/python benchmarks/pipeline.py --quick

On PostgreSQL the database (its name must contain "bench") is dropped, created and
migrated afresh on every run; a SQLite file is migrated. ``--quick``: one scene, for a
smoke test. Media goes to a temporary directory, removed at the end, unless DJANGO_MEDIA_ROOT
is set. Other processes on the machine skew the figures: the load average is printed before
and after.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")
MEDIA_SCRATCH = None if os.environ.get("DJANGO_MEDIA_ROOT") else tempfile.mkdtemp(prefix="bench-pipeline-media-")
if MEDIA_SCRATCH:
    os.environ["DJANGO_MEDIA_ROOT"] = MEDIA_SCRATCH  # render_result's PNGs, removed at the end
for name in ("PIPELINE_GENERATORS", "PIPELINE_PARAMS"):  # the shipped generators, their default params
    os.environ.pop(name, None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.urls import reverse  # noqa: E402

from artifacts import selectors  # noqa: E402
from artifacts.models import Artifact  # noqa: E402
from benchmarks import databases  # noqa: E402
from benchmarks.figures import figure  # noqa: E402
from runs.pipeline import driver, engine  # noqa: E402
from runs.pipeline import fingerprint as fp  # noqa: E402
from runs.pipeline.nodes import NODES  # noqa: E402
from stories import selectors as story_selectors  # noqa: E402
from stories import services as story_services  # noqa: E402

SENTENCES = (
    "Mara climbs the spiral stairs as the sea darkens.",
    '"The lamp needs oil before nightfall," Mara tells Tomas.',
    "Tomas carries the heavy can up, step by step, in his yellow coat.",
    "Waves hit the rocks and the lamp flickers.",
    '"Hold it steady!" Tomas shouts over the wind.',
    "Mara shields the flame with her grey shawl until the gust passes.",
    "A fishing boat returns safely at first light.",
    '"You kept the light for us," says Captain Elin.',
    "Mara sleeps at last while Tomas waves from the gallery.",
    "Old Jonas rows out to the reef with a lantern.",
    '"Where is the bell?" Jonas asks Mara.',
    "Gulls circle the tower and Elin counts the boats below.",
)
RAW_REPEAT = 5  # raw lookups are a few hundred microseconds: the median of several


def prepare_database() -> None:
    if connection.vendor == "postgresql":
        databases.prepare(fresh=True)
    elif connection.vendor != "sqlite":
        sys.exit("run this on PostgreSQL or SQLite: DATABASE_URL=postgres://... or sqlite:////tmp/....sqlite3")
    call_command("migrate", verbosity=0)


def sentences(index: int) -> int:
    """Scene ``index`` has 3 + 2 * index sentences: more beats, panels, names and lines each time."""
    return 3 + 2 * index


def scene_text(index: int) -> str:
    return " ".join(SENTENCES[(index + i) % len(SENTENCES)] for i in range(sentences(index)))


# -- measuring ------------------------------------------------------------------------------


class QueryCounter:
    """Counts the queries sent while it is entered, and the time spent in them and in the
    commits (a commit is no query: it reaches the database through ``connection._commit``,
    and on SQLite it is where the file is synced)."""

    active: list["QueryCounter"] = []

    def __init__(self):
        self.count = 0
        self.seconds = 0.0

    def __enter__(self):
        self.wrapper = connection.execute_wrapper(self)
        self.wrapper.__enter__()
        QueryCounter.active.append(self)
        return self

    def __exit__(self, *exc):
        QueryCounter.active.remove(self)
        self.wrapper.__exit__(*exc)

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started

    @staticmethod
    def time_commits() -> None:
        commit = connection._commit

        def timed_commit():
            started = time.perf_counter()
            try:
                return commit()
            finally:
                for counter in QueryCounter.active:
                    counter.seconds += time.perf_counter() - started

        connection._commit = timed_commit


def no_database(execute, sql, params, many, context):
    raise AssertionError(f"a generator queried the database: {sql}")


@dataclass
class NodeFigure:
    seconds: float
    queries: int
    database: float  # of ``seconds``, the time inside the queries' execute
    result: str


@dataclass
class RunFigures:
    nodes: dict[str, NodeFigure] = field(default_factory=dict)
    seconds: float = 0.0  # the whole run_scene
    queries: int = 0
    database: float = 0.0
    outcomes: list = field(default_factory=list)

    @property
    def outside_nodes(self) -> tuple[float, int]:
        return (
            self.seconds - sum(f.seconds for f in self.nodes.values()),
            self.queries - sum(f.queries for f in self.nodes.values()),
        )


def measured_run(scene_id) -> RunFigures:
    """``driver.run_scene`` with ``engine.attempt_node`` (what the driver calls per node)
    timed and its queries counted."""
    figures = RunFigures()
    original = engine.attempt_node

    def attempt_node(scene, run_id, node, **kwargs):
        with QueryCounter() as counter:
            started = time.perf_counter()
            outcome = original(scene, run_id, node, **kwargs)
            elapsed = time.perf_counter() - started
        figures.nodes[node.name] = NodeFigure(elapsed, counter.count, counter.seconds, outcome.result)
        return outcome

    engine.attempt_node = attempt_node
    try:
        with QueryCounter() as counter:
            started = time.perf_counter()
            result = driver.run_scene(scene_id)
            figures.seconds = time.perf_counter() - started
    finally:
        engine.attempt_node = original
    figures.queries, figures.database = counter.count, counter.seconds
    figures.outcomes = result.outcomes
    if result.failed:
        sys.exit(f"the run failed: {[(o.node.name, o.error) for o in result.outcomes if o.error]}")
    return figures


def generator_seconds(scene, outcome) -> float:
    """The node's generator alone, on the inputs its step recorded, with the database shut;
    its output must be the stored payload."""
    made = Artifact.objects.select_related("created_by_step").get(pk=outcome.artifact.pk)
    basis = made.created_by_step.input_summary["basis"]
    inputs = {str(pk): a for pk, a in Artifact.objects.in_bulk(list(basis["inputs"].values())).items()}
    context = engine.NodeContext(
        scene=scene,
        inputs={t: inputs[artifact_id] for t, artifact_id in basis["inputs"].items()},
        params=basis["params"],
        content_url=reverse("artifact-content", kwargs={"artifact_id": made.pk}),
    )
    generator, _ = outcome.node.generator()
    with connection.execute_wrapper(no_database):
        started = time.perf_counter()
        result = generator(context)
        elapsed = time.perf_counter() - started
    payload = result[0] if isinstance(result, tuple) else result
    if fp.canonical(payload) != fp.canonical(made.payload):
        print(f"  warning: {outcome.node.name}'s generator gave another payload than the one stored")
    return elapsed


def raw_lookups(scene) -> dict[str, tuple[float, int]]:
    """Per node: the median time of the raw statements a reuse decision needs (the latest row of
    its own stream and of each stream it consumes), and how many there are."""
    statements = {}
    for node in NODES:
        statements[node.name] = []
        for type_name in (node.name, *node.consumes):
            queryset = selectors.stream(story_id=scene.story_id, scene_id=scene.pk, type=type_name)
            query, params = queryset.order_by("-version")[:1].query.sql_with_params()
            if connection.vendor == "sqlite":
                query = query.replace("%s", "?")
            statements[node.name].append((query, params))
    connection.ensure_connection()
    raw = connection.connection  # the DB-API connection: no Django between us and the database
    figures = {}
    for name, queries in statements.items():
        times = []
        for _ in range(RAW_REPEAT):
            cursor = raw.cursor()
            started = time.perf_counter()
            for query, params in queries:
                cursor.execute(query, params)
                assert cursor.fetchone() is not None, f"no row for {name}"
            times.append(time.perf_counter() - started)
            cursor.close()
        figures[name] = (statistics.median(times), len(queries))
    return figures


@dataclass
class SceneFigures:
    first: RunFigures
    second: RunFigures
    generators: dict[str, float]
    raw: dict[str, tuple[float, int]]


def bench_scene(story, index: int) -> SceneFigures:
    scene = story_services.scene_create(story_id=story.pk, title=f"scene {index + 1}", source_text=scene_text(index))
    first = measured_run(scene.pk)
    second = measured_run(scene.pk)
    unexpected = [(o.node.name, o.result) for o in first.outcomes if o.result != "made"]
    unexpected += [(o.node.name, o.result) for o in second.outcomes if o.result != "reused"]
    if unexpected:
        sys.exit(f"run 1 must make every node and run 2 reuse every node: {unexpected}")
    scene = story_selectors.scene_for_pipeline(scene.pk)
    generators = {o.node.name: generator_seconds(scene, o) for o in first.outcomes}
    return SceneFigures(first, second, generators, raw_lookups(scene))


# -- reporting --------------------------------------------------------------------------------

MAX_MADE_QUERIES, MAX_REUSED_QUERIES, MAX_RATIO = 10, 4, 4.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def queries(counts: list[int]) -> str:
    """A count, the same for every scene; a count that differs is flagged."""
    if len(set(counts)) == 1:
        return str(counts[0])
    return f"{min(counts)}-{max(counts)}!"


def report(scenes: list[SceneFigures]) -> list[str]:
    """Prints the tables and the targets; returns what has a query count that differs between
    scenes."""
    median = statistics.median
    print(
        f"{'node':<22} | {'run 1: made':<45} | {'run 2: reused':<12}\n"
        f"{'':<22} | {'ms':>6} {'queries':>7} {'db ms':>6} {'gen ms':>6} {'+ms':>6} {'ratio':>7} |"
        f" {'raw ms':>6} {'(n)':>3}"
    )
    growing = []
    for node in NODES:
        name = node.name
        first = [s.first.nodes[name] for s in scenes]
        made = median([f.seconds for f in first])
        gen = median([s.generators[name] for s in scenes])
        if len({f.queries for f in first}) > 1:
            growing.append(f"{name} (run 1)")
        print(
            f"{name:<22} | {ms(made):>6} {queries([f.queries for f in first]):>7}"
            f" {ms(median([f.database for f in first])):>6} {ms(gen):>6} {ms(made - gen):>6} {made / gen:>6.1f}x |"
            f" {ms(median([s.raw[name][0] for s in scenes])):>6} {scenes[0].raw[name][1]:>3}"
        )
    first_out = [s.first.outside_nodes for s in scenes]
    if len({q for _, q in first_out}) > 1:
        growing.append("run (outside nodes), run 1")
    for run in (2,):
        if len({s.second.queries for s in scenes}) > 1:
            growing.append(f"run {run}")
    print(
        f"{'run (outside nodes)':<22} | {ms(median([t for t, _ in first_out])):>6}"
        f" {queries([q for _, q in first_out]):>7} {'':>6} {'':>6} {'':>6} {'':>7} |"
    )
    made_total = median([s.first.seconds for s in scenes])
    gen_total = median([sum(s.generators.values()) for s in scenes])
    reused_total = median([s.second.seconds for s in scenes])
    raw_total = median([sum(t for t, _ in s.raw.values()) for s in scenes])
    raw_n = sum(n for _, n in scenes[0].raw.values())
    made_ratio, reused_ratio = made_total / gen_total, reused_total / raw_total
    print(
        f"{'total (run_scene)':<22} | {ms(made_total):>6} {queries([s.first.queries for s in scenes]):>7}"
        f" {ms(median([s.first.database for s in scenes])):>6} {ms(gen_total):>6} {ms(made_total - gen_total):>6}"
        f" {made_ratio:>6.1f}x | {ms(raw_total):>6} {raw_n:>3}"
    )
    print(
        f"run 2, reused as a whole: {ms(reused_total)} ms, {queries([s.second.queries for s in scenes])} queries,"
        f" {ms(median([s.second.database for s in scenes]))} db ms; raw lookups {ms(raw_total)} ms"
        f" ({raw_n} statements): {reused_ratio:.1f}x"
    )
    most_made = max(max(f.queries + 1 for f in s.first.nodes.values()) for s in scenes)  # + its read
    per_reused = max(s.second.queries for s in scenes) / len(NODES)
    figure(f"made scene / its generators ({len(NODES)} nodes)", made_ratio, "x", ("<=", MAX_RATIO))
    figure("reused scene / its raw lookups", reused_ratio, "x", ("<=", MAX_RATIO))
    figure("queries per made node (its read included)", most_made, "queries", ("<=", MAX_MADE_QUERIES))
    figure(f"queries per reused node (run 2 / {len(NODES)})", per_reused, "queries", ("<=", MAX_REUSED_QUERIES))
    figure("made scene (run_scene, run 1)", made_total * 1000, "ms")
    figure("reused scene (run_scene, run 2)", reused_total * 1000, "ms")
    return growing


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=5, help="scenes to run, each twice (default 5)")
    parser.add_argument("--quick", action="store_true", help="one scene: a smoke test")
    options = parser.parse_args()
    count = 1 if options.quick else max(1, options.scenes)
    prepare_database()
    QueryCounter.time_commits()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    story = story_services.story_create(title=f"pipeline benchmark {time.time()}")
    bench_scene(story, 0)  # warm-up, not counted: first imports, fonts, compiled queries, connection
    scenes = [bench_scene(story, index) for index in range(count)]
    print(
        f"{connection.vendor}: {count} scene(s) of {sentences(0)}-{sentences(count - 1)} sentences, each run twice;"
        " medians over the scenes"
    )
    growing = report(scenes)
    if count == 1:
        print("query counts: one scene, not compared (run without --quick to compare scenes of different sizes)")
    elif growing:
        print(f"query counts: differ between scenes (N+1?) for {', '.join(growing)}")
    else:
        print(f"query counts: the same for each of the {count} scenes")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if growing:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    finally:
        if MEDIA_SCRATCH:
            shutil.rmtree(MEDIA_SCRATCH, ignore_errors=True)
