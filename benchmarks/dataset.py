"""The 1,000,000-artifact dataset that reads.py and api.py measure against, bulk-loaded with SQL.

17,600 scenes, each with the 11 type streams of 5 versions (parent = the previous version;
each version derived_from the same version of the types it reads, except version 2, an
editor's edit with only its parent); one stream of 10,000 versions (depth 10,000); and a
dense DAG of 4 streams of 5,500 versions, each version derived from versions of the other
streams one and two layers down, so paths of different lengths reach every artifact.
1,000,000 artifacts, 791,976 relations.

The database (its name must contain "bench") is created, migrated and loaded with
INSERT ... SELECT generate_series on first use, in one transaction; later runs reuse it,
``--reload`` drops and loads it again. It is kept afterwards; drop it with
``dropdb -h 127.0.0.1 -U postgres artifacts_bench_reads``.
"""

import hashlib
import sys
import time
import uuid

from django.core.management import call_command
from django.db import connection, transaction
from psycopg import sql
from psycopg.types.json import Jsonb

from artifacts.payloads import ARTIFACT_TYPES
from benchmarks import databases
from runs.pipeline.nodes import NODES

DATASET = "lineage benchmark v2"  # the database's comment, set by the load's own transaction

# The pipeline (SPEC §10): 11 types in stage order, and the inputs each version is derived from.
PIPELINE = [node.name for node in NODES]  # stage order
INPUTS = {
    "panel_plan": ("scene_intent", "visual_plan", "dialogue_suggestions"),
    "panel_plan_normalized": ("panel_plan",),
    "layout_template": ("panel_plan_normalized",),
    "panel_semantics": ("layout_template",),
    "render_spec": ("panel_semantics",),
    "render_result": ("render_spec",),
    "qc_report": ("render_result",),
    "blind_test_report": ("render_result",),
}
SCENES, SCENES_PER_STORY, VERSIONS = 17_600, 20, 5
# Version 2 of every stream is an editor's edit: a parent, no derived_from of its own.
DERIVED_VERSIONS = [1, 3, 4, 5]
# A 10,000-version stream, for depth 10,000.
CHAIN = 10_000
# The dense DAG: 4 streams ("columns") of 5,500 versions; a version is derived from versions
# of the other columns one and two layers down, so paths of different lengths reach each node.
DAG_COLUMNS, DAG_LAYERS = 4, 5_500
DAG_LINKS = ((1, 1), (2, 1), (1, 2), (3, 2))  # (column offset, layer offset)

# Artifact numbers: the pipeline, then the chain, then the DAG; ids are md5 of a name, so they
# look like uuid4 to the indexes and this script can compute them without a query.
CHAIN_START = SCENES * len(PIPELINE) * VERSIONS
DAG_START = CHAIN_START + CHAIN
CHAIN_SCENE, DAG_SCENE = SCENES, SCENES + 1  # the DAG's columns are scenes DAG_SCENE + j
CHAIN_STORY, DAG_STORY = SCENES // SCENES_PER_STORY, SCENES // SCENES_PER_STORY + 1


def py_id(kind: str, n: int) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"{kind} {n}".encode()).hexdigest())


def sql_id(kind: str, expr: str) -> str:
    return f"md5('{kind} ' || ({expr}))::uuid"


def pipeline_n(scene: int, type_name: str, version: int) -> int:
    return (scene * len(PIPELINE) + PIPELINE.index(type_name)) * VERSIONS + version - 1


def dag_n(column: int, layer: int) -> int:
    return DAG_START + column * DAG_LAYERS + layer


# -- the database ------------------------------------------------------------------------


def dataset_loaded() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
        )
        return cursor.fetchone()[0] == DATASET


