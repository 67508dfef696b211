"""Crash-safe runs (SPEC §10): a run killed, stopped or cancelled is never left running, and
``--resume`` finishes it. Real processes on real PostgreSQL: ``run_pipeline`` subprocesses
killed with real signals while a slow generator (plugged through PIPELINE_GENERATORS)
sleeps; the serving process's background thread for the API's runs.
"""

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse

from artifacts.models import Artifact
from artifacts.payloads import PLANNING_TYPES
from runs import services as run_services
from runs.models import AgentStep, Run
from runs.pipeline import driver
from runs.pipeline.holding import RunHold
from runs.pipeline.nodes import NODES
from stories import services as story_services
from tests.api.conftest import WRITER_PERMS, client_for

ROOT = Path(__file__).resolve().parents[2]
TYPES = [node.name for node in NODES]
TEXT = (
    "Mara climbs the lighthouse stairs as the storm rises. "
    '"Hold the lamp steady," Mara says to Tomas. '
    "Tomas grips the rail with cold hands. At dawn the sea is calm again."
)
SLOW_RENDER = '{"render_result": "tests.runs.plugins.slow_render"}'


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


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_command(*args, tmp_path, settings, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_pipeline", *[str(a) for a in args]],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PIPELINE_TEST_STATE": str(tmp_path),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, *, timeout: float = 60, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def render_running(scene) -> bool:
    return AgentStep.objects.filter(run__scene=scene, node="render_result", status="running").exists()


def one_version_per_type(scene) -> bool:
    rows = list(Artifact.objects.filter(scene=scene).values_list("type", "version"))
    return sorted(rows) == sorted((t, 1) for t in TYPES)


def killed_mid_render(scene, tmp_path, settings) -> Run:
    """A ``run_pipeline --scene`` process SIGKILLed while its render generator sleeps."""
    process = start_command(
        "--scene", scene.pk, tmp_path=tmp_path, settings=settings, PIPELINE_GENERATORS=SLOW_RENDER,
        PIPELINE_TEST_SLEEP="60",
    )  # fmt: skip
    wait_for(lambda: render_running(scene), what="the render to start")
    process.kill()
    process.communicate(timeout=30)
    run = Run.objects.get(scene=scene)
    assert run.status == "running"  # nothing could record the death: the run is found lost
    return run


# -- a process killed ---------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_node_then_resume_finishes_the_same_run(scene, tmp_path, settings, make_user):
    run = killed_mid_render(scene, tmp_path, settings)

    # verify_artifacts reports it; the admin's run page marks it failed, as --resume would.
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_artifacts", "--check", "lost_runs", stdout=out, stderr=err)
    assert f"run {run.pk} is running but its process was lost" in err.getvalue()
    admin = Client()
    admin.force_login(make_user("boss", superuser=True))
    page = admin.get(reverse("admin:runs_run_change", args=[run.pk]))
    assert page.status_code == 200 and "its process was lost" in page.content.decode()
    run.refresh_from_db()
    assert run.status == "failed" and run.error == "its process was lost"
    assert AgentStep.objects.get(run=run, node="render_result", attempt=1).error == "its process was lost"

    code, out, err = run_pipeline("--scene", scene.pk, "--resume", run.pk)  # beside its scene
    assert code == 0, err
    run.refresh_from_db()
    assert run.status == "succeeded" and Run.objects.count() == 1
    assert one_version_per_type(scene)
    assert not AgentStep.objects.filter(status__in=("running", "pending")).exists()
    attempts = list(AgentStep.objects.filter(run=run, node="render_result").values_list("attempt", "status"))
    assert attempts == [(1, "failed"), (2, "succeeded")]
    assert AgentStep.objects.filter(run=run, node="scene_intent").count() == 1  # not run twice


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_sigkill_then_a_new_run_of_the_scene_marks_the_old_one_lost(scene, tmp_path, settings):
    old = killed_mid_render(scene, tmp_path, settings)
    code, _, err = run_pipeline("--scene", scene.pk)
    assert code == 0, err
    old.refresh_from_db()
    assert old.status == "failed" and old.error == "its process was lost"
    assert AgentStep.objects.get(run=old, node="render_result").error == "its process was lost"
    newest = Run.objects.filter(scene=scene).order_by("-created_at").first()
    assert newest.status == "succeeded" and newest.pk != old.pk
    assert one_version_per_type(scene)  # the new run reused what the old one had made
    assert not AgentStep.objects.filter(status__in=("running", "pending")).exists()

    # The old run can still be resumed: it makes nothing, everything is there.
    code, _, err = run_pipeline("--resume", old.pk, "--story", scene.story_id)  # beside its story
    assert code == 0, err
    assert Run.objects.get(pk=old.pk).status == "succeeded" and one_version_per_type(scene)


# -- a process stopped ----------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_cancels_the_run_exits_130_and_resume_finishes_it(scene, tmp_path, settings, signum):
    process = start_command(
        "--scene", scene.pk, tmp_path=tmp_path, settings=settings, PIPELINE_GENERATORS=SLOW_RENDER,
        PIPELINE_TEST_SLEEP="60",
    )  # fmt: skip
    wait_for(lambda: render_running(scene), what="the render to start")
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)  # at once: the generator's sleep is interrupted
    assert process.returncode == 130, err
    run = Run.objects.get(scene=scene)
    assert f"continue it with --resume {run.pk}" in err and "Traceback" not in err
    assert run.status == "cancelled" and signal.Signals(signum).name in run.error
    step = AgentStep.objects.get(run=run, node="render_result")
    assert (step.status, step.error) == ("failed", "interrupted")
    assert not Artifact.objects.filter(scene=scene, type="render_result").exists()

    code, _, err = run_pipeline("--resume", run.pk)
    assert code == 0, err
    run.refresh_from_db()
    assert run.status == "succeeded" and one_version_per_type(scene)


