import pytest

from artifacts.payloads import ARTIFACT_TYPES, PLANNING_TYPES, validate_payload
from kernel.errors import InvalidPayload, UnknownType

PIPELINE_TYPES = [
    "scene_intent",
    "panel_plan",
    "panel_plan_normalized",
    "layout_template",
    "panel_semantics",
    "render_spec",
    "render_result",
    "qc_report",
    "blind_test_report",
    "dialogue_suggestions",
    "visual_plan",
]


def test_registry_has_the_eleven_pipeline_types_and_three_media_types():
    assert set(ARTIFACT_TYPES) == {*PIPELINE_TYPES, "cover_image", "audio_track", "video_render"}
    assert PLANNING_TYPES == {
        "scene_intent",
        "panel_plan",
        "panel_plan_normalized",
        "layout_template",
        "panel_semantics",
        "dialogue_suggestions",
        "visual_plan",
    }


@pytest.mark.parametrize("name", sorted(ARTIFACT_TYPES))
def test_every_example_payload_is_valid_and_extra_fields_are_allowed(name):
    validate_payload(name, {**ARTIFACT_TYPES[name].example, "extra_field": {"anything": [1, 2]}})


BAD_PAYLOADS = [
    ("scene_intent", {"mood": "m", "pacing": "p"}, "payload.key_beats"),
    ("scene_intent", {"mood": "m", "pacing": "p", "key_beats": []}, "payload.key_beats"),
    ("scene_intent", {"mood": 3, "pacing": "p", "key_beats": ["a"]}, "payload.mood"),
    ("panel_plan", {"panels": []}, "payload.panels"),
    ("panel_plan", {"panels": [{"grammar_id": "g", "weight": 0, "must_show": []}]}, "payload.panels[0].weight"),
    ("panel_plan", {"panels": [{"grammar_id": "g", "weight": 1, "must_show": [1]}]}, "payload.panels[0].must_show[0]"),
    (
        "panel_plan_normalized",
        {"panels": [{"grammar_id": "g", "weight": 1, "must_show": []}], "qc": {"passed": "yes", "checks": []}},
        "payload.qc.passed",
    ),
    (
        "layout_template",
        {"template_id": "t", "panels": [{"panel_index": 0, "x": 0, "y": 0, "w": 1.5, "h": 1}]},
        "payload.panels[0].w",
    ),
    (
        "layout_template",
        {"template_id": "t", "panels": [{"panel_index": "0", "x": 0, "y": 0, "w": 1, "h": 1}]},
        "payload.panels[0].panel_index",
    ),
    (
        "panel_semantics",
        {"panels": [{"panel_index": 0, "characters": [], "dialogue": []}]},
        "payload.panels[0].environment",
    ),
    (
        "render_spec",
        {"prompt": "p", "style": "s", "characters": [], "reference_images": [3]},
        "payload.reference_images[0]",
    ),
    ("render_result", {"image_url": "u", "metadata": [], "generation_params": {}}, "payload.metadata"),
    (
        "qc_report",
        {"passed": True, "issues": [{"code": "c", "message": "m"}], "metrics": {}},
        "payload.issues[0].severity",
    ),
    ("blind_test_report", {"clarity_score": 1.2, "summary": "s", "confusions": []}, "payload.clarity_score"),
    ("dialogue_suggestions", {"lines": [{"speaker": "a", "text": "b"}]}, "payload.lines[0].emotion"),
    ("visual_plan", {"characters": [{"name": "a", "visual_details": "tall"}]}, "payload.characters[0].visual_details"),
    ("cover_image", {}, "payload.alt"),
]


@pytest.mark.parametrize(("type_name", "payload", "path"), BAD_PAYLOADS)
def test_bad_payload_names_the_offending_field_path(type_name, payload, path):
    with pytest.raises(InvalidPayload) as excinfo:
        validate_payload(type_name, payload)
    assert excinfo.value.field == path
    assert excinfo.value.code == "invalid_payload"


@pytest.mark.parametrize("payload", [[], "text", None, 3])
def test_payload_must_be_an_object(payload):
    with pytest.raises(InvalidPayload):
        validate_payload("scene_intent", payload)


def test_unknown_type_is_refused_with_its_code():
    with pytest.raises(UnknownType) as excinfo:
        validate_payload("storyboard", {})
    assert excinfo.value.code == "unknown_type"
