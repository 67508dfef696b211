"""Runs, steps and run-artifact links of SPEC §7."""

from runs.models import AgentStep, Run

from .conftest import assert_error


def test_runs_are_created_listed_filtered_read_and_moved(writer, story, scene):
    created = writer.post(
        "/v1/runs",
        {"story_id": str(story.pk), "scene_id": str(scene.pk), "workflow": "panels", "params": {"seed": 7}},
        format="json",
        HTTP_X_REQUEST_ID="run-req",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert created["Location"].endswith(f"/v1/runs/{body['run_id']}")
    assert body["status"] == "pending" and body["params"] == {"seed": 7} and body["request_id"] == "run-req"
    assert "start" not in body
    assert writer.get(f"/v1/stories/{story.pk}").json()["current_run_id"] == body["run_id"]

    started = writer.post("/v1/runs/", {"story_id": str(story.pk), "workflow": "audio", "start": True}, format="json")
    assert started.json()["status"] == "running" and started.json()["started_at"]

    assert len(writer.get("/v1/runs").json()["results"]) == 2
    assert [r["run_id"] for r in writer.get("/v1/runs", {"status": "pending"}).json()["results"]] == [body["run_id"]]
    assert len(writer.get("/v1/runs", {"story_id": str(story.pk), "workflow": "audio"}).json()["results"]) == 1
    # Present and invalid is 400, never "no filter": an empty id (a client's unset variable) included.
    for query, field in [
        ({"story_id": "x"}, "story_id"),
        ({"story_id": ""}, "story_id"),
        ({"scene_id": ""}, "scene_id"),
        ({"status": "done"}, "status"),
        ({"created_at_before": "tomorrow"}, "created_at_before"),
    ]:
        assert_error(writer.get("/v1/runs", query), 400, "invalid_parameter", field)

    url = f"/v1/runs/{body['run_id']}"
    assert writer.get(url).json()["workflow"] == "panels"
    assert writer.patch(url, {"status": "running"}, format="json").json()["status"] == "running"
    failed = writer.patch(url + "/", {"status": "failed", "error": "model timeout"}, format="json").json()
    assert failed["status"] == "failed" and failed["error"] == "model timeout" and failed["finished_at"]
    assert_error(writer.patch(url, {"status": "pending"}, format="json"), 409, "invalid_transition")
    assert_error(writer.patch(url, {"status": "exploded"}, format="json"), 400, "invalid_choice", "status")
    assert_error(writer.patch(url, {"error": "no status"}, format="json"), 400, "required", "status")


def test_run_create_refuses_bad_references(writer, story):
    missing = "6a3f0c1e-0000-4000-8000-000000000000"
    assert_error(writer.post("/v1/runs", {"story_id": missing, "workflow": "w"}, format="json"), 400, "not_found")
    assert_error(writer.post("/v1/runs", {"story_id": str(story.pk)}, format="json"), 400, "required", "workflow")
    assert_error(
        writer.post("/v1/runs", {"story_id": str(story.pk), "workflow": "w", "params": [1]}, format="json"),
        400,
        "not_a_dict",
        "params",
    )
    assert not Run.objects.exists()


def test_steps_are_started_in_sequence_and_listed(writer, story):
    run = writer.post("/v1/runs", {"story_id": str(story.pk), "workflow": "w"}, format="json").json()
    url = f"/v1/runs/{run['run_id']}/steps"
    one = writer.post(url, {"node": "scene_intent", "agent": "analyst", "input_summary": {"chars": 30}}, format="json")
    two = writer.post(url + "/", {"node": "panel_plan"}, format="json")
    assert one.status_code == two.status_code == 201
    assert (one.json()["sequence"], two.json()["sequence"]) == (1, 2)
    assert one.json()["status"] == "running" and one.json()["run_id"] == run["run_id"]
    assert [s["node"] for s in writer.get(url).json()["results"]] == ["scene_intent", "panel_plan"]
    assert_error(writer.post(url, {"node": ""}, format="json"), 400, "blank", "node")


def test_steps_are_finished_with_patch_or_recorded_finished(writer, story):
    run = writer.post("/v1/runs", {"story_id": str(story.pk), "workflow": "w"}, format="json").json()
    url = f"/v1/runs/{run['run_id']}/steps"
    step = writer.post(url, {"node": "scene_intent"}, format="json").json()
    done = writer.patch(
        f"{url}/{step['step_id']}", {"status": "succeeded", "output_summary": {"version": 3}}, format="json"
    )
    assert done.status_code == 200, done.content
    assert (done.json()["status"], done.json()["output_summary"]) == ("succeeded", {"version": 3})
    assert done.json()["finished_at"] is not None
    assert writer.get(f"{url}/{step['step_id']}/").json()["status"] == "succeeded"
    assert_error(
        writer.patch(f"{url}/{step['step_id']}", {"status": "failed"}, format="json"), 409, "invalid_transition"
    )
    assert_error(writer.patch(f"{url}/{step['step_id']}", {"status": "running"}, format="json"), 400, "invalid_choice")

    recorded = writer.post(url, {"node": "panel_plan", "status": "failed", "error": "model timed out"}, format="json")
    assert recorded.status_code == 201, recorded.content
    assert (recorded.json()["sequence"], recorded.json()["status"], recorded.json()["error"]) == (
        2,
        "failed",
        "model timed out",
    )
    assert_error(writer.post(url, {"node": "x", "error": "too early"}, format="json"), 400, "invalid", "status")

    other = writer.post("/v1/runs", {"story_id": str(story.pk), "workflow": "w"}, format="json").json()
    assert_error(
        writer.patch(f"/v1/runs/{other['run_id']}/steps/{step['step_id']}", {"status": "failed"}, format="json"),
        404,
        "not_found",
    )
    assert AgentStep.objects.count() == 2


def test_run_artifact_links_are_idempotent(writer, story, intent):
    run = writer.post("/v1/runs", {"story_id": str(story.pk), "workflow": "w"}, format="json").json()
    step = writer.post(f"/v1/runs/{run['run_id']}/steps", {"node": "scene_intent"}, format="json").json()
    url = f"/v1/runs/{run['run_id']}/artifacts"
    body = {"artifact_id": str(intent.pk), "stage": "scene_intent", "direction": "produced", "step_id": step["step_id"]}
    first = writer.post(url, body, format="json")
    assert first.status_code == 201
    assert first.json()["step_id"] == step["step_id"] and first.json()["artifact_id"] == str(intent.pk)
    again = writer.post(url, body, format="json")
    assert again.status_code == 200 and again.json()["link_id"] == first.json()["link_id"]
    assert [link["link_id"] for link in writer.get(url).json()["results"]] == [first.json()["link_id"]]
    assert writer.get(url, {"direction": "consumed"}).json()["results"] == []
    assert_error(writer.post(url, {**body, "direction": "eaten"}, format="json"), 400, "invalid_choice")
    missing = {**body, "artifact_id": "6a3f0c1e-0000-4000-8000-000000000000"}
    assert_error(writer.post(url, missing, format="json"), 400, "not_found", "artifact_id")
