"""Lay out an artifact's lineage as a left-to-right graph for a server-side SVG.

Columns are hops from the artifact in focus: ancestors to the left, descendants to the
right. Drawing on the server keeps the admin offline and script-free; the template only
places the boxes and paths computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_W, NODE_H = 184, 46
COL_GAP, ROW_GAP, PAD = 96, 18, 24

EDGE_COLORS = {
    "parent": "#7a7a7a",
    "derived_from": "#1f6fb2",
    "variant_of": "#c77700",
    "transcoded_from": "#2e8b57",
}
STATE_FILLS = {
    "intermediate": "#f4f4f4",
    "candidate": "#fff6dd",
    "published": "#e3f4e6",
    "archived": "#ececf4",
}


@dataclass
class GraphNode:
    artifact: object
    column: int
    x: int = 0
    y: int = 0
    root: bool = False

    @property
    def fill(self) -> str:
        return STATE_FILLS.get(self.artifact.lifecycle_state, "#fff")

    @property
    def label(self) -> str:
        text = f"{self.artifact.type} v{self.artifact.version}"
        return text if len(text) <= 26 else text[:25] + "…"

    @property
    def sublabel(self) -> str:
        state = "pruned" if self.artifact.pruned_at else self.artifact.lifecycle_state
        return f"{state} · {self.artifact.kind}"

    @property
    def cx(self) -> int:
        return self.x + NODE_W // 2


@dataclass
class GraphEdge:
    kind: str
    path: str
    # Where its label goes, or None when every place along the curve would cover another
    # label or a box (the colour and the legend still say the kind; hovering, its title).
    label_x: int | None
    label_y: int | None
    curve: tuple = ()  # the cubic Bézier's four points, for placing the label

    @property
    def color(self) -> str:
        return EDGE_COLORS.get(self.kind, "#555")


@dataclass
class Graph:
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    width: int
    height: int
    truncated: bool  # the walk stopped at its limit: more artifacts lie within the depth

    @property
    def legend(self):
        return list(EDGE_COLORS.items())


def build_graph(root, ancestors, descendants) -> Graph:
    """``ancestors``/``descendants`` are ``lineage.Lineage`` walks from ``root`` (either may
    be None); their ``limit`` bounds what is drawn."""
    placed: dict = {root.pk: GraphNode(root, 0, root=True)}
    truncated = False
    for lineage, sign in ((ancestors, -1), (descendants, 1)):
        if lineage is None:
            continue
        truncated = truncated or lineage.truncated
        for node in lineage.nodes:
            # A node reachable both ways (variant_of may loop) keeps its first place.
            placed.setdefault(node.pk, GraphNode(node, sign * node.depth))

    columns: dict[int, list[GraphNode]] = {}
    for node in placed.values():
        columns.setdefault(node.column, []).append(node)
    first = min(columns)
    tallest = max(len(nodes) for nodes in columns.values())
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP
    for column, nodes in columns.items():
        nodes.sort(key=lambda n: (n.artifact.type, n.artifact.version, str(n.artifact.pk)))
        stack = len(nodes) * NODE_H + (len(nodes) - 1) * ROW_GAP
        top = (height - stack) // 2
        for row, node in enumerate(nodes):
            node.x = PAD + (column - first) * (NODE_W + COL_GAP)
            node.y = top + row * (NODE_H + ROW_GAP)
    width = PAD * 2 + len(range(first, max(columns) + 1)) * (NODE_W + COL_GAP) - COL_GAP

    edges = []
    seen = set()
    for lineage in (ancestors, descendants):
        for edge in lineage.edges if lineage is not None else ():
            key = (edge.from_id, edge.to_id, edge.kind)
            if key in seen or edge.from_id not in placed or edge.to_id not in placed:
                continue
            seen.add(key)
            edges.append(_edge(placed[edge.from_id], placed[edge.to_id], edge.kind))
    _place_labels(edges, list(placed.values()))
    return Graph(nodes=list(placed.values()), edges=edges, width=width, height=height, truncated=truncated)


def _edge(source: GraphNode, target: GraphNode, kind: str) -> GraphEdge:
    """A curve from ``source`` (the newer artifact) to ``target`` (what it came from)."""
    sy, ty = source.y + NODE_H // 2, target.y + NODE_H // 2
    if source.column == target.column:
        # Same column: loop out to the right so the curve does not cross the boxes.
        sx = tx = source.x + NODE_W
        bend = 60
        curve = ((sx, sy), (sx + bend, sy), (tx + bend, ty), (tx + 4, ty))
    else:
        if source.column > target.column:
            sx, tx = source.x, target.x + NODE_W
        else:
            sx, tx = source.x + NODE_W, target.x
        bend = (sx - tx) // 2
        end = tx + 4 if sx > tx else tx - 4
        curve = ((sx, sy), (sx - bend, sy), (tx + bend, ty), (end, ty))
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = curve
    path = f"M{x0},{y0} C{x1},{y1} {x2},{y2} {x3},{y3}"
    return GraphEdge(kind, path, None, None, curve)


# Where along its curve a label may sit (the middle first), and the box a label takes:
# about 6 px per character of 10.5 px text, plus a margin.
_LABEL_SPOTS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78)
_CHAR_W, _LABEL_H, _LABEL_PAD = 6, 13, 4


def _point(curve, t: float) -> tuple[float, float]:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = curve
    u = 1 - t
    return (
        u**3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * x3,
        u**3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t**3 * y3,
    )


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_labels(edges: list[GraphEdge], nodes: list[GraphNode]) -> None:
    """Give each edge's label the first spot along its curve that covers no box and no label
    placed before it; an edge with no such spot goes unlabelled. Many edges between two
    columns used to write their labels over one another at the same midpoints."""
    taken = [(n.x, n.y, n.x + NODE_W, n.y + NODE_H) for n in nodes]
    for edge in edges:
        half_w = (_CHAR_W * len(edge.kind)) // 2 + _LABEL_PAD
        for t in _LABEL_SPOTS:
            x, y = _point(edge.curve, t)
            box = (x - half_w, y - _LABEL_H + 2, x + half_w, y + _LABEL_PAD)
            if not any(_overlaps(box, other) for other in taken):
                taken.append(box)
                edge.label_x, edge.label_y = round(x), round(y)
                break
