"""Lineage: what an artifact was made from (ancestors) or what was made from it (descendants).

Edges are read "child -> parent" (a new version comes from its parent) and "from -> to"
(A derived_from B: B is an ancestor of A), over every relation type.

The walk is breadth-first and visits each artifact once, so its cost grows with the nodes
and edges it reaches, never with the size of the tables or the number of paths (SPEC §7).
It is one recursive query whose step looks up each edge source by its own index, and
which keeps a set of the artifacts already visited:

- PostgreSQL: the function ``artifact_lineage`` (migration 0005) runs the recursive CTE;
  its step calls ``artifact_lineage_visit``, which inserts the artifact into a temporary
  table with a primary key and is true only the first time. A recursive CTE is evaluated
  one level at a time, so the first visit is at the artifact's least depth.
- SQLite: the same CTE with one recursive SELECT per edge source, and the visited set a
  Python function registered on the connection for this one query. SQLite's recursive
  queue is first-in first-out, so the walk is breadth-first there too.

Payloads are never read: a node carries the columns a graph shows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection

from kernel.errors import InvalidInput, NotFound
from kernel.lookups import parse_uuid

from .models import Artifact, ArtifactRelation

DIRECTIONS = ("ancestors", "descendants")
DEFAULT_DEPTH = 10
MAX_DEPTH = 10_000
DEFAULT_LIMIT = 1_000
MAX_LIMIT = 10_000

NODE_COLUMNS = (
    "id",
    "type",
    "version",
    "kind",
    "lifecycle_state",
    "story_id",
    "scene_id",
    "parent_id",
    "created_at",
    "pruned_at",
)


@dataclass(frozen=True, slots=True)
class LineageNode:
    id: uuid.UUID
    type: str
    version: int
    kind: str
    lifecycle_state: str
    story_id: uuid.UUID
    scene_id: uuid.UUID | None
    parent_id: uuid.UUID | None
    created_at: object
    pruned_at: object
    depth: int

    @property
    def pk(self) -> uuid.UUID:
        return self.id


@dataclass(frozen=True, slots=True)
class LineageEdge:
    from_id: uuid.UUID
    to_id: uuid.UUID
    kind: str  # "parent" (from is the next version of to) or a relation type


@dataclass(frozen=True)
class Lineage:
    root: LineageNode
    direction: str
    depth: int
    limit: int
    nodes: list[LineageNode]  # the root first (depth 0), then by (depth, type, version); at most ``limit``
    edges: list[LineageEdge]  # every parent and relation edge between the nodes
    truncated: bool  # the limit cut the walk short


def check_arguments(direction: str, depth, limit) -> None:
    if direction not in DIRECTIONS:
        raise InvalidInput("direction must be 'ancestors' or 'descendants'", field="direction")
    for name, value, top in (("depth", depth, MAX_DEPTH), ("limit", limit, MAX_LIMIT)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise InvalidInput(f"{name} must be an integer from 1 to {top:,}", field=name)


def walk(
    artifact_id, *, direction: str = "ancestors", depth: int = DEFAULT_DEPTH, limit: int = DEFAULT_LIMIT
) -> Lineage:
    """Three queries whatever the size: the root, the walk with its nodes' columns, the edges.

    ``nodes`` holds the root itself at depth 0 (SPEC §7), and counts it against ``limit``."""
    check_arguments(direction, depth, limit)
    root_id = parse_uuid(artifact_id, what="artifact")
    row = Artifact.objects.filter(pk=root_id).values_list(*NODE_COLUMNS).first()
    if row is None:
        raise NotFound(f"artifact {artifact_id} does not exist", field="artifact_id")
    root = LineageNode(*row, depth=0)

    rows = walk_rows(root_id, descendants=direction == "descendants", depth=depth, limit=limit - 1)
    converters = _converters()
    found = []
    for *values, node_depth in rows:
        for index, pairs in enumerate(converters):
            for function, column in pairs:
                values[index] = function(values[index], column, connection)
        found.append(LineageNode(*values, depth=node_depth))
    # The walk stops one node past the room beside the root: that one says the limit cut it.
    found.sort(key=lambda n: (n.depth, n.id))
    truncated = len(found) > limit - 1
    reached = found[: limit - 1]
    reached.sort(key=lambda n: (n.depth, n.type, n.version, n.id))
    return Lineage(
        root=root,
        direction=direction,
        depth=depth,
        limit=limit,
        nodes=[root, *reached],
        edges=_edges(root, reached),
        truncated=truncated,
    )


def walk_rows(root_id: uuid.UUID, *, descendants: bool, depth: int, limit: int) -> list[tuple]:
    """The walk's own rows, one per artifact reached besides the root (columns of
    NODE_COLUMNS, then depth), at most ``limit + 1``: the one query of the walk."""
    if connection.vendor == "postgresql":
        return _walk_postgresql(root_id, descendants, depth, limit)
    return _walk_sqlite(root_id, descendants, depth, limit)


# The columns of a node, then its depth; the walk's rows are converted like the ORM's.
_SELECT_NODE = ", ".join(f"a.{column}" for column in NODE_COLUMNS)


def _walk_postgresql(root_id: uuid.UUID, descendants: bool, depth: int, limit: int):
    sql = (
        f"SELECT {_SELECT_NODE}, w.node_depth FROM artifact_lineage(%s, %s, %s, %s) w "
        f"JOIN {Artifact._meta.db_table} a ON a.id = w.node_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [root_id, descendants, depth, limit + 1])
        return cursor.fetchall()


def _sqlite_steps(descendants: bool) -> tuple[str, str]:
    art, rel = Artifact._meta.db_table, ArtifactRelation._meta.db_table
    if descendants:
        return (
            f"SELECT a.id, walk.depth + 1 FROM walk JOIN {art} a ON a.parent_id = walk.id",
            f"SELECT r.from_artifact_id, walk.depth + 1 FROM walk JOIN {rel} r ON r.to_artifact_id = walk.id",
        )
    return (
        f"SELECT a.parent_id, walk.depth + 1 FROM walk JOIN {art} a ON a.id = walk.id",
        f"SELECT r.to_artifact_id, walk.depth + 1 FROM walk JOIN {rel} r ON r.from_artifact_id = walk.id",
    )


def _walk_sqlite(root_id: uuid.UUID, descendants: bool, depth: int, limit: int):
    root = _db_id(root_id)
    visited = {root}

    def first_visit(node_id, from_depth):
        # Also refuses what lies beyond the depth, so nothing past it is marked visited.
        if node_id is None or from_depth >= depth or node_id in visited:
            return 0
        visited.add(node_id)
        return 1

    connection.ensure_connection()
    connection.connection.create_function("artifact_lineage_visit", 2, first_visit)
    by_parent, by_relation = _sqlite_steps(descendants)
    first_column = "a.id" if descendants else "a.parent_id"
    sql = (
        "WITH RECURSIVE walk(id, depth) AS ("
        " SELECT %s, 0"
        f" UNION ALL {by_parent} WHERE artifact_lineage_visit({first_column}, walk.depth)"
        f" UNION ALL {by_relation} WHERE artifact_lineage_visit("
        f"{'r.from_artifact_id' if descendants else 'r.to_artifact_id'}, walk.depth)"
        # The root and limit + 1 nodes: one more than returned tells that the limit cut the walk.
        " LIMIT %s)"
        f" SELECT {_SELECT_NODE}, walk.depth FROM walk JOIN {Artifact._meta.db_table} a ON a.id = walk.id"
        " WHERE walk.depth > 0"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [root, limit + 2])
        return cursor.fetchall()


def _edges(root: LineageNode, nodes: list[LineageNode]) -> list[LineageEdge]:
    ids = {root.id, *(n.id for n in nodes)}
    edges = [LineageEdge(n.id, n.parent_id, "parent") for n in (root, *nodes) if n.parent_id in ids]
    rel = ArtifactRelation._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT from_artifact_id, to_artifact_id, relation_type FROM {rel}"
            " WHERE from_artifact_id = ANY(%s) AND to_artifact_id = ANY(%s) ORDER BY created_at, id"
        )
        params = [list(ids), list(ids)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    else:
        rows = (
            ArtifactRelation.objects.filter(from_artifact_id__in=ids, to_artifact_id__in=ids)
            .order_by("created_at", "id")
            .values_list("from_artifact_id", "to_artifact_id", "relation_type")
        )
    edges += [LineageEdge(a, b, kind) for a, b, kind in rows]
    return edges


def reaches(*, start: uuid.UUID, goal: uuid.UUID, over) -> bool:
    """Whether ``goal`` is reachable from ``start`` along ``from -> to`` relations of the
    types ``over`` (the cycle check of acyclic relations). The walk stops at ``goal``."""
    rel = ArtifactRelation._meta.db_table
    cast = "::uuid" if connection.vendor == "postgresql" else ""
    types = ", ".join(["%s"] * len(over))
    sql = (
        f"WITH RECURSIVE reach(id) AS (SELECT %s{cast} UNION "
        f"SELECT r.to_artifact_id FROM reach JOIN {rel} r ON r.from_artifact_id = reach.id "
        f"WHERE r.relation_type IN ({types})) SELECT 1 FROM reach WHERE id = %s{cast} LIMIT 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_db_id(start), *[str(t) for t in over], _db_id(goal)])
        return cursor.fetchone() is not None


def _db_id(value: uuid.UUID):
    return Artifact._meta.pk.get_db_prep_value(value, connection)


def _converters() -> list[list]:
    """Per node column, the converters the ORM applies to it: SQLite keeps ids and times as
    text, PostgreSQL's driver already returns Python values."""
    table = Artifact._meta.db_table
    result = []
    for name in NODE_COLUMNS:
        column = Artifact._meta.get_field(name).get_col(table)
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        result.append([(function, column) for function in functions])
    return result
