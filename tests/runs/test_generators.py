"""The shipped generators (SPEC §10), chained in stage order on real scenes and artifacts.

Each stage's input is the artifact the previous stages made, stored through the service and
read back, so every payload meets its schema twice (the service refuses a bad one) and the
next generator reads it as the database returns it. Broken inputs for the QC nodes are
stored artifacts too, except weights of zero or less: the store's schema refuses those, so
they reach a generator only in memory (an unsaved Artifact).
"""

import ast
import hashlib
import io
import json
import math
import uuid
from dataclasses import dataclass, field
from itertools import combinations

import pytest
from django.urls import reverse
from django.utils.module_loading import import_string
from PIL import Image

from artifacts.models import Artifact
from artifacts.payloads import validate_payload
from artifacts.services import ArtifactService
from runs.pipeline import generators
from runs.pipeline.generators import DEFAULT_PARAMS, GENERATORS
from runs.pipeline.nodes import NODES, SHIPPED
from stories import services as story_services

PIPELINE_TYPES = [node.name for node in NODES]

# What each node reads (SPEC §10, the engine's contract); the first three read the scene text.
CONSUMES = {
    "scene_intent": (),
    "visual_plan": (),
    "dialogue_suggestions": (),
    "panel_plan": ("scene_intent", "visual_plan", "dialogue_suggestions"),
    "panel_plan_normalized": ("panel_plan",),
    "layout_template": ("panel_plan_normalized",),
    "panel_semantics": (
        "scene_intent",
        "visual_plan",
        "dialogue_suggestions",
        "panel_plan_normalized",
        "layout_template",
    ),
    "render_spec": ("scene_intent", "visual_plan", "panel_semantics"),
    "render_result": ("render_spec", "layout_template", "panel_semantics"),
    "qc_report": ("panel_plan_normalized", "layout_template", "render_result"),
    "blind_test_report": ("scene_intent", "visual_plan", "panel_semantics"),
}

SENTENCES = [
    "The storm hit the lighthouse at dusk.",
    "Mara, in her yellow oilskin, climbed the iron stairs to the lamp room.",
    "Tobin waited on the gallery with a brass lantern, his grey beard full of salt.",
    '"The light is failing," said Mara.',
    "Tobin turned, his tired eyes on the black sea.",
    "“Then we light it by hand,” he whispered.",
    "Below them, the waves broke against the rocks.",
]
SAMPLE = " ".join(SENTENCES)


@dataclass
class Ctx:
    scene: object
    inputs: dict
    params: dict = field(default_factory=dict)
    content_url: str = ""


def make_scene(source_text=SAMPLE, title="The lamp"):
    story = story_services.story_create(title="The Lighthouse")
    return story_services.scene_create(story_id=story.pk, title=title, source_text=source_text)


def run(type_name, scene, inputs, params=None, content_url="/v1/artifacts/x/content"):
    return GENERATORS[type_name](Ctx(scene, inputs, params or {}, content_url))


def store(scene, type_name, output, artifact_id=None):
    """Store a generator's output as the engine would and read it back from the database."""
    service = ArtifactService()
    if type_name == "render_result":
        payload, png, mime = output
        made = service.create_artifact(
            scene.pk, type_name, payload, kind="image", content=png, mime_type=mime, artifact_id=artifact_id
        )
    else:
        made = service.create_artifact(scene.pk, type_name, output)
    return service.get_artifact(made.pk)


def chain(scene, params=None, stop_after=None, replace=None):
    """Run the generators in stage order, each on the stored outputs of the earlier ones.

    ``replace`` maps a type to a stored artifact to use instead of running that stage."""
    made, outputs = {}, {}
    for type_name in PIPELINE_TYPES:
        if replace and type_name in replace:
            made[type_name] = replace[type_name]
            continue
        inputs = {t: made[t] for t in CONSUMES[type_name]}
        # The engine pre-assigns the id, so that render_result's payload can name its content URL.
        artifact_id = uuid.uuid4()
        url = reverse("artifact-content", kwargs={"artifact_id": artifact_id})
        output = run(type_name, scene, inputs, (params or {}).get(type_name), url)
        outputs[type_name] = output
        made[type_name] = store(scene, type_name, output, artifact_id)
        if type_name == stop_after:
            break
    return made, outputs


def payload(made, type_name):
    return made[type_name].payload


def unsaved(type_name, payload_):
    """An artifact held in memory only, for payloads the store would refuse."""
    return Artifact(type=type_name, payload=payload_, version=1)


# -- the registry ---------------------------------------------------------------------


