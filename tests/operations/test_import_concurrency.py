"""An import takes the version-stream locks a create takes (PostgreSQL, real threads): a
batch waits for a create in flight on its streams, then sees its version, and refuses the
line that would collide instead of failing on the unique index."""

import threading

import pytest
from django.db import connection

from artifacts.models import Artifact
from artifacts.services import ArtifactService
from kernel.transactions import composing
from tests.conftest import SCENE_INTENT
from tests.operations.conftest import jsonl, line, run

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

WAIT = 10


def test_an_import_waits_for_a_create_on_its_stream_and_then_refuses_the_taken_version(tmp_path, story, scene):
    created, release, errors = threading.Event(), threading.Event(), []

    def create_and_hold():
        try:
            with composing():  # the create's stream lock lasts until this block ends
                ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
                created.set()
                release.wait(WAIT * 2)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    outcome = {}

    def import_():
        try:
            outcome["result"] = run("import_artifacts", jsonl(tmp_path / "race.jsonl", [line(scene, 1)]))
        finally:
            connection.close()

    holder = threading.Thread(target=create_and_hold)
    holder.start()
    assert created.wait(WAIT), errors
    importer = threading.Thread(target=import_)
    importer.start()
    importer.join(1.5)
    assert importer.is_alive(), "the import did not wait for the create holding its stream"
    release.set()
    holder.join(WAIT)
    importer.join(WAIT)

    assert not errors
    result = outcome["result"]
    assert result.code == 1 and "version 1 of scene_intent" in result.err and "exists already" in result.err
    assert list(Artifact.objects.values_list("version", flat=True)) == [1]
