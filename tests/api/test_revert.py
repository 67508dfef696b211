"""POST /v1/artifacts/{id}/revert (SPEC §13, "Restore") and the action behind it."""

import pytest
from django.db import connection
from django.utils import timezone

from artifacts import services
from artifacts.models import Artifact
from artifacts.services import ArtifactService, prune_rows
from audit.models import AuditEvent
from stories import services as story_services
from tests.api.conftest import WRITER_PERMS, assert_error, client_for
from tests.conftest import PNG_BYTES, SCENE_INTENT, make_image


@pytest.fixture
def stream(scene):
    v1 = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    v2 = services.artifact_edit(artifact_id=v1.pk, payload={**SCENE_INTENT, "mood": "calm"})
    v3 = services.artifact_edit(artifact_id=v2.pk, payload={**SCENE_INTENT, "mood": "grim"})
    return v1, v2, v3


def test_restore_makes_the_next_version_with_the_payload_parent_the_latest(writer, stream):
    v1, _, v3 = stream
    response = writer.post(f"/v1/artifacts/{v1.pk}/revert")
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"].endswith(f"/v1/artifacts/{body['artifact_id']}")
    assert (body["version"], body["parent_id"], body["payload"]) == (4, str(v3.pk), v1.payload)
    assert body["lifecycle_state"] == "intermediate"
    restored = Artifact.objects.get(pk=body["artifact_id"])
    assert restored.fingerprint == v3.fingerprint  # made from its parent's inputs, as an edit
    event = AuditEvent.objects.get(action="revert")
    assert event.target_id == restored.pk and event.story_id == restored.story_id
    assert event.from_value == {"artifact_id": str(v1.pk), "version": 1}
    assert event.to_value == {"artifact_id": str(restored.pk), "version": 4, "parent_version": 3}
    assert event.actor.username == "writer"
    # The older versions are as they were.
    assert [a.payload["mood"] for a in Artifact.objects.filter(type="scene_intent").order_by("version")] == [
        "tense",
        "calm",
        "grim",
        "tense",
    ]


def test_restore_of_media_names_the_same_stored_content(writer, story, media_root):
    v1 = make_image(story, "first")
    v2 = make_image(story, "second", content=PNG_BYTES + b"\0")
    body = writer.post(f"/v1/artifacts/{v1.pk}/revert").json()
    restored = Artifact.objects.get(pk=body["artifact_id"])
    assert (restored.version, restored.parent_id) == (3, v2.pk)
    assert restored.content.name == v1.content.name  # the same file, not a copy
    assert (restored.content_sha256, restored.content_size, restored.mime_type) == (
        v1.content_sha256,
        v1.content_size,
        v1.mime_type,
    )
    assert len(list((media_root / "content").rglob("*"))) == 2 + 2  # two digest folders, two files
    assert writer.get(body["content_url"]).status_code == 200


def test_restoring_the_latest_is_409_already_latest_and_writes_nothing(writer, stream):
    before = Artifact.objects.count()
    assert_error(writer.post(f"/v1/artifacts/{stream[2].pk}/revert"), 409, "already_latest")
    assert Artifact.objects.count() == before and not AuditEvent.objects.filter(action="revert").exists()


def test_restoring_a_pruned_version_is_409_pruned(writer, stream):
    prune_rows([stream[0].pk], at=timezone.now())
    assert_error(writer.post(f"/v1/artifacts/{stream[0].pk}/revert"), 409, "pruned")


def test_the_planning_lock_refuses_a_restore_unless_the_user_may_override(writer, stream, scene, make_user):
    story_services.scene_lock_planning(scene_id=scene.pk)
    assert_error(writer.post(f"/v1/artifacts/{stream[0].pk}/revert"), 409, "planning_locked")
    assert Artifact.objects.filter(type="scene_intent").count() == 3
    overrider = client_for(make_user("overrider", *WRITER_PERMS, "artifacts.override_planning_lock"))
    assert overrider.post(f"/v1/artifacts/{stream[0].pk}/revert").status_code == 201


def test_restore_needs_the_add_permission(reader, anon, stream, make_user):
    assert_error(reader.post(f"/v1/artifacts/{stream[0].pk}/revert"), 403, "permission_denied")
    assert_error(anon.post(f"/v1/artifacts/{stream[0].pk}/revert"), 401, "not_authenticated")
    adder = client_for(make_user("adder", "artifacts.add_artifact"))
    assert adder.post(f"/v1/artifacts/{stream[0].pk}/revert").status_code == 201


def test_unknown_or_malformed_ids_are_404(writer, db):
    assert_error(writer.post("/v1/artifacts/00000000-0000-0000-0000-000000000000/revert"), 404, "not_found")
    assert_error(writer.post("/v1/artifacts/nope/revert"), 404, "not_found")


def test_the_schema_documents_the_restore(reader):
    schema = reader.get("/v1/schema?format=json").json()
    operation = schema["paths"]["/v1/artifacts/{artifact_id}/revert"]["post"]
    assert "requestBody" not in operation
    assert "artifacts.add_artifact" in operation["description"]
    ref = operation["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    codes = set(schema["components"]["schemas"][ref]["properties"]["code"]["enum"])
    assert {"planning_locked", "already_latest", "pruned"} <= codes
    assert "201" in operation["responses"] and "403" in operation["responses"]


def test_the_restore_is_one_transaction_with_its_audit_event(stream, django_assert_max_num_queries):
    # Read the original and the head, check the lock, insert, audit: no query per version.
    with django_assert_max_num_queries(12 if connection.vendor == "postgresql" else 10):
        services.artifact_revert(artifact_id=stream[0].pk)
