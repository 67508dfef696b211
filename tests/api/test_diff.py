"""GET /v1/artifacts/{id}/diff?to= (SPEC §13, "Compare")."""

import copy
import uuid

import jsonpatch
import pytest
from django.utils import timezone

from artifacts import services
from artifacts.services import ArtifactService, prune_rows
from tests.api.conftest import assert_error
from tests.conftest import PNG_BYTES, SCENE_INTENT, make_image


@pytest.fixture
def versions(scene):
    first = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    second = services.artifact_edit(
        artifact_id=first.pk, payload={**SCENE_INTENT, "mood": "calm", "key_beats": ["a"], "extra": {"n": 1}}
    )
    return first, second


def test_the_patch_turns_the_payload_of_id_into_that_of_to(reader, versions):
    first, second = versions
    response = reader.get(f"/v1/artifacts/{first.pk}/diff", {"to": str(second.pk)})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["from_artifact_id"] == str(first.pk) and body["to_artifact_id"] == str(second.pk)
    assert body["content_changed"] is False
    assert jsonpatch.apply_patch(copy.deepcopy(first.payload), body["patch"]) == second.payload
    back = reader.get(f"/v1/artifacts/{second.pk}/diff?to={first.pk}").json()
    assert jsonpatch.apply_patch(copy.deepcopy(second.payload), back["patch"]) == first.payload
    assert reader.get(f"/v1/artifacts/{first.pk}/diff?to={first.pk}").json()["patch"] == []


def test_content_changed_says_whether_the_bytes_differ(reader, story):
    first = make_image(story)
    same_bytes = services.artifact_edit(artifact_id=first.pk, payload={"alt": "another description"})
    other_bytes = make_image(story, content=PNG_BYTES + b"\0")
    assert reader.get(f"/v1/artifacts/{first.pk}/diff?to={same_bytes.pk}").json()["content_changed"] is False
    assert reader.get(f"/v1/artifacts/{first.pk}/diff?to={other_bytes.pk}").json()["content_changed"] is True


def test_types_that_differ_are_400_invalid_parameter(reader, scene, versions):
    plan = ArtifactService().create_artifact(
        scene.pk, "panel_plan", {"panels": [{"grammar_id": "wide", "weight": 1, "must_show": []}]}
    )
    assert_error(reader.get(f"/v1/artifacts/{versions[0].pk}/diff?to={plan.pk}"), 400, "invalid_parameter", "to")


def test_to_missing_malformed_or_naming_nothing_is_400(reader, versions):
    url = f"/v1/artifacts/{versions[0].pk}/diff"
    assert_error(reader.get(url), 400, "invalid_parameter", "to")
    assert_error(reader.get(url, {"to": "nope"}), 400, "invalid_parameter", "to")
    assert_error(reader.get(url, {"to": ""}), 400, "invalid_parameter", "to")
    assert_error(reader.get(url, {"to": str(uuid.uuid4())}), 400, "not_found", "to")
    assert_error(reader.get(f"/v1/artifacts/{uuid.uuid4()}/diff", {"to": str(versions[0].pk)}), 404, "not_found")


def test_a_pruned_side_is_409_pruned(reader, versions):
    first, second = versions
    prune_rows([first.pk], at=timezone.now())
    assert_error(reader.get(f"/v1/artifacts/{first.pk}/diff?to={second.pk}"), 409, "pruned")
    assert_error(reader.get(f"/v1/artifacts/{second.pk}/diff?to={first.pk}"), 409, "pruned")


def test_anonymous_is_401(anon, versions):
    assert_error(anon.get(f"/v1/artifacts/{versions[0].pk}/diff?to={versions[1].pk}"), 401, "not_authenticated")


def test_the_diff_reads_both_artifacts_in_one_query(reader, versions, django_assert_num_queries):
    first, second = versions
    reader.get(f"/v1/artifacts/{first.pk}/diff?to={second.pk}")  # the session's user, cached
    # The token's user, then both artifacts at once, whatever the payloads' size.
    with django_assert_num_queries(2):
        response = reader.get(f"/v1/artifacts/{first.pk}/diff?to={second.pk}")
    assert response.status_code == 200


def test_the_schema_documents_the_diff(reader):
    schema = reader.get("/v1/schema?format=json").json()
    operation = schema["paths"]["/v1/artifacts/{artifact_id}/diff"]["get"]
    (to,) = [p for p in operation["parameters"] if p["name"] == "to"]
    assert to["required"] is True and to["schema"]["format"] == "uuid"
    codes = {
        status: set(_codes(schema, response))
        for status, response in operation["responses"].items()
        if status.startswith(("4", "5"))
    }
    assert {"invalid_parameter", "not_found"} <= codes["400"]
    assert codes["409"] == {"pruned"}
    diff = schema["components"]["schemas"]["Diff"]
    assert diff["properties"]["patch"]["items"]["properties"]["op"]["enum"][:3] == ["add", "remove", "replace"]


def _codes(schema, response):
    ref = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    return schema["components"]["schemas"][ref]["properties"]["code"]["enum"]
