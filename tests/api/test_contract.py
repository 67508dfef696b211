"""SPEC §7's contract rules, over real HTTP: the schema describes every operation completely,
a present parameter is never ignored, a body field takes its JSON type only."""

import pytest

from .conftest import assert_error

MISSING = "6a3f0c1e-0000-4000-8000-000000000000"


@pytest.fixture
def schema(reader):
    return reader.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def _operations(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def _resolve(schema, node):
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


# -- the schema -------------------------------------------------------------------------------


def test_every_write_declares_its_bodies_per_media_type(schema):
    bodies = {
        (method, path): sorted(operation.get("requestBody", {}).get("content", {}))
        for method, path, operation in _operations(schema)
        if method in ("post", "patch")
    }
    assert bodies[("post", "/v1/scenes/{scene_id}/artifacts")] == ["application/json", "multipart/form-data"]
    assert bodies[("post", "/v1/stories/{story_id}/artifacts")] == ["multipart/form-data"]  # media types only
    assert bodies[("post", "/v1/scenes/{scene_id}/artifacts/batch")] == ["application/json"]
    assert bodies.pop(("post", "/v1/scenes/{scene_id}/lock")) == []
    assert bodies.pop(("post", "/v1/scenes/{scene_id}/unlock")) == []
    assert bodies.pop(("post", "/v1/comments/{comment_id}/resolve")) == []  # like unlock: no body
    assert bodies.pop(("post", "/v1/artifacts/{artifact_id}/revert")) == []  # the path names all it needs
    assert all(bodies.values()), [key for key, media in bodies.items() if not media]

    create = schema["paths"]["/v1/scenes/{scene_id}/artifacts"]["post"]["requestBody"]
    assert create["required"] is True
    json_body = _resolve(schema, create["content"]["application/json"]["schema"])
    assert json_body["discriminator"]["propertyName"] == "type"
    intent = _resolve(schema, {"$ref": json_body["discriminator"]["mapping"]["scene_intent"]})
    assert intent["properties"]["type"]["enum"] == ["scene_intent"]
    assert intent["properties"]["payload"]["required"] == ["mood", "pacing", "key_beats"]
    form = create["content"]["multipart/form-data"]
    assert form["encoding"] == {"payload": {"contentType": "application/json"}}
    upload = _resolve(schema, form["schema"])
    assert upload["properties"]["content"] == {
        "type": "string",
        "format": "binary",
        "description": upload["properties"]["content"]["description"],
    }
    assert {"type", "payload", "content"} <= set(upload["required"])


def test_content_answers_are_binary_in_their_media_types(schema):
    responses = schema["paths"]["/v1/artifacts/{artifact_id}/content"]["get"]["responses"]
    for status in ("200", "206"):
        content = responses[status]["content"]
        assert set(content) == {"application/octet-stream", "image/*", "audio/*", "video/*"}
        assert all(media["schema"] == {"type": "string", "format": "binary"} for media in content.values())
    assert {"304", "404", "410", "416", "500"} <= set(responses)


def test_the_patch_of_runs_and_steps_requires_status(schema):
    for path in ("/v1/runs/{run_id}", "/v1/runs/{run_id}/steps/{step_id}"):
        body = schema["paths"][path]["patch"]["requestBody"]
        assert body["required"] is True
        assert "status" in _resolve(schema, body["content"]["application/json"]["schema"])["required"], path


def test_descriptions_are_written_for_clients(schema):
    for method, path, operation in _operations(schema):
        assert operation.get("summary") and operation.get("description"), (method, path)
        # A mixin's docstring about the body limit once described 20 operations.
        assert "ARTIFACT_MAX_BODY_BYTES" not in operation["description"], (method, path)
        if method in ("post", "patch"):
            assert "permission" in operation["description"], (method, path)
    create_run = schema["paths"]["/v1/runs"]["post"]["description"]
    assert "`pending` unless `start`" in create_run


def test_errors_are_per_operation_enums(schema):
    transition = schema["paths"]["/v1/artifacts/{artifact_id}/transition"]["post"]["responses"]
    conflict = _resolve(schema, transition["409"]["content"]["application/json"]["schema"])
    assert set(conflict["properties"]["code"]["enum"]) == {"invalid_transition", "still_primary", "pruned", "conflict"}
    assert "`still_primary`" in transition["409"]["description"]
    lock = schema["paths"]["/v1/scenes/{scene_id}/lock"]["post"]["responses"]
    assert set(lock) >= {"200", "401", "403", "404", "503"}
    assert "503" in lock and "Retry-After" in lock["503"]["headers"]


def test_answers_link_to_the_operations_their_ids_open(schema):
    created = schema["paths"]["/v1/stories"]["post"]["responses"]["201"]["links"]
    assert created["stories_retrieve"] == {
        "operationId": "stories_retrieve",
        "parameters": {"story_id": "$response.body#/story_id"},
    }
    step = schema["paths"]["/v1/runs/{run_id}/steps"]["post"]["responses"]["201"]["links"]
    assert step["runs_steps_partial_update"]["parameters"] == {
        "run_id": "$response.body#/run_id",
        "step_id": "$response.body#/step_id",
    }


# -- strict parameters ---------------------------------------------------------------------------


def test_a_cursor_error_never_shows_pythons_words(writer, story):
    for cursor in ("\u0092O\u00c5", "w\U00104207g", "!!!", "cD0yMDI2"):
        body = assert_error(writer.get("/v1/stories", {"cursor": cursor}), 400, "invalid_cursor", "cursor")
        assert "codec" not in body["message"] and "ordinal" not in body["message"] and "(" not in body["message"]


@pytest.mark.parametrize(
    "path",
    ["/v1/stories/{story}", "/v1/stories/{story}/scenes", "/v1/artifact-types", "/v1/runs"],
)
def test_unknown_and_repeated_parameters_are_refused_by_name(writer, story, path):
    url = path.format(story=story.pk)
    assert_error(writer.get(url, {"nope": "1"}), 400, "invalid_parameter", "nope")
    assert_error(writer.get(url + "?page_size=2&page_size=3"), 400, "invalid_parameter", "page_size")


def test_a_method_the_route_lacks_is_405_whatever_its_query(writer, intent):
    response = writer.generic("TRACE", f"/v1/artifacts/{intent.pk}/lineage?depth=3")
    assert_error(response, 405, "method_not_allowed")
    assert_error(writer.put(f"/v1/artifacts/{intent.pk}?x=1", {}), 405, "method_not_allowed")


def test_booleans_and_ids_in_filters_are_strict(writer, story):
    url = f"/v1/stories/{story.pk}/links"
    assert writer.get(url, {"is_primary": "true"}).status_code == 200
    assert_error(writer.get(url, {"is_primary": "AAA"}), 400, "invalid_parameter", "is_primary")
    assert_error(writer.get(url, {"scene_id": ""}), 400, "invalid_parameter", "scene_id")
    assert_error(writer.get(url, {"scene_id": "42"}), 400, "invalid_parameter", "scene_id")


# -- JSON's own types in bodies --------------------------------------------------------------------


def test_body_fields_take_their_json_type_only(writer, story, scene, intent):
    cases = [
        ("/v1/stories", "post", {"title": 123}, "title"),
        (f"/v1/stories/{story.pk}", "patch", {"description": 5}, "description"),
        (f"/v1/stories/{story.pk}/scenes", "post", {"title": "t", "position": "3"}, "position"),
        (f"/v1/stories/{story.pk}/scenes", "post", {"title": "t", "position": 3.0}, "position"),
        ("/v1/runs", "post", {"story_id": str(story.pk), "workflow": "w", "start": "true"}, "start"),
        ("/v1/runs", "post", {"story_id": story.pk.int, "workflow": "w"}, "story_id"),
        (f"/v1/artifacts/{intent.pk}/relations", "post", {"to_artifact_id": 7, "relation_type": "variant_of"}, None),
        (f"/v1/scenes/{scene.pk}/pipeline", "post", {"force": 1}, "force"),
    ]
    for url, method, body, field in cases:
        response = getattr(writer, method)(url, body, format="json")
        assert response.status_code == 400, (url, body, response.content)
        if field:
            assert response.json()["field"] == field, (url, body, response.json())
    assert_error(writer.post(f"/v1/artifacts/{intent.pk}/transition", {"to": 1}, format="json"), 400, "invalid_choice")


def test_an_id_in_a_body_that_names_nothing_is_400_not_found(writer, story, scene):
    cases = [
        (f"/v1/stories/{story.pk}/links", {"artifact_id": MISSING, "role": "cover"}, "artifact_id"),
        (f"/v1/stories/{story.pk}/primary", {"artifact_id": MISSING, "role": "cover"}, "artifact_id"),
        ("/v1/runs", {"story_id": MISSING, "workflow": "w"}, "story_id"),
        (
            f"/v1/scenes/{scene.pk}/artifacts",
            {"type": "scene_intent", "payload": {"mood": "m", "pacing": "p", "key_beats": ["b"]}, "parent_id": MISSING},
            "parent_id",
        ),
    ]
    for url, body, field in cases:
        assert_error(writer.post(url, body, format="json"), 400, "not_found", field)
