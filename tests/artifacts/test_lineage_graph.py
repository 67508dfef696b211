"""The lineage picture's edge labels (issue 23): none covers another label or a box, however
many edges run between two columns; an edge without room goes unlabelled (its colour and its
hover title still name it)."""

import itertools
import uuid
from types import SimpleNamespace

from artifacts.lineage import Lineage, LineageEdge
from artifacts.lineage_graph import _CHAR_W, _LABEL_H, _LABEL_PAD, NODE_H, NODE_W, build_graph


def artifact(type_name, version, depth):
    return SimpleNamespace(
        pk=uuid.uuid4(), type=type_name, version=version, lifecycle_state="intermediate", kind="json",
        pruned_at=None, depth=depth,
    )  # fmt: skip


def label_box(edge):
    half = (_CHAR_W * len(edge.kind)) // 2 + _LABEL_PAD
    return (edge.label_x - half, edge.label_y - _LABEL_H + 2, edge.label_x + half, edge.label_y + _LABEL_PAD)


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def dense_graph():
    """A root made from 8 artifacts, each made from the same 8 one hop further: 72 edges
    between three columns, where every midpoint label used to land on the others."""
    root = artifact("video_render", 1, 0)
    near = [artifact("render_result", n, 1) for n in range(1, 9)]
    far = [artifact("render_spec", n, 2) for n in range(1, 9)]
    edges = [LineageEdge(root.pk, a.pk, "derived_from") for a in near]
    edges += [
        LineageEdge(a.pk, b.pk, kind) for a in near for b, kind in zip(far, itertools.cycle(["derived_from", "parent"]))
    ]
    walk = Lineage(root=root, direction="ancestors", depth=3, limit=100, nodes=near + far, edges=edges, truncated=False)
    return build_graph(root, walk, None)


def test_no_label_covers_another_or_a_box():
    graph = dense_graph()
    assert len(graph.edges) == 72
    labelled = [edge for edge in graph.edges if edge.label_x is not None]
    assert labelled, "some edges keep their labels"
    boxes = [label_box(edge) for edge in labelled]
    for a, b in itertools.combinations(boxes, 2):
        assert not overlap(a, b), (a, b)
    nodes = [(n.x, n.y, n.x + NODE_W, n.y + NODE_H) for n in graph.nodes]
    for box in boxes:
        assert not any(overlap(box, node) for node in nodes), box


def test_every_label_lies_within_the_picture():
    graph = dense_graph()
    for edge in graph.edges:
        if edge.label_x is not None:
            left, top, right, bottom = label_box(edge)
            assert 0 <= left and right <= graph.width and 0 <= top and bottom <= graph.height


def test_a_lone_edge_is_labelled_at_its_middle():
    root, parent = artifact("plan", 2, 0), artifact("plan", 1, 1)
    walk = Lineage(
        root=root, direction="ancestors", depth=1, limit=10, nodes=[parent],
        edges=[LineageEdge(root.pk, parent.pk, "parent")], truncated=False,
    )  # fmt: skip
    (edge,) = build_graph(root, walk, None).edges
    assert edge.label_x is not None
    start, end = edge.curve[0], edge.curve[3]
    assert min(start[0], end[0]) < edge.label_x < max(start[0], end[0])
