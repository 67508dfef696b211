"""The review queue (SPEC §13): candidates newest first, filtered by story and type, approve,
approve and make primary, reject, each with a note on the audit event, several approved at
once; keyset pages without a count, strict parameters, and the permissions of the API's
writes. Also "publish and make primary" in one transaction from the story page."""

import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image

from artifacts import services as artifact_services
from artifacts.models import Artifact
from audit.models import AuditEvent
from stories import services as story_services
from stories.models import Story, StoryArtifactLink
from tests.conftest import SCENE_INTENT

QUEUE = "/admin/artifacts/artifact/review/"


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (60, 40), (seed % 256, 40, 90)).save(out, format="PNG")
    return out.getvalue()


def candidate_image(story, scene=None, seed: int = 1):
    owner = {"scene_id": scene.pk} if scene else {"story_id": story.pk}
    made = artifact_services.artifact_create(
        **owner,
        type="render_result" if scene else "cover_image",
        kind="image",
        payload={"image_url": "render://x.png", "metadata": {}, "generation_params": {}} if scene else {"alt": "c"},
        content=png(seed),
        mime_type="image/png",
    )
    return artifact_services.artifact_transition(artifact_id=made.pk, to="candidate")


def candidate_json(scene, mood: str = "tense"):
    made = artifact_services.artifact_create(
        scene_id=scene.pk, type="scene_intent", payload={**SCENE_INTENT, "mood": mood}
    )
    return artifact_services.artifact_transition(artifact_id=made.pk, to="candidate")


@pytest.fixture
def editor_client(client, make_user):
    client.force_login(make_user("boss", superuser=True))
    return client


def staff(user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def decide(client, artifact, decision: str, note: str = "", query: str = ""):
    return client.post(QUEUE + query, {"decide": f"{artifact.pk}|{decision}", f"note-{artifact.pk}": note})


def test_candidates_newest_first_filtered_by_story_and_type(editor_client, story, scene):
    other = story_services.story_create(title="Another story")
    other_scene = story_services.scene_create(story_id=other.pk, title="Elsewhere")
    older = candidate_json(scene, "calm")
    image = candidate_image(story, scene)
    elsewhere = candidate_json(other_scene)
    artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)  # intermediate

    html = editor_client.get(QUEUE).content.decode()
    shown = [pk for pk in (str(elsewhere.pk), str(image.pk), str(older.pk)) if f'data-artifact-id="{pk}"' in html]
    assert len(shown) == 3 and html.count('class="review-row"') == 3
    assert html.index(str(elsewhere.pk)) < html.index(str(image.pk)) < html.index(str(older.pk))
    assert f"/admin/artifacts/artifact/{image.pk}/thumbnail/?size=96" in html
    assert "&quot;mood&quot;: &quot;calm&quot;" in html or '"mood": "calm"' in html  # the payload's start

    by_story = editor_client.get(f"{QUEUE}?story={story.pk}").content.decode()
    assert by_story.count('class="review-row"') == 2 and str(elsewhere.pk) not in by_story
    by_type = editor_client.get(f"{QUEUE}?story={story.pk}&type=render_result").content.decode()
    assert by_type.count('class="review-row"') == 1 and str(image.pk) in by_type


def test_approve_and_reject_keep_the_note_on_the_audit_event(editor_client, scene):
    approved, rejected = candidate_json(scene, "a"), candidate_json(scene, "b")
    response = decide(editor_client, approved, "approve", "reads well")
    assert response.status_code == 302 and response["Location"] == QUEUE
    decide(editor_client, rejected, "reject", "off tone")
    approved.refresh_from_db()
    rejected.refresh_from_db()
    assert (approved.lifecycle_state, rejected.lifecycle_state) == ("published", "archived")
    notes = dict(
        AuditEvent.objects.filter(target_id__in=[approved.pk, rejected.pk], action="transition")
        .exclude(note=None)
        .values_list("to_value", "note")
    )
    assert notes == {"published": "reads well", "archived": "off tone"}


def test_approve_and_make_primary_for_the_role_its_kind_serves(editor_client, story, scene):
    scene_image = candidate_image(story, scene, seed=1)
    cover = candidate_image(story, seed=2)
    decide(editor_client, scene_image, "approve_primary", "the one")
    decide(editor_client, cover, "approve_primary")
    links = {
        (link.role, link.scene_id): link.artifact_id
        for link in StoryArtifactLink.objects.filter(story=story, is_primary=True)
    }
    assert links == {("scene_image", scene.pk): scene_image.pk, ("cover", None): cover.pk}
    assert Story.objects.get(pk=story.pk).cover_artifact_id == cover.pk
    assert Artifact.objects.get(pk=scene_image.pk).lifecycle_state == "published"
    assert AuditEvent.objects.get(target_id=scene_image.pk, to_value="published").note == "the one"


def test_a_json_candidate_has_no_primary_button_and_is_refused_one(editor_client, scene):
    intent = candidate_json(scene)
    html = editor_client.get(QUEUE).content.decode()
    assert f'value="{intent.pk}|approve_primary"' not in html and f'value="{intent.pk}|approve"' in html
    response = decide(editor_client, intent, "approve_primary")
    assert response.status_code == 302
    assert Artifact.objects.get(pk=intent.pk).lifecycle_state == "candidate"