def test_every_type_has_a_shipped_generator_at_its_dotted_path_with_version_1_and_default_params():
    assert set(SHIPPED) == set(GENERATORS) == set(DEFAULT_PARAMS) == set(CONSUMES)
    for type_name, path in SHIPPED.items():
        function = import_string(path)
        assert function is GENERATORS[type_name]
        assert function.version == "1"
    assert json.loads(json.dumps(DEFAULT_PARAMS)) == DEFAULT_PARAMS


# -- the good chain -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_whole_chain_is_schema_valid_and_stored():
    scene = make_scene()
    made, outputs = chain(scene)
    assert list(made) == list(PIPELINE_TYPES)
    for type_name, artifact in made.items():
        validate_payload(type_name, artifact.payload)
        assert artifact.version == 1
    assert made["render_result"].kind == "image"


@pytest.mark.django_db
def test_beats_follow_the_sentences_and_mood_and_pacing_come_with_their_evidence():
    intent = payload(chain(make_scene(), stop_after="scene_intent")[0], "scene_intent")
    assert intent["key_beats"] == SENTENCES
    assert intent["mood"] == "tense"  # storm, failing, broke
    assert set(intent["mood_evidence"]) >= {"storm", "failing"}
    assert intent["pacing"] in ("fast", "measured", "slow")
    assert intent["pacing_evidence"]["sentences"] == len(SENTENCES)
    assert intent["setting"] == "on the gallery"
    assert intent["atmosphere"] == ["dusk", "storm"]


@pytest.mark.django_db
def test_characters_are_the_names_with_details_from_their_sentences():
    plan = payload(chain(make_scene(), stop_after="visual_plan")[0], "visual_plan")
    by_name = {c["name"]: c["visual_details"] for c in plan["characters"]}
    # "The", "When", "Below", "Then" open sentences or quotes and are nobody.
    assert list(by_name) == ["Mara", "Tobin"]
    assert by_name["Mara"]["clothing"] == ["yellow oilskin"]
    assert "yellow" in by_name["Mara"]["colors"]
    assert "grey beard" in by_name["Tobin"]["features"]
    assert "tired eyes" in by_name["Tobin"]["features"]
    assert by_name["Tobin"]["props"] == ["lantern"]
    assert by_name["Tobin"]["mentions"] == 2


@pytest.mark.django_db
def test_dialogue_has_one_line_per_quote_with_its_speaker_and_emotion():
    lines = payload(chain(make_scene(), stop_after="dialogue_suggestions")[0], "dialogue_suggestions")["lines"]
    assert [(x["speaker"], x["text"], x["emotion"]) for x in lines] == [
        ("Mara", "The light is failing", "neutral"),  # 'said Mara'
        ("Tobin", "Then we light it by hand", "hushed"),  # curly quotes, 'he whispered' after Tobin was named
    ]
    assert [x["sentence_index"] for x in lines] == [3, 5]
    assert "said Mara" in lines[0]["speaker_source"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('"Hold the light," the keeper said.', ("keeper", "neutral")),
        ('"Who goes there?" asked the old keeper.', ("keeper", "curious")),
        ('Mara whispered, "Quiet now."', ("Mara", "hushed")),
        ('Mara leaned close: "Look!"', ("Mara", "emphatic")),
        ('"Hold on." Mara ran to the door.', ("Mara", "neutral")),
        ('"Is anyone there?"', ("narrator", "questioning")),
        ("“Wait…” said Mara softly.", ("Mara", "gentle")),
    ],
)
@pytest.mark.django_db
def test_speakers_are_found_beside_the_quote(text, expected):
    lines = payload(chain(make_scene(text), stop_after="dialogue_suggestions")[0], "dialogue_suggestions")["lines"]
    assert [(x["speaker"], x["emotion"]) for x in lines] == [expected]


@pytest.mark.django_db
def test_an_unnamed_speaker_is_a_character_too():
    scene = make_scene('The keeper wore a black coat. "Hold the light," the keeper said.')
    plan = payload(chain(scene, stop_after="visual_plan")[0], "visual_plan")
    assert [(c["name"], c["kind"]) for c in plan["characters"]] == [("keeper", "role")]
    assert plan["characters"][0]["visual_details"]["clothing"] == ["black coat"]


@pytest.mark.django_db
def test_panel_plan_has_one_panel_per_beat_with_roles_weights_and_who_must_be_shown():
    panels = payload(chain(make_scene(), stop_after="panel_plan")[0], "panel_plan")["panels"]
    assert [p["beats"] for p in panels] == [[i] for i in range(len(SENTENCES))]
    assert [p["grammar_id"] for p in panels][:1] == ["establishing"]
    assert panels[3]["grammar_id"] == panels[5]["grammar_id"] == "close_up"  # the two spoken beats
    assert panels[3]["must_show"] == ["Mara"] and panels[5]["must_show"] == ["Tobin"]
    assert panels[1]["must_show"] == ["Mara"] and panels[2]["must_show"] == ["Tobin"]
    assert panels[0]["must_show"] == []
    assert [p["dialogue_lines"] for p in panels] == [[], [], [], [0], [], [1], []]
    assert all(p["weight"] > 0 for p in panels)
    # A spoken beat weighs more than a silent one of the same length; a longer beat more than a shorter.
    assert panels[5]["weight"] > panels[4]["weight"]
    assert panels[2]["weight"] > panels[6]["weight"]


