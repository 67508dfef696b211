"""Every input a careless client or an attacker sends answers a JSON 400 and writes nothing
(SPEC §7 "Never a 500 for input"): rows and stored files are counted before and after."""

import base64
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts.models import Artifact, ArtifactRelation, AuditEvent
from runs import services as run_services
from runs.models import AgentStep, Run, RunArtifactLink
from stories.models import Scene, Story, StoryArtifactLink
from tests.conftest import PNG_BYTES, SCENE_INTENT

from .conftest import assert_error

MODELS = (Artifact, ArtifactRelation, AuditEvent, Story, Scene, StoryArtifactLink, Run, AgentStep, RunArtifactLink)


def world(media_root) -> dict:
    """What a refused request must leave as it was: every table's row count, every file."""
    counts = {model.__name__: model.objects.count() for model in MODELS}
    counts["files"] = sorted(str(p) for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []
    return counts


def nested(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def raw_json(client, url, text, method="post"):
    return getattr(client, method)(url, text, content_type="application/json")


@pytest.fixture
def run(story, scene):
    return run_services.run_create(story_id=story.pk, scene_id=scene.pk, workflow="w", start=True)


# -- JSON that a parser or a database cannot take ---------------------------------------


def test_json_nested_5000_deep_in_a_body_is_400(writer, scene, media_root):
    before = world(media_root)
    text = '{"type": "scene_intent", "payload": ' + '{"k": ' * 5000 + "1" + "}" * 5000 + "}"
    assert_error(raw_json(writer, f"/v1/scenes/{scene.pk}/artifacts", text), 400, "json_too_deep", "body")
    assert world(media_root) == before


def test_json_nested_5000_deep_in_a_multipart_payload_is_400(writer, story, media_root):
    before = world(media_root)
    response = writer.post(
        f"/v1/stories/{story.pk}/artifacts",
        {
            "type": "cover_image",
            "payload": '{"alt": ' + "[" * 5000 + "]" * 5000 + "}",
            "content": SimpleUploadedFile("c.png", PNG_BYTES, content_type="image/png"),
        },
        format="multipart",
    )
    assert_error(response, 400, "json_too_deep", "payload")
    assert world(media_root) == before


def test_a_payload_deeper_than_64_levels_is_refused_with_its_path(writer, scene, media_root):
    before = world(media_root)
    payload = {**SCENE_INTENT, "extra": nested(64)}
    body = assert_error(
        writer.post(f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": payload}, format="json"),
        400,
        "invalid_payload",
    )
    assert body["field"].startswith("payload.extra.k.k")
    assert world(media_root) == before
    ok = {**SCENE_INTENT, "extra": nested(62)}  # the payload object is level 1: 64 levels in all
    assert (
        writer.post(
            f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": ok}, format="json"
        ).status_code
        == 201
    )


@pytest.mark.parametrize(
    "where",
    ["payload", "payload key", "run params", "step input", "step output", "story title", "scene text"],
)
def test_a_lone_surrogate_anywhere_is_400(writer, story, scene, run, media_root, where):
    before = world(media_root)
    surrogate = '"bad \\ud800 text"'
    requests = {
        "payload": (
            f"/v1/scenes/{scene.pk}/artifacts",
            '{"type": "scene_intent", "payload": {"mood": ' + surrogate + ', "pacing": "p", "key_beats": ["b"]}}',
        ),
        "payload key": (
            f"/v1/scenes/{scene.pk}/artifacts",
            '{"type": "scene_intent", "payload": {"mood": "m", "pacing": "p", "key_beats": ["b"], "\\udfff": 1}}',
        ),
        "run params": ("/v1/runs", f'{{"story_id": "{story.pk}", "workflow": "w", "params": {{"a": [{surrogate}]}}}}'),
        "step input": (f"/v1/runs/{run.pk}/steps", f'{{"node": "n", "input_summary": {{"x": {surrogate}}}}}'),
        "step output": (
            f"/v1/runs/{run.pk}/steps",
            f'{{"node": "n", "status": "succeeded", "output_summary": {{"x": {surrogate}}}}}',
        ),
        "story title": ("/v1/stories", f'{{"title": {surrogate}}}'),
        "scene text": (f"/v1/stories/{story.pk}/scenes", f'{{"source_text": {surrogate}}}'),
    }
    url, text = requests[where]
    response = raw_json(writer, url, text)
    assert response.status_code == 400, response.content
    assert response.json()["code"] in ("invalid_payload", "invalid_text", "surrogate_characters_not_allowed")
    assert world(media_root) == before


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])
def test_numbers_json_cannot_carry_are_400(writer, story, scene, media_root, number):
    before = world(media_root)
    assert_error(
        raw_json(writer, "/v1/runs", f'{{"story_id": "{story.pk}", "workflow": "w", "params": {{"x": {number}}}}}'),
        400,
        "parse_error",
        "body",
    )
    assert_error(
        raw_json(
            writer,
            f"/v1/scenes/{scene.pk}/artifacts",
            f'{{"type": "render_result", "payload": {{"image_url": "u", "metadata": {{"w": {number}}}, '
            f'"generation_params": {{}}}}}}',
        ),
        400,
        "parse_error",
    )
    assert world(media_root) == before


def test_an_integer_of_thousands_of_digits_is_400(writer, story, media_root):
    before = world(media_root)
    response = raw_json(
        writer, "/v1/runs", f'{{"story_id": "{story.pk}", "workflow": "w", "params": {{"n": {"9" * 5000}}}}}'
    )
    assert_error(response, 400, "parse_error", "body")
    assert world(media_root) == before


def test_body_that_is_not_utf8_is_400(writer, story):
    response = writer.post("/v1/stories", b'{"title": "\xff\xfe"}', content_type="application/json")
    assert_error(response, 400, "parse_error", "body")


# -- integers and strings beyond their columns --------------------------------------------


def test_a_position_beyond_the_column_is_400_on_create_and_on_patch(writer, story, scene, media_root):
    before = world(media_root)
    for body in ({"position": 2_147_483_648}, {"position": 10**30}, {"position": -1}):
        assert writer.post(f"/v1/stories/{story.pk}/scenes", body, format="json").status_code == 400
        assert writer.patch(f"/v1/scenes/{scene.pk}", body, format="json").status_code == 400
    assert world(media_root) == before
    assert writer.post(f"/v1/stories/{story.pk}/scenes", {"position": 2_147_483_647}, format="json").status_code == 201
    # The next automatic position would overflow the column: refused, not stored.
    assert_error(writer.post(f"/v1/stories/{story.pk}/scenes", {}, format="json"), 400, "invalid", "position")


def test_an_attempt_beyond_the_column_is_400(writer, run, media_root):
    before = world(media_root)
    for attempt in (2_147_483_648, 0, 10**20):
        response = writer.post(f"/v1/runs/{run.pk}/steps", {"node": "n", "attempt": attempt}, format="json")
        assert response.status_code == 400 and response.json()["field"] == "attempt"
    assert world(media_root) == before


@pytest.mark.parametrize(
    "url_of, body",
    [
        (lambda s: "/v1/stories", {"title": "t" * 201}),
        (lambda s: f"/v1/stories/{s.story_id}/scenes", {"title": "t" * 201}),
        (lambda s: "/v1/runs", {"story_id": "{story}", "workflow": "w" * 101}),
    ],
    ids=["story title", "scene title", "run workflow"],
)
def test_strings_longer_than_their_column_are_400(writer, scene, media_root, url_of, body):
    before = world(media_root)
    body = {k: (str(scene.story_id) if v == "{story}" else v) for k, v in body.items()}
    response = writer.post(url_of(scene), body, format="json")
    assert response.status_code == 400 and response.json()["field"] in body
    assert world(media_root) == before


def test_step_strings_longer_than_their_column_are_400(writer, run, media_root):
    before = world(media_root)
    for body in ({"node": "n" * 101}, {"node": "n", "agent": "a" * 101}):
        response = writer.post(f"/v1/runs/{run.pk}/steps", body, format="json")
        assert response.status_code == 400, response.content
    link = {"artifact_id": "00000000-0000-0000-0000-000000000000", "stage": "s" * 101, "direction": "produced"}
    assert writer.post(f"/v1/runs/{run.pk}/artifacts", link, format="json").status_code == 400
    assert world(media_root) == before


# -- multipart parts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["image/x, text/html", "image/" + "x" * 95, "text/html", "image/png, text/html", "image"],
    ids=["a list of types", "101 characters", "html", "png then html", "no subtype"],
)
def test_a_part_type_that_is_not_one_image_type_is_400(writer, story, media_root, content_type):
    before = world(media_root)
    response = writer.post(
        f"/v1/stories/{story.pk}/artifacts",
        {
            "type": "cover_image",
            "payload": json.dumps({"alt": "x"}),
            "content": SimpleUploadedFile("c.png", PNG_BYTES, content_type=content_type),
        },
        format="multipart",
    )
    assert_error(response, 400, "invalid_content", "content")
    assert world(media_root) == before


