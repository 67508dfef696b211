"""What a query string, a form or a header can send the admin answers a page, a redirect or
a form error, never a 500 (SPEC §12, "the admin's included"), and changes nothing. The
NUL cases fail only on PostgreSQL, which cannot compare text holding one; they run on both."""

import pytest

from artifacts.models import Artifact, LifecycleState
from runs.models import AgentStep, RunArtifactLink
from stories import services as story_services
from stories.models import Scene

from .conftest import admin_view_url, change_url, changelist_url, messages_of

LISTS = [
    "/admin/artifacts/artifact/",
    "/admin/artifacts/artifactrelation/",
    "/admin/audit/auditevent/",
    "/admin/stories/story/",
    "/admin/stories/scene/",
    "/admin/stories/storyartifactlink/",
    "/admin/runs/run/",
    "/admin/runs/agentstep/",
    "/admin/runs/runartifactlink/",
]


@pytest.mark.parametrize(
    "url",
    [
        "/admin/artifacts/artifact/?type=%00",  # the repro
        "/admin/artifacts/artifact/?q=scene_intent%00",  # the repro
        "/admin/artifacts/artifact/?lifecycle_state__exact=%00",
        "/admin/artifacts/artifact/?kind__exact=%00",
        "/admin/artifacts/artifact/?story=%00",
        "/admin/artifacts/artifactrelation/?relation_type__exact=%00",
        "/admin/audit/auditevent/?action__exact=%00",
        "/admin/stories/storyartifactlink/?role__exact=%00",
        "/admin/runs/run/?status__exact=%00",
    ],
)
def test_a_nul_in_a_list_filter_or_search_goes_back_to_the_list(editor_client, world, url):
    response = editor_client.get(url)
    assert response.status_code == 302 and response["Location"].endswith("?e=1")


def test_a_nul_in_an_autocomplete_term_finds_nothing(editor_client, world):
    response = editor_client.get(
        "/admin/autocomplete/",
        {"term": "The\x00", "app_label": "stories", "model_name": "scene", "field_name": "story"},
    )
    assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize(
    "url",
    [
        "/admin/stories/story/?title__regex=(",  # an invalid regular expression: a DataError on PostgreSQL
        "/admin/stories/story/?title__regex=(a*)*b",  # Python's backtracking engine on SQLite
        "/admin/stories/scene/?title__iregex=%5B",
        "/admin/artifacts/artifact/?created_at__year=99999",  # a year Python cannot hold
        "/admin/artifacts/artifact/?payload__contains=x",  # no index serves it
        "/admin/runs/run/?attempt__gt=" + "9" * 30,
    ],
)
def test_a_lookup_the_list_does_not_offer_is_a_400(editor_client, world, url):
    assert editor_client.get(url).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/admin/artifacts/artifact/?lifecycle_state=published&type=cover_image",
        "/admin/artifacts/artifact/?lifecycle_state__exact=published&kind__exact=image",
        "/admin/artifacts/artifact/?created_at__gte=2000-01-01+00:00:00%2B00:00&created_at__lt=9999-12-31+00:00:00%2B00:00",
        "/admin/artifacts/artifact/?story={story}",
        "/admin/artifacts/artifact/?scene={scene}",
        "/admin/stories/scene/?story={story}&planning_locked__exact=1",
        "/admin/stories/storyartifactlink/?is_primary__exact=1&role__exact=scene_image",
        "/admin/runs/agentstep/?run={run}",
        "/admin/runs/runartifactlink/?run={run}",
        "/admin/runs/run/?status__exact=succeeded",
    ],
)
def test_the_filters_and_links_the_pages_offer_still_filter(editor_client, world, url):
    url = url.format(story=world.story.pk, scene=world.scenes[0].pk, run=world.runs[0].pk)
    response = editor_client.get(url)
    assert response.status_code == 200 and response.context["cl"].result_count >= 1


def test_the_filter_links_the_story_and_run_pages_render_still_filter(editor_client, world):
    checked = 0
    for obj in (world.story, world.runs[0]):
        page = editor_client.get(change_url(obj)).content.decode()
        for model in (Artifact, Scene, AgentStep, RunArtifactLink):
            link = changelist_url(model) + "?"
            if link in page:
                query = page.split(link, 1)[1].split('"', 1)[0].replace("&amp;", "&")
                response = editor_client.get(link + query)
                assert response.status_code == 200 and response.context["cl"].result_count >= 1, link + query
                checked += 1
    assert checked == 4  # the story's artifacts and scenes, the run's steps and records


def test_a_bulk_action_on_a_value_that_is_no_id_changes_nothing(editor_client, world):
    """The issue's repro: a non-UUID among the selected rows was a 500."""
    image = Artifact.objects.filter(lifecycle_state=LifecycleState.CANDIDATE).first() or world.artifacts[0]
    open_scene = story_services.scene_create(story_id=world.story.pk, title="open")
    for url, action, row in (
        ("/admin/artifacts/artifact/", "archive", image),
        ("/admin/stories/scene/", "lock_planning", open_scene),
    ):
        response = editor_client.post(url, {"action": action, "_selected_action": [str(row.pk), "not-a-uuid"]})
        assert response.status_code == 302
        assert any("'not-a-uuid'" in message and "nothing was changed" in message for message in messages_of(response))
    assert Artifact.objects.get(pk=image.pk).lifecycle_state == image.lifecycle_state
    assert Scene.objects.get(pk=open_scene.pk).planning_locked is False


def _scene_form(position, title="two"):
    return {
        "position": position,
        "title": title,
        "source_text": "",
        "artifacts-TOTAL_FORMS": "0",
        "artifacts-INITIAL_FORMS": "0",
    }


@pytest.mark.parametrize(
    "position, error",
    [
        ("1", "The story already has a scene at position 1."),  # the repro: a taken position
        ("0", "Ensure this value is greater than or equal to 1."),  # the repro: position 0
    ],
)
def test_moving_a_scene_onto_a_position_the_service_refuses_is_a_form_error(editor_client, world, position, error):
    second = story_services.scene_create(story_id=world.story.pk, title="two")
    response = editor_client.post(change_url(second), _scene_form(position))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["position"] == [error]
    second.refresh_from_db()
    assert second.position == 2


def test_adding_a_scene_at_position_0_is_a_form_error(editor_client, world):
    response = editor_client.post(
        "/admin/stories/scene/add/", {"story": str(world.story.pk), **_scene_form("0", title="zero")}
    )
    assert response.status_code == 200 and response.context["adminform"].form.errors["position"]
    assert not Scene.objects.filter(title="zero").exists()


def test_moving_a_scene_to_a_free_position_still_works(editor_client, world):
    second = story_services.scene_create(story_id=world.story.pk, title="two")
    response = editor_client.post(change_url(second), _scene_form("7"))
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.position == 7


@pytest.mark.parametrize(
    "header, status",
    [("bytes=" + "9" * 5000 + "-", 416), ("bytes=-" + "9" * 5000, 206), ("bytes=0-" + "9" * 5000, 206)],
    ids=["start", "suffix", "end"],
)
def test_the_preview_takes_a_range_of_thousands_of_digits(editor_client, world, header, status):
    image = world.artifacts[3]
    response = editor_client.get(admin_view_url(image, "content"), HTTP_RANGE=header)
    assert response.status_code == status
    if status == 416:
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "range_not_satisfiable"
        assert response["Content-Range"] == f"bytes */{image.content_size}"
