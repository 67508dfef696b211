"""The create path's round trips (artifacts/services.py, kernel/locks.py).

A create reads its scene (a planning type also holds it FOR SHARE), then sends the stream's
lock and the INSERT together: on PostgreSQL as two statements of one query, so the lock's
holder waits for the INSERT's answer and the COMMIT only. No savepoint: a version taken meanwhile makes the INSERT do
nothing (ON CONFLICT), and the safety net retries it in the same transaction.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from artifacts.payloads import ARTIFACT_TYPES
from artifacts.services import ArtifactService
from tests.conftest import SCENE_INTENT

RENDER_SPEC = ARTIFACT_TYPES["render_spec"].example

# Each create is its own outermost transaction here, as in a request: no test transaction
# around it to turn its atomic block into a savepoint.
pytestmark = pytest.mark.django_db(transaction=True)


def statements(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"] not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT")]


def test_a_create_reads_its_scene_then_locks_and_inserts_in_one_statement_batch(scene):
    service = ArtifactService()
    service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
    with CaptureQueriesContext(connection) as queries:
        made = service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
    sent = statements(queries.captured_queries)
    assert made.version == 2 and made.story_id == scene.story_id
    # On PostgreSQL the INSERT also writes its artifact.created event (and fans it out to the
    # webhooks); on SQLite those are two statements more, in-process.
    sqlite_events = 2 if connection.vendor == "sqlite" else 0
    assert len(sent) == 2 + sqlite_events, sent
    assert "stories_scene" in sent[0]
    assert "INSERT INTO" in sent[1] and "ON CONFLICT" in sent[1]
    assert not any("SAVEPOINT" in sql for sql in sent)
    if connection.vendor == "postgresql":
        assert sent[1].startswith("SELECT pg_advisory_xact_lock(")


def test_a_planning_create_adds_only_the_scene_share(scene):
    service = ArtifactService()
    with CaptureQueriesContext(connection) as queries:
        made = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    assert made.version == 1
    sent = statements(queries.captured_queries)
    assert len(sent) == 3 + (2 if connection.vendor == "sqlite" else 0), sent
    assert not any("SAVEPOINT" in sql for sql in sent)


def test_the_returned_artifact_is_what_was_stored(scene):
    service = ArtifactService(request_id="create-path")
    first = service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
    second = service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
    stored = service.get_artifact(second.pk)
    assert (second.version, second.parent_id, second.fingerprint) == (2, first.pk, first.fingerprint)
    assert (stored.version, stored.parent_id, stored.request_id) == (2, first.pk, "create-path")


@pytest.mark.postgres_only
def test_with_server_side_binding_the_lock_and_the_insert_go_one_after_the_other(scene, monkeypatch):
    """Without psycopg's client-side binding, two statements cannot share one query: the
    lock goes first, the INSERT next, with the same outcome."""
    from kernel import locks

    monkeypatch.setattr(locks.psycopg, "ClientCursor", type("NotThisCursor", (), {}))
    service = ArtifactService()
    service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
    with CaptureQueriesContext(connection) as queries:
        made = service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
    sent = statements(queries.captured_queries)
    assert made.version == 2
    assert sent[1].startswith("SELECT pg_advisory_xact_lock(") and "INSERT" not in sent[1]
    assert sent[2].startswith("WITH a AS (INSERT INTO")  # the version and its artifact.created event
