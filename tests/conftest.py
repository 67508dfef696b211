"""Shared fixtures: small real objects made through the services, never mocks."""

import importlib
import io
import os
import wave

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection

from artifacts import services as artifact_services
from artifacts.migrations._immutability import SQLITE_NO_DELETE as ARTIFACT_NO_DELETE
from artifacts.services import ArtifactService
from stories import services as story_services

SCENE_INTENT = {"mood": "tense", "pacing": "fast", "key_beats": ["door creaks", "lights fail"]}
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)

# Every append-only table's SQLite no-delete trigger, named <table>_no_delete.
SQLITE_NO_DELETE = {
    **ARTIFACT_NO_DELETE,
    **importlib.import_module("stories.migrations.0004_primary_history").SQLITE_NO_DELETE,
    **importlib.import_module("comments.migrations.0002_immutable_and_editors").SQLITE_NO_DELETE,
}


def _wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)
    return buffer.getvalue()


# The smallest real headers of each format: uploads are sniffed, so they must be what they say.
WAV_BYTES = _wav()
MP3_BYTES = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + b"\x00" * 64
WEBM_BYTES = (
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
    b"\x42\x82\x84webm\x42\x87\x81\x02\x42\x85\x81\x02" + b"\x00" * 32
)
SVG_BYTES = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


# Every lock taken out of kernel/locks.py's order fails the test that takes it,
# here and in the processes the tests start (commands, workers, servers).
os.environ.setdefault("LOCK_ORDER_CHECK", "1")


@pytest.fixture(autouse=True, scope="session")
def _lock_order_checked():
    from django.conf import settings

    settings.LOCK_ORDER_CHECK = os.environ["LOCK_ORDER_CHECK"] == "1"


def pytest_collection_modifyitems(config, items):
    """Skip tests marked postgres_only when the suite runs on SQLite."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://...)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _sqlite_flush_past_the_no_delete_triggers(request):
    """A transactional test ends with Django's flush, a DELETE of every row, which SQLite's
    append-only triggers refuse (PostgreSQL flushes with TRUNCATE, which they let through).
    Just before that flush, the append-only tables are emptied with their triggers set
    aside, and the triggers put straight back: the flush then finds nothing there."""
    marker = request.node.get_closest_marker("django_db")
    if not (marker and marker.kwargs.get("transaction")) and "transactional_db" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # so this teardown runs before the flush
    yield
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_keys = OFF")
        for table, trigger in SQLITE_NO_DELETE.items():
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            cursor.execute(f"DELETE FROM {table}")
            cursor.execute(trigger)
        cursor.execute("PRAGMA foreign_keys = ON")


@pytest.fixture
def is_postgres():
    return connection.vendor == "postgresql"


@pytest.fixture
def story(db):
    return story_services.story_create(title="The Lighthouse", description="A keeper and a storm.")


@pytest.fixture
def scene(story):
    return story_services.scene_create(story_id=story.pk, title="Storm", source_text="The keeper climbs the stairs.")


@pytest.fixture
def service(db):
    return ArtifactService(request_id="test-request")


@pytest.fixture
def make_user(db):
    def make(username, *perms, superuser=False):
        if superuser:
            return User.objects.create_superuser(username, f"{username}@example.com", "pw-" + username)
        user = User.objects.create_user(username, f"{username}@example.com", "pw-" + username)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        return User.objects.get(pk=user.pk)  # fresh instance: permission cache empty

    return make


def make_image(story_or_scene, alt="an image", *, state="intermediate", content=PNG_BYTES):
    """A cover_image artifact on a story (story-level stream) or on a scene."""
    owner = "story_id" if story_or_scene._meta.model_name == "story" else "scene_id"
    return artifact_services.artifact_create(
        **{owner: story_or_scene.pk},
        type="cover_image",
        payload={"alt": alt},
        content=content,
        mime_type="image/png",
        lifecycle_state=state,
    )


@pytest.fixture
def published_cover(story):
    cover = make_image(story, "a lighthouse")
    artifact_services.artifact_transition(artifact_id=cover.pk, to="candidate")
    return artifact_services.artifact_transition(artifact_id=cover.pk, to="published")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Uploaded content goes to a per-test folder, never the developer's media/."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT
