"""The pipeline from the admin (SPEC §13): Explain and Run pipeline on scene and story pages,
and the run page that says per step why it reused or remade."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from artifacts import services as artifact_services
from artifacts.models import Artifact, ArtifactRelation
from audit.models import AuditEvent
from runs.models import AgentStep, Run, RunArtifactLink
from runs.pipeline import driver
from stories import services as story_services

from .conftest import admin_view_url, change_url

TEXT = (
    "Mara climbs the lighthouse stairs as the storm rises. "
    '"Hold the lamp steady," Mara says to Tomas. '
    "At dawn the sea is calm again."
)
MODELS = (Artifact, ArtifactRelation, Run, AgentStep, RunArtifactLink, AuditEvent)


def counts() -> dict:
    return {model.__name__: model.objects.count() for model in MODELS}


@pytest.fixture
def scene(story):
    return story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT)


def staff(make_user, name, *perms) -> Client:
    user = make_user(name, *perms)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(make_user):
    return staff(make_user, "viewer", "stories.view_scene", "stories.view_story", "runs.view_run")


@pytest.fixture
def runner(make_user):
    return staff(make_user, "runner", "stories.view_scene", "stories.view_story", "runs.view_run", "runs.add_run")


def test_scene_and_story_pages_offer_explain_and_run_only_with_the_permission(viewer, runner, scene, story):
    for obj in (scene, story):
        page = viewer.get(change_url(obj)).content.decode()
        assert admin_view_url(obj, "explain") in page
        assert "run-pipeline-action" not in page
        page = runner.get(change_url(obj)).content.decode()
        assert admin_view_url(obj, "run_pipeline") in page and "csrfmiddlewaretoken" in page


def test_run_pipeline_without_runs_add_run_is_403_and_writes_nothing(viewer, scene, story):
    before = counts()
    for obj in (scene, story):
        assert viewer.post(admin_view_url(obj, "run_pipeline")).status_code == 403
    assert counts() == before


def test_run_pipeline_is_a_post_with_csrf(make_user, scene):
    user = make_user("csrf", "stories.view_scene", "runs.add_run")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(admin_view_url(scene, "run_pipeline")).status_code == 405
    assert client.post(admin_view_url(scene, "run_pipeline")).status_code == 403  # no CSRF token
    assert Run.objects.count() == 0


def test_run_pipeline_from_a_scene_starts_a_run_and_lands_on_its_page(
    runner, scene, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = runner.post(admin_view_url(scene, "run_pipeline"))
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change_url(run)
    assert run.scene_id == scene.pk and run.status == "pending" and run.workflow == "scene_pipeline"
    assert run.triggered_by.username == "runner"
    assert len(callbacks) == 1  # the background start, as the API's POST does (not run here)


def test_run_pipeline_from_a_story_starts_one_run_per_scene(runner, story, django_capture_on_commit_callbacks):
    for title in ("One", "Two"):
        story_services.scene_create(story_id=story.pk, title=title, source_text=TEXT)
    with django_capture_on_commit_callbacks(execute=False):
        response = runner.post(admin_view_url(story, "run_pipeline"), {"force": "1"})
    assert Run.objects.count() == 2
    assert all(run.params["force"] for run in Run.objects.all())
    assert response.status_code == 302 and f"q={story.pk}" in response["Location"]


def test_explain_says_why_per_node_and_writes_nothing(viewer, scene):
    driver.run_scene(scene.pk)
    intent = Artifact.objects.get(scene=scene, type="scene_intent")
    artifact_services.artifact_edit(artifact_id=intent.pk, payload={**intent.payload, "mood": "calm"})
    before = counts()
    response = viewer.get(admin_view_url(scene, "explain"))
    assert counts() == before
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-node="scene_intent" data-action="reuse"' in page
    assert 'data-node="panel_plan" data-action="remake"' in page
    assert "scene_intent changed (v1 -&gt; v2)" in page
    assert "Nothing was written" in page
    forced = viewer.get(admin_view_url(scene, "explain") + "?force=1").content.decode()
    assert 'data-node="scene_intent" data-action="remake"' in forced and "forced" in forced
    assert counts() == before


def test_explain_of_a_story_has_a_table_per_scene(viewer, story):
    scenes = [story_services.scene_create(story_id=story.pk, title=t, source_text=TEXT) for t in ("A", "B")]
    driver.run_scene(scenes[0].pk)
    page = viewer.get(admin_view_url(story, "explain")).content.decode()
    for scene in scenes:
        assert f'data-scene-id="{scene.pk}"' in page
    assert page.count('data-action="reuse"') == 11 and page.count("nothing yet") >= 1


def _explain_queries(client, obj) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(admin_view_url(obj, "explain")).status_code == 200
    return len(queries)


def test_explain_queries_are_constant_in_the_number_of_scenes_and_nodes(viewer, story):
    first = story_services.scene_create(story_id=story.pk, title="A", source_text=TEXT)
    driver.run_scene(first.pk)
    one = _explain_queries(viewer, story)
    scene_one = _explain_queries(viewer, first)
    for title in ("B", "C", "D"):
        scene = story_services.scene_create(story_id=story.pk, title=title, source_text=TEXT + title)
        driver.run_scene(scene.pk)
    intent = Artifact.objects.filter(scene__title="B", type="scene_intent").get()
    artifact_services.artifact_edit(artifact_id=intent.pk, payload={**intent.payload, "mood": "calm"})
    assert _explain_queries(viewer, story) == one
    # One scene whose every node is remade (with the reasons read for each) costs the same.
    assert _explain_queries(viewer, Artifact.objects.get(pk=intent.pk).scene) == scene_one


def test_the_run_page_says_per_step_why_with_its_inputs_and_outputs(viewer, scene):
    driver.run_scene(scene.pk)
    intent = Artifact.objects.get(scene=scene, type="scene_intent")
    artifact_services.artifact_edit(artifact_id=intent.pk, payload={**intent.payload, "mood": "calm"})
    run = driver.run_scene(scene.pk).run
    page = viewer.get(change_url(run)).content.decode()
    assert 'id="steps-group"' in page
    assert page.count("data-step-id=") == 11
    assert "scene_intent changed (v1 -&gt; v2)" in page  # the reason, in words
    assert '"decision"' not in page and "input_summary" not in page  # never the raw JSON
    assert "decision-reused" in page and "decision-remade" in page
    first_run = Run.objects.order_by("created_at").first()
    assert "decision-made" in viewer.get(change_url(first_run)).content.decode()
    plan = Artifact.objects.filter(scene=scene, type="panel_plan").order_by("-version").first()
    assert f'href="/admin/artifacts/artifact/{plan.pk}/change/"' in page
    assert 'class="artifact-thumb"' in page
    render = Artifact.objects.filter(scene=scene, type="render_result").order_by("-version").first()
    assert render.kind == "image"
    assert f'src="/admin/artifacts/artifact/{render.pk}/thumbnail/?size=48"' in page  # the render, drawn


def test_the_run_page_costs_the_same_for_few_and_many_steps(viewer, scene):
    run = driver.run_scene(scene.pk, only=["scene_intent"]).run
    with CaptureQueriesContext(connection) as few:
        viewer.get(change_url(run))
    run = driver.run_scene(scene.pk, force=True).run
    with CaptureQueriesContext(connection) as many:
        viewer.get(change_url(run))
    assert len(few) == len(many)


def test_explain_needs_the_view_permission_and_an_existing_object(make_user, viewer, scene):
    outsider = staff(make_user, "outsider", "runs.view_run")
    assert outsider.get(admin_view_url(scene, "explain")).status_code == 403
    assert viewer.get("/admin/stories/scene/00000000-0000-0000-0000-000000000000/explain/").status_code == 404
    assert viewer.get("/admin/stories/scene/not-a-uuid/explain/").status_code == 404
    assert Client().get(admin_view_url(scene, "explain")).status_code == 302  # to the admin login