@pytest.mark.django_db
def test_past_max_panels_consecutive_beats_share_a_panel_and_none_is_lost():
    made, _ = chain(make_scene(), {"panel_plan": {"max_panels": 3}}, stop_after="panel_plan")
    panels = payload(made, "panel_plan")["panels"]
    assert [p["beats"] for p in panels] == [[0, 1, 2], [3, 4], [5, 6]]
    assert panels[0]["caption"] == " ".join(SENTENCES[:3])


@pytest.mark.django_db
def test_normalized_plan_sums_to_one_and_reports_each_check():
    made, _ = chain(make_scene(), stop_after="panel_plan_normalized")
    normalized = payload(made, "panel_plan_normalized")
    weights = [p["weight"] for p in normalized["panels"]]
    assert math.isclose(math.fsum(weights), 1, abs_tol=1e-12)
    original = [p["weight"] for p in payload(made, "panel_plan")["panels"]]
    assert all(math.isclose(w / weights[0], o / original[0]) for w, o in zip(weights, original, strict=True))
    assert normalized["qc"]["passed"] is True
    assert [c["name"] for c in normalized["qc"]["checks"]] == [
        "non_empty",
        "weights_positive_finite",
        "max_panels",
        "must_show_strings",
        "grammar_ids",
        "weights_representable",
        "weights_sum_to_one",
    ]
    assert all(c["passed"] for c in normalized["qc"]["checks"])


def _plan_artifact(scene, weights, **extra):
    panels = [{"grammar_id": "panel", "weight": w, "must_show": ["Mara"]} for w in weights]
    return ArtifactService().create_artifact(scene.pk, "panel_plan", {"panels": panels, **extra})


def _failed(checks):
    return [c["name"] for c in checks if not c["passed"]]


@pytest.mark.django_db
def test_normalization_fails_its_qc_on_too_many_panels_but_keeps_them():
    scene = make_scene()
    out = run("panel_plan_normalized", scene, {"panel_plan": _plan_artifact(scene, [1] * 12)})
    validate_payload("panel_plan_normalized", out)
    assert (out["qc"]["passed"], _failed(out["qc"]["checks"])) == (False, ["max_panels"])
    assert len(out["panels"]) == 12


@pytest.mark.django_db
def test_normalization_survives_weights_that_would_overflow_their_sum():
    scene = make_scene()
    out = run("panel_plan_normalized", scene, {"panel_plan": _plan_artifact(scene, [1e308, 1e308, 5e307])})
    validate_payload("panel_plan_normalized", out)
    assert [p["weight"] for p in out["panels"]] == pytest.approx([0.4, 0.4, 0.2])
    assert out["qc"]["passed"] is True


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "2", None, True])
@pytest.mark.django_db
def test_normalization_fails_its_qc_on_weights_the_store_would_refuse(bad):
    plan = unsaved(
        "panel_plan", {"panels": [{"grammar_id": "a", "weight": 3, "must_show": []}] * 2 + [{"weight": bad}]}
    )
    out = run("panel_plan_normalized", make_scene(), {"panel_plan": plan})
    validate_payload("panel_plan_normalized", out)  # still a plan the next node can use
    assert out["qc"]["passed"] is False
    assert _failed(out["qc"]["checks"]) == ["weights_positive_finite", "must_show_strings", "grammar_ids"]
    assert [p["weight"] for p in out["panels"]] == pytest.approx([1 / 3] * 3)


@pytest.mark.django_db
def test_normalization_of_an_empty_plan_fails_and_still_yields_a_valid_plan():
    out = run("panel_plan_normalized", make_scene(), {"panel_plan": unsaved("panel_plan", {"panels": []})})
    validate_payload("panel_plan_normalized", out)
    assert out["qc"]["passed"] is False and "non_empty" in _failed(out["qc"]["checks"])


def _area(r):
    return r["w"] * r["h"]


def _overlap(a, b):
    dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
    dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
    return max(0, dx) * max(0, dy)