# -- cursors --------------------------------------------------------------------------------


def _cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


LISTS = [
    "/v1/stories",
    "/v1/stories/{story}/scenes",
    "/v1/stories/{story}/links",
    "/v1/stories/{story}/artifacts",
    "/v1/scenes/{scene}/artifacts",
    "/v1/artifacts/{artifact}/versions",
    "/v1/artifacts/{artifact}/relations",
    "/v1/runs",
    "/v1/runs/{run}/steps",
    "/v1/runs/{run}/artifacts",
]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "cursor",
    ["cD1hYmM=", "bogus", _cursor("o=-1"), _cursor("o=1&r=7"), _cursor("p=99999999999999999999"), "%%%"],
    ids=["p=abc", "not base64", "negative offset", "bad direction", "huge position", "junk"],
)
def test_a_tampered_cursor_is_400_on_every_list(writer, story, scene, intent, run, path, cursor):
    url = path.format(story=story.pk, scene=scene.pk, artifact=intent.pk, run=run.pk)
    assert writer.get(url).status_code == 200
    assert_error(writer.get(url, {"cursor": cursor}), 400, "invalid_cursor", "cursor")


def test_a_cursor_the_api_made_still_works(writer, story):
    for n in range(3):
        writer.post("/v1/stories", {"title": f"s{n}"}, format="json")
    first = writer.get("/v1/stories", {"page_size": 2}).json()
    second = writer.get(first["next"])
    assert second.status_code == 200 and len(second.json()["results"]) == 2


