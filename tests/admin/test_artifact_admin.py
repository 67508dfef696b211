"""The artifact page: edit as a new version, media, versions, lineage, lifecycle."""

import json
import threading
import time

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from artifacts import services as artifact_services
from artifacts.admin import ArtifactAdmin, EstimatedCountPaginator
from artifacts.models import Artifact
from audit.models import AuditEvent
from kernel.transactions import composing
from stories import services as story_services
from tests.conftest import PNG_BYTES, SCENE_INTENT, WAV_BYTES, WEBM_BYTES

from .conftest import admin_view_url, change_url, changelist_url, messages_of

CALM = {**SCENE_INTENT, "mood": "calm"}


@pytest.fixture
def intent(scene, service):
    return service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)


def save(client, artifact, payload, **extra):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post(
        change_url(artifact),
        {"payload": body, "_save": "Save as new version", **extra},
        **{"HTTP_X_REQUEST_ID": "admin-edit-1"},
    )


# -- edit as a new version ---------------------------------------------------------------


def test_changed_payload_creates_the_next_version_and_lands_on_it(editor_client, intent, superuser):
    response = save(editor_client, intent, CALM)

    new = Artifact.objects.get(type="scene_intent", version=2)
    assert response.status_code == 302 and response.url == change_url(new)
    assert new.parent_id == intent.pk and new.payload == CALM
    assert new.request_id == "admin-edit-1" and new.created_by == superuser
    intent.refresh_from_db()
    assert intent.payload == SCENE_INTENT and intent.version == 1  # the edited version is untouched
    assert any("scene_intent v2" in m and str(new.pk) in m for m in messages_of(response))
    assert AuditEvent.objects.filter(action="edit", target_id=new.pk, request_id="admin-edit-1").exists()
    assert LogEntry.objects.get().object_id == str(new.pk)


def test_schema_error_is_shown_on_the_form_and_nothing_is_written(editor_client, intent):
    response = save(editor_client, intent, {"mood": "calm", "pacing": "slow"})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["payload"]
    assert errors == ["payload.key_beats: 'key_beats' is a required property"]
    assert b"payload.key_beats" in response.content
    assert Artifact.objects.count() == 1 and not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"mood": ', "payload: not valid JSON (Expecting value: line 1 column 10 (char 9))"),
        ("[1, 2]", "The payload must be a JSON object."),
        ("", "This field is required."),
    ],
    ids=["broken json", "not an object", "empty"],
)
def test_malformed_payload_is_refused_on_the_form(editor_client, intent, body, message):
    response = save(editor_client, intent, body)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["payload"] == [message]
    assert Artifact.objects.count() == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"mood": NaN, "pacing": "p", "key_beats": ["b"]}', "NaN is not a JSON number"),
        ('{"mood": "m", "pacing": "p", "key_beats": ["b"], "x": 1e400}', "1e400 is beyond the range"),
        ('{"mood": "m", "pacing": "p", "key_beats": ["b"], "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper"),
        ('{"mood": "m", "pacing": "p", "key_beats": ["b"], "x": ' + "[" * 70 + "]" * 70 + "}", "nested deeper"),
        ('{"mood": "\\ud800", "pacing": "p", "key_beats": ["b"]}', "lone surrogates"),
    ],
    ids=["NaN", "1e400", "5000 deep", "70 deep", "lone surrogate"],
)
def test_hostile_json_in_the_editor_is_a_form_error_not_a_500(editor_client, intent, body, message):
    response = save(editor_client, intent, body)
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["payload"]
    assert message in error, error
    assert Artifact.objects.count() == 1 and not AuditEvent.objects.exists()


def test_unchanged_save_creates_nothing(editor_client, intent):
    response = save(editor_client, intent, json.dumps(SCENE_INTENT, indent=4))

    assert response.status_code == 302 and response.url == change_url(intent)
    assert Artifact.objects.count() == 1
    assert not AuditEvent.objects.exists() and not LogEntry.objects.exists()
    assert any("unchanged" in m for m in messages_of(response))


def test_posted_immutable_fields_are_ignored(editor_client, intent):
    save(editor_client, intent, CALM, type="panel_plan", version="7", lifecycle_state="published")
    new = Artifact.objects.get(version=2)
    assert (new.type, new.lifecycle_state) == ("scene_intent", "intermediate")
    intent.refresh_from_db()
    assert (intent.type, intent.version, intent.lifecycle_state) == ("scene_intent", 1, "intermediate")