@pytest.mark.parametrize("gutter", [0, 0.02, 0.1])
@pytest.mark.django_db
def test_layout_rects_are_inside_the_page_disjoint_and_sized_by_the_weights(gutter):
    made, _ = chain(make_scene(), {"layout_template": {"gutter": gutter}}, stop_after="layout_template")
    plan = payload(made, "panel_plan_normalized")["panels"]
    layout = payload(made, "layout_template")
    rects = layout["panels"]
    assert [r["panel_index"] for r in rects] == list(range(len(plan)))
    for r in rects:
        assert 0 <= r["x"] and 0 <= r["y"] and r["w"] > 0 and r["h"] > 0
        assert r["x"] + r["w"] <= 1 + 1e-9 and r["y"] + r["h"] <= 1 + 1e-9
    assert all(_overlap(a, b) < 1e-9 for a, b in combinations(rects, 2))
    total = math.fsum(_area(r) for r in rects)
    for r, p in zip(rects, plan, strict=True):
        assert _area(r) / total == pytest.approx(p["weight"], rel=1e-4)
    assert layout["template_id"] == "rows-2-2-3"
    if gutter == 0:
        assert total == pytest.approx(1, abs=1e-5)  # no gutter: the panels tile the page


@pytest.mark.parametrize("count", [1, 2, 3, 5, 9, 12])
@pytest.mark.django_db
def test_layout_has_one_rect_per_panel_for_any_count(count):
    scene = make_scene()
    plan = ArtifactService().create_artifact(
        scene.pk,
        "panel_plan_normalized",
        {
            "panels": [
                {"grammar_id": "p", "weight": (i + 1) / (count * (count + 1) / 2), "must_show": []}
                for i in range(count)
            ],
            "qc": {"passed": True, "checks": []},
        },
    )
    rects = run("layout_template", scene, {"panel_plan_normalized": plan})["panels"]
    assert len(rects) == count
    assert all(_overlap(a, b) < 1e-9 for a, b in combinations(rects, 2))
    assert all(r["x"] + r["w"] <= 1 + 1e-9 and r["y"] + r["h"] <= 1 + 1e-9 for r in rects)


@pytest.mark.django_db
def test_panel_semantics_carry_the_cast_the_lines_and_the_place():
    panels = payload(chain(make_scene(), stop_after="panel_semantics")[0], "panel_semantics")["panels"]
    assert [p["characters"] for p in panels] == [[], ["Mara"], ["Tobin"], ["Mara"], ["Tobin"], ["Tobin"], []]
    assert panels[3]["dialogue"] == [{"speaker": "Mara", "text": "The light is failing", "emotion": "neutral"}]
    assert panels[5]["dialogue"] == [{"speaker": "Tobin", "text": "Then we light it by hand", "emotion": "hushed"}]
    assert [i for i, p in enumerate(panels) if p["dialogue"]] == [3, 5]
    # The place a panel's beat names, else the scene's; the scene's weather throughout.
    assert panels[2]["environment"] == "on the gallery (dusk, storm)"
    assert panels[4]["environment"] == "on the black sea (dusk, storm)"
    assert panels[0]["environment"] == "on the gallery (dusk, storm)"
    assert all(p["environment"] for p in panels)


@pytest.mark.django_db
def test_render_spec_prompt_names_the_cast_their_look_and_the_style():
    made, _ = chain(make_scene(), {"render_spec": {"style": "watercolour"}}, stop_after="render_spec")
    spec = payload(made, "render_spec")
    assert spec["style"] == "watercolour" and "watercolour style" in spec["prompt"]
    assert [c["name"] for c in spec["characters"]] == ["Mara", "Tobin"]
    assert "Mara (yellow oilskin" in spec["prompt"] and "Tobin (grey beard" in spec["prompt"]
    assert "tense mood" in spec["prompt"] and "Panel 4, close up: Mara" in spec["prompt"]
    assert spec["reference_images"] == []


