"""The resumable pipeline end to end (SPEC §10), through the run_pipeline command."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse
from PIL import Image

from artifacts import services as artifact_services
from artifacts.models import Artifact, ArtifactRelation
from artifacts.payloads import PLANNING_TYPES, validate_payload
from runs.models import AgentStep, Run, RunArtifactLink
from runs.pipeline.nodes import NODES, downstream
from stories import services as story_services
from tests.api.conftest import WRITER_PERMS, client_for

ROOT = Path(__file__).resolve().parents[2]
TYPES = [node.name for node in NODES]
TEXT = (
    "Mara climbs the lighthouse stairs as the storm rises. "
    '"Hold the lamp steady," Mara says to Tomas. '
    "Tomas grips the rail with cold hands. "
    "The waves strike the rocks below. "
    '"We will not lose the light tonight," Tomas answers. '
    "At dawn the sea is calm again."
)


@pytest.fixture
def scene(story):
    return story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT)


def run_pipeline(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("run_pipeline", *[str(a) for a in args], stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue(), err.getvalue()


def latest(scene, type_name) -> Artifact:
    return Artifact.objects.filter(scene=scene, type=type_name).order_by("-version").first()


def latest_versions(scene) -> dict[str, int]:
    return {t: latest(scene, t).version for t in TYPES}


def steps_of(run) -> dict[str, str]:
    return dict(AgentStep.objects.filter(run=run).order_by("sequence").values_list("node", "status"))


def world_counts():
    return [m.objects.count() for m in (Artifact, ArtifactRelation, Run, AgentStep, RunArtifactLink)]


# -- a full run ---------------------------------------------------------------------------


def test_a_full_run_makes_each_type_once_from_the_text_with_full_provenance(scene):
    code, out, err = run_pipeline("--scene", scene.pk)
    assert code == 0, err
    assert "made 11" in out
    artifacts = {a.type: a for a in Artifact.objects.filter(scene=scene)}
    assert sorted(artifacts) == sorted(TYPES) and all(a.version == 1 for a in artifacts.values())
    for artifact in artifacts.values():
        validate_payload(artifact.type, artifact.payload)
        assert len(artifact.fingerprint) == 64

    # Derived from the text: its names and its quoted speech.
    names = {c["name"] for c in artifacts["visual_plan"].payload["characters"]}
    assert {"Mara", "Tomas"} <= names
    lines = artifacts["dialogue_suggestions"].payload["lines"]
    assert {line["text"] for line in lines} >= {"Hold the lamp steady,", "We will not lose the light tonight,"} or any(
        "Hold the lamp steady" in line["text"] for line in lines
    )
    assert any(line["speaker"] == "Mara" for line in lines)

    # A real PNG of the layout's size, served at the URL its payload names.
    image = artifacts["render_result"]
    assert image.kind == "image" and image.mime_type == "image/png"
    assert image.payload["image_url"] == f"/v1/artifacts/{image.pk}/content"
    with image.content.open("rb") as handle:
        picture = Image.open(handle)
        picture.verify()
    assert (picture.width, picture.height) == (image.payload["metadata"]["width"], image.payload["metadata"]["height"])

    # One run, one step per node in stage order, every input consumed, every output produced.
    run = Run.objects.get(scene=scene)
    assert run.status == "succeeded" and run.workflow == "scene_pipeline"
    assert list(steps_of(run)) == TYPES and set(steps_of(run).values()) == {"succeeded"}
    for node in NODES:
        made = artifacts[node.name]
        assert made.created_by_step.node == node.name
        consumed = set(
            RunArtifactLink.objects.filter(run=run, stage=node.name, direction="consumed").values_list(
                "artifact_id", flat=True
            )
        )
        assert consumed == {artifacts[t].pk for t in node.consumes}
        assert RunArtifactLink.objects.filter(run=run, stage=node.name, direction="produced", artifact=made).exists()
        derived = set(
            ArtifactRelation.objects.filter(from_artifact=made, relation_type="derived_from").values_list(
                "to_artifact_id", flat=True
            )
        )
        assert derived == {artifacts[t].pk for t in node.consumes}
    story = scene.story
    story.refresh_from_db()
    assert story.current_run_id == run.pk


def test_a_second_run_makes_nothing(scene):
    run_pipeline("--scene", scene.pk)
    before = Artifact.objects.count()
    code, out, _ = run_pipeline("--scene", scene.pk)
    assert code == 0 and Artifact.objects.count() == before
    second = Run.objects.filter(scene=scene).order_by("-created_at").first()
    assert set(steps_of(second).values()) == {"skipped"} and len(steps_of(second)) == 11
    assert "made 0" in out and "reused 11" in out


def test_explain_writes_nothing_and_says_why(scene):
    before = world_counts()
    code, out, _ = run_pipeline("--scene", scene.pk, "--explain")
    assert code == 0 and world_counts() == before
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert sorted(lines) == sorted(TYPES) and all("remake  nothing yet" in line for line in lines.values())
    run_pipeline("--scene", scene.pk)
    _, out, _ = run_pipeline("--scene", scene.pk, "--explain")
    assert out.count("fingerprint matches") == 11


# -- what an edit remakes -------------------------------------------------------------------


def remade(scene, before: dict[str, int]) -> set[str]:
    return {t for t, v in latest_versions(scene).items() if v != before[t]}


def test_an_edit_in_the_admin_remakes_exactly_what_is_downstream_and_explain_names_it(scene):
    run_pipeline("--scene", scene.pk)
    plan = latest(scene, "panel_plan")
    edited = artifact_services.artifact_edit(artifact_id=plan.pk, payload={**plan.payload, "note": "editor's cut"})
    assert edited.fingerprint == plan.fingerprint  # counts as made from the same inputs

    _, out, _ = run_pipeline("--scene", scene.pk, "--explain")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    expected = downstream({"panel_plan"})
    for type_name in TYPES:
        if type_name in expected:
            assert "remake" in lines[type_name], lines[type_name]
        else:
            assert "reuse" in lines[type_name], lines[type_name]
    # Every node downstream names the root change, and the input it arrives through.
    assert lines["panel_plan_normalized"].endswith("remake  panel_plan changed (v1 -> v2)")
    for type_name in expected - {"panel_plan_normalized"}:
        assert "panel_plan changed (v1 -> v2), through " in lines[type_name], lines[type_name]
    assert "through panel_plan_normalized" in lines["layout_template"]

    before = latest_versions(scene)
    code, _, _ = run_pipeline("--scene", scene.pk)
    assert code == 0
    assert remade(scene, before) == expected
    assert latest(scene, "panel_plan").pk == edited.pk  # kept, not remade
    # The run's steps give the same reasons (the admin's run page shows them).
    run = Run.objects.filter(scene=scene).order_by("-created_at").first()
    for step in AgentStep.objects.filter(run=run, node__in=expected):
        assert any("panel_plan changed (v1 -> v2)" in r for r in step.input_summary["reasons"]), step.node


def test_after_an_edit_of_scene_intent_every_remade_node_names_it_in_explain_and_in_its_step(scene, make_user):
    run_pipeline("--scene", scene.pk)
    intent = latest(scene, "scene_intent")
    artifact_services.artifact_edit(artifact_id=intent.pk, payload={**intent.payload, "mood": "hopeful"})
    _, out, _ = run_pipeline("--scene", scene.pk, "--explain")
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    expected = downstream({"scene_intent"})
    for type_name in TYPES:
        if type_name in expected:
            assert "scene_intent changed (v1 -> v2)" in lines[type_name], lines[type_name]
        else:
            assert "reuse" in lines[type_name], lines[type_name]
    assert lines["panel_plan"].endswith("remake  scene_intent changed (v1 -> v2)")  # read directly
    assert "scene_intent changed (v1 -> v2), through panel_semantics" in lines["render_spec"]

    code, _, _ = run_pipeline("--scene", scene.pk)
    assert code == 0
    run = Run.objects.filter(scene=scene).order_by("-created_at").first()
    reasons = {s.node: s.input_summary["reasons"] for s in AgentStep.objects.filter(run=run, status="succeeded")}
    assert set(reasons) == expected
    assert all(any("scene_intent changed (v1 -> v2)" in r for r in rs) for rs in reasons.values()), reasons

    # The admin's run page says the same for each step.
    admin = Client()
    admin.force_login(make_user("boss", superuser=True))
    page = admin.get(reverse("admin:runs_run_change", args=[run.pk])).content.decode()
    assert page.count("scene_intent changed (v1 -&gt; v2)") >= len(expected)
    assert "v1: fingerprint matches" in page  # the reused ones say why too


def test_a_clients_new_version_over_the_api_remakes_what_is_downstream(scene, make_user):
    run_pipeline("--scene", scene.pk)
    writer = client_for(make_user("writer", *WRITER_PERMS))
    dialogue = latest(scene, "dialogue_suggestions").payload
    posted = writer.post(
        f"/v1/scenes/{scene.pk}/artifacts",
        {"type": "dialogue_suggestions", "payload": {**dialogue, "lines": dialogue["lines"][:1]}},
        format="json",
    )
    assert posted.status_code == 201
    before = latest_versions(scene)
    run_pipeline("--scene", scene.pk)
    assert remade(scene, before) == downstream({"dialogue_suggestions"})


def test_a_changed_scene_text_remakes_every_text_reader_and_below(scene):
    run_pipeline("--scene", scene.pk)
    story_services.scene_update(scene_id=scene.pk, source_text=TEXT + " Mara smiles.")
    _, out, _ = run_pipeline("--scene", scene.pk, "--explain")
    assert "the scene text changed" in out
    before = latest_versions(scene)
    run_pipeline("--scene", scene.pk)
    assert remade(scene, before) == set(TYPES)


def test_a_new_generator_version_remakes_that_node_and_below(scene, monkeypatch):
    run_pipeline("--scene", scene.pk)
    from runs.pipeline.nodes import BY_NAME

    function, _ = BY_NAME["layout_template"].generator()
    monkeypatch.setattr(function, "version", "2")
    _, out, _ = run_pipeline("--scene", scene.pk, "--explain")
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert lines["layout_template"].endswith("remake  layout_template's generator version changed (1 -> 2)")
    for type_name in downstream({"layout_template"}):  # named in every node it reaches
        assert "layout_template's generator version changed (1 -> 2), through " in lines[type_name], type_name
    before = latest_versions(scene)
    run_pipeline("--scene", scene.pk)
    assert remade(scene, before) == {"layout_template"} | downstream({"layout_template"})


def test_explain_names_a_nodes_own_change_beside_one_that_reaches_it_from_upstream(scene, monkeypatch):
    run_pipeline("--scene", scene.pk)
    from runs.pipeline.nodes import BY_NAME

    function, _ = BY_NAME["layout_template"].generator()
    monkeypatch.setattr(function, "version", "2")
    story_services.scene_update(scene_id=scene.pk, source_text=TEXT + " Mara smiles.")
    _, out, _ = run_pipeline("--scene", scene.pk, "--explain")
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert lines["layout_template"].endswith(
        "remake  layout_template's generator version changed (1 -> 2); "
        "the scene text changed, through panel_plan_normalized"
    )
    assert "layout_template's generator version changed (1 -> 2), through layout_template" in lines["panel_semantics"]


def test_force_remakes_everything_once(scene):
    run_pipeline("--scene", scene.pk)
    before = latest_versions(scene)
    run_pipeline("--scene", scene.pk, "--force")
    assert remade(scene, before) == set(TYPES)
    assert all(v == 2 for v in latest_versions(scene).values())


def test_only_runs_the_nodes_named(scene):
    run_pipeline("--scene", scene.pk, "--only", "scene_intent", "visual_plan")
    assert set(Artifact.objects.filter(scene=scene).values_list("type", flat=True)) == {"scene_intent", "visual_plan"}
    code, _, err = run_pipeline("--scene", scene.pk, "--only", "panel_plan")  # dialogue_suggestions is missing
    assert code == 1 and "no dialogue_suggestions to read yet" in err


# -- the planning lock ------------------------------------------------------------------------


def test_locked_planning_types_are_frozen_even_when_forced(scene):
    run_pipeline("--scene", scene.pk)
    story_services.scene_lock_planning(scene_id=scene.pk)
    before = latest_versions(scene)
    code, _, _ = run_pipeline("--scene", scene.pk, "--force")
    assert code == 0
    assert remade(scene, before) == set(TYPES) - PLANNING_TYPES


def test_an_override_edit_on_a_locked_scene_is_kept_and_only_what_is_not_planning_is_remade(scene, make_user):
    run_pipeline("--scene", scene.pk)
    story_services.scene_lock_planning(scene_id=scene.pk)
    editor = make_user("editor", "artifacts.override_planning_lock")
    intent = latest(scene, "scene_intent")
    edited = artifact_services.artifact_edit(
        artifact_id=intent.pk, payload={**intent.payload, "mood": "hopeful"}, actor=editor
    )
    before = latest_versions(scene)
    run_pipeline("--scene", scene.pk)
    # Planning types stay frozen; what is not planning is remade from the edited intent on.
    assert remade(scene, before) == downstream({"scene_intent"}) - PLANNING_TYPES
    assert remade(scene, before) == {"render_spec", "render_result", "qc_report", "blind_test_report"}
    assert latest(scene, "scene_intent").pk == edited.pk


def test_a_locked_scene_with_nothing_to_keep_fails_the_node(scene):
    story_services.scene_lock_planning(scene_id=scene.pk)
    code, _, err = run_pipeline("--scene", scene.pk)
    assert code == 1 and "planning is locked" in err
    assert not Artifact.objects.filter(scene=scene).exists()


# -- failures and resume ------------------------------------------------------------------------


def test_a_failing_generator_fails_the_run_keeps_what_was_made_and_resume_finishes_it(scene, settings):
    settings.PIPELINE_GENERATORS = {"layout_template": "tests.runs.plugins.failing_layout"}
    settings.PIPELINE_RETRY_BACKOFF = 0  # the workers' retry rule, applied here too: 3 attempts
    code, _, err = run_pipeline("--scene", scene.pk)
    assert code == 1 and "the layout model is down" in err
    run = Run.objects.get(scene=scene)
    assert run.status == "failed" and "layout_template" in run.error
    assert steps_of(run)["layout_template"] == "failed"
    made = set(Artifact.objects.filter(scene=scene).values_list("type", flat=True))
    assert made == {"scene_intent", "visual_plan", "dialogue_suggestions", "panel_plan", "panel_plan_normalized"}
    kept = set(Artifact.objects.values_list("pk", flat=True))

    settings.PIPELINE_GENERATORS = {}
    code, _, err = run_pipeline("--resume", run.pk)
    assert code == 0, err
    run.refresh_from_db()
    assert run.status == "succeeded" and Run.objects.count() == 1
    assert set(Artifact.objects.filter(scene=scene).values_list("type", flat=True)) == set(TYPES)
    assert all(v == 1 for v in latest_versions(scene).values())  # nothing made twice
    assert kept <= set(Artifact.objects.values_list("pk", flat=True))
    attempts = list(AgentStep.objects.filter(run=run, node="layout_template").values_list("attempt", "status"))
    assert attempts == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "succeeded")]
    assert AgentStep.objects.filter(run=run, node="scene_intent").count() == 1

    code, _, err = run_pipeline("--resume", run.pk)
    assert code == 2 and "only a failed or cancelled run can be resumed" in err


def test_a_generator_returning_a_bad_payload_fails_its_node_with_the_schema_error(scene, settings):
    settings.PIPELINE_GENERATORS = {"render_spec": "tests.runs.plugins.bad_payload_spec"}
    code, _, err = run_pipeline("--scene", scene.pk)
    assert code == 1 and "render_spec failed: InvalidPayload: payload." in err
    assert not Artifact.objects.filter(scene=scene, type="render_spec").exists()


def test_a_story_runs_each_scene_in_position_order_one_run_each(story):
    second = story_services.scene_create(story_id=story.pk, title="Dawn", source_text="Tomas sleeps.", position=2)
    first = story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT, position=1)
    code, out, _ = run_pipeline("--story", story.pk)
    assert code == 0
    runs = list(Run.objects.filter(story=story).order_by("created_at"))
    assert [r.scene_id for r in runs] == [first.pk, second.pk]
    assert all(r.status == "succeeded" for r in runs)
    assert out.index("'Storm'") < out.index("'Dawn'")


def test_queue_without_a_broker_runs_the_work_here(scene, settings):
    settings.CELERY_BROKER_URL = ""
    code, out, _ = run_pipeline("--scene", scene.pk, "--queue")
    run = Run.objects.get(scene=scene)
    assert code == 0 and f"run {run.pk} succeeded" in out
    assert Artifact.objects.filter(scene=scene).count() == 11


def test_an_unreachable_broker_fails_the_run_and_says_so(scene, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    code, _, err = run_pipeline("--scene", scene.pk, "--queue")
    assert code == 1 and "broker_unavailable" in err
    run = Run.objects.get(scene=scene)
    assert run.status == "failed" and "broker unavailable" in run.error


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give --scene ID"),
        (["--scene", "00000000-0000-0000-0000-000000000000"], "does not exist"),
        (["--scene", "not-a-uuid"], "does not exist"),
        (["--resume", "00000000-0000-0000-0000-000000000000", "--force"], "no --only, --force"),
    ],
)
def test_usage_errors_exit_2(db, args, message):
    code, _, err = run_pipeline(*args)
    assert code == 2 and message in err


# -- two processes at once ------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_processes_running_one_scene_make_each_version_once(scene):
    settings = connection.settings_dict
    url = (
        f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    )
    env = {**os.environ, "DATABASE_URL": url}
    command = [sys.executable, "manage.py", "run_pipeline", "--scene", str(scene.pk), "--verbosity", "0"]
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    rows = list(Artifact.objects.filter(scene=scene).values_list("type", "version", "fingerprint"))
    pairs = [(t, f) for t, _, f in rows]
    assert len(pairs) == len(set(pairs)) == 11  # no (type, fingerprint) made twice
    for type_name in TYPES:
        versions = sorted(v for t, v, _ in rows if t == type_name)
        assert versions == list(range(1, len(versions) + 1))  # no gap
    assert Run.objects.filter(scene=scene, status="succeeded").count() == 2


def test_a_weight_no_float_holds_fails_the_run_naming_the_field_not_with_a_bare_overflow(scene):
    """The issue's repro: a schema-valid panel_plan weight of 10**400 made every later run of
    its scene fail with "OverflowError: int too large to convert to float"."""
    code, _, err = run_pipeline("--scene", scene.pk)
    assert code == 0, err
    plan = latest(scene, "panel_plan")
    panels = [{**panel, "weight": 10**400} if i == 0 else panel for i, panel in enumerate(plan.payload["panels"])]
    artifact_services.artifact_edit(
        artifact_id=plan.pk, payload={**plan.payload, "panels": panels}
    )  # the store takes it

    code, _, err = run_pipeline("--scene", scene.pk)
    assert code == 1
    assert "panel_plan.panels[0].weight is too large" in err and "OverflowError" not in err
    run = Run.objects.filter(scene=scene).order_by("-created_at").first()
    assert run.status == "failed" and "panel_plan.panels[0].weight is too large" in run.error
    step = AgentStep.objects.get(run=run, node="panel_plan_normalized")
    assert step.status == "failed" and step.error.startswith("InputError: panel_plan.panels[0].weight is too large")
    assert latest(scene, "panel_plan_normalized").version == 1  # nothing made from it
