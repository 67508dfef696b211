"""The lineage walk (SPEC §7): breadth-first, each artifact once, index-driven, cut by a limit.

Graphs are built with bulk inserts (INSERT is all the immutability triggers allow, and all
a graph needs), then walked through ``artifacts.lineage.walk`` and compared with a plain
breadth-first search in Python over the same edges.
"""

import importlib
import random
import uuid
from collections import deque

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts import lineage
from artifacts.models import Artifact, ArtifactRelation
from kernel.errors import InvalidInput, NotFound

RELATION_TYPES = ("derived_from", "variant_of", "transcoded_from")


def insert_graph(story, scene, *, streams: int, versions: int, relations: list[tuple[int, int, str]]):
    """``streams`` chains of ``versions`` versions each (parent = previous version), then the
    relations given as (from index, to index, type) over the artifacts in creation order."""
    rows = []
    for stream in range(streams):
        parent = None
        for version in range(1, versions + 1):
            artifact = Artifact(
                id=uuid.uuid4(),
                story_id=story.pk,
                scene_id=scene.pk,
                type=f"render_spec_{stream}" if stream else "render_spec",
                version=version,
                parent_id=parent,
                payload={},
            )
            rows.append(artifact)
            parent = artifact.id
    Artifact.objects.bulk_create(rows, batch_size=2000)
    ids = [a.id for a in rows]
    seen = set()
    edges = []
    for a, b, kind in relations:
        if a != b and (a, b, kind) not in seen:
            seen.add((a, b, kind))
            edges.append(ArtifactRelation(from_artifact_id=ids[a], to_artifact_id=ids[b], relation_type=kind))
    ArtifactRelation.objects.bulk_create(edges, batch_size=2000)
    return rows, edges


def reference_walk(rows, edges, root, *, direction, depth):
    """Least hops from ``root`` to every artifact within ``depth``, by a plain BFS."""
    neighbours = {}
    for a in rows:
        if a.parent_id is not None:
            child, parent = a.id, a.parent_id
            src, dst = (child, parent) if direction == "ancestors" else (parent, child)
            neighbours.setdefault(src, []).append(dst)
    for r in edges:
        src, dst = (
            (r.from_artifact_id, r.to_artifact_id)
            if direction == "ancestors"
            else (r.to_artifact_id, r.from_artifact_id)
        )
        neighbours.setdefault(src, []).append(dst)
    hops = {root: 0}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        if hops[node] == depth:
            continue
        for nxt in neighbours.get(node, ()):
            if nxt not in hops:
                hops[nxt] = hops[node] + 1
                queue.append(nxt)
    return hops  # the root included, at depth 0, as the walk gives it


graphs = st.fixed_dictionaries(
    {
        "streams": st.integers(1, 4),
        "versions": st.integers(1, 8),
        "relations": st.lists(
            st.tuples(st.integers(0, 31), st.integers(0, 31), st.sampled_from(RELATION_TYPES)), max_size=40
        ),
        "root": st.integers(0, 31),
        "direction": st.sampled_from(lineage.DIRECTIONS),
        "depth": st.integers(1, 12),
    }
)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=graphs)
def test_walk_matches_a_plain_breadth_first_search(story, scene, graph):
    """Parents and relations mixed, variant_of cycles (relations here may form any cycle),
    depth limits: the least hop count of every artifact within reach, each artifact once."""
    size = graph["streams"] * graph["versions"]
    relations = [(a % size, b % size, kind) for a, b, kind in graph["relations"]]
    with connection.cursor() as cursor:  # a savepoint per example keeps examples apart
        cursor.execute("SAVEPOINT example")
    try:
        rows, edges = insert_graph(
            story, scene, streams=graph["streams"], versions=graph["versions"], relations=relations
        )
        root = rows[graph["root"] % size].id
        result = lineage.walk(root, direction=graph["direction"], depth=graph["depth"], limit=lineage.MAX_LIMIT)
        expected = reference_walk(rows, edges, root, direction=graph["direction"], depth=graph["depth"])
        assert {n.id: n.depth for n in result.nodes} == expected
        assert len(result.nodes) == len({n.id for n in result.nodes})  # each artifact once
        assert not result.truncated
        by_id = {a.id: a for a in rows}
        for node in result.nodes:
            assert (node.type, node.version, node.parent_id) == (
                by_id[node.id].type,
                by_id[node.id].version,
                by_id[node.id].parent_id,
            )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK TO SAVEPOINT example")


def test_edges_are_every_parent_and_relation_edge_among_the_nodes(story, scene):
    rows, edges = insert_graph(
        story, scene, streams=2, versions=3, relations=[(5, 1, "derived_from"), (2, 4, "variant_of")]
    )
    result = lineage.walk(rows[5].id, direction="ancestors", depth=10)
    assert {(e.from_id, e.to_id, e.kind) for e in result.edges} == {
        (rows[5].id, rows[4].id, "parent"),
        (rows[4].id, rows[3].id, "parent"),
        (rows[5].id, rows[1].id, "derived_from"),
        (rows[1].id, rows[0].id, "parent"),
    }


