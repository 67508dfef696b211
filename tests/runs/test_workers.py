"""The pipeline on real Celery workers (SPEC §10 "Workers"): a real Redis broker (a database
number of its own), real `celery -A artifacts_project worker` subprocesses on the test
database, real SIGKILL. Not eager mode.

PostgreSQL only (workers and the test share committed data). They need Redis at
PIPELINE_TEST_REDIS (default redis://127.0.0.1:6379/9): without it they skip, unless
REQUIRE_BROKER=1 (CI sets it and starts Redis).
"""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.core.management import call_command
from django.db import connection

from artifacts.models import Artifact
from runs.models import AgentStep, Run
from runs.pipeline.nodes import NODES
from stories import services as story_services
from tests.api.conftest import WRITER_PERMS, client_for

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
REDIS = os.environ.get("PIPELINE_TEST_REDIS", "redis://127.0.0.1:6379/9")
TYPES = {node.name for node in NODES}
TEXT = (
    "Mara climbs the lighthouse stairs as the storm rises. "
    '"Hold the lamp steady," Mara says to Tomas. '
    "Tomas grips the rail with cold hands. At dawn the sea is calm again."
)


@pytest.fixture
def broker(settings):
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("REQUIRE_BROKER") == "1":
            raise
        pytest.skip(f"no Redis at {REDIS}: {exc}")
    client.flushdb()
    settings.CELERY_BROKER_URL = REDIS
    yield REDIS
    client.flushdb()


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def workers(broker, tmp_path, settings):
    """Start worker processes (each its own process group, so a SIGKILL takes its children too)."""
    started = []

    def start(**env):
        log = open(tmp_path / f"worker-{len(started)}.log", "w")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "artifacts_project", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", f"test{len(started)}@%h"],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": database_url(),
                "CELERY_BROKER_URL": broker,
                "CELERY_VISIBILITY_TIMEOUT": "5",
                "PIPELINE_RETRY_BACKOFF": "0.2",
                "PIPELINE_TEST_STATE": str(tmp_path),
                "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),  # the test's own, which verify_artifacts reads
                "DJANGO_SETTINGS_MODULE": "artifacts_project.settings",
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        log.close()


def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def finished(runs) -> bool:
    return all(
        status in ("succeeded", "failed") for status in Run.objects.filter(pk__in=runs).values_list("status", flat=True)
    )


def story_with_scenes(story, count: int):
    return [
        story_services.scene_create(story_id=story.pk, title=f"Scene {n}", source_text=f"{TEXT} Scene {n}.", position=n)
        for n in range(1, count + 1)
    ]


def assert_each_version_made_once(scenes):
    for scene in scenes:
        rows = list(Artifact.objects.filter(scene=scene).values_list("type", "version", "fingerprint"))
        assert {t for t, _, _ in rows} == TYPES
        pairs = [(t, f) for t, _, f in rows]
        assert len(pairs) == len(set(pairs)), "a (type, fingerprint) was made twice"
        for type_name in TYPES:
            versions = sorted(v for t, v, _ in rows if t == type_name)
            assert versions == list(range(1, len(versions) + 1)), f"a gap in {type_name}"


def test_a_story_queued_through_the_api_is_run_by_the_workers(story, workers, make_user):
    scenes = story_with_scenes(story, 5)
    workers()
    writer = client_for(make_user("writer", *WRITER_PERMS))
    response = writer.post(f"/v1/stories/{story.pk}/pipeline", {}, format="json")
    assert response.status_code == 202, response.content
    runs = [run["run_id"] for run in response.json()]
    assert [run["status"] for run in response.json()] == ["pending"] * 5
    wait_for(lambda: finished(runs), timeout=240, what="five runs")
    assert set(Run.objects.filter(pk__in=runs).values_list("status", flat=True)) == {"succeeded"}
    assert_each_version_made_once(scenes)
    for scene in scenes:  # each type made once: version 1 everywhere
        assert set(Artifact.objects.filter(scene=scene).values_list("version", flat=True)) == {1}
    assert writer.get(f"/v1/runs/{runs[0]}").json()["status"] == "succeeded"


def test_a_worker_killed_mid_run_loses_nothing_and_makes_nothing_twice(story, workers):
    scenes = story_with_scenes(story, 3)
    slow = {"PIPELINE_GENERATORS": '{"render_result": "tests.runs.plugins.slow_render"}', "PIPELINE_TEST_SLEEP": "3"}
    first = workers(**slow)
    out = io.StringIO()
    call_command("run_pipeline", "--story", str(story.pk), "--queue", stdout=out)
    runs = list(Run.objects.filter(story=story).values_list("pk", flat=True))
    assert len(runs) == 3 and "pending" in out.getvalue()
    wait_for(
        lambda: AgentStep.objects.filter(run__in=runs, node="render_result", status="running").exists(),
        timeout=120,
        what="a render in progress",
    )
    os.killpg(first.pid, signal.SIGKILL)  # the main process and its pool, mid-node
    first.wait(10)
    workers(**slow)
    wait_for(lambda: finished(runs), timeout=240, what="the runs to finish on a new worker")
    assert set(Run.objects.filter(pk__in=runs).values_list("status", flat=True)) == {"succeeded"}
    assert_each_version_made_once(scenes)
    lost = AgentStep.objects.filter(run__in=runs, status="failed", error__contains="worker was lost")
    assert lost.exists()
    assert call_command("verify_artifacts", stdout=io.StringIO()) in (None, 0)


def test_a_generator_that_fails_twice_then_succeeds_shows_its_attempts(story, workers):
    [scene] = story_with_scenes(story, 1)
    workers(PIPELINE_GENERATORS='{"layout_template": "tests.runs.plugins.flaky_layout"}')
    call_command("run_pipeline", "--scene", str(scene.pk), "--queue", stdout=io.StringIO())
    run = Run.objects.get(scene=scene)
    wait_for(lambda: finished([run.pk]), timeout=180, what="the run")
    run.refresh_from_db()
    assert run.status == "succeeded"
    attempts = list(
        AgentStep.objects.filter(run=run, node="layout_template").order_by("sequence").values_list("attempt", "status")
    )
    assert attempts == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert_each_version_made_once([scene])


def test_a_generator_that_always_fails_fails_the_run_and_resume_finishes_it(story, workers):
    [scene] = story_with_scenes(story, 1)
    workers(PIPELINE_GENERATORS='{"layout_template": "tests.runs.plugins.failing_layout"}')
    call_command("run_pipeline", "--scene", str(scene.pk), "--queue", stdout=io.StringIO())
    run = Run.objects.get(scene=scene)
    wait_for(lambda: finished([run.pk]), timeout=180, what="the run")
    run.refresh_from_db()
    assert run.status == "failed" and "layout_template" in run.error
    assert list(AgentStep.objects.filter(run=run, node="layout_template").values_list("attempt", flat=True)) == [
        1,
        2,
        3,
    ]
    made = set(Artifact.objects.filter(scene=scene).values_list("type", flat=True))
    assert made == {"scene_intent", "visual_plan", "dialogue_suggestions", "panel_plan", "panel_plan_normalized"}

    call_command("run_pipeline", "--resume", str(run.pk), stdout=io.StringIO())  # here, with the shipped layout
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert_each_version_made_once([scene])
    assert set(Artifact.objects.filter(scene=scene).values_list("version", flat=True)) == {1}
