"""The editors' workbench in a real Chromium (SPEC §13): compare, restore, the planning lock
in sight. The server, browser and page are test_browser.py's; this module seeds its own rows
(browser_seed_workbench.py) into that server's database."""

import json
import os
import subprocess
import sys

import pytest

from tests.admin import test_browser as base

pytestmark = pytest.mark.browser

server_base = base.server
browser = base.browser
page = base.page
shot, query, artifact_url, hex_id = base.shot, base.query, base.artifact_url, base.hex_id


@pytest.fixture(scope="module")
def server(server_base):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{server_base['db']}",
        "DJANGO_MEDIA_ROOT": str(server_base["db"].parent / "media"),
        "DJANGO_SETTINGS_MODULE": "artifacts_project.settings",
    }
    seeded = subprocess.run(
        [sys.executable, "tests/admin/browser_seed_workbench.py"],
        cwd=base.ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    server_base["ids"].update(json.loads(seeded.stdout.strip().splitlines()[-1]))
    return server_base


def test_compare_two_versions_field_by_field(server, page):
    ids = server["ids"]
    page.goto(artifact_url(ids["wb_intent_v2"]))
    page.click("a.compare-previous >> nth=1")  # the row of v2: from v1 to v2
    page.wait_for_selector("table.compare-rows")
    assert f"/{ids['wb_intent_v1']}/compare/{ids['wb_intent_v2']}/" in page.url
    rows = page.locator("table.compare-rows tbody tr")
    paths = [rows.nth(i).locator("td.col-path").inner_text() for i in range(rows.count())]
    assert paths == ["mood", "key_beats[2]", "summary", "camera.angle", "camera.lens"]
    assert page.locator("ins.diff-ins").first.inner_text() == "races up"
    assert page.locator("del.diff-del").first.inner_text() == "climbs"
    shot(page, "wb-01-compare-versions")


def test_compare_two_images_side_by_side(server, page):
    ids = server["ids"]
    page.goto(f"/admin/artifacts/artifact/{ids['wb_cover_v1']}/compare/{ids['wb_cover_v2']}/")
    facts = page.locator(".compare-media-facts")
    assert "480 × 270 px" in facts.nth(0).inner_text()
    assert "360 × 200 px" in facts.nth(1).inner_text()
    assert page.locator("img.compare-image").count() == 2
    # Both previews loaded their bytes from the content view.
    assert page.evaluate("[...document.querySelectorAll('img.compare-image')].every(i => i.naturalWidth > 0)")
    assert "The bytes differ" in page.inner_text(".compare-sides")
    shot(page, "wb-02-compare-images")


def test_an_older_version_says_a_save_branches_from_it_and_restores(server, page):
    ids = server["ids"]
    page.goto(artifact_url(ids["wb_intent_v1"]))
    notice = page.locator(".branch-notice")
    assert "This is v1, not the latest (v3)" in notice.inner_text()
    assert "v4, branched from this v1, not from the latest v3" in notice.inner_text()
    shot(page, "wb-03-branch-notice")

    page.click("button.restore-action")
    page.wait_for_url(lambda url: hex_id(ids["wb_intent_v1"]) not in hex_id(url) and "/change/" in url)
    assert "Restored v1 as scene_intent v4" in page.locator("ul.messagelist li.success").inner_text()
    assert page.locator(".branch-notice").count() == 0  # the new version is the latest
    shot(page, "wb-04-restored")
    (version, parent, payload), (old_payload,) = (
        query(
            server,
            "SELECT version, parent_id, payload FROM artifacts_artifact WHERE id = ?",
            hex_id(page.url.split("/artifact/")[1].split("/")[0]),
        )[0],
        query(server, "SELECT payload FROM artifacts_artifact WHERE id = ?", hex_id(ids["wb_intent_v1"]))[0],
    )
    assert (version, parent, json.loads(payload)) == (4, hex_id(ids["wb_intent_v3"]), json.loads(old_payload))
    assert query(server, "SELECT COUNT(*) FROM artifacts_auditevent WHERE action = 'revert'") == [(1,)]


def test_restore_from_the_compare_page(server, page):
    ids = server["ids"]
    page.goto(f"/admin/artifacts/artifact/{ids['wb_cover_v1']}/compare/{ids['wb_cover_v2']}/")
    assert page.locator("button.restore-action").count() == 1  # v2 is the latest: only v1 restores
    shot(page, "wb-05-compare-restore")
    page.click("button.restore-action")
    page.wait_for_selector("ul.messagelist li.success")
    assert "Restored v2 as cover_image v" in page.locator("ul.messagelist li.success").inner_text()
    rows = query(
        server,
        "SELECT content_sha256 FROM artifacts_artifact WHERE id IN (?, ?)",
        hex_id(ids["wb_cover_v1"]),
        hex_id(page.url.split("/artifact/")[1].split("/")[0]),
    )
    assert len(rows) == 2 and rows[0] == rows[1]  # the same stored bytes


def test_a_planning_artifact_of_a_locked_scene_says_so(server, page):
    ids = server["ids"]
    page.goto(artifact_url(ids["wb_locked_plan"]))
    notice = page.locator(".planning-lock-notice")
    text = notice.inner_text()
    assert "Planning is locked on scene #4 Quay" in text
    assert f"locked by {ids['username']} since " in text
    assert "artifacts.override_planning_lock), which you have" in text
    assert "kept, not remade" in text
    notice.scroll_into_view_if_needed()
    shot(page, "wb-06-planning-lock-notice")
    page.click(".planning-lock-notice a")
    page.wait_for_url(f"**/admin/stories/scene/{ids['wb_locked_scene']}/change/")
