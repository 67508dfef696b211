"""The pipeline, one scene end to end (SPEC §10, §11; figure 7): time and queries per node.

For each of several scenes (each a different size: more sentences, names and quoted lines
each time), made through ``stories.services``:

- **run 1**: ``engine.run_scene`` in this process, as ``run_pipeline --scene`` does, with the
  shipped generators: every node makes its first version. Beside each node, its generator
  alone, called directly with the very inputs it got in the run (the scene, the input
  artifacts its step recorded, its params), with the database shut: the ratio is what
  deciding, fingerprinting, storing and lineage add to the generator.
- **run 2**: the same again, every node reused by fingerprint. Beside each node, the raw
  SQL of the lookups a reuse needs (the latest row of its own stream and of each stream it
  consumes, by the stream's index), sent through the DB-API connection: the ratio is what
  a reuse costs over those reads (it also records a step and its consumed and produced
  links, SPEC §10).

Per node and run: wall time (the median over the scenes), SQL queries (counted with
``connection.execute_wrapper`` around ``engine.run_node``: decide, step, generate, record),
and the outcome. "run" is what ``run_scene`` does outside its nodes (the run row, the
scene read before each node, the run's end). Query counts must be the same for every
scene: a count that grows with the scene is an N+1, and is flagged.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_bench_pipeline .venv/bin/python benchmarks/pipeline.py
        [--scenes 5] [--quick]
    DATABASE_URL=sqlite:////tmp/bench_pipeline.sqlite3 .venv/bin/python benchmarks/pipeline.py --quick

On PostgreSQL the database (its name must contain "bench") is dropped, created and
migrated afresh on every run; a SQLite file is migrated. ``--quick``: one scene, for a
smoke test. Media goes to a temporary directory unless DJANGO_MEDIA_ROOT is set. Other
processes on the machine skew the figures: the load average is printed before and after.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")
os.environ.setdefault("DJANGO_MEDIA_ROOT", tempfile.mkdtemp(prefix="bench-pipeline-media-"))
for name in ("PIPELINE_GENERATORS", "PIPELINE_PARAMS"):  # the shipped generators, their default params
    os.environ.pop(name, None)

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.urls import reverse  # noqa: E402
from psycopg import sql  # noqa: E402

from artifacts import selectors  # noqa: E402
from artifacts.models import Artifact  # noqa: E402
from runs.pipeline import engine  # noqa: E402
from runs.pipeline import fingerprint as fp  # noqa: E402
from runs.pipeline.nodes import NODES  # noqa: E402
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
    params = connection.settings_dict
    if connection.vendor == "postgresql":
        if "bench" not in params["NAME"]:
            sys.exit("the PostgreSQL database's name must contain 'bench': it is dropped and created afresh")
        maintenance = psycopg.connect(
            dbname="postgres",
            user=params["USER"] or None,
            password=params["PASSWORD"] or None,
            host=params["HOST"] or None,
            port=params["PORT"] or None,
            autocommit=True,
        )
        with maintenance:
            name = sql.Identifier(params["NAME"])
            maintenance.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            maintenance.execute(sql.SQL("CREATE DATABASE {}").format(name))
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
    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def no_database(execute, sql, params, many, context):
    raise AssertionError(f"a generator queried the database: {sql}")


@dataclass
class NodeFigure:
    seconds: float
    queries: int
    result: str


@dataclass
class RunFigures:
    nodes: dict[str, NodeFigure] = field(default_factory=dict)
    seconds: float = 0.0  # the whole run_scene
    queries: int = 0
    outcomes: list = field(default_factory=list)

    @property
    def outside_nodes(self) -> tuple[float, int]:
        return (
            self.seconds - sum(f.seconds for f in self.nodes.values()),
            self.queries - sum(f.queries for f in self.nodes.values()),
        )


def measured_run(scene_id) -> RunFigures:
    """``engine.run_scene`` with ``engine.run_node`` (what ``_execute`` calls per node) timed
    and its queries counted."""
    figures = RunFigures()
    original = engine.run_node

    def run_node(scene, run, node, **kwargs):
        counter = QueryCounter()
        with connection.execute_wrapper(counter):
            started = time.perf_counter()
            outcome = original(scene, run, node, **kwargs)
            elapsed = time.perf_counter() - started
        figures.nodes[node.name] = NodeFigure(elapsed, counter.count, outcome.result)
        return outcome

    counter = QueryCounter()
    engine.run_node = run_node
    try:
        with connection.execute_wrapper(counter):
            started = time.perf_counter()
            result = engine.run_scene(scene_id)
            figures.seconds = time.perf_counter() - started
    finally:
        engine.run_node = original
    figures.queries = counter.count
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
    unexpected = [(n, f.result) for n, f in first.nodes.items() if f.result != "made"]
    unexpected += [(n, f.result) for n, f in second.nodes.items() if f.result != "reused"]
    if unexpected:
        sys.exit(f"run 1 must make every node and run 2 reuse every node: {unexpected}")
    scene = engine.load_scene(scene.pk)
    generators = {o.node.name: generator_seconds(scene, o) for o in first.outcomes}
    return SceneFigures(first, second, generators, raw_lookups(scene))


# -- reporting --------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def queries(counts: list[int]) -> str:
    """A count, the same for every scene; a count that differs is flagged."""
    if len(set(counts)) == 1:
        return str(counts[0])
    return f"{min(counts)}-{max(counts)}!"


def report(scenes: list[SceneFigures]) -> list[str]:
    median = statistics.median
    print(
        f"{'node':<22} | {'run 1: made':<38} | {'run 2: reused':<38}\n"
        f"{'':<22} | {'ms':>7} {'queries':>7} {'gen ms':>7} {'+ms':>6} {'ratio':>6} |"
        f" {'ms':>7} {'queries':>7} {'raw ms':>7} {'(n)':>4} {'ratio':>6}"
    )
    growing = []
    for node in NODES:
        name = node.name
        made = median([s.first.nodes[name].seconds for s in scenes])
        gen = median([s.generators[name] for s in scenes])
        reused = median([s.second.nodes[name].seconds for s in scenes])
        raw = median([s.raw[name][0] for s in scenes])
        made_q = [s.first.nodes[name].queries for s in scenes]
        reused_q = [s.second.nodes[name].queries for s in scenes]
        growing += [f"{name} (run {i})" for i, q in ((1, made_q), (2, reused_q)) if len(set(q)) > 1]
        print(
            f"{name:<22} | {ms(made):>7} {queries(made_q):>7} {ms(gen):>7} {ms(made - gen):>6} {made / gen:>5.1f}x |"
            f" {ms(reused):>7} {queries(reused_q):>7} {ms(raw):>7} {scenes[0].raw[name][1]:>4} {reused / raw:>5.1f}x"
        )
    first_out = [s.first.outside_nodes for s in scenes]
    second_out = [s.second.outside_nodes for s in scenes]
    for i, outside in ((1, first_out), (2, second_out)):
        if len({q for _, q in outside}) > 1:
            growing.append(f"run (outside nodes), run {i}")
    print(
        f"{'run (outside nodes)':<22} | {ms(median([t for t, _ in first_out])):>7}"
        f" {queries([q for _, q in first_out]):>7} {'':>7} {'':>6} {'':>6} |"
        f" {ms(median([t for t, _ in second_out])):>7} {queries([q for _, q in second_out]):>7}"
    )
    made_total = median([s.first.seconds for s in scenes])
    gen_total = median([sum(s.generators.values()) for s in scenes])
    reused_total = median([s.second.seconds for s in scenes])
    raw_total = median([sum(t for t, _ in s.raw.values()) for s in scenes])
    raw_n = sum(n for _, n in scenes[0].raw.values())
    print(
        f"{'total (run_scene)':<22} | {ms(made_total):>7} {queries([s.first.queries for s in scenes]):>7}"
        f" {ms(gen_total):>7} {ms(made_total - gen_total):>6} {made_total / gen_total:>5.1f}x |"
        f" {ms(reused_total):>7} {queries([s.second.queries for s in scenes]):>7} {ms(raw_total):>7} {raw_n:>4}"
        f" {reused_total / raw_total:>5.1f}x"
    )
    return growing


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=5, help="scenes to run, each twice (default 5)")
    parser.add_argument("--quick", action="store_true", help="one scene: a smoke test")
    options = parser.parse_args()
    count = 1 if options.quick else max(1, options.scenes)
    prepare_database()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    story = story_services.story_create(title=f"pipeline benchmark {time.time()}")
    scenes = [bench_scene(story, index) for index in range(count)]
    print(
        f"{connection.vendor}: {count} scene(s) of {sentences(0)}-{sentences(count - 1)} sentences, each run twice;"
        " medians over the scenes"
    )
    growing = report(scenes)
    if count > 1:
        print(
            "query counts: "
            + (f"differ between scenes (N+1?) for {', '.join(growing)}" if growing else "the same for every scene")
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if growing:
        sys.exit(1)


if __name__ == "__main__":
    main()
