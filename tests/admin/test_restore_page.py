"""The admin's "Restore this version" and the branch notice before an edit (SPEC §13, "Restore")."""

import pytest

from artifacts import services
from artifacts.models import Artifact
from artifacts.services import ArtifactService
from audit.models import AuditEvent
from stories import services as story_services
from tests.conftest import SCENE_INTENT

from .conftest import admin_view_url, change_url, messages_of


@pytest.fixture
def stream(scene):
    v1 = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    v2 = services.artifact_edit(artifact_id=v1.pk, payload={**SCENE_INTENT, "mood": "calm"})
    return v1, v2


def test_restore_creates_the_next_version_and_lands_on_it(editor_client, stream, superuser):
    v1, v2 = stream
    response = editor_client.post(admin_view_url(v1, "revert"))
    restored = Artifact.objects.get(type="scene_intent", version=3)
    assert response.status_code == 302 and response["Location"] == change_url(restored)
    assert (restored.payload, restored.parent_id) == (v1.payload, v2.pk)
    assert AuditEvent.objects.get(action="revert").actor == superuser
    assert "Restored v1 as scene_intent v3" in messages_of(response)[0]


def test_the_button_shows_on_an_older_version_only(editor_client, stream):
    v1, v2 = stream
    assert "Restore this version" in editor_client.get(change_url(v1)).content.decode()
    assert "Restore this version" not in editor_client.get(change_url(v2)).content.decode()


def test_restore_is_a_post_with_the_add_permission(client, stream, make_user):
    v1, _ = stream
    viewer = make_user("viewer", "artifacts.view_artifact", "artifacts.change_artifact")
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    assert "Restore this version" not in client.get(change_url(v1)).content.decode()
    assert client.post(admin_view_url(v1, "revert")).status_code == 403
    assert client.get(admin_view_url(v1, "revert")).status_code == 405
    assert Artifact.objects.filter(type="scene_intent").count() == 2


def test_a_refused_restore_is_a_message_and_writes_nothing(editor_client, stream, scene, make_user):
    v1, _ = stream
    story_services.scene_lock_planning(scene_id=scene.pk)
    # A superuser has every permission, the override included: an editor without it.
    editor = make_user("ed", "artifacts.view_artifact", "artifacts.add_artifact", "artifacts.change_artifact")
    editor.is_staff = True
    editor.save()
    editor_client.force_login(editor)
    response = editor_client.post(admin_view_url(v1, "revert"))
    assert response["Location"] == change_url(v1)
    assert "planning_locked" in messages_of(response)[0]
    assert Artifact.objects.filter(type="scene_intent").count() == 2


def test_the_page_of_an_older_version_says_a_save_branches_from_it(editor_client, stream):
    v1, v2 = stream
    html = editor_client.get(change_url(v1)).content.decode()
    assert "This is v1, not the latest (v2)" in html
    assert "makes the next version, <strong>v3</strong>, branched from this v1, not from the latest v2" in html
    assert "Saves as v3, branched from v1 (not from the latest v2)" in html  # beside the save button
    assert "branch-notice" not in editor_client.get(change_url(v2)).content.decode()


def test_the_compare_page_offers_to_restore_the_older_side(editor_client, stream):
    v1, v2 = stream
    html = editor_client.get(f"/admin/artifacts/artifact/{v1.pk}/compare/{v2.pk}/").content.decode()
    assert admin_view_url(v1, "revert") in html and admin_view_url(v2, "revert") not in html