# Every artifact the pipeline made has a fingerprint (64 hex characters, like its sha256);
# an editor's edit has none.
ARTIFACT_INSERT = f"""
INSERT INTO artifacts_artifact (id, type, version, kind, payload, content, content_sha256, content_size,
    mime_type, lifecycle_state, request_id, created_at, pruned_at, created_by_id, created_by_step_id, parent_id,
    scene_id, story_id, fingerprint)
SELECT {sql_id("artifact", "g.n")}, g.type, g.version, 'json', g.payload, '', '', NULL, '',
    CASE WHEN g.latest THEN 'candidate' ELSE 'intermediate' END, '',
    timestamptz '2026-01-01' + g.secs * interval '1 second', NULL, NULL, NULL,
    CASE WHEN g.version > 1 THEN {sql_id("artifact", "g.n - 1")} END,
    {sql_id("scene", "g.scene")}, {sql_id("story", "g.story")},
    CASE WHEN g.edit THEN '' ELSE md5('fingerprint ' || g.n) || md5('inputs ' || g.n) END
FROM ({{}}) g(n, type, version, payload, secs, latest, scene, story, edit)
"""
RELATION_INSERT = f"""
INSERT INTO artifacts_artifactrelation (id, relation_type, request_id, created_at, created_by_step_id,
    from_artifact_id, to_artifact_id)
SELECT gen_random_uuid(), 'derived_from', '', timestamptz '2026-01-01' + g.secs * interval '1 second', NULL,
    {sql_id("artifact", "g.from_n")}, {sql_id("artifact", "g.to_n")}
FROM ({{}}) g(from_n, to_n, secs)
"""
# Each stream is numbered n, n + 1, ...: a version's parent is n - 1 (see ARTIFACT_INSERT).
LOAD = [
    (
        "stories",
        f"""INSERT INTO stories_story (id, title, description, created_at, updated_at)
        SELECT {sql_id("story", "k")}, 'Story ' || k, '', now(), now() FROM generate_series(0, %(stories)s) k""",
    ),
    (
        "scenes",
        f"""INSERT INTO stories_scene (id, position, title, source_text, planning_locked, created_at, updated_at,
            story_id)
        SELECT {sql_id("scene", "s")}, s %% %(per_story)s, 'Scene ' || s, 'It was a dark night.', false, now(), now(),
            {sql_id("story", "s / %(per_story)s")}
        FROM generate_series(0, %(scenes)s - 1) s
        UNION ALL SELECT {sql_id("scene", "%(chain_scene)s")}, 0, 'chain', '', false, now(), now(),
            {sql_id("story", "%(chain_story)s")}
        UNION ALL SELECT {sql_id("scene", "%(dag_scene)s + j")}, j, 'dense DAG', '', false, now(), now(),
            {sql_id("story", "%(dag_story)s")}
        FROM generate_series(0, %(dag_columns)s - 1) j""",
    ),
    (
        "pipeline artifacts",
        ARTIFACT_INSERT.format(
            """SELECT (s * %(types)s + t.i) * %(versions)s + v - 1, t.name, v, t.payload,
                (s * %(versions)s + v - 1) * %(types)s + t.i, v = %(versions)s, s, s / %(per_story)s,
                v <> ALL(%(derived_versions)s::int[])
            FROM generate_series(0, %(scenes)s - 1) s, generate_series(1, %(versions)s) v,
                (SELECT name, payload, i - 1 FROM unnest(%(type_names)s::text[], %(type_payloads)s::jsonb[])
                    WITH ORDINALITY u(name, payload, i)) t(name, payload, i)"""
        ),
    ),
    (
        "chain artifacts",
        ARTIFACT_INSERT.format(
            """SELECT %(chain_start)s + v - 1, 'render_spec', v, %(render_spec)s::jsonb, 1000000 + v,
                v = %(chain)s, %(chain_scene)s, %(chain_story)s, false
            FROM generate_series(1, %(chain)s) v"""
        ),
    ),
    (
        "dense DAG artifacts",
        ARTIFACT_INSERT.format(
            """SELECT %(dag_start)s + j * %(dag_layers)s + i, 'panel_semantics', i + 1, %(panel_semantics)s::jsonb,
                2000000 + i * %(dag_columns)s + j, i = %(dag_layers)s - 1, %(dag_scene)s + j, %(dag_story)s, false
            FROM generate_series(0, %(dag_columns)s - 1) j, generate_series(0, %(dag_layers)s - 1) i"""
        ),
    ),
    (
        "pipeline relations",
        RELATION_INSERT.format(
            """SELECT (s * %(types)s + e.f) * %(versions)s + v - 1, (s * %(types)s + e.u) * %(versions)s + v - 1,
                (s * %(versions)s + v - 1) * %(types)s + e.f
            FROM generate_series(0, %(scenes)s - 1) s, unnest(%(derived_versions)s::int[]) v,
                unnest(%(edge_from)s::int[], %(edge_to)s::int[]) e(f, u)"""
        ),
    ),
    (
        "dense DAG relations",
        RELATION_INSERT.format(
            """SELECT %(dag_start)s + j * %(dag_layers)s + i,
                %(dag_start)s + ((j + o.dc) %% %(dag_columns)s) * %(dag_layers)s + i - o.dl,
                2000000 + i * %(dag_columns)s + j
            FROM generate_series(0, %(dag_columns)s - 1) j, generate_series(0, %(dag_layers)s - 1) i,
                unnest(%(link_columns)s::int[], %(link_layers)s::int[]) o(dc, dl)
            WHERE i >= o.dl"""
        ),
    ),
]


