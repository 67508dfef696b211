"""Outages answer what a client can act on (SPEC §7): a database that cannot be reached is a
JSON 503 ``database_unavailable`` with ``Retry-After``, never a 500; storage without room is a
JSON 507 ``storage_full`` that leaves no row and no partial file.

Each failure is real: a loopback port nothing listens on, a connection PostgreSQL itself
terminates, a lock held past ``statement_timeout``, a storage that runs out of room mid-write.
The same faults under gunicorn and concurrent writers are the drills (``make drills``).
"""

import contextlib
import errno
import json
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.core.files.base import File
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.http import HttpResponse
from django.urls import path
from rest_framework.test import APIClient

from artifacts.models import Artifact
from artifacts_project.urls import handler500
from artifacts_project.urls import urlpatterns as real_patterns
from tests.conftest import PNG_BYTES, SCENE_INTENT

from .conftest import assert_error, client_for

ROOT = Path(__file__).resolve().parents[2]


# -- a database that cannot be reached -----------------------------------------------------


@contextlib.contextmanager
def database_unreachable():
    """Point the default connection at a loopback port nothing listens on: connects are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=port)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def assert_unavailable(response):
    body = assert_error(response, 503, "database_unavailable")
    assert int(response["Retry-After"]) > 0
    return body


def session_write(request):
    """Touches nothing but the session: the database is first needed by SessionMiddleware,
    saving it after the view, outside any view's error handling."""
    request.session["seen"] = True
    return HttpResponse("ok")


