"""The pipeline from the admin in a real Chromium (SPEC §13): Explain on a scene page, Run
pipeline landing on the run page, and the run page saying per step why. Screenshots land in
test-artifacts/screenshots/ (git-ignored)."""

import time
import uuid

import pytest

from tests.admin import test_browser as flows

# The editors' browser module's fixtures (a seeded server, Chromium, a logged-in page), one of
# each for this module too.
server, browser, page = flows.server, flows.browser, flows.page
query, shot = flows.query, flows.shot

pytestmark = pytest.mark.browser


def scene_id(server, title: str) -> str:
    [(value,)] = query(server, "SELECT id FROM stories_scene WHERE title = ?", title)
    return str(uuid.UUID(value))


def wait_for_run_end(page, deadline_seconds: float = 120) -> str:
    """The run goes on in the server's background thread; its page refreshes until it ends."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        status = page.locator(".field-status .readonly").inner_text().strip().lower()
        if status in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return status
        time.sleep(0.5)
        page.reload()


def test_explain_a_scene_from_its_page(server, page):
    dawn = scene_id(server, "Dawn")
    page.goto(f"/admin/stories/scene/{dawn}/change/")
    shot(page, "p1-scene-page-pipeline-tools")
    page.click("a.pipeline-explain-link")
    page.wait_for_url(f"**/admin/stories/scene/{dawn}/explain/")
    rows = page.locator(".explain-table tbody tr")
    assert rows.count() == 11
    assert page.locator("tr[data-node=scene_intent] .col-why").inner_text().strip() == "nothing yet"
    shot(page, "p2-explain-scene-nothing-yet")
    assert query(server, "SELECT count(*) FROM runs_run WHERE scene_id = ?", dawn.replace("-", "")) == [(0,)]


def test_run_the_pipeline_from_a_scene_and_land_on_the_run_page(server, page):
    dawn = scene_id(server, "Dawn")
    page.goto(f"/admin/stories/scene/{dawn}/change/")
    page.click("button.run-pipeline-action")
    page.wait_for_url("**/admin/runs/run/*/change/")
    assert "Pipeline started" in page.locator(".messagelist").inner_text()
    assert wait_for_run_end(page) == "succeeded"
    steps = page.locator("#steps-group tbody tr[data-step-id]")
    assert steps.count() == 11
    first = page.locator("#steps-group tr[data-node=scene_intent]")
    assert "nothing yet" in first.locator(".col-why").inner_text()
    assert first.locator(".step-outputs a").inner_text() == "scene_intent v1"
    plan = page.locator("#steps-group tr[data-node=panel_plan]")
    assert "scene_intent v1" in plan.locator(".step-inputs").inner_text()
    page.set_viewport_size({"width": 1360, "height": 900})
    shot(page, "p3-run-page-made")
    run_id = page.url.rstrip("/").split("/")[-2]
    assert query(server, "SELECT status FROM runs_run WHERE id = ?", run_id.replace("-", "")) == [("succeeded",)]
    # Follow an output to its artifact.
    first.locator(".step-outputs a").click()
    page.wait_for_url("**/admin/artifacts/artifact/*/change/")


def test_a_second_run_says_it_reused_everything(server, page):
    dawn = scene_id(server, "Dawn")
    page.goto(f"/admin/stories/scene/{dawn}/explain/")
    assert page.locator("tr[data-action=reuse]").count() == 11
    shot(page, "p4-explain-scene-all-reused")
    page.click("button.run-pipeline-action")
    page.wait_for_url("**/admin/runs/run/*/change/")
    assert wait_for_run_end(page) == "succeeded"
    reasons = page.locator("#steps-group td.col-why").all_inner_texts()
    assert len(reasons) == 11 and all("fingerprint matches" in r for r in reasons)
    assert page.locator("#steps-group .decision-reused").count() == 11
    shot(page, "p5-run-page-reused")


def test_explain_a_story_per_scene(server, page):
    story = str(uuid.UUID(query(server, "SELECT story_id FROM stories_scene WHERE title = 'Dawn'")[0][0]))
    page.goto(f"/admin/stories/story/{story}/change/")
    page.click("a.pipeline-explain-link")
    page.wait_for_url(f"**/admin/stories/story/{story}/explain/")
    assert page.locator("fieldset.explain-scene").count() == 2
    shot(page, "p6-explain-story")


def test_after_the_scene_text_changes_the_run_page_says_what_was_remade_and_why(server, page):
    dawn = scene_id(server, "Dawn")
    page.goto(f"/admin/stories/scene/{dawn}/change/")
    page.fill("#id_source_text", 'The sea is calm again. "Rest now," Mara says to Tomas.')
    page.click("input[name=_continue]")
    page.wait_for_url(f"**/admin/stories/scene/{dawn}/change/")
    page.click("a.pipeline-explain-link")
    page.wait_for_url("**/explain/")
    assert "the scene text changed" in page.locator("tr[data-node=scene_intent] .col-why").inner_text()
    assert page.locator("tr[data-action=remake]").count() >= 1
    shot(page, "p7-explain-after-text-change")
    page.click("button.run-pipeline-action")
    page.wait_for_url("**/admin/runs/run/*/change/")
    assert wait_for_run_end(page) == "succeeded"
    intent = page.locator("#steps-group tr[data-node=scene_intent]")
    assert "the scene text changed" in intent.locator("td.col-why").inner_text()
    assert intent.locator(".step-outputs a").inner_text() == "scene_intent v2"
    assert page.locator("#steps-group .decision-remade").count() >= 1
    shot(page, "p8-run-page-remade")
