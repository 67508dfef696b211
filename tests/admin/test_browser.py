"""Editors' flows in a real Chromium, through Playwright.

The server runs as a subprocess on its own throw-away SQLite file, not as pytest-django's
live_server: the immutability triggers refuse DELETE on artifacts, so the flush Django
does after a transactional test would fail. Results are checked in that file directly.
Screenshots land in test-artifacts/screenshots/ (git-ignored).
"""

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install -y chromium)")
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(workdir, *, seed: str, settings: dict | None = None):
    """A migrated SQLite database in ``workdir``, seeded by the script ``seed`` (its last line of
    output: the ids it made, as JSON), and a runserver on a free port; ``settings`` adds to its
    environment."""
    db_file = workdir / "db.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db_file}",
        "DJANGO_MEDIA_ROOT": str(workdir / "media"),
        "DJANGO_DEBUG": "1",  # runserver then serves the admin's static files
        "DJANGO_SETTINGS_MODULE": "artifacts_project.settings",
        "PYTHONUNBUFFERED": "1",
        **(settings or {}),
    }
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
    seeded = subprocess.run([python, seed], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    ids = json.loads(seeded.stdout.strip().splitlines()[-1])
    port = _free_port()
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"runserver did not come up: {(workdir / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield {"base": base, "db": db_file, "ids": ids}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A migrated, seeded SQLite database and a runserver on a free port, for this module."""
    with running_server(tmp_path_factory.mktemp("browser"), seed="tests/admin/browser_seed.py") as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(server, browser):
    """One logged-in page for the module's flows (they build on each other, in order)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=server["base"])
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.goto("/admin/login/?next=/admin/")
    shot(tab, "01-login")
    tab.fill("#id_username", server["ids"]["username"])
    tab.fill("#id_password", server["ids"]["password"])
    tab.click("input[type=submit]")
    tab.wait_for_selector("#site-name")
    assert "/admin/login/" not in tab.url
    yield tab
    context.close()


def shot(tab, name: str) -> None:
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def query(server, sql: str, *params):
    with sqlite3.connect(server["db"]) as connection:
        return connection.execute(sql, params).fetchall()


def artifact_url(artifact_id: str) -> str:
    return f"/admin/artifacts/artifact/{artifact_id}/change/"


def hex_id(value: str) -> str:
    return value.replace("-", "")  # Django stores UUIDs on SQLite as 32 hex characters


def test_artifact_list_shows_filters_and_rows(server, page):
    page.goto("/admin/artifacts/artifact/")
    assert page.locator("#result_list tbody tr").count() >= 5
    assert page.locator("#changelist-filter").is_visible()
    shot(page, "02-artifact-list")


def test_edit_payload_in_the_json_editor_saves_a_new_version(server, page):
    intent = server["ids"]["intent"]
    page.goto(artifact_url(intent))
    editor = page.locator("#id_payload")
    assert page.locator("[data-json-status]").inner_text() == "Valid JSON"

    # The editor refuses broken JSON in the browser and says where it breaks.
    editor.fill('{"mood": "tense",')
    assert "Invalid JSON" in page.locator("[data-json-status]").inner_text()
    page.click("input[name=_save]")
    assert page.url.endswith(artifact_url(intent))  # the submit was held back
    assert query(server, "SELECT COUNT(*) FROM artifacts_artifact WHERE type = 'scene_intent'") == [(1,)]

    editor.fill('{"mood": "calm", "pacing": "slow", "key_beats": ["the storm passes"], "note": "edited in a browser"}')
    page.click("[data-json-format]")
    assert '\n  "mood": "calm"' in editor.input_value()
    shot(page, "03-json-editor")
    page.click("input[name=_save]")
    page.wait_for_url(lambda url: hex_id(intent) not in hex_id(url) and "/change/" in url)
    message = page.locator("ul.messagelist li.success").inner_text()
    assert "scene_intent v2" in message
    shot(page, "04-new-version")

    rows = query(
        server,
        "SELECT id, version, parent_id, payload FROM artifacts_artifact WHERE type = 'scene_intent' ORDER BY version",
    )
    assert [row[1] for row in rows] == [1, 2]
    (old_id, _, _, old_payload), (new_id, _, parent_id, new_payload) = rows
    assert old_id == hex_id(intent) and parent_id == old_id
    assert json.loads(old_payload)["mood"] == "tense"  # the edited version is untouched
    assert json.loads(new_payload)["note"] == "edited in a browser"
    assert hex_id(page.url.split("/artifact/")[1].split("/")[0]) == new_id
    server["ids"]["intent_v2"] = page.url.split("/artifact/")[1].split("/")[0]


def test_lock_planning_on_a_scene(server, page):
    scene = server["ids"]["scene"]
    page.goto(f"/admin/stories/scene/{scene}/change/")
    page.click("button.lock-action")
    page.wait_for_selector("ul.messagelist li.success")
    assert "Planning locked" in page.locator("ul.messagelist").inner_text()
    assert "locked" in page.locator(".field-planning").inner_text()
    assert server["ids"]["username"] in page.locator(".field-planning_locked_by").inner_text()
    assert page.locator("button.unlock-action").is_visible()
    shot(page, "05-scene-locked")
    assert query(server, "SELECT planning_locked FROM stories_scene WHERE id = ?", hex_id(scene)) == [(1,)]


def test_publish_an_artifact_and_make_it_the_cover(server, page):
    cover = server["ids"]["cover"]
    page.goto(artifact_url(cover))
    assert page.locator("img.media-preview").evaluate("img => img.complete && img.naturalWidth") == 480
    page.click("button[value=candidate]")
    page.wait_for_selector("ul.messagelist li.success")
    page.click("button[value=published]")
    page.wait_for_selector("ul.messagelist li.success")
    assert "published" in page.locator(".field-state").inner_text()
    shot(page, "06-cover-published")

    story = server["ids"]["story"]
    page.goto(f"/admin/stories/story/{story}/change/")
    shot(page, "07-story-before")
    page.click(f"tr[data-role=cover] button[data-artifact-id='{cover}']")
    page.wait_for_selector("ul.messagelist li.success")
    assert "Primary cover set to cover_image v1" in page.locator("ul.messagelist").inner_text()
    assert "cover_image v1" in page.locator("tr[data-role=cover] .current-primary").inner_text()
    assert page.locator(".field-cover img.media-preview").is_visible()
    shot(page, "08-story-cover")
    assert query(server, "SELECT cover_artifact_id FROM stories_story WHERE id = ?", hex_id(story)) == [
        (hex_id(cover),)
    ]


def test_an_intermediate_is_not_offered_as_primary(server, page):
    # The pickers offer only what can become primary (published, or a candidate as "publish
    # and make primary"); the intermediate audio is not a button (issue 23). The service's
    # refusal of a forged POST is tests/admin/test_story_admin.py's.
    story, audio = server["ids"]["story"], server["ids"]["audio"]
    page.goto(f"/admin/stories/story/{story}/change/")
    assert page.locator(f"tr[data-role=final_audio] button[data-artifact-id='{audio}']").count() == 0
    assert "no final audio candidates" in page.locator("tr[data-role=final_audio]").inner_text().lower()
    assert query(server, "SELECT canonical_audio_id FROM stories_story WHERE id = ?", hex_id(story)) == [(None,)]


def test_open_the_lineage_graph(server, page):
    plan = server["ids"]["plan"]
    page.goto(artifact_url(plan))
    assert page.locator(".lineage-svg .lineage-node").count() >= 3
    shot(page, "09-artifact-page")
    page.click("text=Open lineage graph")
    page.wait_for_url("**/lineage/")
    nodes = page.locator(".lineage-svg .lineage-node")
    assert nodes.count() >= 4  # intent v1 <- plan -> spec -> cover, at least
    assert page.locator(".lineage-edge[data-kind=derived_from]").count() >= 3
    shot(page, "10-lineage")
    # Nodes are links: follow one to its artifact.
    page.click(f".lineage-node[data-artifact-id='{server['ids']['intent']}']")
    page.wait_for_url(f"**{artifact_url(server['ids']['intent'])}")


def test_run_page_shows_steps_and_artifacts(server, page):
    page.goto(f"/admin/runs/run/{server['ids']['run']}/change/")
    assert "panel_plan" in page.locator("#steps-group").inner_text()
    assert "scene_intent v1" in page.content() and "panel_plan v1" in page.content()
    shot(page, "11-run")


def test_a_failed_webhook_delivery_is_listed_and_redelivered(server, page):
    """SPEC §14: failed deliveries are shown in the admin with "redeliver" (a POST)."""
    [(seq,)] = query(server, "SELECT MIN(seq) FROM changes_event")
    now = "2026-01-01 00:00:00"
    with sqlite3.connect(server["db"]) as connection:
        connection.execute(
            "INSERT INTO changes_webhook (id, url, types, story_id, secret, created_by_id, created_at)"
            " VALUES (?, 'https://hooks.example.invalid/story', '', NULL, 'whsec_QUFBQQ==', NULL, ?)",
            ["0" * 31 + "1", now],
        )
        connection.execute(
            "INSERT INTO changes_delivery (webhook_id, event_id, status, attempts, next_attempt_at, created_at)"
            " VALUES (?, ?, 'failed', 6, ?, ?)",
            ["0" * 31 + "1", seq, now, now],
        )
    page.goto("/admin/changes/delivery/")
    assert "Failed" in page.locator("#result_list").inner_text()
    page.check("#action-toggle")
    page.select_option("select[name=action]", "redeliver")
    shot(page, "20-webhook-deliveries")
    page.click("button[name=index]")
    page.wait_for_selector("ul.messagelist li.success")
    assert "tried again now" in page.locator("ul.messagelist").inner_text()
    shot(page, "21-webhook-redelivered")
    [(status, attempts)] = query(server, "SELECT status, attempts FROM changes_delivery")
    assert status != "failed" or attempts < 6
