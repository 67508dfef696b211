"""Every input a careless client or an attacker sends answers a JSON 400 and writes nothing
(SPEC §7 "Never a 500 for input"): rows and stored files are counted before and after."""

import base64
import importlib
import io
import json
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from artifacts.models import Artifact, ArtifactRelation
from audit.models import AuditEvent
from runs import services as run_services
from runs.models import AgentStep, Run, RunArtifactLink
from stories.models import Scene, Story, StoryArtifactLink
from tests.conftest import PNG_BYTES, SCENE_INTENT, make_image

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


# -- headers the service cannot use (SPEC §12) ---------------------------------------------
#
# Django reads Content-Type's charset while it builds the request, before any middleware:
# the test client itself would raise there, so these requests go through the WSGI
# application gunicorn serves (artifacts_project.wsgi), as a server hands them over.


@pytest.fixture
def wsgi(monkeypatch):
    """Call the service's WSGI application as a server does; answers (status, headers, body)."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", "x" * 50)  # the module refuses to load without one
    application = importlib.import_module("artifacts_project.wsgi").application

    def call(method, path, *, query="", content_type=None, body=b"", headers=None):
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "HTTP_HOST": "testserver",
            "wsgi.input": io.BytesIO(body),
            **({"CONTENT_LENGTH": str(len(body))} if body else {}),
            **({"CONTENT_TYPE": content_type} if content_type is not None else {}),
            **(headers or {}),
        }
        setup_testing_defaults(environ)
        started = {}

        def start_response(status, response_headers, exc_info=None):
            started["status"], started["headers"] = int(status.split()[0]), dict(response_headers)

        result = application(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        return started["status"], started["headers"], content

    return call


UNUSABLE_CONTENT_TYPES = [
    "application/json; charset=base64",
    "application/json; charset=hex",
    "text/plain; charset=zlib",
    "text/plain; charset=undefined",  # a text codec that decodes nothing
    "text/plain; charset=idna",  # one that fails on ordinary bytes
    "text/plain; charset*=nonesuch''utf-8",  # an RFC 2231 value in an unknown encoding
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content_type", UNUSABLE_CONTENT_TYPES)
def test_an_unusable_content_type_without_a_body_is_ignored_on_every_path(wsgi, make_user, scene, content_type):
    """The issue's repro: GET with ``charset=base64`` was an HTML 500 before authentication."""
    token = Token.objects.create(user=make_user("reader"))
    auth = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    status, headers, body = wsgi(
        "GET", f"/v1/scenes/{scene.pk}/artifacts", query="type=scene_intent", content_type=content_type, headers=auth
    )
    assert (status, headers["Content-Type"], json.loads(body)["results"]) == (200, "application/json", [])
    status, _, body = wsgi(
        "GET", f"/v1/scenes/{scene.pk}/artifacts", query="type=scene_intent", content_type=content_type
    )
    assert (status, json.loads(body)["code"]) == (401, "not_authenticated")
    assert wsgi("GET", "/healthz", query="x=%41", content_type=content_type)[0] == 200
    assert wsgi("GET", "/admin/", query="x=%41", content_type=content_type)[0] == 302  # to the login page


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content_type", UNUSABLE_CONTENT_TYPES)
def test_an_unusable_content_type_with_a_body_is_415_and_writes_nothing(wsgi, make_user, scene, content_type):
    token = Token.objects.create(user=make_user("writer", "artifacts.add_artifact"))
    body = json.dumps({"type": "scene_intent", "payload": SCENE_INTENT}).encode()
    status, headers, content = wsgi(
        "POST",
        f"/v1/scenes/{scene.pk}/artifacts",
        content_type=content_type,
        body=body,
        headers={"HTTP_AUTHORIZATION": f"Token {token.key}", "HTTP_X_REQUEST_ID": "charset-probe"},
    )
    assert (status, headers["Content-Type"], headers["X-Request-ID"]) == (415, "application/json", "charset-probe")
    error = json.loads(content)
    assert error["code"] == "unsupported_media_type" and error["request_id"] == "charset-probe"
    assert "cannot be read" in error["message"]
    assert not Artifact.objects.exists()
    status, headers, _ = wsgi("POST", "/admin/login/", content_type=content_type, body=b"username=a")
    assert (status, headers["Content-Type"]) == (415, "text/plain; charset=utf-8")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json; charset=nonesuch"])
def test_a_usable_or_unknown_charset_is_read_as_before(wsgi, make_user, scene, content_type):
    """An unknown charset Django already ignores (it reads UTF-8): nothing changes there."""
    token = Token.objects.create(user=make_user("writer", "artifacts.add_artifact"))
    body = json.dumps({"type": "scene_intent", "payload": SCENE_INTENT}).encode()
    status, _, _ = wsgi(
        "POST",
        f"/v1/scenes/{scene.pk}/artifacts",
        content_type=content_type,
        body=body,
        headers={"HTTP_AUTHORIZATION": f"Token {token.key}"},
    )
    assert status == 201 and Artifact.objects.count() == 1


@pytest.mark.parametrize(
    "header, status, content_range",
    [
        ("bytes=" + "9" * 5000 + "-", 416, "bytes */{size}"),  # the repro: over 4,300 digits
        ("bytes=0-" + "9" * 5000, 206, "bytes 0-{last}/{size}"),  # an end past the content: up to its end
        ("bytes=-" + "9" * 5000, 206, "bytes 0-{last}/{size}"),  # a suffix longer than the content: all of it
        ("bytes=" + "0" * 5000 + "1-2", 206, "bytes 1-2/{size}"),  # leading zeros are still 1
    ],
    ids=["start", "end", "suffix", "leading zeros"],
)
def test_a_range_of_thousands_of_digits_is_never_a_500(writer, story, header, status, content_range):
    image = make_image(story)
    size = image.content_size
    response = writer.get(f"/v1/artifacts/{image.pk}/content", HTTP_RANGE=header)
    assert response.status_code == status, response.content[:300]
    assert response["Content-Range"] == content_range.format(size=size, last=size - 1)


def test_a_416_answers_the_json_error_with_the_content_length(writer, story):
    image = make_image(story)
    response = writer.get(f"/v1/artifacts/{image.pk}/content", HTTP_RANGE=f"bytes={image.content_size}-")
    body = assert_error(response, 416, "range_not_satisfiable")
    assert str(image.content_size) in body["message"]
    assert response["Content-Range"] == f"bytes */{image.content_size}"
    assert "immutable" not in response.get("Cache-Control", "")  # an error is not cached for a year


@pytest.mark.parametrize("date", ["Sat, 29 Oct 1994 19:43:31 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "not a date"])
def test_if_unmodified_since_is_ignored_for_content_without_a_date(writer, story, date):
    """RFC 9110 §13.1.4: content has no modification date, so the header is ignored
    (it answered 412 whatever the date). If-Match, which content does have, still counts."""
    image = make_image(story)
    url = f"/v1/artifacts/{image.pk}/content"
    response = writer.get(url, HTTP_IF_UNMODIFIED_SINCE=date)
    assert response.status_code == 200 and b"".join(response.streaming_content) == PNG_BYTES
    assert writer.get(url, HTTP_IF_UNMODIFIED_SINCE=date, HTTP_IF_MATCH='"other"').status_code == 412
    assert writer.get(url, HTTP_IF_UNMODIFIED_SINCE=date, HTTP_IF_MATCH=response["ETag"]).status_code == 200
