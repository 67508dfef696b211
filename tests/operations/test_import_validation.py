"""The import's fast payload check never accepts what the service's validator refuses, and
refuses with the service's own message (artifacts.payloads.surely_valid / check_payload)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifacts.payloads import ARTIFACT_TYPES, check_payload, surely_valid, validate_payload
from kernel.errors import ArtifactError

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from([0.0, 1.0, 0.5, -0.0, 2**40])
    | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated(draw, value):
    """``value`` with some parts kept, some replaced by any JSON, some keys dropped or added."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(JSON)
    if isinstance(value, dict):
        result = {key: draw(mutated(item)) for key, item in value.items() if draw(st.integers(0, 7))}
        if draw(st.booleans()):
            result[draw(st.text(max_size=4))] = draw(JSON)
        return result
    if isinstance(value, list):
        items = [draw(mutated(item)) for item in value]
        return items + draw(st.lists(JSON, max_size=2)) if choice == 1 else items[: draw(st.integers(0, len(items)))]
    return value if choice > 2 else draw(JSON)


def validity(type_name, payload) -> bool:
    return ARTIFACT_TYPES[type_name].validator.is_valid(payload)


@pytest.mark.parametrize("type_name", list(ARTIFACT_TYPES))
def test_every_registered_example_takes_the_fast_path(type_name):
    artifact_type = ARTIFACT_TYPES[type_name]
    assert surely_valid(artifact_type.schema, artifact_type.example)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), type_name=st.sampled_from(list(ARTIFACT_TYPES)))
def test_the_fast_check_accepts_only_what_jsonschema_accepts(data, type_name):
    payload = data.draw(mutated(ARTIFACT_TYPES[type_name].example))
    if surely_valid(ARTIFACT_TYPES[type_name].schema, payload):
        assert validity(type_name, payload), payload


@settings(max_examples=200, deadline=None)
@given(data=st.data(), type_name=st.sampled_from(list(ARTIFACT_TYPES)))
def test_refusals_are_the_services_own(data, type_name):
    payload = data.draw(mutated(ARTIFACT_TYPES[type_name].example))
    try:
        validate_payload(type_name, payload)
        expected = None
    except ArtifactError as exc:
        expected = exc.message
    try:
        check_payload(ARTIFACT_TYPES[type_name], payload)
        got = None
    except ArtifactError as exc:
        got = exc.message
    assert got == expected


def test_integers_as_floats_and_booleans_as_numbers_go_to_jsonschema():
    schema = ARTIFACT_TYPES["layout_template"].schema
    panel = {"panel_index": 0, "x": 0, "y": 0, "w": 1, "h": 1}
    as_float = {"template_id": "t", "panels": [{**panel, "panel_index": 0.0}]}
    assert not surely_valid(schema, as_float) and validity(
        "layout_template", as_float
    )  # JSON Schema: 0.0 is an integer
    as_bool = {"template_id": "t", "panels": [{**panel, "x": True}]}
    assert not surely_valid(schema, as_bool) and not validity("layout_template", as_bool)
