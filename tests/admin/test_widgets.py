"""The JSON editor widget and the lineage graph layout, on their own."""

import json
import uuid
from types import SimpleNamespace

from django import forms

from artifacts.lineage import Lineage, LineageEdge
from artifacts.lineage_graph import NODE_W, build_graph
from artifacts.widgets import JsonEditorWidget, PrettyJSONField


class PayloadForm(forms.Form):
    payload = PrettyJSONField()


def test_editor_renders_a_textarea_with_its_toolbar_and_vendored_assets():
    html = PayloadForm(initial={"payload": {"b": 1, "a": [1, 2]}}).as_p()
    assert 'data-json-editor="1"' in html and "data-json-format" in html and "data-json-gutter" in html
    assert "&quot;b&quot;: 1" in html.split("<textarea")[1]  # stored key order kept, indented
    media = str(PayloadForm().media)
    assert "artifacts/admin/json_editor.js" in media and "artifacts/admin/json_editor.css" in media
    assert "http" not in media  # no CDN: the admin works offline


def test_pretty_field_indents_and_keeps_invalid_input_for_correction():
    field = PrettyJSONField()
    assert field.prepare_value({"a": {"b": "é"}}) == '{\n  "a": {\n    "b": "é"\n  }\n}'
    form = PayloadForm(data={"payload": '{"a": '})
    assert not form.is_valid()
    assert "{&quot;a&quot;: </textarea>" in form.as_p()  # the editor gets back what was typed


def test_pretty_field_has_changed_ignores_formatting():
    field = PrettyJSONField()
    assert not field.has_changed({"a": 1, "b": 2}, '{\n    "b": 2, "a": 1}')
    assert field.has_changed({"a": 1}, json.dumps({"a": 2}))


def test_widget_attrs_can_be_extended():
    widget = JsonEditorWidget(attrs={"rows": 5})
    assert widget.attrs["rows"] == 5 and widget.attrs["spellcheck"] == "false"


def _artifact(type_name, version, state="intermediate", depth=0):
    return SimpleNamespace(
        pk=uuid.uuid4(),
        type=type_name,
        version=version,
        lifecycle_state=state,
        kind="json",
        pruned_at=None,
        depth=depth,
    )


def _lineage(root, direction, nodes, edges, truncated=False):
    return Lineage(root=root, direction=direction, depth=3, limit=100, nodes=nodes, edges=edges, truncated=truncated)


def test_graph_places_ancestors_left_and_descendants_right_with_edges():
    root, parent, source, child = (
        _artifact("plan", 2),
        _artifact("plan", 1, depth=1),
        _artifact("intent", 1, depth=1),
        _artifact("plan", 3, depth=1),
    )
    ancestors = _lineage(
        root,
        "ancestors",
        [parent, source],
        [LineageEdge(root.pk, parent.pk, "parent"), LineageEdge(root.pk, source.pk, "derived_from")],
    )
    descendants = _lineage(root, "descendants", [child], [LineageEdge(child.pk, root.pk, "parent")])
    graph = build_graph(root, ancestors, descendants)
    x = {node.artifact.pk: node.x for node in graph.nodes}
    assert x[parent.pk] == x[source.pk] < x[root.pk] < x[child.pk]
    assert sorted(edge.kind for edge in graph.edges) == ["derived_from", "parent", "parent"]
    assert graph.width >= 3 * NODE_W and not graph.truncated
    assert [node.root for node in graph.nodes].count(True) == 1


def test_graph_says_when_the_walk_was_cut_by_its_limit():
    root = _artifact("plan", 1)
    many = [_artifact("x", i, depth=1) for i in range(1, 6)]
    graph = build_graph(root, _lineage(root, "ancestors", many, [], truncated=True), None)
    assert len(graph.nodes) == 6 and graph.truncated


def test_editor_height_follows_the_payload_within_bounds():
    def rows(payload):
        html = PayloadForm(initial={"payload": payload}).as_p()
        return int(html.split('rows="')[1].split('"')[0])

    assert rows({"a": 1}) == JsonEditorWidget.min_rows
    assert rows({"k": list(range(10))}) == 15  # 14 lines of pretty JSON + 1
    assert rows({"k": list(range(100))}) == JsonEditorWidget.max_rows
