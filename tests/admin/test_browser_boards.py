"""The editors' workbench in a real Chromium (SPEC §13): the demo story's storyboard, a
primary chosen from it. Same set-up as test_browser.py (a runserver on a throw-away SQLite
file), seeded by ``seed_demo`` and tests/admin/workbench_seed.py; screenshots at 1,280 px."""

import json

import pytest

from tests.admin.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, hex_id, query, running_server

pytestmark = pytest.mark.browser

WIDTH = 1280
# Boxes that scroll their content sideways instead of the page: the changelist's table, the graph.
BOXES = ".results, .lineage-graph"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("workbench"),
        seed="tests/admin/workbench_seed.py",
        settings={"DEMO_ADMIN_PASSWORD": "workbench-pw"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": WIDTH, "height": 900}, base_url=server["base"])
        context.set_default_timeout(15_000)
        tab = context.new_page()
        tab.goto("/admin/login/?next=/admin/")
        tab.fill("#id_username", "editor")
        tab.fill("#id_password", "workbench-pw")
        tab.click("input[type=submit]")
        tab.wait_for_selector("#site-name")
        yield tab
        context.close()
        browser.close()


def shot(tab, name: str) -> None:
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def fits(tab) -> bool:
    """Nothing wider than the window: no horizontal scrolling at 1,280 px, of the page or of
    a table inside its box (Django's changelist scrolls its table rather than the page)."""
    return tab.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth && "
        f"Array.from(document.querySelectorAll('{BOXES}')).every(e => e.scrollWidth <= e.clientWidth + 1)"
    )


def overflow(tab) -> dict:
    return tab.evaluate(
        f"({{page: document.documentElement.scrollWidth, boxes: Array.from(document.querySelectorAll('{BOXES}'))"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => [e.className, e.scrollWidth, e.clientWidth])})"
    )


def loaded_thumbnails(tab, selector: str) -> int:
    return tab.evaluate(
        f"Array.from(document.querySelectorAll('{selector}')).filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_storyboard_of_the_demo_story_and_a_primary_chosen_from_it(server, page):
    ids = server["ids"]
    page.goto(f"/admin/stories/story/{ids['story']}/change/")
    page.click("a.storyboard-link")
    page.wait_for_selector("table.storyboard-table")
    rows = page.locator("tr.storyboard-scene")
    assert rows.count() == 3
    titles = [rows.nth(i).locator(".scene-title").inner_text() for i in range(3)]
    assert titles == sorted(titles, key=lambda t: titles.index(t))  # position order, as shown
    page.wait_for_function("Array.from(document.querySelectorAll('img.artifact-thumbnail')).every(i => i.complete)")
    assert loaded_thumbnails(page, "img.artifact-thumbnail") >= 6
    first = page.locator(f"#scene-{ids['scene']}")
    # A version a client made carries its parent's fingerprint: the pipeline would keep it.
    assert "up to date" in first.inner_text()
    assert first.locator(f".candidate[data-artifact-id='{ids['candidate']}']").count() == 1
    assert fits(page)
    shot(page, "storyboard-01-demo")

    first.locator(f"button.make-primary[value='{ids['retouched']}']").click()
    page.wait_for_selector("ul.messagelist li.success")
    assert "Scene image primary set to render_result" in page.locator("ul.messagelist li.success").inner_text()
    shot(page, "storyboard-02-primary-chosen")
    primary = query(
        server,
        "SELECT artifact_id FROM stories_storyartifactlink WHERE role = 'scene_image' AND scene_id = ? AND is_primary",
        hex_id(ids["scene"]),
    )
    assert primary == [(hex_id(ids["retouched"]),)]


def test_review_queue_approves_a_candidate_with_a_note(server, page):
    ids = server["ids"]
    page.goto(f"/admin/stories/story/{ids['story']}/storyboard/")
    page.click("text=Review queue for this story")
    page.wait_for_selector("table.review-table")
    row = page.locator(f"tr.review-row[data-artifact-id='{ids['candidate']}']")
    assert row.count() == 1
    page.wait_for_function("Array.from(document.querySelectorAll('img.artifact-thumbnail')).every(i => i.complete)")
    assert loaded_thumbnails(page, "tr.review-row img.artifact-thumbnail") >= 1
    assert fits(page)
    shot(page, "review-01-queue")
    row.locator(f"input[name='note-{ids['candidate']}']").fill("sharper than v2")
    row.locator("button.approve").click()
    page.wait_for_selector("ul.messagelist li.success")
    assert "approved (published)" in page.locator("ul.messagelist li.success").inner_text()
    assert page.locator(f"tr.review-row[data-artifact-id='{ids['candidate']}']").count() == 0
    shot(page, "review-02-approved")
    assert query(server, "SELECT lifecycle_state FROM artifacts_artifact WHERE id = ?", hex_id(ids["candidate"])) == [
        ("published",)
    ]
    assert query(
        server,
        "SELECT note FROM artifacts_auditevent WHERE target_id = ? AND to_value = '\"published\"'",
        hex_id(ids["candidate"]),
    ) == [("sharper than v2",)]


def _one(server, sql: str, *params) -> str:
    (row,) = query(server, sql, *params)
    value = row[0]
    return str(__import__("uuid").UUID(value)) if len(value) == 32 else value


def test_every_page_fits_1280_px(server, page):
    """Each page of the admin at 1,280 px: no horizontal scrolling of the page itself."""
    ids = server["ids"]
    plan = _one(server, "SELECT id FROM artifacts_artifact WHERE type = 'panel_plan' ORDER BY created_at DESC LIMIT 1")
    video = _one(server, "SELECT id FROM artifacts_artifact WHERE type = 'video_render' LIMIT 1")
    run = _one(server, "SELECT id FROM runs_run ORDER BY created_at LIMIT 1")
    pages = {
        "artifact-list": "/admin/artifacts/artifact/",
        "artifact-page": f"/admin/artifacts/artifact/{plan}/change/",
        "artifact-media-page": f"/admin/artifacts/artifact/{video}/change/",
        "lineage-page": f"/admin/artifacts/artifact/{video}/lineage/?depth=10",
        "lineage-page-plan": f"/admin/artifacts/artifact/{plan}/lineage/?depth=10",
        "relation-list": "/admin/artifacts/artifactrelation/",
        "story-list": "/admin/stories/story/",
        "story-page": f"/admin/stories/story/{ids['story']}/change/",
        "scene-list": "/admin/stories/scene/",
        "scene-page": f"/admin/stories/scene/{ids['scene']}/change/",
        "link-list": "/admin/stories/storyartifactlink/",
        "run-list": "/admin/runs/run/",
        "run-page": f"/admin/runs/run/{run}/change/",
        "step-list": "/admin/runs/agentstep/",
        "run-link-list": "/admin/runs/runartifactlink/",
        "audit-list": "/admin/audit/auditevent/",
        "storyboard": f"/admin/stories/story/{ids['story']}/storyboard/",
        "review-queue": "/admin/artifacts/artifact/review/",
    }
    too_wide = {}
    for name, url in pages.items():
        response = page.goto(url)
        assert response.status == 200, (name, response.status)
        shot(page, f"readable-{name}")
        if not fits(page):
            too_wide[name] = overflow(page)
    assert not too_wide, json.dumps(too_wide)
