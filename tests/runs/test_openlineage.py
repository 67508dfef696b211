"""OpenLineage events of runs (SPEC §15), received by a real HTTP server on loopback."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from artifacts.models import Artifact
from runs import openlineage
from runs import services as run_services
from runs.models import Run, RunArtifactLink
from runs.pipeline import driver
from stories import services as story_services

TEXT = '"Hold the lamp," Mara says to Tomas. The storm rises. At dawn the sea is calm.'

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    def __init__(self, status: int = 201, hold: threading.Event | None = None):
        self.events, self.paths = [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if hold is not None:
                    hold.wait(timeout=60)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                receiver.events.append(json.loads(body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    server = Receiver()
    settings.OPENLINEAGE_URL = server.url
    yield server
    openlineage.flush(timeout=30)
    server.close()


@pytest.fixture
def scene(story):
    return story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT)


def test_a_pipeline_run_emits_start_then_complete_with_its_artifacts_and_versions(receiver, scene):
    result = driver.run_scene(scene.pk)
    openlineage.flush(timeout=30)
    run = result.run
    assert [e["eventType"] for e in receiver.events] == ["START", "COMPLETE"]
    assert receiver.paths == ["/api/v1/lineage", "/api/v1/lineage"]
    start, complete = receiver.events
    for event in (start, complete):
        assert event["run"]["runId"] == str(run.pk)
        assert (event["job"]["namespace"], event["job"]["name"]) == ("artifact-store", "scene_pipeline")
        assert event["producer"] and event["schemaURL"]
    assert start["inputs"] == [] and start["outputs"] == []

    produced = RunArtifactLink.objects.filter(run=run, direction="produced").values_list("artifact_id", flat=True)
    consumed = RunArtifactLink.objects.filter(run=run, direction="consumed").values_list("artifact_id", flat=True)
    outputs = {d["facets"]["artifact"]["artifactId"]: d for d in complete["outputs"]}
    inputs = {d["facets"]["artifact"]["artifactId"]: d for d in complete["inputs"]}
    assert set(outputs) == {str(a) for a in produced} and len(outputs) == 11
    assert set(inputs) == {str(a) for a in set(consumed)}
    render = Artifact.objects.get(scene=scene, type="render_result")
    dataset = outputs[str(render.pk)]
    assert dataset["namespace"] == "artifact-store"
    assert dataset["name"] == f"scene/{scene.pk}/render_result"
    assert dataset["facets"]["version"]["datasetVersion"] == "1"
    assert dataset["facets"]["artifact"]["version"] == 1
    assert dataset["facets"]["artifact"]["type"] == "render_result"


def test_a_failed_run_emits_fail_with_its_error(receiver, story):
    run = run_services.run_create(story_id=story.pk, workflow="import_job", start=True)
    run_services.run_set_status(run_id=run.pk, status="failed", error="the source was gone")
    openlineage.flush(timeout=30)
    assert [e["eventType"] for e in receiver.events] == ["START", "FAIL"]
    fail = receiver.events[1]
    assert fail["job"]["name"] == "import_job"
    assert fail["run"]["facets"]["errorMessage"]["message"] == "the source was gone"


def test_a_resumed_run_starts_again_and_a_cancelled_one_aborts(receiver, story):
    run = run_services.run_create(story_id=story.pk, workflow="w", start=True)
    run_services.run_set_status(run_id=run.pk, status="cancelled", error="stopped")
    run_services.run_set_status(run_id=run.pk, status="running")
    run_services.run_set_status(run_id=run.pk, status="succeeded")
    openlineage.flush(timeout=30)
    assert [e["eventType"] for e in receiver.events] == ["START", "ABORT", "START", "COMPLETE"]


def test_a_receiver_that_refuses_or_is_gone_never_fails_the_run(settings, scene, caplog):
    refusing = Receiver(status=500)
    settings.OPENLINEAGE_URL = refusing.url
    result = driver.run_scene(scene.pk)
    openlineage.flush(timeout=30)
    refusing.close()
    assert result.run.status == "succeeded"
    assert len(refusing.events) == 2
    settings.OPENLINEAGE_URL = refusing.url  # nobody listens there any more
    again = driver.run_scene(scene.pk)
    openlineage.flush(timeout=30)
    assert again.run.status == "succeeded"
    assert "was not delivered" in caplog.text


def test_a_receiver_that_hangs_never_holds_the_run(settings, scene):
    """The receiver answers nothing until released: the run ends meanwhile all the same."""
    release = threading.Event()
    hanging = Receiver(hold=release)
    settings.OPENLINEAGE_URL = hanging.url
    settings.OPENLINEAGE_TIMEOUT = 60.0
    try:
        result = driver.run_scene(scene.pk)
        assert result.run.status == "succeeded"
        assert hanging.events == []  # nothing was received yet: the run did not wait for it
    finally:
        release.set()
        openlineage.flush(timeout=60)
        hanging.close()
    assert [e["eventType"] for e in hanging.events] == ["START", "COMPLETE"]


def test_without_a_url_nothing_is_sent(settings, scene):
    settings.OPENLINEAGE_URL = ""
    receiver = Receiver()
    try:
        driver.run_scene(scene.pk)
        openlineage.flush(timeout=30)
        assert receiver.events == []
    finally:
        receiver.close()
    assert Run.objects.get().status == "succeeded"