def load() -> None:
    edges = [(PIPELINE.index(t), PIPELINE.index(u)) for t, inputs in INPUTS.items() for u in inputs]
    example = {name: ARTIFACT_TYPES[name].example for name in PIPELINE}
    params = {
        "stories": DAG_STORY,
        "scenes": SCENES,
        "per_story": SCENES_PER_STORY,
        "types": len(PIPELINE),
        "versions": VERSIONS,
        "type_names": PIPELINE,
        "type_payloads": [Jsonb(example[name]) for name in PIPELINE],
        "render_spec": Jsonb(example["render_spec"]),
        "panel_semantics": Jsonb(example["panel_semantics"]),
        "derived_versions": DERIVED_VERSIONS,
        "edge_from": [f for f, _ in edges],
        "edge_to": [u for _, u in edges],
        "chain": CHAIN,
        "chain_start": CHAIN_START,
        "chain_scene": CHAIN_SCENE,
        "chain_story": CHAIN_STORY,
        "dag_start": DAG_START,
        "dag_scene": DAG_SCENE,
        "dag_story": DAG_STORY,
        "dag_columns": DAG_COLUMNS,
        "dag_layers": DAG_LAYERS,
        "link_columns": [c for c, _ in DAG_LINKS],
        "link_layers": [layer for _, layer in DAG_LINKS],
    }
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # The service's statement timeout (settings) is for requests, not for a bulk load.
        cursor.execute("SET statement_timeout = 0")
    # One transaction: an interrupted load leaves nothing, and the comment marks a complete one.
    with transaction.atomic(), connection.cursor() as cursor:
        for label, statement in LOAD:
            step = time.perf_counter()
            cursor.execute(statement, params)
            print(f"  loaded {cursor.rowcount:>9,} {label} in {time.perf_counter() - step:.1f} s", flush=True)
        cursor.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}")
            .format(sql.Identifier(connection.settings_dict["NAME"]), sql.Literal(DATASET))
            .as_string(cursor.connection)
        )
    with connection.cursor() as cursor:
        # VACUUM too, as autovacuum would have by now: index-only scans need the visibility map.
        for table in ("stories_story", "stories_scene", "artifacts_artifact", "artifacts_artifactrelation"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("RESET statement_timeout")
    print(f"  load, VACUUM and ANALYZE: {time.perf_counter() - started:.0f} s", flush=True)


def counts() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM artifacts_artifact), (SELECT count(*) FROM artifacts_artifactrelation)"
        )
        return cursor.fetchone()


def ensure(reload: bool = False) -> None:
    """The dataset in Django's database, loaded if it is not there (or with ``reload``)."""
    if connection.vendor != "postgresql":
        sys.exit("run this against PostgreSQL: set DATABASE_URL=postgres://.../artifacts_bench_reads")
    name = databases.bench_name()
    databases.prepare(fresh=reload)
    call_command("migrate", verbosity=0)
    if dataset_loaded():
        print(f"reusing {name} ({DATASET}); --reload to load it again")
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM artifacts_artifact)")
        if cursor.fetchone()[0]:
            sys.exit(f"{name} holds artifacts but not a complete {DATASET!r} load: run with --reload")
    print(f"loading {name}:", flush=True)
    load()