# -- a run cancelled through the API ----------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_cancel_through_the_api_stops_the_run_before_its_next_write(scene, settings, make_user, monkeypatch):
    settings.PIPELINE_GENERATORS = {"render_result": "tests.runs.plugins.slow_render"}
    monkeypatch.setenv("PIPELINE_TEST_SLEEP", "2")
    writer = client_for(make_user("writer", *WRITER_PERMS))
    started = writer.post(f"/v1/scenes/{scene.pk}/pipeline", {}, format="json")
    assert started.status_code == 202
    run_id = started.json()["run_id"]
    wait_for(lambda: render_running(scene), what="the render to start")

    cancelled = writer.patch(f"/v1/runs/{run_id}", {"status": "cancelled"}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    count = Artifact.objects.count()
    assert driver.wait_for_background(timeout=60)  # the generator returns; its record writes nothing
    assert Artifact.objects.count() == count
    assert not Artifact.objects.filter(scene=scene, type__in=("render_result", "qc_report")).exists()
    run = Run.objects.get(pk=run_id)
    assert run.status == "cancelled"
    step = AgentStep.objects.get(run=run, node="render_result")
    assert (step.status, step.error) == ("failed", "the run was cancelled")
    assert not AgentStep.objects.filter(run=run, node="qc_report").exists()  # nothing after the cancel

    code, _, err = run_pipeline("--resume", run_id)
    assert code == 0, err
    assert Run.objects.get(pk=run_id).status == "succeeded" and one_version_per_type(scene)


# -- a planning lock taken while a run is in flight ---------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_planning_lock_taken_mid_run_keeps_the_locked_versions_and_the_run_succeeds(
    scene, settings, tmp_path, monkeypatch
):
    settings.PIPELINE_GENERATORS = {"scene_intent": "tests.runs.plugins.slow_intent"}
    monkeypatch.setenv("PIPELINE_TEST_STATE", str(tmp_path))
    monkeypatch.setenv("PIPELINE_TEST_SLEEP", "0")
    assert run_pipeline("--scene", scene.pk)[0] == 0
    story_services.scene_update(scene_id=scene.pk, source_text=TEXT + " Tomas smiles.")  # remakes all
    (tmp_path / "slow_intent.started").unlink()
    monkeypatch.setenv("PIPELINE_TEST_SLEEP", "2")

    result = {}

    def run_here():
        try:
            result["run"] = driver.run_scene(scene.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=run_here)
    thread.start()
    wait_for(lambda: (tmp_path / "slow_intent.started").exists(), what="the intent's generator to start")
    story_services.scene_lock_planning(scene_id=scene.pk)
    thread.join(120)

    run = result["run"].run
    assert run.status == "succeeded", run.error
    for type_name in PLANNING_TYPES:
        assert list(Artifact.objects.filter(scene=scene, type=type_name).values_list("version", flat=True)) == [1]
    step = AgentStep.objects.get(run=run, node="scene_intent")
    assert step.status == "skipped"
    assert "planning was locked on this scene while the run was in flight" in step.output_summary["reason"]