def test_a_dense_dag_is_walked_once_per_artifact(story, scene):
    """Many paths of many lengths lead to the same artifacts: a walk that deduplicated on
    (artifact, depth) would expand each of them once per distinct path length."""
    rng = random.Random(3)
    size = 300
    relations = [(a, rng.randrange(0, a), "derived_from") for a in range(1, size) for _ in range(6)]
    rows, edges = insert_graph(story, scene, streams=1, versions=size, relations=relations)
    root = rows[-1].id
    walked = lineage.walk_rows(root, descendants=False, depth=lineage.MAX_DEPTH, limit=lineage.MAX_LIMIT)
    assert len(walked) == size - 1 == len({row[0] for row in walked})  # each expanded once (the root aside)
    with CaptureQueriesContext(connection) as queries:
        result = lineage.walk(root, direction="ancestors", depth=lineage.MAX_DEPTH, limit=lineage.MAX_LIMIT)
    assert {n.id: n.depth for n in result.nodes} == reference_walk(
        rows, edges, root, direction="ancestors", depth=lineage.MAX_DEPTH
    )
    assert len(queries) == 3  # the root, the walk with its nodes' columns, the edges between them


def test_limit_cuts_the_walk_and_says_so(story, scene):
    rows, _ = insert_graph(story, scene, streams=1, versions=30, relations=[])
    result = lineage.walk(rows[-1].id, direction="ancestors", depth=100, limit=10)
    assert result.truncated
    assert [n.depth for n in result.nodes] == list(range(10))  # the root and the nearest nine, breadth first
    exact = lineage.walk(rows[-1].id, direction="ancestors", depth=100, limit=30)
    assert not exact.truncated and len(exact.nodes) == 30
    assert lineage.walk(rows[-1].id, direction="ancestors", depth=100, limit=29).truncated
    shallow = lineage.walk(rows[-1].id, direction="ancestors", depth=5, limit=6)
    assert not shallow.truncated and len(shallow.nodes) == 6  # the depth ended the walk, not the limit
    alone = lineage.walk(rows[-1].id, direction="ancestors", depth=5, limit=1)
    assert alone.truncated and [n.id for n in alone.nodes] == [rows[-1].id]


def test_depth_10000_on_a_10000_version_chain_is_one_query(story, scene):
    rows, _ = insert_graph(story, scene, streams=1, versions=10_000, relations=[])
    with CaptureQueriesContext(connection) as queries:
        up = lineage.walk(rows[-1].id, direction="ancestors", depth=10_000, limit=10_000)
    walks = [q["sql"] for q in queries.captured_queries if "RECURSIVE" in q["sql"] or "artifact_lineage(" in q["sql"]]
    assert len(walks) == 1 and len(queries) == 3
    assert len(up.nodes) == 10_000 and up.nodes[-1].id == rows[0].id and up.nodes[-1].depth == 9_999
    assert not up.truncated
    down = lineage.walk(rows[0].id, direction="descendants", depth=10_000, limit=10_000)
    assert [n.depth for n in down.nodes] == list(range(10_000))
    assert len(down.edges) == 9_999


def test_arguments_are_checked(story, scene):
    rows, _ = insert_graph(story, scene, streams=1, versions=2, relations=[])
    for kwargs, field in (
        ({"direction": "sideways"}, "direction"),
        ({"depth": 0}, "depth"),
        ({"depth": 10_001}, "depth"),
        ({"depth": True}, "depth"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
    ):
        with pytest.raises(InvalidInput) as refused:
            lineage.walk(rows[0].id, **kwargs)
        assert refused.value.field == field
    with pytest.raises(NotFound):
        lineage.walk(uuid.uuid4())


@pytest.mark.postgres_only
@pytest.mark.parametrize("step_name", ["STEP_ANCESTORS", "STEP_DESCENDANTS"])
def test_each_step_of_the_postgresql_walk_is_served_by_indexes(story, scene, step_name):
    """The walk's step, exactly as the function runs it, on one frontier row: every table
    access is an index scan (sequential scans priced out, as the planner would at scale)."""
    rows, _ = insert_graph(story, scene, streams=1, versions=3, relations=[(2, 0, "derived_from")])
    step = getattr(importlib.import_module("artifacts.migrations.0005_lineage_walk"), step_name)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            f"EXPLAIN SELECT step.id FROM (SELECT %s::uuid AS id) AS frontier CROSS JOIN LATERAL ({step}) AS step(id)",
            [rows[1].id],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan" not in plan, plan
    assert plan.count("Index") >= 2, plan


@pytest.mark.postgres_only
def test_postgresql_walk_leaves_nothing_behind_between_walks(story, scene):
    """The visited set is per walk: a second walk on the same connection starts empty."""
    rows, _ = insert_graph(story, scene, streams=1, versions=5, relations=[])
    first = lineage.walk(rows[-1].id, direction="ancestors", depth=10)
    second = lineage.walk(rows[-1].id, direction="ancestors", depth=10)
    assert [n.id for n in first.nodes] == [n.id for n in second.nodes] and len(second.nodes) == 5
