"""Story and scene pages: saves through the services, the primary chooser, planning locks."""

import pytest

from artifacts import services as artifact_services
from artifacts.services import ArtifactService
from audit.models import AuditEvent
from stories import services as story_services
from stories.models import Scene, Story, StoryArtifactLink
from tests.conftest import PNG_BYTES

from .conftest import admin_view_url, change_url, changelist_url, messages_of


def published_image(*, story, scene=None, salt=b""):
    svc = ArtifactService()
    if scene is None:
        image = artifact_services.artifact_create(
            story_id=story.pk, type="cover_image", payload={"alt": "c"}, content=PNG_BYTES + salt, mime_type="image/png"
        )
    else:
        image = svc.create_artifact(
            scene.pk, "cover_image", {"alt": "s"}, content=PNG_BYTES + salt, mime_type="image/png"
        )
    artifact_services.artifact_transition(artifact_id=image.pk, to="candidate")
    return artifact_services.artifact_transition(artifact_id=image.pk, to="published")


def choose(client, story, role, artifact, scene=None):
    value = f"{role}|{artifact.pk}|{scene.pk if scene else ''}"
    return client.post(admin_view_url(story, "set_primary"), {"primary": value})


# -- the primary chooser -------------------------------------------------------------------


def test_one_click_makes_the_cover_primary_and_the_reference_follows(editor_client, story, published_cover):
    page = editor_client.get(change_url(story))
    cover_row = next(row for row in page.context["primary_rows"] if row["role"] == "cover")
    assert [c["artifact"].pk for c in cover_row["candidates"]] == [published_cover.pk]
    assert f'data-artifact-id="{published_cover.pk}"'.encode() in page.content

    response = choose(editor_client, story, "cover", published_cover)
    assert response.status_code == 302 and response.url == change_url(story)
    story.refresh_from_db()
    assert story.cover_artifact_id == published_cover.pk
    assert StoryArtifactLink.objects.get(role="cover").is_primary
    assert any("Primary cover set to cover_image v1" in m for m in messages_of(response))
    assert AuditEvent.objects.filter(action="set_primary").exists()


def test_choosing_another_primary_demotes_the_old_one(editor_client, story, published_cover):
    choose(editor_client, story, "cover", published_cover)
    second = published_image(story=story, salt=b"2")
    choose(editor_client, story, "cover", second)
    story.refresh_from_db()
    assert story.cover_artifact_id == second.pk
    assert list(StoryArtifactLink.objects.filter(is_primary=True).values_list("artifact_id", flat=True)) == [second.pk]


def test_unpublished_artifact_is_refused_with_a_message(editor_client, story):
    draft = artifact_services.artifact_create(
        story_id=story.pk, type="cover_image", payload={"alt": "draft"}, content=PNG_BYTES, mime_type="image/png"
    )
    response = choose(editor_client, story, "cover", draft)
    assert response.status_code == 302
    assert any("not_published" in m for m in messages_of(response))
    story.refresh_from_db()
    assert story.cover_artifact_id is None and not StoryArtifactLink.objects.exists()


def test_scene_image_is_chosen_per_scene(editor_client, story, scene):
    image = published_image(story=story, scene=scene)
    page = editor_client.get(change_url(story))
    row = next(r for r in page.context["primary_rows"] if r["role"] == "scene_image")
    assert row["scene"] == scene and [c["artifact"].pk for c in row["candidates"]] == [image.pk]

    choose(editor_client, story, "scene_image", image, scene)
    link = StoryArtifactLink.objects.get()
    assert (link.role, link.scene_id, link.is_primary) == ("scene_image", scene.pk, True)


def test_malformed_choice_is_refused_not_a_500(editor_client, story):
    response = editor_client.post(admin_view_url(story, "set_primary"), {"primary": "nonsense"})
    assert response.status_code == 302 and messages_of(response)


def test_set_primary_needs_change_permission_and_a_post(client, editor_client, story, published_cover, make_user):
    assert editor_client.get(admin_view_url(story, "set_primary")).status_code == 405
    reader = make_user("reader", "stories.view_story")
    reader.is_staff = True
    reader.save()
    client.force_login(reader)
    assert choose(client, story, "cover", published_cover).status_code == 403
    story.refresh_from_db()
    assert story.cover_artifact_id is None


def test_derived_references_are_read_only(editor_client, story, published_cover):
    response = editor_client.post(
        change_url(story),
        {"title": "The Lighthouse", "description": "", "cover_artifact": str(published_cover.pk), **_empty_inline()},
    )
    assert response.status_code == 302
    story.refresh_from_db()
    assert story.cover_artifact_id is None
    assert "cover_artifact" not in editor_client.get(change_url(story)).context["adminform"].form.fields


def _empty_inline():
    return {
        "links-TOTAL_FORMS": "0",
        "links-INITIAL_FORMS": "0",
        "links-MIN_NUM_FORMS": "0",
        "links-MAX_NUM_FORMS": "0",
    }


# -- story and scene saves go through the services -----------------------------------------------


