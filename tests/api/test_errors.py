"""One JSON error shape for every failure under /v1, including Django's own."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from artifacts.models import Artifact
from tests.conftest import PNG_BYTES, SCENE_INTENT

from .conftest import assert_error

MISSING = "6a3f0c1e-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/v1/stories"),
        ("post", "/v1/stories"),
        ("get", f"/v1/artifacts/{MISSING}"),
        ("get", f"/v1/scenes/{MISSING}/artifacts/"),
        ("get", "/v1/artifact-types"),
        ("get", "/v1/artifacts/not-a-uuid"),
        ("get", "/v1/no-such-endpoint"),
    ],
)
def test_anonymous_requests_get_401_with_www_authenticate(anon, method, path):
    response = getattr(anon, method)(path)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_a_bad_token_is_401(anon):
    anon.credentials(HTTP_AUTHORIZATION="Token nope")
    assert_error(anon.get("/v1/stories"), 401, "authentication_failed")


def test_schema_docs_and_healthz_are_public(anon):
    schema = anon.get("/v1/schema")
    assert schema.status_code == 200
    assert b"/v1/scenes/{scene_id}/artifacts" in schema.content
    assert anon.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["openapi"].startswith("3.")
    docs = anon.get("/v1/docs")
    assert docs.status_code == 200
    # The docs page loads Swagger UI from this service, not a CDN: it works offline.
    assert b"drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs.content
    assert b"cdn." not in docs.content and b"unpkg" not in docs.content
    health = anon.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_session_auth_works_and_enforces_csrf_on_writes(make_user):
    make_user("sess", "stories.add_story")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="sess", password="pw-sess")
    assert client.get("/v1/stories").status_code == 200
    assert_error(client.post("/v1/stories", {"title": "t"}, format="json"), 403, "permission_denied")


@pytest.mark.parametrize(
    "path",
    ["/v1/artifacts/not-a-uuid", "/v1/artifacts/not-a-uuid/versions", "/v1/scenes/123/artifacts", "/v1/stories/x/"],
)
def test_a_malformed_id_in_the_path_is_a_json_404(writer, path):
    assert_error(writer.get(path), 404, "not_found")
    assert_error(writer.post(path, {}, format="json"), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/artifacts/{MISSING}",
        f"/v1/artifacts/{MISSING}/versions",
        f"/v1/artifacts/{MISSING}/lineage",
        f"/v1/artifacts/{MISSING}/content",
        f"/v1/artifacts/{MISSING}/relations",
        f"/v1/scenes/{MISSING}/artifacts",
        f"/v1/scenes/{MISSING}/artifacts/latest",
        f"/v1/stories/{MISSING}/artifacts",
        f"/v1/stories/{MISSING}",
        f"/v1/stories/{MISSING}/scenes",
        f"/v1/stories/{MISSING}/links",
        f"/v1/scenes/{MISSING}",
        f"/v1/runs/{MISSING}",
        f"/v1/runs/{MISSING}/steps",
        f"/v1/runs/{MISSING}/artifacts",
    ],
)
def test_an_unknown_id_in_the_path_is_404(writer, path):
    assert_error(writer.get(path), 404, "not_found")


def test_unknown_ids_in_writes_are_404_and_write_nothing(writer):
    body = {"type": "scene_intent", "payload": SCENE_INTENT}
    assert_error(writer.post(f"/v1/scenes/{MISSING}/artifacts", body, format="json"), 404, "not_found", "scene_id")
    upload = {"type": "cover_image", "payload": '{"alt": "a"}', "content": SimpleUploadedFile("c.png", PNG_BYTES)}
    assert_error(
        writer.post(f"/v1/stories/{MISSING}/artifacts", upload, format="multipart"), 404, "not_found", "story_id"
    )
    assert_error(writer.post(f"/v1/artifacts/{MISSING}/transition", {"to": "candidate"}), 404, "not_found")
    assert not Artifact.objects.exists()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_artifacts_cannot_be_replaced_edited_or_deleted(writer, intent, method):
    response = getattr(writer, method)(f"/v1/artifacts/{intent.pk}", {"payload": {}}, format="json")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]
    assert Artifact.objects.get(pk=intent.pk).payload == SCENE_INTENT


def test_a_wrong_content_type_is_415(writer, scene):
    response = writer.post(f"/v1/scenes/{scene.pk}/artifacts", "type=scene_intent", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")
    response = writer.post("/v1/stories", "title=x", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


def test_malformed_json_is_400(writer, scene):
    response = writer.post(
        f"/v1/scenes/{scene.pk}/artifacts", '{"type": "scene_intent", ', content_type="application/json"
    )
    assert_error(response, 400, "parse_error")
    assert_error(writer.post("/v1/stories", "[1, 2", content_type="application/json"), 400, "parse_error")
    assert_error(writer.post("/v1/stories", "[1, 2]", content_type="application/json"), 400, "invalid")
    assert not Artifact.objects.exists()


def test_unknown_type_and_bad_payload_are_400_with_the_field(writer, scene):
    url = f"/v1/scenes/{scene.pk}/artifacts"
    assert_error(writer.post(url, {"type": "bogus", "payload": {}}, format="json"), 400, "unknown_type")
    bad = {"type": "panel_plan", "payload": {"panels": [{"grammar_id": "g", "weight": -1, "must_show": []}]}}
    assert_error(writer.post(url, bad, format="json"), 400, "invalid_payload", "payload.panels[0].weight")
    assert_error(writer.post(url, {"type": "scene_intent", "payload": [1]}, format="json"), 400, "invalid_payload")
    assert_error(writer.post(url, {"payload": SCENE_INTENT}, format="json"), 400, "required", "type")
    with_parent = {"type": "scene_intent", "payload": SCENE_INTENT, "parent_id": "nope"}
    assert_error(writer.post(url, with_parent, format="json"), 400, "invalid", "parent_id")
    with_parent["parent_id"] = MISSING  # an id in the body that names nothing (SPEC §7)
    assert_error(writer.post(url, with_parent, format="json"), 400, "not_found", "parent_id")
    kind = {"type": "scene_intent", "payload": SCENE_INTENT, "kind": "image"}
    assert_error(writer.post(url, kind, format="json"), 400, "invalid_kind", "kind")
    assert not Artifact.objects.exists()


def test_a_body_over_the_limit_is_413_and_writes_nothing(writer, scene, settings):
    settings.ARTIFACT_MAX_BODY_BYTES = 1000
    payload = {**SCENE_INTENT, "padding": "x" * 2000}
    response = writer.post(f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": payload})
    body = assert_error(response, 413, "payload_too_large")
    assert "1000" in body["message"]
    assert not Artifact.objects.exists()


def test_djangos_own_oversized_body_error_is_413(writer, story, settings, png):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    payload = json.dumps({"alt": "x" * 500})
    response = writer.post(
        f"/v1/stories/{story.pk}/artifacts", {"type": "cover_image", "payload": payload}, format="multipart"
    )
    assert_error(response, 413, "payload_too_large")
    assert not Artifact.objects.exists()


@pytest.mark.urls("tests.api.crash_urls")
def test_djangos_own_400_404_and_500_are_json_under_v1(writer, settings):
    writer.raise_request_exception = False
    assert_error(writer.get("/v1/crash"), 500, "server_error")
    assert writer.get("/crash")["Content-Type"].startswith("text/html")

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    response = writer.post("/v1/form", "a=" + "x" * 100, content_type="application/x-www-form-urlencoded")
    assert_error(response, 413, "payload_too_large")


def test_djangos_own_404_is_json_under_v1_only(writer, rf):
    from kernel import api

    response = api.handler404(rf.get("/v1/whatever"), None)
    assert response.status_code == 404 and json.loads(response.content)["code"] == "not_found"
    assert writer.get("/nowhere").status_code == 404
    assert writer.get("/nowhere")["Content-Type"].startswith("text/html")
    assert_error(writer.get("/v1"), 404, "not_found")


# Every method on the pages that render something other than JSON (the schema's YAML, the
# docs' HTML), and on paths under /healthz that no route matches.
NOT_JSON_VIEWS = ["/v1/docs", "/v1/docs/", "/v1/schema", "/v1/schema/", "/v1/docs?format=json", "/v1/schema?format=x"]
HEALTHZ_PATHS = ["/healthz/", "/healthz/x"]


@pytest.mark.parametrize("client_name", ["anon", "writer"])
@pytest.mark.parametrize("method", ["get", "head", "options", "post", "put", "patch", "delete"])
def test_every_error_under_v1_and_healthz_is_json(request, client_name, method):
    client = request.getfixturevalue(client_name)
    for path in [*NOT_JSON_VIEWS, *HEALTHZ_PATHS]:
        response = getattr(client, method)(path)
        assert response.status_code < 500, (path, response.status_code)
        if response.status_code >= 400:
            assert response["Content-Type"] == "application/json", (path, response.status_code)
            if method != "head":
                assert_error(response, response.status_code, response.json()["code"])


def test_options_on_the_docs_describes_the_page_in_json(anon):
    """The issue's repro: ``OPTIONS /v1/docs`` was a 500 (its HTML renderer has no template for it)."""
    for path in ("/v1/docs", "/v1/schema"):
        response = anon.options(path)
        assert response.status_code == 200 and response["Content-Type"] == "application/json"
        assert "GET" in response["Allow"]
    assert_error(anon.post("/v1/docs"), 405, "method_not_allowed")
    assert_error(anon.get("/v1/docs", HTTP_ACCEPT="application/json"), 406, "not_acceptable")
    # The pages themselves are as they were.
    assert anon.get("/v1/docs")["Content-Type"].startswith("text/html")
    assert anon.get("/v1/schema")["Content-Type"].startswith("application/vnd.oai.openapi")


@pytest.mark.urls("tests.api.crash_urls")
def test_djangos_own_404_and_500_are_json_under_healthz(writer):
    writer.raise_request_exception = False
    assert_error(writer.get("/healthz/crash"), 500, "server_error")
    assert_error(writer.get("/healthz/nothing-here"), 404, "not_found")
    assert writer.get("/healthzz")["Content-Type"].startswith("text/html")  # not under /healthz
