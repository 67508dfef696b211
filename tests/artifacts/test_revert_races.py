"""A restore beside the writes that race it, with real threads on PostgreSQL: a prune of the
version restored (the file it names must stay) and other restores of one stream."""

import threading

import pytest
from django.core.files.storage import default_storage
from django.db import connection

from artifacts import services as artifact_services
from artifacts.models import Artifact
from audit.models import AuditEvent
from tests.artifacts.test_prune_races import content_problems, prune, while_held
from tests.operations.conftest import Rows, png

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def test_a_restore_beside_a_prune_keeps_the_file_it_names(story):
    rows = Rows(story)
    old = rows.make(scene=None, type="cover_image", version=1, content=png(1), payload={"alt": "first"})
    rows.make(scene=None, type="cover_image", version=2, parent=old, content=png(2), payload={"alt": "second"})

    restored, _ = while_held(lambda: artifact_services.artifact_revert(artifact_id=old.pk), prune)

    assert Artifact.objects.get(pk=old.pk).is_pruned  # the prune went ahead with the row...
    assert (restored.version, restored.content_sha256) == (3, old.content_sha256)  # ...the restore names its file,
    assert default_storage.exists(restored.content.name)  # which is still there
    assert content_problems() == []


def test_restores_of_one_stream_at_once_make_consecutive_versions(scene):
    first = artifact_services.artifact_create(
        scene_id=scene.pk, type="scene_intent", payload={"mood": "a", "pacing": "b", "key_beats": ["c"]}
    )
    latest = artifact_services.artifact_edit(artifact_id=first.pk, payload={**first.payload, "mood": "z"})
    barrier, made, failed = threading.Barrier(8), [], []

    def restore():
        try:
            barrier.wait(10)
            made.append(artifact_services.artifact_revert(artifact_id=first.pk))
        except Exception as exc:  # reported below
            failed.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=restore) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failed == []
    versions = sorted(a.version for a in made)
    assert versions == list(range(3, 11))
    # Each parent is the version before it: the stream's latest when its restore went in.
    parents = dict(Artifact.objects.filter(scene=scene, type="scene_intent").values_list("version", "parent__version"))
    assert all(parents[v] == v - 1 for v in versions) and parents[2] == 1
    assert latest.version == 2
    assert AuditEvent.objects.filter(action="revert").count() == 8