# -- the command's synopsis ---------------------------------------------------------------------------


def test_resume_beside_a_scene_or_story_it_does_not_belong_to_is_a_usage_error(scene, story, settings):
    settings.PIPELINE_GENERATORS = {"layout_template": "tests.runs.plugins.failing_layout"}
    settings.PIPELINE_TASK_ATTEMPTS = 1
    assert run_pipeline("--scene", scene.pk)[0] == 1
    run = Run.objects.get(scene=scene)
    other_story = story_services.story_create(title="Another")
    other_scene = story_services.scene_create(story_id=other_story.pk, title="Elsewhere")
    code, _, err = run_pipeline("--scene", other_scene.pk, "--resume", run.pk)
    assert code == 2 and f"belongs to scene {scene.pk}" in err
    code, _, err = run_pipeline("--story", other_story.pk, "--resume", run.pk)
    assert code == 2 and f"belongs to story {story.pk}" in err
    code, _, err = run_pipeline("--scene", scene.pk, "--story", story.pk)  # argparse's (exit 2 on the CLI)
    assert code != 0 and "not allowed with argument" in err
    assert Run.objects.get(pk=run.pk).status == "failed"  # nothing resumed

    settings.PIPELINE_GENERATORS = {}
    code, _, err = run_pipeline("--story", story.pk, "--resume", run.pk)
    assert code == 0, err


# -- holders -------------------------------------------------------------------------------------------


def test_on_sqlite_a_run_is_lost_once_its_heartbeat_is_stale(scene, settings, is_postgres):
    if is_postgres:
        pytest.skip("PostgreSQL tells a lost run by its holder's session lock (the tests above)")
    settings.PIPELINE_RUN_STALE_SECONDS = 60
    run = run_services.run_create(story_id=scene.story_id, scene_id=scene.pk, workflow="scene_pipeline")
    run = run_services.run_begin(run_id=run.pk, holder="a process")
    assert not run_services.run_mark_lost(run_id=run.pk)  # its heartbeat is fresh
    settings.PIPELINE_RUN_STALE_SECONDS = 0
    assert run_services.run_mark_lost(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", "its process was lost")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_run_is_lost_exactly_when_nobody_holds_it(scene):
    run = run_services.run_create(story_id=scene.story_id, scene_id=scene.pk, workflow="scene_pipeline")
    run = run_services.run_begin(run_id=run.pk, holder="a thread")
    held, release = threading.Event(), threading.Event()

    def holder():
        with RunHold([run.pk]):
            held.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    assert not run_services.run_is_lost(run) and not run_services.run_mark_lost(run_id=run.pk)
    release.set()
    thread.join(30)
    assert run_services.run_is_lost(run) and run_services.run_mark_lost(run_id=run.pk)
    assert Run.objects.get(pk=run.pk).status == "failed"