def test_planning_lock_refuses_an_edit_on_the_form(client, intent, scene, make_user):
    # A superuser holds override_planning_lock; an ordinary editor does not.
    user = make_user("editor", "artifacts.view_artifact", "artifacts.change_artifact")
    user.is_staff = True
    user.save()
    client.force_login(user)
    story_services.scene_lock_planning(scene_id=scene.pk)
    response = save(client, intent, CALM)
    assert response.status_code == 200
    assert "Planning is locked" in response.context["adminform"].form.errors["payload"][0]
    assert Artifact.objects.count() == 1


def test_override_permission_edits_through_the_planning_lock(client, intent, scene, make_user):
    story_services.scene_lock_planning(scene_id=scene.pk)
    user = make_user("lead", "artifacts.view_artifact", "artifacts.change_artifact", "artifacts.override_planning_lock")
    user.is_staff = True
    user.save()
    client.force_login(user)
    response = save(client, intent, CALM)
    assert response.status_code == 302
    assert Artifact.objects.filter(version=2, created_by=user).exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_lock_taken_while_the_form_is_saved_is_reported_and_writes_nothing(client, intent, scene, make_user):
    """The form checks the planning lock; a lock committed after that check, while the save
    runs, is the service's to see (it shares the scene row, and waits for the lock's
    transaction): a real second transaction, no stub."""
    user = make_user("writer", "artifacts.view_artifact", "artifacts.change_artifact")  # no override
    user.is_staff = True
    user.save()
    client.force_login(user)
    holding, errors = threading.Event(), []

    def lock_planning_meanwhile():
        try:
            with composing():
                story_services.scene_lock_planning(scene_id=scene.pk)
                holding.set()
                # Commit once the save waits on the scene row (or after 10 s: the test fails).
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not waiting_on_a_lock():
                    time.sleep(0.02)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=lock_planning_meanwhile)
    thread.start()
    assert holding.wait(10)
    response = save(client, intent, CALM)  # the form sees no lock: not committed yet
    thread.join(10)
    assert errors == []
    assert response.status_code == 302 and response.url == change_url(intent)
    assert any("planning_locked" in m for m in messages_of(response))
    assert Artifact.objects.count() == 1 and not LogEntry.objects.exists()


