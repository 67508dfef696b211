"""Each change writes its event in its own transaction (SPEC §14), from every path that makes
it: the API, the admin's service calls, the commands, the pipeline, the prune."""

import pytest
from django.db import IntegrityError, connection, transaction

from artifacts import services as artifact_services
from artifacts.models import Artifact
from changes.models import Event
from runs import services as run_services
from runs.models import RunStatus
from stories import services as story_services
from tests.api.conftest import WRITER_PERMS, client_for
from tests.conftest import SCENE_INTENT
from tests.operations.conftest import Rows, jsonl, run


def events(type_=None):
    rows = Event.objects.order_by("xid", "seq")
    return list(rows.filter(type=type_) if type_ else rows)


def test_an_api_create_writes_artifact_created_with_ids_not_the_payload(scene, make_user):
    client = client_for(make_user("w", *WRITER_PERMS))
    answer = client.post(f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": SCENE_INTENT})
    assert answer.status_code == 201, answer.content
    [event] = events("artifact.created")
    assert (event.story_id, event.scene_id) == (scene.story_id, scene.pk)
    assert event.data == {
        "artifact_id": answer.json()["artifact_id"],
        "type": "scene_intent",
        "version": 1,
        "parent_id": None,
    }


def test_a_batch_writes_one_event_per_artifact_in_one_insert(scene, make_user, django_assert_num_queries):
    items = [{"type": "scene_intent", "payload": SCENE_INTENT} for _ in range(5)]
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        made = artifact_services.artifacts_create_batch(scene_id=scene.pk, items=items)
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT INTO changes_event (" in q["sql"]]
    assert len(inserts) == 1
    assert [e.data["artifact_id"] for e in events("artifact.created")] == [str(a.pk) for a in made]
    assert [e.data["version"] for e in events("artifact.created")] == [1, 2, 3, 4, 5]


def test_an_edit_transition_and_primary_change_each_write_their_event(story, scene, published_cover):
    intent = artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    edited = artifact_services.artifact_edit(artifact_id=intent.pk, payload={**SCENE_INTENT, "mood": "calm"})
    created = events("artifact.created")
    assert created[-1].data == {
        "artifact_id": str(edited.pk),
        "type": "scene_intent",
        "version": 2,
        "parent_id": str(intent.pk),
    }
    artifact_services.artifact_transition(artifact_id=edited.pk, to="candidate")
    [moved] = [e for e in events("artifact.transitioned") if e.data["artifact_id"] == str(edited.pk)]
    assert moved.data == {"artifact_id": str(edited.pk), "from": "intermediate", "to": "candidate"}
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
    [primary] = events("primary.changed")
    assert primary.story_id == story.pk
    assert primary.data == {"role": "cover", "from": None, "to": str(published_cover.pk)}


def test_planning_lock_and_unlock_write_scene_events(scene, make_user):
    client = client_for(make_user("ed", superuser=True))
    assert client.post(f"/v1/scenes/{scene.pk}/lock").status_code in (200, 201), "lock"
    assert client.post(f"/v1/scenes/{scene.pk}/unlock").status_code in (200, 201), "unlock"
    assert [e.type for e in events() if e.type.startswith("scene.")] == ["scene.locked", "scene.unlocked"]
    assert all(e.scene_id == scene.pk for e in events() if e.type.startswith("scene."))


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_run_that_ends_writes_run_finished(story, status):
    run_ = run_services.run_create(story_id=story.pk, workflow="w", start=True)
    run_services.run_set_status(run_id=run_.pk, status=status)
    [event] = events("run.finished")
    assert event.data == {"run_id": str(run_.pk), "from": "running", "to": status}


def test_a_run_that_starts_writes_no_run_finished(story):
    run_ = run_services.run_create(story_id=story.pk, workflow="w")
    run_services.run_set_status(run_id=run_.pk, status=RunStatus.RUNNING)
    assert events("run.finished") == []


def test_a_rolled_back_change_leaves_no_event(scene):
    with pytest.raises(RuntimeError), transaction.atomic():
        artifact_services.artifact_create.__wrapped__(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
        raise RuntimeError("the change fails after its event was written")
    assert events() == []


def test_the_import_command_writes_artifact_created_for_each_line(tmp_path, scene):
    import uuid

    rows = [
        {
            "artifact_id": str(uuid.uuid4()),
            "scene_id": str(scene.pk),
            "type": "scene_intent",
            "version": 1,
            "parent_id": None,
            "payload": SCENE_INTENT,
            "request_id": "r",
            "created_at": "2024-03-01T12:00:00Z",
        }
    ]
    outcome = run("import_artifacts", jsonl(tmp_path / "a.jsonl", rows))
    assert outcome.code == 0, outcome.err
    [event] = events("artifact.created")
    assert event.data["artifact_id"] == rows[0]["artifact_id"] and event.scene_id == scene.pk


def test_prune_writes_artifact_pruned(story, scene):
    rows = Rows(story)
    old = [rows.make(scene=scene, version=1)]
    old.append(rows.make(scene=scene, version=2, parent=old[0]))
    old.append(rows.make(scene=scene, version=3, parent=old[1]))
    outcome = run("prune_artifacts", "--older-than", "30", "--yes")
    assert outcome.code == 0, outcome.err
    pruned = events("artifact.pruned")
    assert {e.data["artifact_id"] for e in pruned} == {str(old[0].pk), str(old[1].pk)}  # the latest is kept


def test_the_pipeline_writes_artifact_created_and_run_finished(scene):
    outcome = run("run_pipeline", "--scene", str(scene.pk))
    assert outcome.code == 0, outcome.err
    made = Artifact.objects.filter(scene_id=scene.pk).count()
    assert made > 0 and len(events("artifact.created")) == made
    [finished] = events("run.finished")
    assert finished.data["to"] == "succeeded"


def test_the_database_refuses_to_change_an_event(scene):
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    with pytest.raises(IntegrityError if connection.vendor == "postgresql" else Exception), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE changes_event SET type = 'scene.locked'")


def test_a_comment_and_a_restore_write_their_events(scene, make_user):
    """The comments app's create writes comment.created; a restore is a create (artifact.created)."""
    client = client_for(make_user("ed", superuser=True))
    first = artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload={**SCENE_INTENT, "mood": "calm"})
    answer = client.post(f"/v1/artifacts/{first.pk}/comments", {"body": "hands are wrong in panel 2"}, format="json")
    assert answer.status_code == 201, answer.content
    [event] = events("comment.created")
    assert (event.story_id, event.scene_id) == (scene.story_id, scene.pk)
    assert event.data == {"comment_id": answer.json()["comment_id"], "artifact_id": str(first.pk)}

    restored = client.post(f"/v1/artifacts/{first.pk}/revert")
    assert restored.status_code == 201, restored.content
    assert events("artifact.created")[-1].data["artifact_id"] == restored.json()["artifact_id"]
