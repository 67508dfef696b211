"""backfill_relations: each step's produced artifacts derived_from its consumed ones; what
exists is skipped, a cycle is refused and reported, a reused output gets nothing."""

from artifacts import services as artifact_services
from artifacts.models import ArtifactRelation
from artifacts.services import ArtifactService
from runs import services as run_services
from tests.conftest import SCENE_INTENT
from tests.operations.conftest import run, summary

PLAN = {"panels": [{"grammar_id": "establishing", "weight": 1, "must_show": []}]}
LAYOUT = {"template_id": "one", "panels": [{"panel_index": 0, "x": 0, "y": 0, "w": 1, "h": 1}]}
SPEC = {"prompt": "p", "style": "ink", "characters": [], "reference_images": []}


def relations() -> set[tuple]:
    return set(ArtifactRelation.objects.values_list("from_artifact_id", "to_artifact_id", "relation_type"))


def pipeline_run(story, scene):
    """A run recorded without relations: two steps, and a stage linked without a step."""
    service = ArtifactService()
    run_ = run_services.run_create(story_id=story.pk, scene_id=scene.pk, workflow="scene_pipeline", start=True)
    first = run_services.step_start(run_id=run_.pk, node="panel_plan")
    second = run_services.step_start(run_id=run_.pk, node="layout_template")
    made = {
        "intent": service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT),
        "plan": service.create_artifact(scene.pk, "panel_plan", PLAN, created_by_step=first),
        "layout": service.create_artifact(scene.pk, "layout_template", LAYOUT, created_by_step=second),
        "spec": service.create_artifact(scene.pk, "render_spec", SPEC),
    }

    def link(name, stage, direction, step=None):
        run_services.run_link_artifact(
            run_id=run_.pk,
            artifact_id=made[name].pk,
            stage=stage,
            direction=direction,
            step_id=step.pk if step else None,
        )

    link("intent", "panel_plan", "consumed", first)
    link("plan", "panel_plan", "produced", first)
    link("plan", "layout_template", "consumed", second)
    link("layout", "layout_template", "produced", second)
    # The layout step also reports the plan it passed through: made by the first step, so
    # the second one reused it and did not make it from the plan.
    link("plan", "layout_template", "produced", second)
    link("layout", "render_spec", "consumed")  # no step: grouped by run and stage
    link("spec", "render_spec", "produced")
    return made, first, second


def test_relations_come_from_each_steps_links_once(story, scene):
    made, first, second = pipeline_run(story, scene)
    artifact_services.relation_create(
        from_artifact_id=made["plan"].pk, to_artifact_id=made["intent"].pk, relation_type="derived_from"
    )  # one exists already

    dry = run("backfill_relations", dry_run=True)
    assert dry.code == 0 and len(relations()) == 1
    outcome = run("backfill_relations", batch_size=1)
    again = run("backfill_relations")

    expected = {
        (made["plan"].pk, made["intent"].pk, "derived_from"),
        (made["layout"].pk, made["plan"].pk, "derived_from"),
        (made["spec"].pk, made["layout"].pk, "derived_from"),
    }
    assert (outcome.code, again.code) == (0, 0)
    assert relations() == expected
    for label, value in (("relations created", "2"), ("relations that exist", "1")):
        assert summary(outcome.out)[label] == value
    assert summary(dry.out)["relations would be created"] == "2"
    assert summary(outcome.out)["reused outputs (made by another step)"] == "1"
    assert (summary(again.out)["relations created"], summary(again.out)["relations that exist"]) == ("0", "3")
    layout_edge = ArtifactRelation.objects.get(from_artifact=made["layout"])
    request_id = outcome.out.splitlines()[0].removeprefix("request id: ")
    assert (layout_edge.created_by_step_id, layout_edge.request_id) == (second.pk, request_id)


def test_a_relation_that_would_close_a_cycle_is_refused_and_reported(story, scene):
    made, _, _ = pipeline_run(story, scene)
    # Recorded by hand the wrong way round: the intent "made from" the plan.
    artifact_services.relation_create(
        from_artifact_id=made["intent"].pk, to_artifact_id=made["plan"].pk, relation_type="derived_from"
    )

    outcome = run("backfill_relations")

    assert outcome.code == 1
    assert f"{made['plan'].pk} derived_from {made['intent'].pk} would close a derived_from cycle" in outcome.err
    assert summary(outcome.out)["refused: would close a cycle"] == "1"
    assert (made["plan"].pk, made["intent"].pk, "derived_from") not in relations()
    assert (made["layout"].pk, made["plan"].pk, "derived_from") in relations()
    assert run("verify_artifacts", check=["relation_cycles"]).code == 0
