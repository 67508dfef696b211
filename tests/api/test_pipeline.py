"""POST /v1/scenes/{id}/pipeline and /v1/stories/{id}/pipeline (SPEC §7, §10): 202 with the
run (or runs) and a Location, before any generator runs; runs.add_run is needed. Without a
broker a thread of the serving process takes the runs up once the request has committed:
these tests are transactional, so that thread sees what the request wrote."""

import uuid

import pytest

from artifacts.models import Artifact
from runs.models import Run
from runs.pipeline import driver
from stories import services as story_services

from .conftest import assert_error, client_for

TEXT = 'Mara lights the lamp. "Hold fast," Mara says to Tomas. The storm passes.'


@pytest.fixture
def scene(story):
    return story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT)


@pytest.fixture
def background():
    """The runs a request started, driven to their end before the test looks (and before the
    test database is flushed)."""
    yield lambda: driver.wait_for_background(timeout=120)
    assert driver.wait_for_background(timeout=120), "a pipeline run was still going on"


@pytest.mark.django_db(transaction=True)
def test_a_scene_pipeline_answers_202_with_its_run_and_location(writer, scene, background):
    response = writer.post(f"/v1/scenes/{scene.pk}/pipeline", {}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == f"http://testserver/v1/runs/{body['run_id']}"
    assert body["status"] == "pending" and body["scene_id"] == str(scene.pk)
    assert background()  # before reading: SQLite's shared in-memory test database locks tables
    assert writer.get(response["Location"]).json()["status"] == "succeeded"
    assert Artifact.objects.filter(scene=scene).count() == 11

    again = writer.post(f"/v1/scenes/{scene.pk}/pipeline/", {"only": ["render_spec"], "force": True}, format="json")
    assert again.status_code == 202
    assert background()
    assert Artifact.objects.filter(scene=scene, type="render_spec").count() == 2
    assert Artifact.objects.filter(scene=scene).count() == 12


@pytest.mark.django_db(transaction=True)
def test_without_a_broker_the_answer_comes_before_any_generator_runs(
    writer, scene, background, settings, tmp_path, monkeypatch
):
    settings.PIPELINE_GENERATORS = {"scene_intent": "tests.runs.plugins.slow_intent"}
    monkeypatch.setenv("PIPELINE_TEST_STATE", str(tmp_path))
    monkeypatch.setenv("PIPELINE_TEST_SLEEP", "2")
    response = writer.post(f"/v1/scenes/{scene.pk}/pipeline", {}, format="json")
    assert response.status_code == 202
    assert not (tmp_path / "slow_intent.returned").exists()  # the generator has not finished
    assert response.json()["status"] == "pending"
    assert background()
    assert (tmp_path / "slow_intent.started").exists() and (tmp_path / "slow_intent.returned").exists()
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.status == "succeeded" and not run.queued and "serving process" in run.holder
    assert Artifact.objects.filter(scene=scene).count() == 11


@pytest.mark.django_db(transaction=True)
def test_a_story_pipeline_runs_each_scene_in_position_order(writer, story, background):
    second = story_services.scene_create(story_id=story.pk, title="b", source_text="Tomas sleeps.", position=2)
    first = story_services.scene_create(story_id=story.pk, title="a", source_text=TEXT, position=1)
    response = writer.post(f"/v1/stories/{story.pk}/pipeline", {"only": ["scene_intent"]}, format="json")
    assert response.status_code == 202
    assert [run["scene_id"] for run in response.json()] == [str(first.pk), str(second.pk)]
    assert response["Location"] == f"http://testserver/v1/runs?story_id={story.pk}"
    assert background()
    listed = writer.get(response["Location"]).json()["results"]
    assert len(listed) == 2 and {run["status"] for run in listed} == {"succeeded"}
    runs = Run.objects.filter(story=story).order_by("started_at")
    assert [run.scene_id for run in runs] == [first.pk, second.pk]  # driven in position order


@pytest.mark.parametrize(
    "body, field",
    [({"only": ["bogus"]}, "only[0]"), ({"only": []}, "only"), ({"force": "maybe"}, "force"), ({"only": "x"}, "only")],
)
def test_bad_options_are_400_and_run_nothing(writer, scene, body, field):
    response = writer.post(f"/v1/scenes/{scene.pk}/pipeline", body, format="json")
    assert response.status_code == 400 and response.json()["field"].startswith(field.split("[")[0])
    assert not Run.objects.exists()


def test_unknown_owners_are_404(writer):
    assert_error(writer.post(f"/v1/scenes/{uuid.uuid4()}/pipeline", {}, format="json"), 404, "not_found")
    assert_error(writer.post(f"/v1/stories/{uuid.uuid4()}/pipeline", {}, format="json"), 404, "not_found")


def test_running_the_pipeline_needs_runs_add_run(clients, scene, make_user):
    assert clients["anonymous"].post(f"/v1/scenes/{scene.pk}/pipeline", {}, format="json").status_code == 401
    assert clients["reader"].post(f"/v1/scenes/{scene.pk}/pipeline", {}, format="json").status_code == 403
    runner = client_for(make_user("runner", "runs.add_run"))
    assert runner.post(f"/v1/scenes/{scene.pk}/pipeline", {}, format="json").status_code == 202


@pytest.mark.django_db(transaction=True)
def test_a_story_without_scenes_answers_202_with_no_runs(writer, story, background):
    """Found by schemathesis: the background start indexed the first of no runs (a 500)."""
    response = writer.post(f"/v1/stories/{story.pk}/pipeline", {}, format="json")
    assert response.status_code == 202 and response.json() == []
    assert background() and not Run.objects.exists()
