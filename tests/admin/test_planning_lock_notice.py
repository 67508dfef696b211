"""The planning lock in sight (SPEC §13): the page of a planning artifact of a locked scene
says so, by whom and since when, and what an edit needs and becomes."""

from django.utils import formats

from artifacts.services import ArtifactService
from stories import services as story_services
from tests.conftest import SCENE_INTENT

from .conftest import PANEL_PLAN, change_url


def test_the_page_says_who_locked_the_scene_and_since_when(editor_client, scene, superuser, make_user):
    intent = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    locker = make_user("lena")
    locked = story_services.scene_lock_planning(scene_id=scene.pk, actor=locker)
    html = editor_client.get(change_url(intent)).content.decode()
    assert f"Planning is locked on scene #{scene.position} {scene.title}" in html
    assert "(locked by lena since " + formats.date_format(locked.planning_locked_at, "DATETIME_FORMAT") in html
    assert "artifacts.override_planning_lock</code>), which you have" in html
    assert "an edit made through the lock is kept, not remade" in html


def test_an_editor_without_the_override_is_told_a_save_is_refused(client, scene, make_user):
    plan = ArtifactService().create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
    story_services.scene_lock_planning(scene_id=scene.pk)
    editor = make_user("ed", "artifacts.view_artifact", "artifacts.change_artifact")
    editor.is_staff = True
    editor.save()
    client.force_login(editor)
    html = client.get(change_url(plan)).content.decode()
    assert "by an unknown user" in html  # locked by no one in particular (a command, say)
    assert "which you do not have: a save or a restore is refused" in html


def test_no_notice_for_an_unlocked_scene_or_a_type_planning_does_not_freeze(editor_client, scene):
    intent = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    spec = ArtifactService().create_artifact(
        scene.pk, "render_spec", {"prompt": "p", "style": "ink", "characters": [], "reference_images": []}
    )
    assert "planning-lock-notice" not in editor_client.get(change_url(intent)).content.decode()
    story_services.scene_lock_planning(scene_id=scene.pk)
    assert "planning-lock-notice" not in editor_client.get(change_url(spec)).content.decode()
    assert "planning-lock-notice" in editor_client.get(change_url(intent)).content.decode()
