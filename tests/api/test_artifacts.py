"""Artifact endpoints of SPEC §7: streams, detail, latest, versions, lineage, content,
transitions, relations and types, over real HTTP with token auth."""

import json

import pytest
from django.utils import timezone

from artifacts import services as artifact_services
from artifacts.models import Artifact, ArtifactRelation
from artifacts.services import ArtifactService
from audit.models import AuditEvent
from stories import services as story_services
from tests.conftest import SCENE_INTENT

from .conftest import assert_error

PANEL_PLAN = {"panels": [{"grammar_id": "establishing", "weight": 1.5, "must_show": ["lighthouse"]}]}


def scene_url(scene, suffix=""):
    return f"/v1/scenes/{scene.pk}/artifacts{suffix}"


@pytest.mark.parametrize("slash", ["", "/"])
def test_seed_endpoints_answer_with_and_without_trailing_slash_without_redirect(writer, scene, intent, slash):
    listing = writer.get(scene_url(scene, slash))
    assert listing.status_code == 200
    assert [a["artifact_id"] for a in listing.json()["results"]] == [str(intent.pk)]

    detail = writer.get(f"/v1/artifacts/{intent.pk}{slash}")
    assert detail.status_code == 200
    assert detail.json()["payload"] == SCENE_INTENT

    posted = writer.post(scene_url(scene, slash), {"type": "scene_intent", "payload": SCENE_INTENT}, format="json")
    assert posted.status_code == 201
    assert posted.json()["version"] == 2

    assert_error(writer.post(f"/v1/artifacts/{intent.pk}{slash}", {}, format="json"), 405, "method_not_allowed")


def test_create_returns_201_with_location_and_fields_named_by_spec(writer, scene, intent):
    response = writer.post(
        scene_url(scene), {"type": "scene_intent", "payload": SCENE_INTENT}, format="json", HTTP_X_REQUEST_ID="req-42"
    )
    assert response.status_code == 201
    body = response.json()
    assert response["Location"] == f"http://testserver/v1/artifacts/{body['artifact_id']}"
    assert body["scene_id"] == str(scene.pk)
    assert body["story_id"] == str(scene.story_id)
    assert body["parent_id"] == str(intent.pk)
    assert body["version"] == 2
    assert body["kind"] == "json"
    assert body["lifecycle_state"] == "intermediate"
    assert body["request_id"] == "req-42"
    assert body["pruned_at"] is None
    assert body["content_url"] is None
    assert Artifact.objects.get(pk=body["artifact_id"]).request_id == "req-42"


def test_explicit_parent_branches_from_an_older_version(writer, scene, intent):
    writer.post(scene_url(scene), {"type": "scene_intent", "payload": SCENE_INTENT}, format="json")
    branched = writer.post(
        scene_url(scene),
        {"type": "scene_intent", "payload": {**SCENE_INTENT, "mood": "calm"}, "parent_id": str(intent.pk)},
        format="json",
    )
    assert branched.status_code == 201
    assert branched.json()["version"] == 3
    assert branched.json()["parent_id"] == str(intent.pk)


def test_payload_round_trips_exactly(writer, scene):
    payload = {
        **SCENE_INTENT,
        "key_beats": ["la porte grince 🚪", "光が消える", "ß\u00e9\u0301"],
        "nested": {"deep": [{"a": [1, 2, {"b": None}]}, [], {}], "flag": False},
        "numbers": {"int": 9007199254740993, "neg": -17, "float": 0.1, "exp": 1.5e-10, "zero": 0},
        "empty": "",
    }
    created = writer.post(scene_url(scene), {"type": "scene_intent", "payload": payload}, format="json")
    assert created.status_code == 201
    fetched = writer.get(f"/v1/artifacts/{created.json()['artifact_id']}")
    assert json.loads(fetched.content)["payload"] == payload
    assert fetched.json()["payload"]["numbers"]["int"] == 9007199254740993


