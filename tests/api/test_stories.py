"""Stories, scenes, links and curation endpoints of SPEC §7."""

import pytest

from artifacts import services as artifact_services
from audit.models import AuditEvent
from stories.models import Scene, Story, StoryArtifactLink
from tests.conftest import make_image

from .conftest import assert_error


def test_stories_are_created_listed_read_and_patched(writer):
    created = writer.post("/v1/stories", {"title": "Tide", "description": "A harbour."}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert created["Location"] == f"http://testserver/v1/stories/{body['story_id']}"
    assert body["cover_artifact_id"] is None and body["current_run_id"] is None

    assert [s["story_id"] for s in writer.get("/v1/stories/").json()["results"]] == [body["story_id"]]
    assert writer.get(f"/v1/stories/{body['story_id']}").json()["title"] == "Tide"

    patched = writer.patch(f"/v1/stories/{body['story_id']}/", {"title": "Ebb"}, format="json")
    assert patched.status_code == 200 and patched.json()["title"] == "Ebb"
    assert patched.json()["description"] == "A harbour."
    assert Story.objects.get().title == "Ebb"

    assert_error(writer.post("/v1/stories", {"title": ""}, format="json"), 400, "blank", "title")
    assert_error(writer.patch(f"/v1/stories/{body['story_id']}", {"title": "  "}, format="json"), 400, "blank", "title")
    assert_error(
        writer.put(f"/v1/stories/{body['story_id']}", {"title": "x"}, format="json"), 405, "method_not_allowed"
    )


def test_scenes_are_created_in_order_read_and_patched(writer, story):
    url = f"/v1/stories/{story.pk}/scenes"
    first = writer.post(url, {"title": "One", "source_text": "Dawn."}, format="json")
    second = writer.post(url + "/", {"title": "Two"}, format="json")
    assert first.status_code == second.status_code == 201
    assert (first.json()["position"], second.json()["position"]) == (1, 2)
    assert second["Location"].endswith(f"/v1/scenes/{second.json()['scene_id']}")
    assert [s["title"] for s in writer.get(url).json()["results"]] == ["One", "Two"]
    assert_error(writer.post(url, {"title": "Dup", "position": 1}, format="json"), 400, "invalid", "position")

    scene_url = f"/v1/scenes/{first.json()['scene_id']}"
    assert writer.get(scene_url).json()["story_id"] == str(story.pk)
    patched = writer.patch(scene_url, {"source_text": "Dusk."}, format="json")
    assert patched.status_code == 200 and patched.json()["source_text"] == "Dusk."
    assert_error(writer.patch(scene_url, {"position": 2}, format="json"), 400, "invalid", "position")
    assert_error(writer.patch(scene_url, {"position": 0}, format="json"), 400, "min_value", "position")


def test_lock_and_unlock_planning(writer, scene):
    locked = writer.post(f"/v1/scenes/{scene.pk}/lock")
    assert locked.status_code == 200
    assert locked.json()["planning_locked"] is True and locked.json()["planning_locked_by_id"] is not None
    # Retries are safe (SPEC §7): locking a locked scene answers 200 with the scene as it is.
    again = writer.post(f"/v1/scenes/{scene.pk}/lock/")
    assert again.status_code == 200 and again.json() == locked.json()
    unlocked = writer.post(f"/v1/scenes/{scene.pk}/unlock")
    assert unlocked.status_code == 200 and unlocked.json()["planning_locked"] is False
    again = writer.post(f"/v1/scenes/{scene.pk}/unlock")
    assert again.status_code == 200 and again.json() == unlocked.json()
    assert_error(writer.post("/v1/scenes/6a3f0c1e-0000-4000-8000-000000000000/lock"), 404, "not_found")
    assert list(AuditEvent.objects.order_by("created_at").values_list("action", flat=True)) == [
        "lock_planning",
        "unlock_planning",
    ]


def test_links_are_created_listed_and_filtered(writer, story, published_cover):
    url = f"/v1/stories/{story.pk}/links"
    created = writer.post(url, {"artifact_id": str(published_cover.pk), "role": "cover"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["is_primary"] is False and body["link_id"] == str(StoryArtifactLink.objects.get().pk)
    assert [link["link_id"] for link in writer.get(url).json()["results"]] == [body["link_id"]]
    assert writer.get(url, {"is_primary": "true"}).json()["results"] == []
    assert writer.get(url, {"role": "cover"}).json()["results"][0]["artifact_id"] == str(published_cover.pk)

    again = {"artifact_id": str(published_cover.pk), "role": "cover"}
    assert_error(writer.post(url, again, format="json"), 409, "duplicate_link")
    assert_error(writer.post(url, {**again, "role": "final_audio"}, format="json"), 400, "invalid_link")
    missing = {"artifact_id": "6a3f0c1e-0000-4000-8000-000000000000", "role": "cover"}
    assert_error(writer.post(url, missing, format="json"), 400, "not_found", "artifact_id")


def test_primary_is_set_demotes_the_old_and_updates_the_story(writer, story, published_cover):
    url = f"/v1/stories/{story.pk}/primary"
    first = writer.post(url, {"role": "cover", "artifact_id": str(published_cover.pk)}, format="json")
    assert first.status_code == 200 and first.json()["is_primary"] is True
    assert writer.get(f"/v1/stories/{story.pk}").json()["cover_artifact_id"] == str(published_cover.pk)

    newer = artifact_services.artifact_create(
        story_id=story.pk,
        type="cover_image",
        payload={"alt": "b"},
        content=b"\x89PNG\r\n\x1a\nzz",
        mime_type="image/png",
    )
    assert_error(writer.post(url, {"role": "cover", "artifact_id": str(newer.pk)}, format="json"), 409, "not_published")
    artifact_services.artifact_transition(artifact_id=newer.pk, to="candidate")
    artifact_services.artifact_transition(artifact_id=newer.pk, to="published")
    second = writer.post(url + "/", {"role": "cover", "artifact_id": str(newer.pk)}, format="json")
    assert second.status_code == 200
    assert writer.get(f"/v1/stories/{story.pk}").json()["cover_artifact_id"] == str(newer.pk)
    assert StoryArtifactLink.objects.filter(is_primary=True).get().artifact_id == newer.pk
    assert_error(writer.post(url, {"role": "boss", "artifact_id": str(newer.pk)}, format="json"), 400, "invalid_choice")


@pytest.mark.parametrize("path", ["/v1/scenes", "/v1/stories/{story}/scenes/{scene}"])
def test_routes_outside_the_spec_are_404(writer, scene, path):
    assert_error(writer.get(path.format(story=scene.story_id, scene=scene.pk)), 404, "not_found")
    assert Scene.objects.count() == 1


def test_a_primary_for_another_scene_than_the_artifacts_link_is_409_not_500(writer, story, scene):
    other = Scene.objects.create(story=story, position=99, title="Y")
    image = make_image(story, "story-level", state="published")
    linked = writer.post(
        f"/v1/stories/{story.pk}/links",
        {"artifact_id": str(image.pk), "role": "scene_image", "scene_id": str(scene.pk)},
    )
    assert linked.status_code == 201
    x_primary = make_image(scene, "x", state="published")
    assert (
        writer.post(
            f"/v1/stories/{story.pk}/primary", {"role": "scene_image", "artifact_id": str(x_primary.pk)}
        ).status_code
        == 200
    )
    response = writer.post(
        f"/v1/stories/{story.pk}/primary",
        {"role": "scene_image", "artifact_id": str(image.pk), "scene_id": str(other.pk)},
    )
    assert_error(response, 409, "duplicate_link")
    assert StoryArtifactLink.objects.get(artifact=image).scene_id == scene.pk