@pytest.mark.django_db
def test_render_draws_a_real_png_of_the_requested_size_stored_as_the_artifacts_content():
    made, outputs = chain(make_scene(), {"render_result": {"width": 800, "height": 600}}, stop_after="render_result")
    artifact = made["render_result"]
    result, png, mime = outputs["render_result"]
    assert mime == "image/png"
    Image.open(io.BytesIO(png)).verify()
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (800, 600))
    assert result["image_url"] == reverse("artifact-content", kwargs={"artifact_id": artifact.pk})
    assert artifact.payload["metadata"]["width"] == 800 and artifact.payload["metadata"]["panels"] == 7
    assert artifact.content_sha256 == hashlib.sha256(png).hexdigest() == result["metadata"]["sha256"]
    # Each box is drawn where the layout put it: its border is ink, the gutter beside it paper.
    layout = payload(made, "layout_template")["panels"]
    pixels = image.convert("RGB")
    for rect, box in zip(layout, result["metadata"]["panel_boxes"], strict=True):
        x0, y0, x1, y1 = box["box"]
        assert (x0, y0) == (round(rect["x"] * 800), round(rect["y"] * 600))
        assert pixels.getpixel((x0, (y0 + y1) // 2)) == (20, 20, 20)
        assert pixels.getpixel((x0 - 3, (y0 + y1) // 2)) == (255, 255, 255)


@pytest.mark.django_db
def test_render_is_byte_identical_for_the_same_inputs():
    scene = make_scene()
    made, _ = chain(scene, stop_after="panel_semantics")
    spec = store(scene, "render_spec", run("render_spec", scene, {t: made[t] for t in CONSUMES["render_spec"]}))
    inputs = {
        "render_spec": spec,
        "layout_template": made["layout_template"],
        "panel_semantics": made["panel_semantics"],
    }
    first = run("render_result", scene, inputs)
    second = run("render_result", scene, dict(inputs))
    assert first[1] == second[1] and first[0] == second[0]
    assert run("render_result", scene, inputs, {"width": 640})[1] != first[1]


@pytest.mark.django_db
def test_every_generator_is_a_pure_function_of_its_ctx():
    scene = make_scene()
    made, outputs = chain(scene)
    for type_name in PIPELINE_TYPES:
        inputs = {t: made[t] for t in CONSUMES[type_name]}
        again = run(type_name, scene, inputs, content_url=made[type_name].payload.get("image_url", ""))
        assert json.dumps(again, default=repr, sort_keys=True) == json.dumps(
            outputs[type_name], default=repr, sort_keys=True
        ), type_name


# -- QC ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_qc_passes_on_the_good_chain_with_its_metrics():
    report = payload(chain(make_scene())[0], "qc_report")
    assert (report["passed"], report["issues"]) == (True, [])
    metrics = report["metrics"]
    assert metrics["plan_panels"] == metrics["layout_panels"] == 7
    assert metrics["overlapping_pairs"] == 0 and metrics["max_area_deviation"] < 1e-3
    assert (metrics["image_width"], metrics["image_height"]) == (1024, 768)
    assert 0.8 < metrics["coverage"] <= 1
    assert all(c["passed"] for c in metrics["checks"])


def _qc(scene, made, **replace):
    inputs = {t: replace.get(t, made[t]) for t in CONSUMES["qc_report"]}
    report = run("qc_report", scene, inputs)
    validate_payload("qc_report", report)
    return report


def _codes(report):
    return sorted({issue["code"] for issue in report["issues"]})


@pytest.mark.django_db
def test_qc_fails_on_a_plan_whose_weights_do_not_sum_to_one():
    scene = make_scene()
    made, _ = chain(scene)
    # Twice the weights: the same proportions, so the layout still fits them, but a sum of 2.
    panels = [{**p, "weight": p["weight"] * 2} for p in made["panel_plan_normalized"].payload["panels"]]
    broken = ArtifactService().create_artifact(
        scene.pk, "panel_plan_normalized", {"panels": panels, "qc": {"passed": True, "checks": []}}
    )
    report = _qc(scene, made, panel_plan_normalized=broken)
    assert report["passed"] is False
    assert _codes(report) == ["weights_not_normalized"]
    assert all(issue["severity"] == "error" and issue["message"] for issue in report["issues"])


@pytest.mark.parametrize("bad", [0, -0.5])
@pytest.mark.django_db
def test_qc_fails_on_zero_or_negative_weights(bad):
    scene = make_scene()
    made, _ = chain(scene)
    panels = made["panel_plan_normalized"].payload["panels"]
    broken = unsaved(
        "panel_plan_normalized",
        {"panels": [{**panels[0], "weight": bad}, *panels[1:]], "qc": {"passed": True, "checks": []}},
    )
    report = _qc(scene, made, panel_plan_normalized=broken)
    assert report["passed"] is False
    assert _codes(report) == ["weights_invalid", "weights_not_normalized"]


@pytest.mark.django_db
def test_qc_fails_when_the_plan_failed_its_own_checks():
    scene = make_scene()
    made, _ = chain(scene)
    failed = ArtifactService().create_artifact(
        scene.pk,
        "panel_plan_normalized",
        {**made["panel_plan_normalized"].payload, "qc": {"passed": False, "checks": []}},
    )
    assert _codes(_qc(scene, made, panel_plan_normalized=failed)) == ["plan_qc_failed"]


def _layout(scene, rects):
    panels = [{"panel_index": i, "x": x, "y": y, "w": w, "h": h} for i, (x, y, w, h) in enumerate(rects)]
    return ArtifactService().create_artifact(scene.pk, "layout_template", {"template_id": "hand", "panels": panels})


def _plan(scene, weights):
    panels = [{"grammar_id": "p", "weight": w, "must_show": []} for w in weights]
    return ArtifactService().create_artifact(
        scene.pk, "panel_plan_normalized", {"panels": panels, "qc": {"passed": True, "checks": []}}
    )


def _render(scene, metadata):
    return ArtifactService().create_artifact(
        scene.pk, "render_result", {"image_url": "x", "metadata": metadata, "generation_params": {}}
    )


@pytest.mark.django_db
def test_qc_passes_a_hand_made_layout_that_is_sound():
    scene = make_scene()
    report = run(
        "qc_report",
        scene,
        {
            "panel_plan_normalized": _plan(scene, [0.5, 0.25, 0.25]),
            "layout_template": _layout(scene, [(0, 0, 1, 0.5), (0, 0.5, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)]),
            "render_result": _render(scene, {"width": 100, "height": 100, "panels": 3}),
        },
    )
    assert (report["passed"], report["issues"], report["metrics"]["coverage"]) == (True, [], 1)


@pytest.mark.parametrize(
    "rects, codes",
    [
        # Two panels overlapping by a quarter of the page: each value alone is inside [0, 1].
        ([(0, 0, 0.75, 0.5), (0.25, 0, 0.75, 0.5), (0, 0.5, 1, 0.5)], ["area_not_proportional", "rects_overlap"]),
        # One reaching past the right edge.
        ([(0, 0, 1, 0.5), (0, 0.5, 0.5, 0.5), (0.8, 0.5, 0.5, 0.5)], ["rect_out_of_bounds"]),
        # A panel of no size.
        ([(0, 0, 1, 0.5), (0, 0.5, 0.5, 0.5), (0.5, 0.5, 0, 0.5)], ["area_not_proportional", "rect_out_of_bounds"]),
        # Sound geometry, but areas that ignore the weights.
        ([(0, 0, 1, 0.25), (0, 0.25, 0.5, 0.75), (0.5, 0.25, 0.5, 0.75)], ["area_not_proportional"]),
        # Too little of the page used.
        ([(0, 0, 0.4, 0.2), (0, 0.2, 0.2, 0.2), (0.2, 0.2, 0.2, 0.2)], ["low_coverage"]),
        # A rect missing.
        ([(0, 0, 1, 0.5), (0, 0.5, 1, 0.5)], ["panel_count_mismatch"]),
    ],
)
@pytest.mark.django_db
def test_qc_fails_on_a_broken_layout_with_the_right_issue(rects, codes):
    scene = make_scene()
    report = run(
        "qc_report",
        scene,
        {
            "panel_plan_normalized": _plan(scene, [0.5, 0.25, 0.25]),
            "layout_template": _layout(scene, rects),
            "render_result": _render(scene, {"width": 100, "height": 100, "panels": len(rects)}),
        },
    )
    validate_payload("qc_report", report)
    assert report["passed"] is False
    assert _codes(report) == codes


@pytest.mark.django_db
def test_qc_fails_on_duplicate_panel_indexes_and_a_render_without_a_size():
    scene = make_scene()
    layout = ArtifactService().create_artifact(
        scene.pk,
        "layout_template",
        {
            "template_id": "hand",
            "panels": [
                {"panel_index": 0, "x": 0, "y": 0, "w": 1, "h": 0.5},
                {"panel_index": 0, "x": 0, "y": 0.5, "w": 1, "h": 0.5},
            ],
        },
    )
    report = run(
        "qc_report",
        scene,
        {
            "panel_plan_normalized": _plan(scene, [0.5, 0.5]),
            "layout_template": layout,
            "render_result": _render(scene, {"panels": 2}),
        },
    )
    assert _codes(report) == ["image_size_missing", "panel_index_mismatch"]


# -- the blind test -------------------------------------------------------------------


@pytest.mark.django_db
def test_blind_score_is_high_when_the_panels_show_every_beat_and_character():
    report = payload(chain(make_scene())[0], "blind_test_report")
    assert 0.9 <= report["clarity_score"] <= 1
    assert report["metrics"]["beat_coverage"] == report["metrics"]["character_coverage"] == 1
    # The two panels with no one in them are the only confusions.
    assert report["confusions"] == ["panel 1 shows nobody", "panel 7 shows nobody"]
    assert report["summary"].startswith("7 of 7 key beats and 2 of 2 characters")


@pytest.mark.django_db
def test_blind_score_drops_when_panels_miss_beats_and_characters():
    scene = make_scene()
    made, _ = chain(scene)
    good = made["blind_test_report"].payload["clarity_score"]
    panels = made["panel_semantics"].payload["panels"]
    # Keep only the first three panels, and take Tobin out of them.
    thin = [{**p, "characters": [c for c in p["characters"] if c != "Tobin"]} for p in panels[:3]]
    thin[2]["caption"] = ""
    semantics = ArtifactService().create_artifact(scene.pk, "panel_semantics", {"panels": thin})
    inputs = {"scene_intent": made["scene_intent"], "visual_plan": made["visual_plan"], "panel_semantics": semantics}
    report = run("blind_test_report", scene, inputs)
    validate_payload("blind_test_report", report)
    assert 0 <= report["clarity_score"] < good - 0.3
    assert "Tobin never appears in a panel" in report["confusions"]
    assert any(c.startswith("beat 4 is not shown") for c in report["confusions"])
    assert report["metrics"]["character_coverage"] == 0.5
    # Empty panels are worse still, and no panels at all is zero.
    nothing = ArtifactService().create_artifact(
        scene.pk,
        "panel_semantics",
        {"panels": [{"panel_index": 0, "characters": [], "environment": "", "dialogue": []}]},
    )
    emptier = run("blind_test_report", scene, {**inputs, "panel_semantics": nothing})
    assert emptier["clarity_score"] < report["clarity_score"] and "panel 1 shows nothing" in emptier["confusions"]
    none = ArtifactService().create_artifact(scene.pk, "panel_semantics", {"panels": []})
    assert run("blind_test_report", scene, {**inputs, "panel_semantics": none})["clarity_score"] == 0


# -- edge cases -----------------------------------------------------------------------

EDGE_TEXTS = {
    "empty": "",
    "whitespace and punctuation": "  \n\n ... !? ",
    "no names": "the rain fell on the roof. a door banged somewhere below. nobody came.",
    "no quotes": "Mara climbed the stairs. Tobin waited. The lamp was dark.",
    "names only at sentence starts": "Rain fell. Wind rose. Nothing moved.",
    "unicode": "Élodie, en manteau rouge, attendait Zoë près du phare. “Où est la lumière?” demanda Élodie. "
    "Zoë’s green scarf flapped — “Ici !” cried Zoë. 東京で会いましょう。",
    "unbalanced quote": 'Mara said "wait for me and ran on. Tobin stayed.',
    "one long word": "A" * 3000,
    "many sentences": " ".join(f"Mara saw ship {i} pass the rocks." for i in range(40)),
}


@pytest.mark.parametrize("name", list(EDGE_TEXTS))
@pytest.mark.django_db
def test_edge_case_texts_give_a_valid_chain_and_a_real_png(name):
    made, outputs = chain(make_scene(EDGE_TEXTS[name]))
    for type_name, artifact in made.items():
        validate_payload(type_name, artifact.payload)
    assert payload(made, "scene_intent")["key_beats"]
    Image.open(io.BytesIO(outputs["render_result"][1])).verify()
    assert payload(made, "qc_report")["passed"] is True
    assert 0 <= payload(made, "blind_test_report")["clarity_score"] <= 1
    assert len(payload(made, "panel_plan")["panels"]) <= DEFAULT_PARAMS["panel_plan"]["max_panels"]


@pytest.mark.django_db
def test_edge_cases_read_as_expected():
    def read(text, type_name):
        return payload(chain(make_scene(text, title="Night watch"), stop_after=type_name)[0], type_name)

    assert read("", "scene_intent")["key_beats"] == ["Night watch"]  # no sentence: the title is the beat
    assert read("", "scene_intent")["beat_source"] == "title"
    assert read(EDGE_TEXTS["no names"], "visual_plan")["characters"] == []
    assert read(EDGE_TEXTS["names only at sentence starts"], "visual_plan")["characters"] == []
    assert read(EDGE_TEXTS["no quotes"], "dialogue_suggestions")["lines"] == []
    assert [c["name"] for c in read(EDGE_TEXTS["no quotes"], "visual_plan")["characters"]] == ["Mara", "Tobin"]
    unicode_lines = read(EDGE_TEXTS["unicode"], "dialogue_suggestions")["lines"]
    assert [(x["speaker"], x["text"]) for x in unicode_lines] == [("narrator", "Où est la lumière?"), ("Zoë", "Ici !")]
    unicode_cast = read(EDGE_TEXTS["unicode"], "visual_plan")["characters"]
    assert [c["name"] for c in unicode_cast] == ["Élodie", "Zoë"]
    assert unicode_cast[1]["visual_details"]["clothing"] == ["green scarf"]
    assert read(EDGE_TEXTS["many sentences"], "panel_plan")["panels"][0]["beats"] == [0, 1, 2, 3, 4]


@pytest.mark.django_db
def test_a_scene_without_a_title_or_text_is_named_by_its_position():
    scene = make_scene("", title="")
    assert run("scene_intent", scene, {})["key_beats"] == [f"Scene {scene.position}"]


# -- params ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "type_name, params",
    [
        ("panel_plan", {"max_panels": 0}),
        ("panel_plan", {"max_panels": "9"}),
        ("layout_template", {"gutter": -0.1}),
        ("render_result", {"width": 10}),
        ("render_result", {"height": 2.5}),
        ("render_spec", {"style": ""}),
        ("render_spec", {"reference_images": "a.png"}),
        ("qc_report", {"min_coverage": float("nan")}),
    ],
)
@pytest.mark.django_db
def test_a_bad_param_is_an_error_that_names_it(type_name, params):
    scene = make_scene()
    made, _ = chain(scene)
    with pytest.raises(ValueError, match=next(iter(params))):
        run(type_name, scene, {t: made[t] for t in CONSUMES[type_name]}, params)


@pytest.mark.django_db
def test_a_missing_input_is_an_error_that_names_it():
    with pytest.raises(ValueError, match="panel_plan"):
        run("panel_plan_normalized", make_scene(), {})


def test_the_generators_import_no_database_settings_storage_or_clock():
    # What a generator may read is ctx; its modules import only the standard library's pure parts and Pillow.
    allowed = {"__future__", "hashlib", "math", "re", "io", "bisect", "dataclasses", "itertools", "typing"}
    allowed |= {"collections.abc"}
    allowed |= {"PIL", "runs.pipeline"}
    for module in (generators, generators.text, generators.render):
        tree = ast.parse(open(module.__file__, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["runs.pipeline" if node.level else node.module]
            else:
                continue
            assert all(name in allowed for name in names), (module.__name__, names)


# -- numbers no float holds -------------------------------------------------------------

HUGE = 10**400  # a JSON number the payload schemas take (the store keeps it), beyond any float


@pytest.mark.django_db
def test_a_stored_weight_no_float_holds_fails_normalization_naming_the_field():
    scene = make_scene()
    plan = _plan_artifact(scene, [1, HUGE])  # schema-valid: stored as it is
    with pytest.raises(ValueError, match=r"^panel_plan\.panels\[1\]\.weight is too large"):
        run("panel_plan_normalized", scene, {"panel_plan": plan})


@pytest.mark.django_db
def test_the_layout_and_the_qc_name_a_normalized_weight_no_float_holds():
    scene = make_scene()
    plan = _plan(scene, [0.5, HUGE])
    with pytest.raises(ValueError, match=r"^panel_plan_normalized\.panels\[1\]\.weight is too large"):
        run("layout_template", scene, {"panel_plan_normalized": plan})
    inputs = {
        "panel_plan_normalized": plan,
        "layout_template": _layout(scene, [(0, 0, 1, 0.5), (0, 0.5, 1, 0.5)]),
        "render_result": _render(scene, {"width": 100, "height": 100, "panels": 2}),
    }
    with pytest.raises(ValueError, match=r"^panel_plan_normalized\.panels\[1\]\.weight is too large"):
        run("qc_report", scene, inputs)


@pytest.mark.django_db
def test_the_render_and_the_qc_name_a_rect_coordinate_no_float_holds():
    scene = make_scene()
    made, _ = chain(scene, stop_after="render_result")
    rects = [
        {"panel_index": 0, "x": 0, "y": 0, "w": 1, "h": 0.5},
        {"panel_index": 1, "x": HUGE, "y": 0.5, "w": 1, "h": 0.5},
    ]
    layout = unsaved("layout_template", {"template_id": "hand", "panels": rects})
    render_inputs = {
        "render_spec": made["render_spec"],
        "layout_template": layout,
        "panel_semantics": made["panel_semantics"],
    }
    with pytest.raises(ValueError, match=r"^layout_template\.panels\[1\]\.x is too large"):
        run("render_result", scene, render_inputs)
    qc_inputs = {
        "panel_plan_normalized": _plan(scene, [0.5, 0.5]),
        "layout_template": layout,
        "render_result": _render(scene, {"width": 100, "height": 100, "panels": 2}),
    }
    with pytest.raises(ValueError, match=r"^layout_template\.panels\[1\]\.x is too large"):
        run("qc_report", scene, qc_inputs)


@pytest.mark.parametrize("type_name, key", [("layout_template", "gutter"), ("render_result", "width")])
@pytest.mark.django_db
def test_a_param_no_float_holds_is_an_error_that_names_it(type_name, key):
    scene = make_scene()
    made, _ = chain(scene, stop_after="render_spec")
    with pytest.raises(ValueError, match=f"param {key} must be"):
        run(type_name, scene, {t: made.get(t) for t in CONSUMES[type_name]}, {key: HUGE})