# -- property-based: every write endpoint, hostile JSON ---------------------------------------

# Leaves a database or the JSON encoder cannot take back: lone surrogates, NUL, integers
# beyond 64 bits, strings over any column; nested to any depth around 64.
hostile_leaves = st.one_of(
    st.sampled_from(["\ud800", "\udfff", "a\x00b", "x" * 300]),
    st.integers(min_value=2**31 - 2, max_value=2**70) | st.integers(max_value=-(2**63), min_value=-(2**70)),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
)
hostile_json = st.recursive(
    hostile_leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)


def deep(value, depth):
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def hostile_value(draw):
    value = draw(hostile_json)
    return deep(value, draw(st.sampled_from([0, 0, 0, 63, 64, 65, 200])))


WRITES = [
    ("post", "/v1/scenes/{scene}/artifacts", lambda v: {"type": "scene_intent", "payload": {**SCENE_INTENT, "x": v}}),
    ("post", "/v1/scenes/{scene}/artifacts", lambda v: {"type": "scene_intent", "payload": v}),
    ("post", "/v1/scenes/{scene}/artifacts", lambda v: {"type": v, "payload": SCENE_INTENT, "parent_id": v}),
    ("post", "/v1/stories", lambda v: {"title": v, "description": v}),
    ("patch", "/v1/stories/{story}", lambda v: {"description": v}),
    ("post", "/v1/stories/{story}/scenes", lambda v: {"title": "s", "source_text": v, "position": v}),
    ("patch", "/v1/scenes/{scene}", lambda v: {"position": v}),
    ("post", "/v1/stories/{story}/links", lambda v: {"artifact_id": v, "role": v, "scene_id": v}),
    ("post", "/v1/stories/{story}/primary", lambda v: {"artifact_id": v, "role": "cover"}),
    ("post", "/v1/artifacts/{artifact}/transition", lambda v: {"to": v}),
    ("post", "/v1/artifacts/{artifact}/relations", lambda v: {"to_artifact_id": v, "relation_type": v}),
    ("post", "/v1/runs", lambda v: {"story_id": "{story}", "workflow": "w", "params": {"v": v}}),
    ("patch", "/v1/runs/{run}", lambda v: {"status": "failed", "error": v}),
    ("post", "/v1/runs/{run}/steps", lambda v: {"node": "n", "attempt": v, "input_summary": {"v": v}}),
    (
        "post",
        "/v1/runs/{run}/steps",
        lambda v: {"node": "n", "status": "failed", "output_summary": {"v": v}, "error": v},
    ),
    ("post", "/v1/runs/{run}/artifacts", lambda v: {"artifact_id": "{artifact}", "stage": v, "direction": "consumed"}),
]


@pytest.mark.parametrize("method, path, body_of", WRITES, ids=[f"{m} {p} #{i}" for i, (m, p, _) in enumerate(WRITES)])
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=hostile_value())
def test_hostile_json_on_every_write_endpoint_is_never_a_500(
    writer, story, scene, intent, run, media_root, method, path, body_of, value
):
    ids = {"story": str(story.pk), "scene": str(scene.pk), "artifact": str(intent.pk), "run": str(run.pk)}
    # As a client sends it: JSON text, with \ud800 escapes for what UTF-8 cannot carry.
    text = json.dumps(body_of(value)).replace('"{story}"', f'"{ids["story"]}"')
    text = text.replace('"{artifact}"', f'"{ids["artifact"]}"')
    before = world(media_root)
    response = raw_json(writer, path.format(**ids), text, method=method)
    assert response.status_code < 500, response.content
    assert response["Content-Type"].startswith("application/json")
    if response.status_code >= 400:
        assert world(media_root) == before
        assert response.json()["code"]