def test_publish_and_make_primary_is_both_or_neither(story, scene):
    image = candidate_image(story, scene)
    with pytest.raises(Exception) as refused:  # final_audio takes audio: checked before publishing
        story_services.story_publish_and_set_primary(story_id=story.pk, role="final_audio", artifact_id=image.pk)
    assert refused.value.code == "invalid_link"
    assert Artifact.objects.get(pk=image.pk).lifecycle_state == "candidate"
    assert not AuditEvent.objects.filter(target_id=image.pk, to_value="published").exists()
    link = story_services.story_publish_and_set_primary(
        story_id=story.pk, role="scene_image", artifact_id=image.pk, scene_id=scene.pk
    )
    assert link.is_primary and Artifact.objects.get(pk=image.pk).lifecycle_state == "published"


def test_bulk_approve_with_one_note(editor_client, scene):
    first, second, third = candidate_json(scene, "1"), candidate_json(scene, "2"), candidate_json(scene, "3")
    response = editor_client.post(
        QUEUE, {"bulk": "approve", "selected": [str(first.pk), str(second.pk)], "bulk-note": "batch ok"}
    )
    assert response.status_code == 302
    states = dict(Artifact.objects.filter(pk__in=[first.pk, second.pk, third.pk]).values_list("id", "lifecycle_state"))
    assert states == {first.pk: "published", second.pk: "published", third.pk: "candidate"}
    assert AuditEvent.objects.filter(note="batch ok").count() == 2


def test_keyset_pages_without_overlap(editor_client, scene, monkeypatch):
    monkeypatch.setattr("artifacts.review.PAGE_SIZE", 2)
    made = [candidate_json(scene, str(n)) for n in range(5)]
    seen, url = [], QUEUE
    for _ in range(3):
        html = editor_client.get(url).content.decode()
        on_page = [str(a.pk) for a in made if f'data-artifact-id="{a.pk}"' in html]
        seen += sorted(on_page, key=html.index)
        marker = 'class="next-page" href="'
        if marker not in html:
            break
        url = QUEUE + html.split(marker, 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert seen == [str(a.pk) for a in reversed(made)]


@pytest.mark.parametrize(
    "query, field",
    [("story=abc", "story"), ("type=nope", "type"), ("cursor=garbage", "cursor"), ("page=2", "page")],
)
def test_bad_parameters_are_a_json_400_naming_them(editor_client, db, query, field):
    response = editor_client.get(f"{QUEUE}?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter" and response.json()["field"] == field


def test_queries_do_not_grow_with_the_rows(editor_client, story, scene):
    for n in range(3):
        candidate_json(scene, str(n))
        candidate_image(story, scene, seed=n)
    editor_client.get(QUEUE)
    with CaptureQueriesContext(connection) as few:
        editor_client.get(QUEUE)
    for n in range(3, 20):
        candidate_json(scene, str(n))
        candidate_image(story, scene, seed=n)
    with CaptureQueriesContext(connection) as many:
        html = editor_client.get(QUEUE).content.decode()
    assert html.count('class="review-row"') == 40
    assert len(many) == len(few), [q["sql"][:100] for q in many.captured_queries]
    assert not any("COUNT(" in q["sql"].upper() for q in many.captured_queries)


def test_view_only_users_see_no_buttons_and_cannot_post(client, make_user, scene):
    intent = candidate_json(scene)
    client.force_login(staff(make_user("reader", "artifacts.view_artifact")))
    html = client.get(QUEUE).content.decode()
    assert str(intent.pk) in html and "|approve" not in html
    assert decide(client, intent, "approve").status_code == 403
    assert Artifact.objects.get(pk=intent.pk).lifecycle_state == "candidate"


def test_make_primary_needs_the_primary_permission(client, make_user, story, scene):
    image = candidate_image(story, scene)
    client.force_login(staff(make_user("approver", "artifacts.view_artifact", "artifacts.change_artifact")))
    html = client.get(QUEUE).content.decode()
    assert f'value="{image.pk}|approve"' in html and "approve_primary" not in html
    assert decide(client, image, "approve_primary").status_code == 403
    assert decide(client, image, "approve").status_code == 302


def test_no_view_permission_is_403(client, make_user, db):
    client.force_login(staff(make_user("outsider")))
    assert client.get(QUEUE).status_code == 403


def test_story_page_offers_candidates_as_publish_and_make_primary(editor_client, story, scene):
    image = candidate_image(story, scene)
    draft = artifact_services.artifact_create(  # an intermediate image: never offered
        scene_id=scene.pk,
        type="render_result",
        kind="image",
        payload={"image_url": "render://y.png", "metadata": {}, "generation_params": {}},
        content=png(99),
        mime_type="image/png",
    )
    page = editor_client.get(reverse("admin:stories_story_change", args=[story.pk])).content.decode()
    value = f"scene_image|{image.pk}|{scene.pk}|publish"
    assert f'value="{value}"' in page and "publish &amp; make primary" in page
    assert f'data-artifact-id="{image.pk}"' in page and f'data-artifact-id="{draft.pk}"' not in page
    editor_client.post(reverse("admin:stories_story_set_primary", args=[story.pk]), {"primary": value})
    assert StoryArtifactLink.objects.get(story=story, role="scene_image", is_primary=True).artifact_id == image.pk
    assert Artifact.objects.get(pk=image.pk).lifecycle_state == "published"


def test_storyboard_publishes_a_candidate_and_makes_it_primary(editor_client, story, scene):
    image = candidate_image(story, scene)
    board = reverse("admin:stories_story_storyboard", args=[story.pk])
    assert f'class="publish-primary" name="artifact_id" value="{image.pk}"' in editor_client.get(board).content.decode()
    editor_client.post(
        reverse("admin:stories_story_storyboard_set_primary", args=[story.pk]),
        {"artifact_id": str(image.pk), "scene_id": str(scene.pk), "publish": "1"},
    )
    assert StoryArtifactLink.objects.get(story=story, role="scene_image", is_primary=True).artifact_id == image.pk
