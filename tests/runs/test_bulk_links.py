"""run_link_artifacts and step_finish(links=...): what a step consumed and produced, recorded
at once (SPEC §10 "Runs")."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from artifacts.services import ArtifactService
from kernel.errors import InvalidInput, InvalidTransition, NotFound
from runs import services as run_services
from runs.models import AgentStep, RunArtifactLink
from tests.conftest import SCENE_INTENT


def intents(scene, n):
    service = ArtifactService()
    return [service.create_artifact(scene.pk, "scene_intent", {**SCENE_INTENT, "mood": f"m{i}"}) for i in range(n)]


@pytest.fixture
def step(story):
    run = run_services.run_create(story_id=story.pk, workflow="w", start=True)
    return run_services.step_start(run_id=run.pk, node="panel_plan")


def stored_links():
    return sorted(RunArtifactLink.objects.values_list("artifact_id", "stage", "direction", "step_id"))


def test_bulk_links_are_recorded_in_order_and_idempotent(scene, step):
    a, b, c = intents(scene, 3)
    first = run_services.run_link_artifacts(
        run_id=step.run_id,
        step_id=step.pk,
        stage="panel_plan",
        links=[(a.pk, "consumed"), (str(b.pk), "consumed"), (c.pk, "produced"), (a.pk, "consumed")],
    )
    assert [(link.artifact_id, link.direction, created) for link, created in first] == [
        (a.pk, "consumed", True),
        (b.pk, "consumed", True),
        (c.pk, "produced", True),
    ]
    stored = {link.pk: link for link in RunArtifactLink.objects.all()}
    assert {link.pk for link, _ in first} == set(stored)
    for link, _ in first:  # what it returns is what was stored
        assert (link.run_id, link.step_id, link.stage, link.created_at) == (
            step.run_id,
            step.pk,
            "panel_plan",
            stored[link.pk].created_at,
        )
    # Again, with one more: the existing links come back as they are, only the new one is written.
    again = run_services.run_link_artifacts(
        run_id=step.run_id, stage="panel_plan", links=[(c.pk, "produced"), (a.pk, "produced"), (a.pk, "consumed")]
    )
    assert [(link.artifact_id, link.direction, created) for link, created in again] == [
        (c.pk, "produced", False),
        (a.pk, "produced", True),
        (a.pk, "consumed", False),
    ]
    assert again[0][0].pk == first[2][0].pk and again[0][0].step_id == step.pk
    assert RunArtifactLink.objects.count() == 4


def test_the_single_link_service_is_the_bulk_one(scene, step):
    (a,) = intents(scene, 1)
    link, created = run_services.run_link_artifact(
        run_id=step.run_id, artifact_id=a.pk, stage="s", direction="consumed", step_id=step.pk
    )
    again, created_again = run_services.run_link_artifact(
        run_id=step.run_id, artifact_id=a.pk, stage="s", direction="consumed"
    )
    assert (created, created_again, again.pk, again.step_id) == (True, False, link.pk, step.pk)


def test_a_missing_artifact_is_refused_and_nothing_is_written(scene, step):
    a, b = intents(scene, 2)
    missing = uuid.uuid4()
    with pytest.raises(NotFound) as refused:
        run_services.run_link_artifacts(
            run_id=step.run_id,
            step_id=step.pk,
            stage="panel_plan",
            links=[(a.pk, "consumed"), (missing, "consumed"), (b.pk, "produced")],
        )
    assert (refused.value.field, str(missing) in str(refused.value)) == ("artifact_id", True)
    with pytest.raises(NotFound):
        run_services.run_link_artifacts(run_id=step.run_id, stage="s", links=[("not-a-uuid", "consumed")])
    assert RunArtifactLink.objects.count() == 0


def test_the_run_the_step_and_the_directions_are_checked(story, scene, step):
    (a,) = intents(scene, 1)
    other = run_services.run_create(story_id=story.pk, workflow="w")
    cases = [
        (InvalidInput, "step_id", {"run_id": other.pk, "step_id": step.pk}),
        (NotFound, "run_id", {"run_id": uuid.uuid4(), "step_id": step.pk}),
        (NotFound, "run_id", {"run_id": uuid.uuid4()}),
        (NotFound, "step_id", {"run_id": step.run_id, "step_id": uuid.uuid4()}),
    ]
    for error, field, ids in cases:
        with pytest.raises(error) as refused:
            run_services.run_link_artifacts(stage="s", links=[(a.pk, "consumed")], **ids)
        assert refused.value.field == field
    for links in ([(a.pk, "sideways")], [(a.pk,)], "ab", [a.pk]):
        with pytest.raises(InvalidInput):
            run_services.run_link_artifacts(run_id=step.run_id, stage="s", links=links)
    with pytest.raises(InvalidInput):
        run_services.run_link_artifacts(run_id=step.run_id, stage=" ", links=[(a.pk, "consumed")])
    assert run_services.run_link_artifacts(run_id=step.run_id, stage="s", links=[]) == []
    assert RunArtifactLink.objects.count() == 0


def test_queries_do_not_grow_with_the_number_of_links(scene, step):
    made = intents(scene, 12)

    def link(artifacts, stage):
        with CaptureQueriesContext(connection) as queries:
            run_services.run_link_artifacts(
                run_id=step.run_id, step_id=step.pk, stage=stage, links=[(x.pk, "consumed") for x in artifacts]
            )
        return len(queries)

    # The step, the artifacts (held against a prune and read whether any is pruned, one IN),
    # the INSERT; and this test's transaction's savepoint.
    assert link(made[:1], "one") == link(made[1:], "eleven") == 5
    assert RunArtifactLink.objects.count() == 12
    # All there already: one more read of the existing links, whatever their number.
    assert link(made[:1], "one") == link(made[1:], "eleven") == 6
    assert RunArtifactLink.objects.count() == 12


def test_a_step_finishes_with_its_links_in_one_action(scene, step):
    a, b, out = intents(scene, 3)
    links = [(a.pk, "consumed"), (b.pk, "consumed"), (out.pk, "produced")]
    with CaptureQueriesContext(connection) as queries:
        done = run_services.step_finish(step_id=step.pk, status="succeeded", output_summary={"v": 1}, links=links)
    # Savepoint, the artifacts held and whether any is pruned (one IN), the step's lock, the
    # INSERT, the UPDATE, release.
    assert len(queries) == 6
    assert (done.status, done.output_summary) == ("succeeded", {"v": 1})
    assert stored_links() == sorted(
        [(a.pk, "panel_plan", "consumed", step.pk), (b.pk, "panel_plan", "consumed", step.pk)]
        + [(out.pk, "panel_plan", "produced", step.pk)]
    )


def test_a_step_that_cannot_finish_records_no_links(scene, step):
    a, b = intents(scene, 2)
    with pytest.raises(NotFound):
        run_services.step_finish(
            step_id=step.pk, status="succeeded", links=[(a.pk, "consumed"), (uuid.uuid4(), "produced")]
        )
    assert AgentStep.objects.get(pk=step.pk).status == "running" and RunArtifactLink.objects.count() == 0
    run_services.step_finish(step_id=step.pk, status="failed", error="lost")
    with pytest.raises(InvalidTransition):  # taken over and finished by another delivery
        run_services.step_finish(step_id=step.pk, status="succeeded", links=[(b.pk, "produced")])
    assert RunArtifactLink.objects.count() == 0
