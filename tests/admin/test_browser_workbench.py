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