def test_list_filters_by_type_state_kind_request_id_and_created_at(writer, scene, intent, service):
    plan = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
    artifact_services.artifact_transition(artifact_id=plan.pk, to="candidate")
    other = ArtifactService(request_id="special").create_artifact(scene.pk, "panel_plan", PANEL_PLAN)

    def ids(query):
        response = writer.get(scene_url(scene), query)
        assert response.status_code == 200, response.content
        return {a["artifact_id"] for a in response.json()["results"]}

    assert ids({"type": "panel_plan"}) == {str(plan.pk), str(other.pk)}
    assert ids({"lifecycle_state": "candidate"}) == {str(plan.pk)}
    assert ids({"kind": "json"}) == {str(intent.pk), str(plan.pk), str(other.pk)}
    assert ids({"kind": "image"}) == set()
    assert ids({"request_id": "special"}) == {str(other.pk)}
    assert ids({"created_at_after": other.created_at.isoformat()}) == {str(other.pk)}
    assert ids({"created_at_before": intent.created_at.isoformat()}) == {str(intent.pk)}

    assert_error(writer.get(scene_url(scene), {"type": "nonsense"}), 400, "unknown_type", "type")
    for query, field in [
        ({"lifecycle_state": "gone"}, "lifecycle_state"),
        ({"kind": "JSON"}, "kind"),
        ({"created_at_after": "yesterday"}, "created_at_after"),
        ({"created_at_before": "2026-13-01T00:00:00Z"}, "created_at_before"),
        ({"request_id": ""}, "request_id"),  # present and empty: never "no filter"
        ({"page_size": "abc"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "-5"}, "page_size"),
        ({"page_size": "501"}, "page_size"),
        ({"page_size": "5.0"}, "page_size"),
        ({"fields": "artifact_id,nope"}, "fields"),
        ({"stroy_id": "x"}, "stroy_id"),  # a misspelt filter is not silently ignored
    ]:
        assert_error(writer.get(scene_url(scene), query), 400, "invalid_parameter", field)
    assert_error(writer.get(scene_url(scene) + "?kind=json&kind=image"), 400, "invalid_parameter", "kind")


def test_list_is_cursor_paginated_newest_first(writer, scene, service):
    made = [service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT) for _ in range(5)]
    seen, url = [], scene_url(scene) + "?page_size=2"
    while url:
        page = writer.get(url)
        assert page.status_code == 200
        seen += [a["version"] for a in page.json()["results"]]
        url = page.json()["next"]
    assert seen == [a.version for a in reversed(made)]
    assert_error(writer.get(scene_url(scene), {"cursor": "bogus"}), 400, "invalid_cursor", "cursor")


def test_fields_leave_the_payloads_out_of_every_page(writer, scene, service):
    made = [service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT) for _ in range(3)]
    for query in ("fields=version&fields=lifecycle_state", "fields=version,lifecycle_state"):
        seen, url = [], scene_url(scene) + f"?page_size=2&{query}"
        while url:
            page = writer.get(url)
            assert page.status_code == 200, page.content
            seen += page.json()["results"]
            url = page.json()["next"]
        assert seen == [
            {"artifact_id": str(a.pk), "version": a.version, "lifecycle_state": "intermediate"} for a in reversed(made)
        ]
    versions = writer.get(f"/v1/artifacts/{made[0].pk}/versions", {"fields": "payload", "page_size": 1})
    assert versions.json()["results"] == [{"artifact_id": str(made[0].pk), "payload": SCENE_INTENT}]
    latest = writer.get(scene_url(scene, "/latest"), {"fields": "type"})
    assert latest.json() == [{"artifact_id": str(made[-1].pk), "type": "scene_intent"}]


def test_list_times_take_any_iso_8601_offset(writer, scene, intent):
    # PostgreSQL takes offsets up to 15:59; ISO 8601 allows 23:59: still a time, compared in UTC.
    found = writer.get(scene_url(scene), {"created_at_before": "2216-03-23T23:21:36-23:42"})
    assert [a["artifact_id"] for a in found.json()["results"]] == [str(intent.pk)]
    assert_error(
        writer.get(scene_url(scene), {"created_at_after": "9999-12-31T23:00:00-23:00"}),
        400,
        "invalid_parameter",
        "created_at_after",
    )