def test_story_add_and_change_go_through_the_services(editor_client, db):
    response = editor_client.post(
        "/admin/stories/story/add/", {"title": "  Tides  ", "description": "sea", **_empty_inline()}
    )
    story = Story.objects.get()
    assert response.status_code == 302
    assert story.title == "Tides"  # story_create strips the title

    editor_client.post(change_url(story), {"title": "Tides II", "description": "sea", **_empty_inline()})
    story.refresh_from_db()
    assert story.title == "Tides II"


def _scene_inline(prefix="artifacts"):
    return {
        f"{prefix}-TOTAL_FORMS": "0",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "0",
    }


def test_scene_add_takes_the_next_position_and_change_keeps_the_story(editor_client, story, scene):
    response = editor_client.post(
        "/admin/stories/scene/add/",
        {"story": str(story.pk), "position": "", "title": "Dawn", "source_text": "", **_scene_inline()},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    added = Scene.objects.get(title="Dawn")
    assert added.position == 2

    other = story_services.story_create(title="Other")
    editor_client.post(
        change_url(added),
        {"story": str(other.pk), "position": "5", "title": "Dusk", "source_text": "x", **_scene_inline()},
    )
    added.refresh_from_db()
    assert (added.story_id, added.position, added.title) == (story.pk, 5, "Dusk")


def test_scene_position_clash_is_a_form_error(editor_client, story, scene):
    response = editor_client.post(
        "/admin/stories/scene/add/", {"story": str(story.pk), "position": "1", "title": "Clash", **_scene_inline()}
    )
    assert response.status_code == 200 and response.context["errors"]
    assert Scene.objects.count() == 1


def test_scene_add_uses_autocomplete_for_the_story(editor_client, db):
    response = editor_client.get("/admin/stories/scene/add/")
    assert b"admin-autocomplete" in response.content


# -- planning lock -------------------------------------------------------------------------------------


def test_lock_and_unlock_buttons_show_who_and_when(editor_client, scene, superuser):
    response = editor_client.post(admin_view_url(scene, "lock"))
    assert response.status_code == 302 and any("Planning locked" in m for m in messages_of(response))
    scene.refresh_from_db()
    assert scene.planning_locked and scene.planning_locked_by == superuser and scene.planning_locked_at

    page = editor_client.get(change_url(scene))
    assert b"Unlock planning" in page.content and b"boss" in page.content
    assert [e.action for e in page.context["audit_events"]] == ["lock_planning"]

    again = editor_client.post(admin_view_url(scene, "lock"))
    assert any("already_locked" in m for m in messages_of(again))

    editor_client.post(admin_view_url(scene, "unlock"))
    scene.refresh_from_db()
    assert not scene.planning_locked and scene.planning_locked_by is None
    refused = editor_client.post(admin_view_url(scene, "unlock"))
    assert any("not_locked" in m for m in messages_of(refused))


def test_bulk_lock_and_unlock_report_refusals(editor_client, story, scene):
    second = story_services.scene_create(story_id=story.pk, title="Two")
    story_services.scene_lock_planning(scene_id=second.pk)
    response = editor_client.post(
        changelist_url(Scene), {"action": "lock_planning", "_selected_action": [str(scene.pk), str(second.pk)]}
    )
    texts = messages_of(response)
    assert "Planning locked on 1 scene." in texts and any("already_locked" in m for m in texts)
    assert Scene.objects.filter(planning_locked=True).count() == 2

    editor_client.post(
        changelist_url(Scene), {"action": "unlock_planning", "_selected_action": [str(scene.pk), str(second.pk)]}
    )
    assert not Scene.objects.filter(planning_locked=True).exists()


def test_scene_page_lists_the_latest_artifact_of_each_type(editor_client, scene, service):
    from tests.conftest import SCENE_INTENT

    v1 = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    v2 = artifact_services.artifact_edit(artifact_id=v1.pk, payload={**SCENE_INTENT, "mood": "calm"})
    plan = service.create_artifact(
        scene.pk, "panel_plan", {"panels": [{"grammar_id": "a", "weight": 1, "must_show": []}]}
    )
    response = editor_client.get(change_url(scene))
    assert [a.pk for a in response.context["latest_artifacts"]] == [plan.pk, v2.pk]  # by type name
    assert f'data-artifact-id="{v2.pk}"' in response.content.decode()


def test_story_page_shows_links_inline_and_its_audit_trail(editor_client, story, published_cover):
    choose(editor_client, story, "cover", published_cover)
    response = editor_client.get(change_url(story))
    inline = next(f for f in response.context["inline_admin_formsets"] if f.opts.model is StoryArtifactLink)
    assert [form.original.artifact_id for form in inline] == [published_cover.pk]
    assert inline.has_change_permission is False and inline.has_add_permission is False
    assert {e.action for e in response.context["audit_events"]} == {"transition", "set_primary"}


@pytest.mark.parametrize("view", ["lock", "unlock", "set_primary"])
def test_unknown_ids_are_404(editor_client, db, view):
    model = "story" if view == "set_primary" else "scene"
    url = f"/admin/stories/{model}/00000000-0000-0000-0000-000000000000/{view.replace('_', '-')}/"
    assert editor_client.post(url).status_code == 404
