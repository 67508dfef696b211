"""The site every drill breaks: a database of its own (created and migrated here, not
pytest-django's test database), gunicorn serving it on loopback, a superuser's token, a
story with two scenes, and media on a small tmpfs (or a quota storage where mounting is
not allowed). Built once per run; gunicorn is stopped and the tmpfs unmounted at the end,
also when a drill fails; the database is dropped unless a drill failed (it is kept to look at,
and dropped by the next run)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .harness import (
    DrillFailure,
    Report,
    Service,
    check,
    clean_env,
    drop_database,
    manage,
    recreate_database,
    request,
)

MEDIA_BYTES = 16 * 1024 * 1024
TOKEN_SCRIPT = (
    "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token;"
    "user = User.objects.create_superuser('drill', 'drill@example.com', None);"
    "print(Token.objects.create(user=user).key)"
)


@dataclass
class Site:
    service: Service
    token: str
    scenes: list[str]
    database_url: str  # the drill's own database
    server_url: str  # the URL the drills were given: its server is the one they break
    database: str
    media_root: Path
    quota: int | None  # None: media on a tmpfs of MEDIA_BYTES
    env: dict = field(repr=False)  # holds the drill's secret key

    @property
    def base(self) -> str:
        return self.service.base

    def check(self, writes, **kwargs) -> Report:
        return check(
            writes,
            database_url=self.database_url,
            media_root=self.media_root,
            env=self.env,
            api=(self.base, self.token),
            **kwargs,
        )

    def assert_clean(self, report: Report) -> None:
        print(report.line())
        if report.problems:
            shown = "\n".join(report.problems[:40])
            more = f"\n... and {len(report.problems) - 40} more" if len(report.problems) > 40 else ""
            raise DrillFailure(f"{report.line()}\n{shown}{more}\n--- gunicorn log ---\n{self.service.log_tail(40)}")

    def free_bytes(self) -> int:
        if self.quota is None:
            return shutil.disk_usage(self.media_root).free
        return self.quota - sum(p.stat().st_size for p in self.media_root.rglob("*") if p.is_file())

    @contextlib.contextmanager
    def storage_filled(self, *, leave: int):
        """Fill the media storage but for ``leave`` bytes (less than one upload), then free it."""
        filler = self.media_root / "filler"
        try:
            with open(filler, "wb") as out:
                remaining = max(0, self.free_bytes() - leave)
                try:
                    while remaining > 0:
                        remaining -= out.write(b"\0" * min(remaining, 1 << 20))
                except OSError as exc:  # a tmpfs counts in pages: full a little early is full
                    if exc.errno != errno.ENOSPC:
                        raise
            yield
        finally:
            filler.unlink(missing_ok=True)


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip("the drills need PostgreSQL: DATABASE_URL=postgres://... make drills")
    return url


@contextlib.contextmanager
def _media_storage(root: Path):
    """A tmpfs of MEDIA_BYTES at ``root`` when this process may mount one (yields None), or a
    quota of as many bytes enforced by the storage (yields the quota)."""
    root.mkdir()
    mounted = False
    if os.environ.get("DRILL_TMPFS", "1") == "0":
        print("DRILL_TMPFS=0: the storage drill uses a quota storage")
    elif os.geteuid() == 0 and shutil.which("mount"):
        out = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={MEDIA_BYTES},mode=0755", "drills-media", str(root)],
            capture_output=True,
            text=True,
        )
        mounted = out.returncode == 0
        if not mounted:
            print(f"no tmpfs ({out.stderr.strip()}): the storage drill uses a quota storage")
    else:
        print("no tmpfs (mounting needs root): the storage drill uses a quota storage")
    try:
        yield None if mounted else MEDIA_BYTES
    finally:
        if mounted:
            subprocess.run(["umount", str(root)], check=False)


@pytest.fixture(scope="session")
def site(tmp_path_factory, request_session_failed):
    url = _database_url()
    parts = urllib.parse.urlsplit(url)
    database = f"{parts.path.lstrip('/') or 'artifacts'}_drill"
    drill_url = urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))
    folder = tmp_path_factory.mktemp("drills")
    recreate_database(url, database)
    service = None
    try:
        with _media_storage(folder / "media") as quota:
            env = clean_env(
                DJANGO_SETTINGS_MODULE="tests.drills.quota_settings" if quota else "artifacts_project.settings",
                DRILL_MEDIA_QUOTA=str(quota or 0),
                DATABASE_URL=drill_url,
                DATABASE_CONN_MAX_AGE="60",  # persistent connections, as in production: the hard case
                DATABASE_CONNECT_TIMEOUT="3",
                DATABASE_STATEMENT_TIMEOUT="10",  # under the worker timeout, as it must be
                DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
                DJANGO_ALLOWED_HOSTS="127.0.0.1",
                DJANGO_MEDIA_ROOT=str(folder / "media"),
                DJANGO_STATIC_ROOT=str(folder / "static"),
                DJANGO_LOG_LEVEL="WARNING",
            )
            manage(env, "migrate", "--noinput")
            manage(env, "collectstatic", "--noinput", "--verbosity", "0")  # deployed as the README says
            token = manage(env, "shell", "-c", TOKEN_SCRIPT).strip().splitlines()[-1]
            service = Service(env, folder / "gunicorn.log")
            service.start()
            story = request(service.base, "POST", "/v1/stories", token=token, body={"title": "Drills"})
            assert story.status == 201, story.body
            scenes = []
            for title in ("Outage", "Recovery"):
                scene = request(
                    service.base,
                    "POST",
                    f"/v1/stories/{story.json()['story_id']}/scenes",
                    token=token,
                    body={"title": title, "source_text": "The keeper climbs the stairs."},
                )
                assert scene.status == 201, scene.body
                scenes.append(scene.json()["scene_id"])
            yield Site(service, token, scenes, drill_url, url, database, folder / "media", quota, env)
    finally:
        if service is not None:
            service.stop()
        if not request_session_failed():
            drop_database(url, database)  # kept after a failure, to look at


@pytest.fixture(scope="session")
def request_session_failed(request):
    return lambda: request.session.testsfailed > 0
