"""The admin's compare page (SPEC §13): two versions side by side, links from the artifact page."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from artifacts import compare, services
from artifacts.services import ArtifactService, prune_rows
from stories import services as story_services
from tests.conftest import PNG_BYTES, SCENE_INTENT, make_image

from .conftest import change_url


def compare_url(first, second) -> str:
    return f"/admin/artifacts/artifact/{first.pk}/compare/{second.pk}/"


@pytest.fixture
def two_versions(scene):
    first = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    second = services.artifact_edit(
        artifact_id=first.pk, payload={**SCENE_INTENT, "mood": "calm", "key_beats": ["door creaks"], "tone": "dry"}
    )
    return first, second


def test_the_page_lists_each_changed_field_with_old_and_new_values(editor_client, two_versions):
    first, second = two_versions
    response = editor_client.get(compare_url(first, second))
    assert response.status_code == 200
    html = response.content.decode()
    rows = {row.path: row.status for row in response.context["comparison"].rows}
    assert rows == {"mood": "changed", "key_beats[1]": "removed", "tone": "added"}
    assert "tense" in html and "calm" in html and "dry" in html
    assert "scene_intent v1" in html and "scene_intent v2" in html


def test_media_are_shown_side_by_side_with_type_size_and_dimensions(editor_client, story):
    first = make_image(story)
    second = make_image(story, content=PNG_BYTES + b"\0")
    response = editor_client.get(compare_url(first, second))
    assert response.status_code == 200
    media = response.context["first_media"]
    assert (media.mime_type, media.size, media.width, media.height) == ("image/png", len(PNG_BYTES), 1, 1)
    assert response.context["content_changed"] is True
    html = response.content.decode()
    assert "1 × 1 px" in html and f"/admin/artifacts/artifact/{second.pk}/content/" in html


def test_refusals_are_a_page_that_says_why(editor_client, scene, two_versions):
    first, second = two_versions
    plan = ArtifactService().create_artifact(
        scene.pk, "panel_plan", {"panels": [{"grammar_id": "w", "weight": 1, "must_show": []}]}
    )
    response = editor_client.get(compare_url(first, plan))
    assert response.status_code == 400 and "invalid_parameter" in response.content.decode()
    response = editor_client.get(f"/admin/artifacts/artifact/{first.pk}/compare/{uuid.uuid4()}/")
    assert response.status_code == 400 and "not_found" in response.content.decode()
    prune_rows([first.pk], at=timezone.now())
    response = editor_client.get(compare_url(first, second))
    assert response.status_code == 400 and "pruned" in response.content.decode()


def test_the_page_needs_the_view_permission(client, two_versions, make_user):
    first, second = two_versions
    user = make_user("staff", "auth.view_user")  # in the admin, without the artifact's view permission
    user.is_staff = True
    user.save()
    client.force_login(user)
    assert client.get(compare_url(first, second)).status_code == 403
    client.logout()
    assert client.get(compare_url(first, second)).status_code == 302  # to the login


def test_a_big_diff_renders_a_capped_page_at_a_constant_query_count(editor_client, scene):
    small_old = {**SCENE_INTENT, "f": {"a": 1}}
    big_old = {**SCENE_INTENT, **{f"k{i}": "x" * 40 for i in range(3000)}}
    big_new = {**SCENE_INTENT, **{f"k{i}": "y" * 40 for i in range(3000)}}
    a = ArtifactService().create_artifact(scene.pk, "scene_intent", small_old)
    b = services.artifact_edit(artifact_id=a.pk, payload={**small_old, "f": {"a": 2}})
    c = services.artifact_edit(artifact_id=b.pk, payload=big_old)
    d = services.artifact_edit(artifact_id=c.pk, payload=big_new)
    with CaptureQueriesContext(connection) as small:
        assert editor_client.get(compare_url(a, b)).status_code == 200
    with CaptureQueriesContext(connection) as big:
        response = editor_client.get(compare_url(c, d))
    assert len(big) == len(small)
    html = response.content.decode()
    assert html.count('class="diff-changed"') == compare.MAX_ROWS
    assert f"{3000 - compare.MAX_ROWS} more changes not shown" in html


def test_each_version_links_to_compare_with_previous(editor_client, two_versions):
    first, second = two_versions
    html = editor_client.get(change_url(second)).content.decode()
    assert compare_url(first, second) in html
    assert "compare with previous" in html
    assert "compare with the primary" not in html  # scene_intent serves no role


def test_an_image_links_to_compare_with_the_primary_of_its_role(editor_client, story, published_cover):
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
    candidate = make_image(story, content=PNG_BYTES + b"\1")
    html = editor_client.get(change_url(candidate)).content.decode()
    assert compare_url(published_cover, candidate) in html and "compare with the primary" in html
