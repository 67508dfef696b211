"""The storyboard (SPEC §13): scenes in order with their lock, primary image, latest render
(stale or not, as ``run_pipeline --explain`` decides) and candidates; one POST makes an image
the primary; the same number of queries for 5 scenes as for 50."""

import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image

from artifacts import selectors as artifact_selectors
from artifacts import services as artifact_services
from audit.models import AuditEvent
from runs.pipeline import driver, engine
from runs.pipeline.nodes import NODES
from stories import services as story_services
from stories.models import StoryArtifactLink
from stories.storyboard import PIPELINE_TYPES, storyboard_rows
from tests.conftest import SCENE_INTENT

TEXT = 'Mara climbs the lighthouse stairs. "Hold the lamp," Mara says to Tomas. The waves strike the rocks.'


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (seed % 256, 90, 120)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def editor_client(client, make_user):
    client.force_login(make_user("boss", superuser=True))
    return client


def board_url(story) -> str:
    return reverse("admin:stories_story_storyboard", args=[story.pk])


def publish(artifact):
    artifact_services.artifact_transition(artifact_id=artifact.pk, to="candidate")
    return artifact_services.artifact_transition(artifact_id=artifact.pk, to="published")


def render(scene, seed: int, *, state: str = "intermediate"):
    made = artifact_services.artifact_create(
        scene_id=scene.pk,
        type="render_result",
        payload={"image_url": f"render://{seed}.png", "metadata": {}, "generation_params": {"seed": seed}},
        kind="image",
        content=png(seed),
        mime_type="image/png",
    )
    if state in ("candidate", "published"):
        artifact_services.artifact_transition(artifact_id=made.pk, to="candidate")
    if state == "published":
        made = artifact_services.artifact_transition(artifact_id=made.pk, to="published")
    return made


def add_scenes(story, count: int, start: int = 0) -> None:
    """Scenes with a published primary render, a newer candidate render and a planning artifact,
    every other one planning-locked."""
    for index in range(start, start + count):
        scene = story_services.scene_create(story_id=story.pk, title=f"Scene {index + 1}", source_text=TEXT)
        artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
        primary = render(scene, index, state="published")
        story_services.story_set_primary(
            story_id=story.pk, role="scene_image", artifact_id=primary.pk, scene_id=scene.pk
        )
        render(scene, index + 1000, state="candidate")
        if index % 2:
            story_services.scene_lock_planning(scene_id=scene.pk)


# -- staleness is --explain's decision ---------------------------------------------------------


def explained(scene) -> dict[str, str]:
    return {d.node.name: d.action for d in engine.explain(scene.pk)}


def actions(scene) -> dict[str, str]:
    scene.refresh_from_db()
    heads = artifact_selectors.story_scene_heads(scene.story_id, PIPELINE_TYPES).get(scene.pk, {})
    return engine.actions(scene, heads)


def would_make(scene) -> set[str]:
    return {name for name, action in actions(scene).items() if action == engine.MAKE}


@pytest.fixture
def piped_scene(story):
    scene = story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT)
    driver.run_scene(scene.pk)
    return scene


def test_nothing_is_stale_after_a_run(piped_scene):
    assert actions(piped_scene) == explained(piped_scene)
    assert would_make(piped_scene) == set()


def test_new_scene_text_makes_everything_stale_as_explain_says(piped_scene):
    story_services.scene_update(scene_id=piped_scene.pk, source_text=TEXT + " Dawn comes.")
    assert actions(piped_scene) == explained(piped_scene)
    assert would_make(piped_scene) == {node.name for node in NODES}


def test_an_edited_input_makes_its_downstream_stale_as_explain_says(piped_scene):
    spec = artifact_selectors.scene_heads(piped_scene.pk, ["render_spec"])["render_spec"]
    artifact_services.artifact_edit(artifact_id=spec.pk, payload={**spec.payload, "style": "watercolour"})
    assert actions(piped_scene) == explained(piped_scene)
    assert {"render_result", "qc_report"} <= would_make(piped_scene)


def test_a_planning_lock_keeps_planning_types_as_explain_says(piped_scene):
    story_services.scene_lock_planning(scene_id=piped_scene.pk)
    story_services.scene_update(scene_id=piped_scene.pk, source_text=TEXT + " Dawn comes.")
    assert actions(piped_scene) == explained(piped_scene)
    assert "scene_intent" not in would_make(piped_scene)


def test_a_generator_version_change_is_stale(piped_scene, settings):
    settings.PIPELINE_PARAMS = {"render_result": {"width": 999}}
    assert "render_result" in would_make(piped_scene)
    assert actions(piped_scene) == explained(piped_scene)


def test_missing_inputs_the_pipeline_cannot_make_refuse_as_explain_says(story):
    scene = story_services.scene_create(story_id=story.pk, title="Bare", source_text=TEXT)
    render(scene, 3)
    assert actions(scene) == explained(scene)
    assert actions(scene)["render_result"] == engine.MAKE  # everything before it would be made first
    story_services.scene_lock_planning(scene_id=scene.pk)  # now no planning type can be made
    assert actions(scene) == explained(scene)
    assert actions(scene)["render_result"] == engine.REFUSE


# -- the page --------------------------------------------------------------------------------


def test_the_board_shows_scenes_in_order_with_lock_primary_render_and_candidates(story, editor_client):
    add_scenes(story, 3)
    page = editor_client.get(board_url(story))
    assert page.status_code == 200
    html = page.content.decode()
    rows = storyboard_rows(story)
    assert [row.scene.position for row in rows] == [1, 2, 3]
    assert [row.scene.planning_locked for row in rows] == [False, True, False]
    for row in rows:
        assert row.primary.artifact.version == 1 and row.render.artifact.version == 2
        assert [card.artifact.lifecycle_state for card in row.candidates] == ["candidate"]
        assert f"/admin/artifacts/artifact/{row.render.artifact.pk}/thumbnail/?size=160" in html
        assert f"/admin/artifacts/artifact/{row.render.artifact.pk}/compare/{row.primary.artifact.pk}/" in html
    assert html.index("Scene 1") < html.index("Scene 2") < html.index("Scene 3")
    assert "planning locked by" not in html or "planning locked" in html
    assert f"/admin/artifacts/artifact/review/?story={story.pk}" in html
    # Open scenes: the pipeline would make their missing plans, then the render again; the
    # locked one cannot make its plans, so its render is kept (never called up to date).
    assert [row.render_status for row in rows] == ["stale", "kept", "stale"]
    assert "kept: inputs missing" in html and "stale: would be remade" in html


def test_a_run_render_is_up_to_date_and_text_makes_it_stale(piped_scene, story, editor_client):
    assert "up to date" in editor_client.get(board_url(story)).content.decode()
    story_services.scene_update(scene_id=piped_scene.pk, source_text=TEXT + " Dawn comes.")
    assert "stale: would be remade" in editor_client.get(board_url(story)).content.decode()


def test_the_story_page_links_to_the_board(story, editor_client):
    assert (
        board_url(story) in editor_client.get(reverse("admin:stories_story_change", args=[story.pk])).content.decode()
    )


def test_queries_do_not_grow_with_the_scenes(story, editor_client):
    add_scenes(story, 5)
    editor_client.get(board_url(story))  # warm the session and the content types
    with CaptureQueriesContext(connection) as five:
        assert editor_client.get(board_url(story)).status_code == 200
    add_scenes(story, 45, start=5)
    with CaptureQueriesContext(connection) as fifty:
        page = editor_client.get(board_url(story))
    assert page.status_code == 200 and page.content.decode().count('class="storyboard-scene"') == 50
    assert len(fifty) == len(five), [q["sql"][:120] for q in fifty.captured_queries]
    assert len(five) <= 8


def test_one_post_makes_a_published_render_the_primary(story, editor_client):
    add_scenes(story, 1)
    scene = story.scenes.get()
    newer = render(scene, 77, state="published")
    page = editor_client.get(board_url(story)).content.decode()
    assert f'name="artifact_id" value="{newer.pk}"' in page
    response = editor_client.post(
        reverse("admin:stories_story_storyboard_set_primary", args=[story.pk]),
        {"artifact_id": str(newer.pk), "scene_id": str(scene.pk)},
    )
    assert response.status_code == 302 and response["Location"].startswith(board_url(story))
    link = StoryArtifactLink.objects.get(story=story, role="scene_image", scene=scene, is_primary=True)
    assert link.artifact_id == newer.pk
    assert AuditEvent.objects.filter(story_id=story.pk).exists()


def test_a_refused_primary_is_a_message_not_an_error(story, editor_client):
    add_scenes(story, 1)
    scene = story.scenes.get()
    candidate = render(scene, 5, state="candidate")
    response = editor_client.post(
        reverse("admin:stories_story_storyboard_set_primary", args=[story.pk]),
        {"artifact_id": str(candidate.pk), "scene_id": str(scene.pk)},
        follow=True,
    )
    assert response.status_code == 200 and "not_published" in response.content.decode()
    assert not StoryArtifactLink.objects.filter(artifact_id=candidate.pk).exists()


def staff(user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def test_the_board_needs_the_story_view_permission_and_the_post_the_primary_permission(story, make_user, client):
    add_scenes(story, 1)
    scene = story.scenes.get()
    newer = render(scene, 78, state="published")
    client.force_login(staff(make_user("nobody", "artifacts.view_artifact")))
    nobody = client.get(board_url(story))
    assert nobody.status_code == 403
    client.force_login(staff(make_user("viewer", "stories.view_story")))
    assert client.get(board_url(story)).status_code == 200
    post = client.post(
        reverse("admin:stories_story_storyboard_set_primary", args=[story.pk]),
        {"artifact_id": str(newer.pk), "scene_id": str(scene.pk)},
    )
    assert post.status_code == 403
    assert client.get(reverse("admin:stories_story_storyboard_set_primary", args=[story.pk])).status_code == 405


def test_an_unknown_story_is_404(editor_client, db):
    assert editor_client.get("/admin/stories/story/00000000-0000-0000-0000-000000000000/storyboard/").status_code == 404