urlpatterns = [path("v1/session-write", session_write), *real_patterns]
__all__ = ["handler500", "urlpatterns"]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_is_a_503_with_retry_after_in_the_api(make_user, scene):
    writer = client_for(make_user("w", superuser=True))
    with database_unreachable():
        assert_unavailable(writer.get("/v1/stories"))
        body = assert_unavailable(
            writer.post(f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": SCENE_INTENT})
        )
        assert "unavailable" in body["message"] and "127.0.0.1" not in body["message"]
        # A token is checked in the database: whether it is valid cannot be known now.
        stranger = APIClient()
        stranger.credentials(HTTP_AUTHORIZATION="Token not-a-token")
        assert_unavailable(stranger.get("/v1/stories"))
    # Nothing to restart: the next request connects again.
    assert writer.get("/v1/stories").status_code == 200
    assert not Artifact.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_outside_drf_the_admin_answers_an_html_503(make_user):
    admin = APIClient()  # re-raises an error no middleware answered: this one must be answered
    admin.force_login(make_user("boss", superuser=True))
    with database_unreachable():
        page = admin.get("/admin/")  # the admin view loads the user: a view's error
        assert page.status_code == 503 and page["Content-Type"].startswith("text/html")
        assert int(page["Retry-After"]) > 0 and b"Service unavailable" in page.content


@pytest.mark.postgres_only
@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
def test_a_middleware_that_loses_the_database_answers_503_through_handler500():
    # A new visitor: the view fills a session without reading one; SessionMiddleware saves it.
    assert APIClient().get("/v1/session-write").status_code == 200
    with database_unreachable():
        assert_unavailable(APIClient(raise_request_exception=False).get("/v1/session-write"))


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_terminates_mid_request_is_a_503(make_user, scene):
    writer = client_for(make_user("w", superuser=True))
    assert writer.get("/v1/stories").status_code == 200
    params = connection.get_connection_params()
    with psycopg.connect(**{**params, "autocommit": True}) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    try:
        assert_unavailable(
            writer.post(f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": SCENE_INTENT})
        )
    finally:
        connection.close()  # what Django does at the end of a request that had a database error
    assert (
        writer.post(
            f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": SCENE_INTENT}, format="json"
        ).json()["version"]
        == 1
    )


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_lock_held_past_the_statement_timeout_is_a_503_not_a_hang(make_user, scene):
    writer = client_for(make_user("w", superuser=True))
    writer.get("/v1/stories")  # connected
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '300ms'")
    params = connection.get_connection_params()
    try:
        with psycopg.connect(**params) as holder:
            # Another session holds the scene: a planning create waits for it (locks.share_scene).
            holder.execute("SELECT 1 FROM stories_scene WHERE id = %s FOR UPDATE", [scene.pk])
            assert_unavailable(
                writer.post(f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": SCENE_INTENT})
            )
    finally:
        connection.close()  # drops the session's short timeout
    assert not Artifact.objects.exists()


def test_postgres_connections_check_their_health_and_time_out(tmp_path):
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        "print(json.dumps({alias: [c['CONN_HEALTH_CHECKS'], c['OPTIONS']] for alias, c in settings.DATABASES.items()}))"
    )
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "artifacts_project.settings"}

    def databases(env):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    url = "postgres://svc@db.example:5432/store"
    assert databases({"DATABASE_URL": url})["default"] == [
        True,
        {"connect_timeout": 5, "options": "-c statement_timeout=30s"},
    ]
    tuned = databases(
        {
            "DATABASE_URL": url,
            "DATABASE_OWNER_URL": "postgres://owner@db.example:5432/store",
            "DATABASE_CONNECT_TIMEOUT": "2",
            "DATABASE_STATEMENT_TIMEOUT": "10",
        }
    )
    assert tuned["default"] == [True, {"connect_timeout": 2, "options": "-c statement_timeout=10s"}]
    assert tuned["owner"] == [True, {"connect_timeout": 2}]  # migrations may run longer
    assert databases({"DATABASE_URL": url, "DATABASE_STATEMENT_TIMEOUT": "0"})["default"][1] == {"connect_timeout": 5}
    # SQLite is left as it was.
    assert databases({})["default"] == [False, {"transaction_mode": "IMMEDIATE", "timeout": 20}]


# -- storage without room ------------------------------------------------------------------


class FullDiskStorage(FileSystemStorage):
    """A disk with room for ``ROOM`` bytes: a write gets that far, then fails with ENOSPC and
    leaves what it wrote, as a real full disk does."""

    ROOM = 16

    def _save(self, name, content):
        return super()._save(name, _RunsOutOfRoom(content, self.ROOM))


class _RunsOutOfRoom(File):
    def __init__(self, content, room):
        super().__init__(content.file, content.name)
        self.room = room

    def chunks(self, chunk_size=None):
        self.file.seek(0)
        yield self.file.read(self.room)
        raise OSError(errno.ENOSPC, "No space left on device")


class BrokenDiskStorage(FullDiskStorage):
    """An I/O error mid-write: a fault of the service, not a lack of room."""

    def _save(self, name, content):
        try:
            return super()._save(name, content)
        except OSError as exc:
            raise OSError(errno.EIO, "Input/output error") from exc


def stored_files(media_root: Path) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


@pytest.fixture
def full_disk(settings):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.FullDiskStorage"}}


def post_image(client, scene, content: bytes, alt="a frame"):
    return client.post(
        f"/v1/scenes/{scene.pk}/artifacts",
        {
            "type": "cover_image",
            "payload": json.dumps({"alt": alt}),
            "content": SimpleUploadedFile("frame.png", content, content_type="image/png"),
        },
        format="multipart",
    )


def test_a_full_disk_is_a_507_and_leaves_no_row_and_no_partial_file(make_user, scene, media_root, settings, full_disk):
    writer = client_for(make_user("w", superuser=True))
    image = PNG_BYTES + b"unique bytes of this frame" * 10
    body = assert_error(post_image(writer, scene, image), 507, "storage_full")
    assert "no room" in body["message"] and str(media_root) not in body["message"]
    assert not Artifact.objects.exists()
    assert stored_files(media_root) == []

    # Room again (the real storage): the same bytes are stored whole, not the 16 bytes left behind.
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    created = post_image(writer, scene, image)
    assert created.status_code == 201, created.content
    assert b"".join(writer.get(created.json()["content_url"]).streaming_content) == image
    assert created.json()["version"] == 1  # the failed write took no version


def test_a_storage_that_fails_otherwise_is_a_500_and_still_leaves_no_partial_file(
    make_user, scene, media_root, settings
):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.BrokenDiskStorage"}}
    writer = client_for(make_user("w", superuser=True))
    writer.raise_request_exception = False
    assert_error(post_image(writer, scene, PNG_BYTES + b"x" * 100), 500, "server_error")
    assert not Artifact.objects.exists()
    assert stored_files(media_root) == []
