"""A prune beside the writes that reference what it prunes, with real threads on
PostgreSQL (SPEC §9): an edit or an import that names a file the prune would delete, and
new relations, story links and run links to the versions it prunes."""

import datetime
import json
import threading
import time

import pytest
from django.core.files.storage import default_storage
from django.db import connection, transaction

from artifacts import retention, verification
from artifacts.importing import Importer, parse_lines
from artifacts.models import Artifact
from artifacts.services import ArtifactService
from tests.commands.conftest import Rows, png

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

WAIT = 10  # seconds: far longer than any of these takes when nothing blocks it
MONTH = datetime.timedelta(days=30)


def while_held(write, other) -> list:
    """Run ``write`` in a transaction of its own thread, then, while that transaction is
    still open, ``other`` in another thread; commit ``write`` once ``other`` has finished
    or has waited for it (for WAIT seconds at most). Returns ``write``'s result."""
    done, released, held = (threading.Event() for _ in range(3))
    results, errors = [], []

    def holder():
        try:
            with transaction.atomic():
                results.append(write())
                held.set()
                released.wait(WAIT * 2)
        except Exception as exc:  # surfaced below
            errors.append(exc)
            held.set()
        finally:
            connection.close()

    def worker():
        try:
            other()
        except Exception as exc:
            errors.append(exc)
        finally:
            done.set()
            connection.close()

    first = threading.Thread(target=holder)
    first.start()
    assert held.wait(WAIT), errors
    second = threading.Thread(target=worker)
    second.start()
    # With the locks right, the other waits for the write's commit: commit once it does.
    deadline = time.monotonic() + WAIT
    while not done.wait(0.05) and not someone_waits_on_a_lock() and time.monotonic() < deadline:
        pass
    released.set()
    first.join(WAIT * 2)
    second.join(WAIT * 2)
    assert errors == []
    return results


def someone_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock')"
        )
        return cursor.fetchone()[0]


def prune():
    with retention.Retention(older_than=MONTH) as run:
        run.plan()
        for _ in run.prune(batch_size=100):
            pass


def content_problems() -> list:
    return [str(p) for p in verification.check_content(verification.Options())]


def test_an_edit_beside_a_prune_keeps_the_file_it_carries_over(story):
    rows = Rows(story)
    old = rows.make(scene=None, type="cover_image", version=1, content=png(1), payload={"alt": "first"})
    rows.make(scene=None, type="cover_image", version=2, parent=old, content=png(2), payload={"alt": "second"})

    (edited,) = while_held(lambda: ArtifactService().edit_artifact(old.pk, {"alt": "first, retold"}), prune)

    assert Artifact.objects.get(pk=old.pk).is_pruned  # the prune went ahead with the row...
    assert edited.content_sha256 == old.content_sha256  # ...and the new latest names its file,
    assert default_storage.exists(edited.content.name)  # which is still there
    assert content_problems() == []


def test_an_import_beside_a_sweep_keeps_the_file_its_line_names(story):
    data = png(7)
    rows = Rows(story)
    stored = rows.make(scene=None, type="cover_image", version=1, content=data, payload={"alt": "x"})
    Artifact.objects.filter(pk=stored.pk).update(payload=None, content="", pruned_at=stored.created_at)
    # The file is now one only a tombstone names: the sweep deletes it at once.
    line = {
        "artifact_id": "6f1b5a3e-0000-4000-8000-000000000001",
        "story_id": str(story.pk),
        "type": "cover_image",
        "version": 2,
        "payload": {"alt": "imported"},
        "kind": "image",
        "content_sha256": stored.content_sha256,
        "content_size": stored.content_size,
        "mime_type": "image/png",
    }

    def import_line():
        return Importer().import_batch(parse_lines([(1, json.dumps(line).encode())]))

    def sweep():
        list(retention.sweep(grace=datetime.timedelta(0), dry_run=False))

    (result,) = while_held(import_line, sweep)

    assert (result.imported, result.refused) == (1, [])
    assert default_storage.exists(Artifact.objects.get(pk=line["artifact_id"]).content.name)
    assert content_problems() == []
