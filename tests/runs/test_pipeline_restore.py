"""A restore is an edit to the pipeline (SPEC §13 and §10): the node keeps the restored
version and exactly the nodes downstream of it make new versions."""

import pytest

from artifacts import services as artifact_services
from runs.pipeline.nodes import downstream
from stories import services as story_services
from tests.runs.test_pipeline import TEXT, latest, latest_versions, remade, run_pipeline


@pytest.fixture
def scene(story):
    return story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT)


def test_a_restored_version_is_kept_and_what_lies_downstream_is_remade(scene):
    assert run_pipeline("--scene", scene.pk)[0] == 0
    first = latest(scene, "panel_plan")
    artifact_services.artifact_edit(artifact_id=first.pk, payload={**first.payload, "note": "editor's cut"})
    assert run_pipeline("--scene", scene.pk)[0] == 0
    before = latest_versions(scene)

    restored = artifact_services.artifact_revert(artifact_id=first.pk)
    assert (restored.version, restored.payload) == (3, first.payload)

    _, out, _ = run_pipeline("--scene", scene.pk, "--explain")
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "reuse" in lines["panel_plan"]
    assert "panel_plan changed (v2 -> v3)" in lines["panel_plan_normalized"]
    code, _, _ = run_pipeline("--scene", scene.pk)
    assert code == 0
    assert latest(scene, "panel_plan").pk == restored.pk  # kept, not remade
    assert remade(scene, before) == downstream({"panel_plan"}) | {"panel_plan"}  # panel_plan: the restore itself
    assert latest_versions(scene)["panel_plan"] == 3