def waiting_on_a_lock() -> bool:
    """Whether another session of this database waits on a lock (read afresh: inside a
    transaction PostgreSQL keeps one snapshot of the activity statistics otherwise)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def test_view_only_user_sees_the_payload_but_cannot_edit(client, intent, make_user):
    user = make_user("reader", "artifacts.view_artifact")
    user.is_staff = True
    user.save()
    client.force_login(user)
    response = client.get(change_url(intent))
    assert response.status_code == 200
    assert b'class="payload-pretty"' in response.content and b"data-json-editor" not in response.content
    assert b"Save as new version" not in response.content
    assert save(client, intent, CALM).status_code == 403
    assert client.post(admin_view_url(intent, "transition"), {"to": "candidate"}).status_code == 403
    assert Artifact.objects.count() == 1 and Artifact.objects.get().lifecycle_state == "intermediate"


def test_the_page_uses_the_json_editor_and_only_the_payload_is_editable(editor_client, intent):
    response = editor_client.get(change_url(intent))
    content = response.content.decode()
    assert 'data-json-editor="1"' in content and "artifacts/admin/json_editor.js" in content
    assert "\n  &quot;mood&quot;: &quot;tense&quot;,\n" in content  # pretty-printed, keys in stored order
    assert "Save as new version" in content and "_continue" not in content and "deletelink" not in content


def test_pruned_artifact_is_a_read_only_tombstone(editor_client, story, published_cover):
    Artifact.objects.filter(pk=published_cover.pk).update(payload=None, content="", pruned_at=timezone.now())
    response = editor_client.get(change_url(published_cover))
    assert response.status_code == 200
    assert b"payload and content were reclaimed" in response.content
    assert response.context["has_change_permission"] is False
    assert editor_client.post(change_url(published_cover), {"payload": "{}"}).status_code == 403
    assert editor_client.get(admin_view_url(published_cover, "content")).status_code == 410


# -- media, versions, lineage ------------------------------------------------------------------


def test_image_preview_and_content_are_served_with_the_mime_type(editor_client, published_cover):
    response = editor_client.get(change_url(published_cover))
    content_url = admin_view_url(published_cover, "content")
    assert f'<img class="media-preview" src="{content_url}" alt="a lighthouse">' in response.content.decode()

    content = editor_client.get(content_url)
    assert content.status_code == 200 and content["Content-Type"] == "image/png"
    assert b"".join(content.streaming_content) == PNG_BYTES
    assert content["ETag"] == f'"{published_cover.content_sha256}"'
    assert "sandbox" in content["Content-Security-Policy"]


@pytest.mark.parametrize(
    "type_name, mime, data, tag",
    [("audio_track", "audio/x-wav", WAV_BYTES, "<audio"), ("video_render", "video/webm", WEBM_BYTES, "<video")],
)
def test_audio_and_video_previews(editor_client, story, type_name, mime, data, tag):
    artifact = artifact_services.artifact_create(
        story_id=story.pk, type=type_name, payload={"alt": "media"}, content=data, mime_type=mime
    )
    response = editor_client.get(change_url(artifact))
    assert tag in response.content.decode()
    assert editor_client.get(admin_view_url(artifact, "content"))["Content-Type"] == mime


def test_content_needs_a_login(client, published_cover):
    response = client.get(admin_view_url(published_cover, "content"))
    assert response.status_code == 302 and "/admin/login/" in response.url


def test_versions_of_the_stream_are_listed_with_links(editor_client, intent, service):
    v2 = artifact_services.artifact_edit(artifact_id=intent.pk, payload=CALM)
    v3 = artifact_services.artifact_edit(artifact_id=v2.pk, payload={**CALM, "pacing": "slow"})
    response = editor_client.get(change_url(v2))
    assert [v.version for v in response.context["versions"]] == [3, 2, 1]
    content = response.content.decode()
    assert f'href="{change_url(v3)}"' in content and f'href="{change_url(intent)}"' in content


def test_lineage_graph_draws_ancestors_descendants_and_relations(editor_client, scene, service, intent):
    plan = service.create_artifact(
        scene.pk, "panel_plan", {"panels": [{"grammar_id": "a", "weight": 1, "must_show": []}]}
    )
    artifact_services.relation_create(from_artifact_id=plan.pk, to_artifact_id=intent.pk, relation_type="derived_from")
    v2 = artifact_services.artifact_edit(
        artifact_id=plan.pk, payload={"panels": [{"grammar_id": "b", "weight": 2, "must_show": []}]}
    )

    response = editor_client.get(change_url(plan))
    graph = response.context["graph"]
    assert {n.artifact.pk for n in graph.nodes} == {plan.pk, intent.pk, v2.pk}
    assert sorted(e.kind for e in graph.edges) == ["derived_from", "parent"]
    assert b"<svg" in response.content and f'data-artifact-id="{intent.pk}"'.encode() in response.content

    page = editor_client.get(admin_view_url(plan, "lineage"), {"depth": "2"})
    assert page.status_code == 200 and page.context["depth"] == 2
    assert [a.pk for a, _ in page.context["ancestors"]] == [intent.pk]
    assert [a.pk for a, _ in page.context["descendants"]] == [v2.pk]
    assert editor_client.get(admin_view_url(plan, "lineage"), {"depth": "junk"}).status_code == 200


def test_unknown_artifact_pages_are_404(editor_client, db):
    assert editor_client.get("/admin/artifacts/artifact/not-a-uuid/lineage/").status_code == 404
    assert (
        editor_client.get("/admin/artifacts/artifact/00000000-0000-0000-0000-000000000000/content/").status_code == 404
    )


# -- lifecycle -------------------------------------------------------------------------------


def test_transition_button_moves_the_state_through_the_service(editor_client, intent):
    response = editor_client.post(admin_view_url(intent, "transition"), {"to": "candidate"}, HTTP_X_REQUEST_ID="tr-1")
    assert response.status_code == 302 and response.url == change_url(intent)
    intent.refresh_from_db()
    assert intent.lifecycle_state == "candidate"
    assert AuditEvent.objects.get(action="transition").request_id == "tr-1"
    assert any("now candidate" in m for m in messages_of(response))


def test_refused_transition_is_an_error_message(editor_client, intent):
    response = editor_client.post(admin_view_url(intent, "transition"), {"to": "published"})
    assert any(
        "invalid_transition" in m and "cannot go from intermediate to published" in m for m in messages_of(response)
    )
    intent.refresh_from_db()
    assert intent.lifecycle_state == "intermediate"


def test_transition_needs_a_post(editor_client, intent):
    assert editor_client.get(admin_view_url(intent, "transition")).status_code == 405


def test_page_offers_only_the_allowed_transitions(editor_client, intent, published_cover):
    assert [s for s, _ in editor_client.get(change_url(intent)).context["transitions"]] == ["candidate", "archived"]
    assert [s for s, _ in editor_client.get(change_url(published_cover)).context["transitions"]] == ["archived"]


def test_bulk_actions_transition_each_and_report_refusals(editor_client, scene, service, intent):
    plan = service.create_artifact(
        scene.pk, "panel_plan", {"panels": [{"grammar_id": "a", "weight": 1, "must_show": []}]}
    )
    artifact_services.artifact_transition(artifact_id=plan.pk, to="candidate")
    gone = service.create_artifact(
        scene.pk, "panel_plan", {"panels": [{"grammar_id": "b", "weight": 1, "must_show": []}]}
    )
    artifact_services.artifact_transition(artifact_id=gone.pk, to="archived")

    response = editor_client.post(
        changelist_url(Artifact),
        {"action": "publish", "_selected_action": [str(intent.pk), str(plan.pk), str(gone.pk)]},
    )
    assert response.status_code == 302
    for artifact in (plan, intent, gone):
        artifact.refresh_from_db()
    # One pass: the candidate is published, the intermediate walks candidate -> published
    # (two transitions SPEC §5 allows, both audited); an archived one is refused.
    assert (plan.lifecycle_state, intent.lifecycle_state, gone.lifecycle_state) == (
        "published",
        "published",
        "archived",
    )
    trail = list(
        AuditEvent.objects.filter(target_id=intent.pk, action="transition")
        .order_by("created_at")
        .values_list("from_value", "to_value")
    )
    assert trail == [("intermediate", "candidate"), ("candidate", "published")]
    texts = messages_of(response)
    assert "2 artifacts published." in texts
    assert any("panel_plan v2" in m and "invalid_transition" in m for m in texts)

    fresh = service.create_artifact(scene.pk, "scene_intent", {"mood": "m", "pacing": "p", "key_beats": ["b"]})
    editor_client.post(changelist_url(Artifact), {"action": "make_candidate", "_selected_action": [str(fresh.pk)]})
    fresh.refresh_from_db()
    assert fresh.lifecycle_state == "candidate"


def test_archiving_a_primary_is_refused(editor_client, story, published_cover):
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
    response = editor_client.post(
        changelist_url(Artifact), {"action": "archive", "_selected_action": [str(published_cover.pk)]}
    )
    assert any("still_primary" in m for m in messages_of(response))
    published_cover.refresh_from_db()
    assert published_cover.lifecycle_state == "published"


def test_bulk_action_refuses_more_than_the_limit(editor_client, intent, monkeypatch):
    monkeypatch.setattr("artifacts.admin.BULK_ACTION_LIMIT", 0)
    response = editor_client.post(
        changelist_url(Artifact), {"action": "make_candidate", "_selected_action": [str(intent.pk)]}
    )
    assert any("at most 0" in m for m in messages_of(response))
    intent.refresh_from_db()
    assert intent.lifecycle_state == "intermediate"


def test_audit_trail_is_shown_on_the_artifact_page(editor_client, intent, service):
    artifact_services.artifact_transition(artifact_id=intent.pk, to="candidate")
    response = editor_client.get(change_url(intent))
    assert [e.action for e in response.context["audit_events"]] == ["transition"]
    assert b"intermediate" in response.content and b"Audit trail" in response.content


# -- the paginator -----------------------------------------------------------------------------


def test_paginator_counts_exactly_on_sqlite_or_when_filtered(intent):
    assert EstimatedCountPaginator(Artifact.objects.all(), 100).count == 1
    assert EstimatedCountPaginator(Artifact.objects.filter(type="panel_plan"), 100).count == 0


@pytest.mark.postgres_only
def test_paginator_estimates_an_unfiltered_list_on_postgresql(editor_client, story, service, monkeypatch):
    for _ in range(3):
        artifact_services.artifact_create(
            story_id=story.pk,
            type="cover_image",
            payload={"alt": "x"},
            content=PNG_BYTES + bytes(_),
            mime_type="image/png",
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE artifacts_artifact")
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_above", 0)

    with CaptureQueriesContext(connection) as queries:
        response = editor_client.get(changelist_url(Artifact))
    assert response.context["cl"].result_count == 3
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert any("reltuples" in q["sql"] for q in queries.captured_queries)

    with CaptureQueriesContext(connection) as queries:
        response = editor_client.get(changelist_url(Artifact), {"kind": "image"})
    assert response.context["cl"].result_count == 3
    assert any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def test_artifact_admin_refuses_add(rf, superuser):
    from django.contrib import admin

    request = rf.get("/")
    request.user = superuser
    assert admin.site._registry[Artifact].has_add_permission(request) is False
    assert isinstance(admin.site._registry[Artifact], ArtifactAdmin)
