"""A prune beside the writes that reference what it prunes, with real threads on
PostgreSQL (SPEC §9): an edit or an import that names a file the prune would delete, and
new relations, story links and run links to the versions it prunes."""

import datetime
import json
import random
import threading
import time

import pytest
from django.core.files.storage import default_storage
from django.db import connection

from artifacts import services as artifact_services
from artifacts.models import Artifact, ArtifactRelation
from artifacts.payloads import ARTIFACT_TYPES
from artifacts.services import ArtifactService
from kernel import locks
from kernel.errors import Pruned
from kernel.transactions import composing
from operations import retention, verification
from operations.importing import Importer, parse_lines
from runs import services as run_services
from runs.models import RunArtifactLink
from stories import services as story_services
from stories.models import StoryArtifactLink
from tests.operations.conftest import Rows, png

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

WAIT = 10  # seconds: far longer than any of these takes when nothing blocks it
MONTH = datetime.timedelta(days=30)


def while_held(write, other) -> tuple:
    """Run ``write`` in a transaction of its own thread, then, while that transaction is
    still open, ``other`` in another thread; commit ``write`` once ``other`` has finished
    or waits on a lock (for WAIT seconds at most). Returns ``write``'s result and
    ``other``'s (or the exception it raised)."""
    done, released, held = (threading.Event() for _ in range(3))
    results, errors, outcome = [], [], []

    def holder():
        try:
            with composing():
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
            outcome.append(other())
        except Exception as exc:
            outcome.append(exc)
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
    return results[0], outcome[0]


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

    edited, _ = while_held(
        lambda: artifact_services.artifact_edit(artifact_id=old.pk, payload={"alt": "first, retold"}), prune
    )

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

    result, _ = while_held(import_line, sweep)

    assert (result.imported, result.refused) == (1, [])
    assert default_storage.exists(Artifact.objects.get(pk=line["artifact_id"]).content.name)
    assert content_problems() == []


# -- new references to what a prune prunes (SPEC §9: 409 pruned, also during a prune) --------


def tombstone_references() -> list:
    """Relations from a live artifact to a pruned one, and story links to a pruned one."""
    return [str(p) for p in verification.check_tombstone_references(verification.Options())]


@pytest.fixture
def old(story, scene):
    """Three old intermediate versions a prune takes, under a latest one it keeps; the same
    in a story-level image stream; and a new artifact that references them."""
    rows = Rows(story)
    versions = rows.stream(scene=scene, count=4)
    images = [rows.make(scene=None, type="cover_image", version=1, content=png(1), payload={"alt": "1"})]
    images.append(rows.make(scene=None, type="cover_image", version=2, parent=images[0], content=png(2)))
    new = ArtifactService().create_artifact(scene.pk, "render_spec", ARTIFACT_TYPES["render_spec"].example)
    run = run_services.run_create(story_id=story.pk, scene_id=scene.pk, workflow="w")
    return {"versions": versions[:3], "image": images[0], "new": new, "run": run, "story": story}


REFERENCES = {
    "relation": lambda old, target: artifact_services.relation_create(
        from_artifact_id=old["new"].pk, to_artifact_id=target.pk, relation_type="derived_from"
    ),
    "story link": lambda old, target: story_services.link_create(
        story_id=old["story"].pk, artifact_id=target.pk, role="cover"
    ),
    "run link": lambda old, target: run_services.run_link_artifact(
        run_id=old["run"].pk, artifact_id=target.pk, stage="render_spec", direction="consumed"
    ),
}


def target_of(old, reference: str):
    return old["image"] if reference == "story link" else old["versions"][0]


@pytest.mark.parametrize("reference", ["relation", "story link"])
def test_a_reference_committed_beside_a_prune_keeps_its_target(old, reference):
    target = target_of(old, reference)
    while_held(lambda: REFERENCES[reference](old, target), prune)
    assert not Artifact.objects.get(pk=target.pk).is_pruned  # the batch saw the reference
    assert Artifact.objects.filter(pk__in=[v.pk for v in old["versions"][1:]], pruned_at__isnull=False).count() == 2
    assert tombstone_references() == []