def test_story_level_artifacts_are_listed_and_created_as_multipart(writer, story, scene, intent, png):
    response = writer.post(
        f"/v1/stories/{story.pk}/artifacts",
        {"type": "cover_image", "payload": json.dumps({"alt": "a lighthouse"}), "content": _upload(png)},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["scene_id"] is None and body["kind"] == "image" and body["mime_type"] == "image/png"
    assert body["content_size"] == len(png)
    listing = writer.get(f"/v1/stories/{story.pk}/artifacts/")
    assert [a["artifact_id"] for a in listing.json()["results"]] == [body["artifact_id"]]
    # Story-level types are media: the endpoint takes the multipart form only, as its schema says.
    assert_error(
        writer.post(f"/v1/stories/{story.pk}/artifacts", {"type": "scene_intent", "payload": SCENE_INTENT}),
        415,
        "unsupported_media_type",
    )
    assert_error(
        writer.post(
            f"/v1/stories/{story.pk}/artifacts",
            {"type": "scene_intent", "payload": json.dumps(SCENE_INTENT), "content": _upload(png)},
            format="multipart",
        ),
        400,
        "invalid_scope",
    )


def _upload(data, name="render.png", content_type="image/png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type=content_type)


def test_content_is_served_with_type_length_etag_and_304(writer, scene, png):
    created = writer.post(
        scene_url(scene),
        {
            "type": "render_result",
            "kind": "image",
            "payload": json.dumps({"image_url": "x.png", "metadata": {}, "generation_params": {"seed": 1}}),
            "content": _upload(png),
        },
        format="multipart",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["content_url"] == f"http://testserver/v1/artifacts/{body['artifact_id']}/content"

    response = writer.get(body["content_url"], HTTP_ACCEPT="image/png")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == png
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(len(png))
    assert response["ETag"] == f'"{body["content_sha256"]}"'

    cached = writer.get(body["content_url"], HTTP_IF_NONE_MATCH=response["ETag"])
    assert cached.status_code == 304
    assert cached["ETag"] == response["ETag"]
    assert writer.get(body["content_url"], HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_content_of_a_json_artifact_is_404(writer, intent):
    assert_error(writer.get(f"/v1/artifacts/{intent.pk}/content"), 404, "not_found")


def test_pruned_artifact_shows_null_payload_and_its_content_is_gone(writer, story, published_cover):
    Artifact.objects.filter(pk=published_cover.pk).update(payload=None, content="", pruned_at=timezone.now())
    detail = writer.get(f"/v1/artifacts/{published_cover.pk}").json()
    assert detail["payload"] is None
    assert detail["pruned_at"] is not None
    assert_error(writer.get(f"/v1/artifacts/{published_cover.pk}/content"), 410, "pruned")


def test_media_kind_without_content_or_with_wrong_mime_is_400(writer, story, scene, png):
    url = f"/v1/stories/{story.pk}/artifacts"
    no_bytes = {"type": "cover_image", "payload": json.dumps({"alt": "x"})}
    assert_error(writer.post(url, no_bytes, format="multipart"), 400, "required", "content")
    scene_url_ = f"/v1/scenes/{scene.pk}/artifacts"
    as_json = {"type": "cover_image", "payload": {"alt": "x"}}
    assert_error(writer.post(scene_url_, as_json, format="json"), 400, "invalid_content", "content")
    wrong = writer.post(
        url,
        {
            "type": "cover_image",
            "payload": json.dumps({"alt": "x"}),
            "content": _upload(b"hello", "a.txt", "text/plain"),
        },
        format="multipart",
    )
    assert_error(wrong, 400, "invalid_content", "content")
    empty = {"type": "cover_image", "payload": json.dumps({"alt": "x"}), "content": _upload(b"")}
    assert_error(writer.post(url, empty, format="multipart"), 400, "invalid_content", "content")
    assert_error(
        writer.post(url, {"type": "cover_image", "payload": "{not json", "content": _upload(png)}, format="multipart"),
        400,
        "parse_error",
        "payload",
    )
    assert not Artifact.objects.exists()


def test_latest_gives_the_newest_version_of_each_type(writer, scene, intent, service):
    newer = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    plan = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
    every = writer.get(scene_url(scene, "/latest"))
    assert every.status_code == 200
    assert {a["artifact_id"] for a in every.json()} == {str(newer.pk), str(plan.pk)}
    one = writer.get(scene_url(scene, "/latest/"), {"type": "scene_intent"})
    assert [a["artifact_id"] for a in one.json()] == [str(newer.pk)]
    assert writer.get(scene_url(scene, "/latest"), {"type": "qc_report"}).json() == []
    assert_error(writer.get(scene_url(scene, "/latest"), {"type": "bogus"}), 400, "unknown_type")


def test_versions_lists_the_stream_oldest_first(writer, scene, intent, service):
    second = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
    response = writer.get(f"/v1/artifacts/{second.pk}/versions")
    assert response.status_code == 200
    assert [a["version"] for a in response.json()["results"]] == [1, 2]


def test_lineage_walks_parents_and_relations_both_ways(writer, scene, intent, service):
    second = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    plan = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
    artifact_services.relation_create(from_artifact_id=plan.pk, to_artifact_id=second.pk, relation_type="derived_from")

    ancestors = writer.get(f"/v1/artifacts/{plan.pk}/lineage", {"direction": "ancestors", "depth": 5})
    assert ancestors.status_code == 200
    body = ancestors.json()
    assert body["artifact_id"] == str(plan.pk) and body["direction"] == "ancestors" and body["depth"] == 5
    assert [(n["artifact_id"], n["depth"]) for n in body["nodes"]] == [
        (str(plan.pk), 0),  # the artifact asked about, at depth 0 (SPEC §7)
        (str(second.pk), 1),
        (str(intent.pk), 2),
    ]
    assert {(e["from_artifact_id"], e["to_artifact_id"], e["relation_type"]) for e in body["edges"]} == {
        (str(plan.pk), str(second.pk), "derived_from"),
        (str(second.pk), str(intent.pk), "parent"),
    }
    one_hop = writer.get(f"/v1/artifacts/{plan.pk}/lineage", {"depth": 1}).json()
    assert [n["artifact_id"] for n in one_hop["nodes"]] == [str(plan.pk), str(second.pk)]
    descendants = writer.get(f"/v1/artifacts/{intent.pk}/lineage", {"direction": "descendants"}).json()
    assert {n["artifact_id"] for n in descendants["nodes"]} == {str(intent.pk), str(second.pk), str(plan.pk)}
    alone = writer.get(f"/v1/artifacts/{plan.pk}/lineage", {"limit": 1}).json()
    assert [n["artifact_id"] for n in alone["nodes"]] == [str(plan.pk)] and alone["truncated"]

    for query, field in [
        ({"direction": "sideways"}, "direction"),
        ({"direction": ""}, "direction"),  # not "ancestors" by default
        ({"depth": 0}, "depth"),
        ({"depth": "x"}, "depth"),
        ({"depth": "5.0"}, "depth"),
        ({"limit": "10001"}, "limit"),
        ({"cursor": "abc"}, "cursor"),  # the walk is not paginated
    ]:
        assert_error(writer.get(f"/v1/artifacts/{plan.pk}/lineage", query), 400, "invalid_parameter", field)


def test_transition_moves_along_the_lifecycle_and_refuses_the_rest(writer, intent):
    url = f"/v1/artifacts/{intent.pk}/transition"
    moved = writer.post(url, {"to": "candidate"}, format="json")
    assert moved.status_code == 200 and moved.json()["lifecycle_state"] == "candidate"
    assert_error(writer.post(url, {"to": "intermediate"}, format="json"), 409, "invalid_transition")
    assert_error(writer.post(url, {"to": "deleted"}, format="json"), 400, "invalid_choice", "to")
    assert_error(writer.post(url, {}, format="json"), 400, "required", "to")


def test_a_transition_note_is_kept_on_its_audit_event(writer, intent):
    url = f"/v1/artifacts/{intent.pk}/transition"
    note = "hands are wrong in panel 2"
    assert writer.post(url, {"to": "candidate", "note": note}, format="json").status_code == 200
    assert writer.post(url, {"to": "published"}, format="json").status_code == 200
    events = AuditEvent.objects.filter(target_id=intent.pk, action="transition").order_by("created_at")
    assert [(e.to_value, e.note) for e in events] == [("candidate", note), ("published", None)]

    too_long = {"to": "archived", "note": "x" * 2001}
    assert_error(writer.post(url, too_long, format="json"), 400, "max_length", "note")
    assert_error(writer.post(url, {"to": "archived", "note": 7}, format="json"), 400, "invalid", "note")
    assert AuditEvent.objects.filter(target_id=intent.pk).count() == 2  # the refusals wrote nothing


def test_archiving_a_primary_is_409_still_primary(writer, story, published_cover):
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
    response = writer.post(f"/v1/artifacts/{published_cover.pk}/transition", {"to": "archived"}, format="json")
    assert_error(response, 409, "still_primary")


def test_relations_are_created_listed_and_refused_when_wrong(writer, scene, intent, service):
    plan = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
    url = f"/v1/artifacts/{plan.pk}/relations"
    created = writer.post(url, {"to_artifact_id": str(intent.pk), "relation_type": "derived_from"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["from_artifact_id"] == str(plan.pk) and body["to_artifact_id"] == str(intent.pk)
    assert body["relation_id"] == str(ArtifactRelation.objects.get().pk)

    for artifact in (plan, intent):
        listed = writer.get(f"/v1/artifacts/{artifact.pk}/relations")
        assert [r["relation_id"] for r in listed.json()["results"]] == [body["relation_id"]]

    again = {"to_artifact_id": str(intent.pk), "relation_type": "derived_from"}
    assert_error(writer.post(url, again, format="json"), 409, "duplicate_relation")
    back = {"to_artifact_id": str(plan.pk), "relation_type": "derived_from"}
    assert_error(writer.post(f"/v1/artifacts/{intent.pk}/relations", back, format="json"), 409, "cycle")
    itself = {"to_artifact_id": str(plan.pk), "relation_type": "variant_of"}
    assert_error(writer.post(url, itself, format="json"), 400, "invalid_relation")
    unknown = {"to_artifact_id": "6a3f0c1e-0000-4000-8000-000000000000", "relation_type": "variant_of"}
    assert_error(writer.post(url, unknown, format="json"), 400, "not_found", "to_artifact_id")
    assert_error(writer.post(url, {**again, "relation_type": "likes"}, format="json"), 400, "invalid_choice")
    assert ArtifactRelation.objects.count() == 1


def test_planning_lock_refuses_writers_but_not_editors(writer, editor, scene):
    story_services.scene_lock_planning(scene_id=scene.pk)
    body = {"type": "scene_intent", "payload": SCENE_INTENT}
    assert_error(writer.post(scene_url(scene), body, format="json"), 409, "planning_locked")
    assert editor.post(scene_url(scene), body, format="json").status_code == 201
    # Non-planning types are not frozen.
    render = {"type": "render_spec", "payload": {"prompt": "p", "style": "s", "characters": [], "reference_images": []}}
    assert writer.post(scene_url(scene), render, format="json").status_code == 201


def test_artifact_types_list_the_registry_with_schemas(reader):
    response = reader.get("/v1/artifact-types")
    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()}
    assert len(types) == 14
    assert types["panel_plan"]["planning"] is True
    assert types["panel_plan"]["schema"]["required"] == ["panels"]
    assert types["cover_image"]["kinds"] == ["image"]
