"""The fingerprint's encoding is typed, delimited and complete (SPEC §10): different inputs
never share one, the same inputs always do."""

import uuid

import pytest

from runs.pipeline import fingerprint as fp

A, B = uuid.UUID(int=1), uuid.UUID(int=2)


def of(**changes):
    base = {
        "node": "panel_plan",
        "generator": "runs.pipeline.generators.panel_plan",
        "generator_version": "1",
        "inputs": {"scene_intent": A},
        "text_sha256": None,
        "params": {"max_panels": 6},
    }
    return fp.fingerprint(fp.basis(**{**base, **changes}))


def test_the_same_basis_gives_the_same_fingerprint_whatever_the_order_of_keys():
    assert of() == of()
    assert of(params={"a": 1, "b": 2}) == of(params={"b": 2, "a": 1})
    assert of(inputs={"x": A, "y": B}) == of(inputs={"y": B, "x": A})


@pytest.mark.parametrize(
    "left, right",
    [
        ({"inputs": {"ab": A}}, {"inputs": {"a": A}}),
        ({"params": {"a": "bc"}}, {"params": {"ab": "c"}}),  # joined without a delimiter these collide
        ({"params": {"n": 1}}, {"params": {"n": "1"}}),  # typed: a number is not a string
        ({"params": {"n": 1}}, {"params": {"n": 1.5}}),
        ({"params": {"n": None}}, {"params": {}}),
        ({"params": {"deep": {"a": {"b": {"c": [1, 2]}}}}}, {"params": {"deep": {"a": {"b": {"c": [2, 1]}}}}}),
        ({"generator_version": "1"}, {"generator_version": "2"}),
        ({"generator": "a.b"}, {"generator": "a.c"}),
        ({"text_sha256": None}, {"text_sha256": ""}),
        ({"inputs": {"scene_intent": A}}, {"inputs": {"scene_intent": B}}),
        ({"node": "panel_plan"}, {"node": "panel_plan_normalized"}),
    ],
)
def test_any_difference_in_any_part_changes_the_fingerprint(left, right):
    assert of(**left) != of(**right)


def test_differences_name_what_changed():
    before = fp.basis(node="n", generator="g", generator_version="1", inputs={"a": A}, text_sha256="t", params={"p": 1})
    after = fp.basis(node="n", generator="g", generator_version="2", inputs={"a": B}, text_sha256="u", params={"p": 2})
    assert fp.differences(before, after) == [
        "generator version changed (1 -> 2)",
        "input a changed",
        "the scene text changed",
        "params changed (p)",
    ]
    assert fp.differences(None, after) == ["it was made outside the pipeline"]
