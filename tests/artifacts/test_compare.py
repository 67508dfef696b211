"""Compare (SPEC §13): the JSON Patch between two payloads gives the second exactly, and the
admin's rows of a big diff are capped, their work linear in the payloads."""

import copy
import json

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from artifacts import compare

# JSON values: bools, ints and floats kept apart (the patch must keep them apart too).
_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
_scalars |= st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=30,
)
_objects = st.dictionaries(st.text(max_size=6), _json, max_size=6)


def exact(value) -> str:
    """A JSON text that tells true from 1 and 1 from 1.0."""
    return json.dumps(value, sort_keys=True)


@settings(max_examples=400, deadline=None)
@given(_objects, _objects)
def test_the_patch_turns_one_payload_into_the_other_exactly(a, b):
    patch = compare.payload_patch(a, b)
    json.dumps(patch)  # a JSON document, as the API sends it
    result = jsonpatch.apply_patch(copy.deepcopy(a), patch)
    assert result == b
    assert exact(result) == exact(b)


@settings(max_examples=200, deadline=None)
@given(_objects, st.data())
def test_the_patch_between_versions_that_differ_a_little_is_small(a, data):
    b = copy.deepcopy(a)
    key = data.draw(st.text(max_size=6))
    b[key] = data.draw(_json)
    patch = compare.payload_patch(a, b)
    assert exact(jsonpatch.apply_patch(copy.deepcopy(a), patch)) == exact(b)
    assert len(patch) <= 1 + len(json.dumps(a))  # no wholesale rewrite of what did not change


def test_true_and_one_are_different_values():
    patch = compare.payload_patch({"x": 1, "y": [1.0]}, {"x": True, "y": [1]})
    assert exact(jsonpatch.apply_patch({"x": 1, "y": [1.0]}, patch)) == exact({"x": True, "y": [1]})


def test_rows_name_each_changed_leaf_by_its_path_with_old_and_new_values():
    old = {"mood": "tense", "panels": [{"grammar_id": "wide", "weight": 1}], "gone": {"a": 1}}
    new = {"mood": "calm", "panels": [{"grammar_id": "wide", "weight": 2}, {"grammar_id": "close"}], "extra": []}
    comparison = compare.payload_rows(old, new)
    rows = {row.path: (row.status, row.old, row.new) for row in comparison.rows}
    assert rows == {
        "mood": ("changed", "tense", "calm"),
        "panels[0].weight": ("changed", 1, 2),
        "panels[1].grammar_id": ("added", None, "close"),
        "extra": ("added", None, []),
        "gone.a": ("removed", 1, None),
    }
    assert (comparison.added, comparison.removed, comparison.modified, comparison.unchanged) == (2, 1, 2, 1)


def test_a_long_text_shows_its_changed_words_inline_and_escaped():
    old = "The keeper climbs the stairs of the lighthouse while the storm breaks over the rocks below."
    new = "The keeper runs up the stairs of the lighthouse while the <storm> breaks over the rocks below."
    (row,) = compare.payload_rows({"text": old}, {"text": new}).rows
    assert '<del class="diff-del">climbs</del>' in row.inline
    assert '<ins class="diff-ins">runs up</ins>' in row.inline
    assert "&lt;storm&gt;" in row.inline and "<storm>" not in row.inline


def test_two_big_payloads_render_a_capped_page_and_count_the_rest():
    # Two payloads of about 1 MB, every one of 20,000 fields changed: the rows made are linear
    # in the fields and only MAX_ROWS are rendered; word diffs stay off past their bound.
    old = {f"field_{i:05d}": "x" * 40 for i in range(20_000)}
    new = {f"field_{i:05d}": "y" * 40 for i in range(20_000)}
    assert len(json.dumps(old)) > 1_000_000
    comparison = compare.payload_rows(old, new)
    assert len(comparison.rows) == compare.MAX_ROWS
    assert comparison.changed == 20_000 and comparison.hidden == 20_000 - compare.MAX_ROWS
    huge = " ".join(["word"] * compare.INLINE_DIFF_MAX_WORDS)
    assert compare.inline_word_diff(huge, huge + " more") is None


def test_a_deep_payload_flattens_without_recursion():
    deep: dict = {}
    node = deep
    for _ in range(2000):
        node["n"] = {}
        node = node["n"]
    node["leaf"] = 1
    (path,) = compare.flatten(deep)
    assert path.endswith(".leaf") and path.count(".n") == 1999


def test_a_small_payload_gets_jsonpatch_s_moves_and_a_big_one_the_linear_walk(monkeypatch):
    # An item put at the head of a list: jsonpatch says so in a few operations.
    old = {"panels": [{"n": i} for i in range(50)]}
    new = {"panels": [{"n": -1}, *old["panels"]]}
    assert len(compare.payload_patch(old, new)) <= 2
    # Two payloads of about 1 MB: one operation per changed leaf, nothing else walked twice.
    calls = []
    monkeypatch.setattr(compare.jsonpatch, "make_patch", lambda *a: calls.append(a))
    big_old = {"items": [{"i": i, "t": "x" * 60} for i in range(12_000)]}
    big_new = {"items": [{"i": i, "t": "y" * 60} for i in range(12_000)], "more": True}
    patch = compare.payload_patch(big_old, big_new)
    assert calls == [] and len(patch) == 12_001
    assert exact(jsonpatch.apply_patch(copy.deepcopy(big_old), patch)) == exact(big_new)


@settings(max_examples=100, deadline=None)
@given(_objects, _objects)
def test_the_strict_walk_alone_gives_the_other_payload_exactly(a, b):
    patch = compare._strict_patch(a, b, "")
    assert exact(jsonpatch.apply_patch(copy.deepcopy(a), patch)) == exact(b)
