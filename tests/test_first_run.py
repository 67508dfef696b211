"""A newcomer's first run, as the README gives it.

In process: ``/favicon.ico`` is an icon, and the admin's "View site" leads to a page that
answers. Then ``make run`` itself, on a throw-away SQLite file, a free port and temporary
static and media folders: what it prints holds no warning (the static files' folder was
missing on every run before ``collectstatic`` became one of its steps), and it serves the
landing page and the icon; in a real Chromium, the admin previews the demo's sound and video
(the browser loads and decodes them) and "View site" leads to the landing page.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import User

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ICO_HEAD = b"\x00\x00\x01\x00"  # an icon resource of type 1 (icon)


def test_favicon_is_an_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(response.streaming_content).startswith(ICO_HEAD)


def test_view_site_in_the_admin_leads_to_a_page(client, db):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    page = client.get("/admin/").content.decode()
    link = re.search(r'<a href="([^"]+)">View site</a>', page)
    assert link, "the admin shows no View site link"
    landing = client.get(link.group(1))
    assert landing.status_code == 200
    body = landing.content.decode()
    for target in ("/admin/", "/v1/docs", "/healthz"):
        assert f'href="{target}"' in body
    assert client.post(link.group(1)).status_code == 405


# -- make run --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    """``make run`` on a free port, its settings pointed at a temporary folder; stopped at the end."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    folder = tmp_path_factory.mktemp("first-run")
    password = secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_", "CELERY_", "ARTIFACT_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        DJANGO_MEDIA_ROOT=str(folder / "media"),
        DJANGO_STATIC_ROOT=str(folder / "static"),
        DEMO_ADMIN_PASSWORD=password,
        PYTHONUNBUFFERED="1",
    )
    port = _free_port()
    log_path = folder / "make-run.log"
    with open(log_path, "wb") as log:
        # A session of its own: make, manage.py and runserver's reloader child stop together.
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"make run exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"make run served nothing within 180 s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield {"base": base, "password": password, "log": log_path, "folder": folder}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_make_run_prints_no_warning_and_serves_the_landing_page_and_icon(make_run):
    urllib.request.urlopen(f"{make_run['base']}/", timeout=10).close()  # the first request: the handler is built
    time.sleep(0.5)
    output = make_run["log"].read_text()
    assert f"admin login: demo / {make_run['password']}  at {make_run['base']}/admin/" in output
    assert "Warning" not in output and "No directory at" not in output, output
    assert (make_run["folder"] / "static" / "admin" / "css" / "base.css").is_file()  # collectstatic ran
    with urllib.request.urlopen(f"{make_run['base']}/", timeout=10) as response:
        assert response.status == 200 and b"Artifact store" in response.read()
    with urllib.request.urlopen(f"{make_run['base']}/favicon.ico", timeout=10) as response:
        assert response.status == 200 and response.read().startswith(ICO_HEAD)


@pytest.mark.browser
def test_the_admin_plays_the_demo_sound_and_video(make_run):
    if not CHROMIUM.exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            raise RuntimeError(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sqlite3.connect(make_run["folder"] / "db.sqlite3") as db:
        ids = dict(db.execute("SELECT type, id FROM artifacts_artifact WHERE type IN ('audio_track', 'video_render')"))
    base = make_run["base"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(f"{base}/admin/login/")
            page.fill("#id_username", "demo")
            page.fill("#id_password", make_run["password"])
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/admin/")
            for type_, tag in (("audio_track", "audio"), ("video_render", "video")):
                page.goto(f"{base}/admin/artifacts/artifact/{_uuid(ids[type_])}/change/")
                # Metadata loaded and the first frame decoded (readyState 2), or the media error.
                page.wait_for_function(
                    f"(() => {{ const m = document.querySelector('{tag}.media-preview');"
                    " m.preload = 'auto'; return m.readyState >= 2 || m.error; })()",
                    timeout=20_000,
                )
                state = page.evaluate(
                    f"(() => {{ const m = document.querySelector('{tag}.media-preview');"
                    " return {error: m.error && m.error.code, duration: m.duration,"
                    " width: m.videoWidth || 0, height: m.videoHeight || 0}; })()"
                )
                assert state["error"] is None, (type_, state)
                assert abs(state["duration"] - 3.0) < 0.1, (type_, state)
                if tag == "video":
                    assert (state["width"], state["height"]) == (160, 96), state
            page.goto(f"{base}/admin/")
            page.click("text=View site")
            page.wait_for_load_state()
            assert page.title() == "Artifact store"
        finally:
            browser.close()


def _uuid(value) -> str:
    """SQLite keeps UUIDs as 32 hex digits."""
    text = str(value).replace("-", "")
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