@pytest.mark.parametrize("reference", list(REFERENCES))
def test_a_reference_beside_a_prune_batch_in_flight_is_refused(old, reference):
    target = target_of(old, reference)

    def prune_batch():
        # The batch's transaction on its rows (the files go in transactions of their own
        # after it), held open while the reference comes.
        with retention.Retention(older_than=MONTH) as run:
            run.plan()
            return run._prune_rows([target.pk])[0]

    batch, outcome = while_held(prune_batch, lambda: REFERENCES[reference](old, target))
    assert batch.pruned == [target.pk]
    assert isinstance(outcome, Pruned), outcome  # it waited for the batch, then read pruned_at
    assert not ArtifactRelation.objects.exists() and not StoryArtifactLink.objects.exists()
    assert not RunArtifactLink.objects.exists()


def test_clients_relating_new_artifacts_to_old_versions_beside_a_prune_leave_no_edge_to_a_tombstone(story):
    scenes = [story_services.scene_create(story_id=story.pk, title=f"s{n}") for n in range(3)]
    rows = Rows(story)
    old = [version.pk for scene in scenes for version in rows.stream(scene=scene, count=40)[:-1]]
    pruning = threading.Event()
    pruning.set()
    refused, related = [], []

    def client(n):
        service, rng = ArtifactService(), random.Random(n)
        try:
            while pruning.is_set() or len(related) < 20:
                new = service.create_artifact(
                    rng.choice(scenes).pk, "render_spec", ARTIFACT_TYPES["render_spec"].example
                )
                try:
                    related.append(
                        artifact_services.relation_create(
                            from_artifact_id=new.pk, to_artifact_id=rng.choice(old), relation_type="derived_from"
                        )
                    )
                except Pruned:
                    refused.append(new.pk)
        finally:
            connection.close()

    def pruner():
        try:
            with retention.Retention(older_than=MONTH) as run:
                run.plan()
                for _ in run.prune(batch_size=3):
                    time.sleep(0.01)  # let the clients in between batches
        finally:
            pruning.clear()
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)] + [threading.Thread(target=pruner)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 12)

    pruned = Artifact.objects.filter(pk__in=old, pruned_at__isnull=False).count()
    assert 0 < pruned < len(old)  # the prune went ahead, and kept what was related in time
    assert related and refused  # both sides of the race were run
    assert tombstone_references() == []
    assert not ArtifactRelation.objects.filter(to_artifact__pruned_at__isnull=False).exists()


def test_a_batch_slowed_by_a_lock_makes_the_next_batches_smaller(story, scene):
    """Each batch is sized from the pace of the one before (BATCH_LOCK_TARGET): a batch that
    waited on a row a curation held shrinks the next, and the sizes grow back once nothing
    waits; so row locks stay short when the machine or the database slows down. Sizes are
    asserted, not times."""
    Rows(story).stream(scene=scene, count=400)
    holding, errors = threading.Event(), []

    def curation_in_flight(pk):
        try:
            with composing():
                locks.lock_artifacts([pk])
                holding.set()
                time.sleep(1)  # the first batch waits this long for the row
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    with retention.Retention(older_than=MONTH) as run:
        run.plan()
        first_batch = run._targets_after(None, retention.FIRST_BATCH)
        thread = threading.Thread(target=curation_in_flight, args=(first_batch[-1][0],))
        thread.start()
        assert holding.wait(WAIT)
        sizes = [len(outcome.pruned) + len(outcome.kept) for outcome in run.prune(batch_size=1000)]
    thread.join(WAIT)
    assert errors == []
    assert sizes[0] == retention.FIRST_BATCH and sum(sizes) == 399  # the latest is kept: no target
    assert retention.MIN_BATCH <= sizes[1] < sizes[0]  # about 100 rows a second: a quarter second's worth
    assert sizes[2] > sizes[1]  # nothing waits any more: the next batch is sized from a fast pace
