import pytest

from artifacts.services import ArtifactService
from kernel.errors import InvalidInput, InvalidTransition
from runs import services as run_services
from runs.models import RunArtifactLink
from tests.conftest import SCENE_INTENT


def test_a_run_becomes_the_story_current_run_and_moves_through_its_statuses(story, scene, make_user):
    user = make_user("worker")
    run = run_services.run_create(story_id=story.pk, scene_id=scene.pk, workflow="scene_pipeline", actor=user)
    story.refresh_from_db()
    assert (story.current_run_id, run.status, run.triggered_by, run.started_at) == (run.pk, "pending", user, None)
    run = run_services.run_set_status(run_id=run.pk, status="running")
    assert run.started_at is not None
    run = run_services.run_set_status(run_id=run.pk, status="failed", error="model timed out")
    assert (run.status, run.error, run.finished_at is not None) == ("failed", "model timed out", True)
    resumed = run_services.run_set_status(run_id=run.pk, status="running")
    assert (resumed.finished_at, resumed.error) == (None, "")
    finished = run_services.run_set_status(run_id=run.pk, status="succeeded")
    with pytest.raises(InvalidTransition):
        run_services.run_set_status(run_id=finished.pk, status="running")
    with pytest.raises(InvalidInput):
        run_services.run_set_status(run_id=finished.pk, status="exploded")


def test_run_input_is_checked(story):
    other = run_services.run_create(story_id=story.pk, workflow="w")
    with pytest.raises(InvalidInput):
        run_services.run_create(story_id=story.pk, workflow=" ")
    with pytest.raises(InvalidInput):
        run_services.run_create(story_id=story.pk, workflow="w", params=[1])
    assert other.params == {}


def test_steps_are_numbered_per_run_and_finish_once(story):
    run = run_services.run_create(story_id=story.pk, workflow="w", start=True)
    first = run_services.step_start(run_id=run.pk, node="scene_intent", agent="planner", input_summary={"chars": 10})
    second = run_services.step_start(run_id=run.pk, node="panel_plan")
    assert (first.sequence, second.sequence, first.status) == (1, 2, "running")
    done = run_services.step_finish(step_id=first.pk, status="succeeded", output_summary={"version": 1})
    assert done.finished_at is not None
    with pytest.raises(InvalidTransition):
        run_services.step_finish(step_id=first.pk, status="failed")


def test_artifact_links_are_idempotent_and_checked(story, scene):
    run = run_services.run_create(story_id=story.pk, workflow="w", start=True)
    step = run_services.step_start(run_id=run.pk, node="scene_intent")
    artifact = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    link, created = run_services.run_link_artifact(
        run_id=run.pk, artifact_id=artifact.pk, stage="scene_intent", direction="produced", step_id=step.pk
    )
    again, created_again = run_services.run_link_artifact(
        run_id=run.pk, artifact_id=artifact.pk, stage="scene_intent", direction="produced"
    )
    assert (created, created_again, again.pk) == (True, False, link.pk)
    assert RunArtifactLink.objects.count() == 1
    with pytest.raises(InvalidInput):
        run_services.run_link_artifact(run_id=run.pk, artifact_id=artifact.pk, stage="x", direction="sideways")
    other_run = run_services.run_create(story_id=story.pk, workflow="w")
    with pytest.raises(InvalidInput):
        run_services.run_link_artifact(
            run_id=other_run.pk, artifact_id=artifact.pk, stage="x", direction="consumed", step_id=step.pk
        )


def test_a_step_can_be_recorded_already_finished(story):
    run = run_services.run_create(story_id=story.pk, workflow="w", start=True)
    step = run_services.step_record(run_id=run.pk, node="qc_report", status="skipped", output_summary={"why": "reused"})
    assert (step.sequence, step.status, step.output_summary, step.finished_at is not None) == (
        1,
        "skipped",
        {"why": "reused"},
        True,
    )
    with pytest.raises(InvalidInput):
        run_services.step_record(run_id=run.pk, node="qc_report", error="not yet")
    with pytest.raises(InvalidInput):
        run_services.step_record(run_id=run.pk, node="qc_report", status="pending")
    assert run.steps.count() == 1
