"""The pipeline's record beside a client's upload of the same bytes to the same scene (SPEC
§10, §12): both take the content digest's lock and the stream's, in locks.py's order (content,
then stream), so neither waits for the other in a circle: no deadlock for PostgreSQL to
break, no retry, and every version gapless. Real threads on PostgreSQL."""

import logging
import threading

import pytest
from django.db import connection

from artifacts.models import Artifact
from artifacts.services import ArtifactService
from runs.pipeline import driver
from stories import services as story_services

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

TEXT = 'Mara climbs the stairs. "Hold the lamp," Mara says to Tomas. The sea is calm at dawn.'
ROUNDS = 6


def test_a_render_recorded_beside_an_upload_of_the_same_bytes_never_deadlocks(story, caplog):
    scene = story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT)
    assert driver.run_scene(scene.pk).run.status == "succeeded"
    render = Artifact.objects.get(scene=scene, type="render_result")
    with render.content.open("rb") as handle:
        png = handle.read()  # what a forced remake draws again, byte for byte
    errors = []

    def in_thread(action, barrier):
        def run():
            try:
                barrier.wait(10)
                action()
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=run)

    with caplog.at_level(logging.WARNING, logger="kernel.transactions"):
        for _ in range(ROUNDS):
            barrier = threading.Barrier(2)
            threads = [
                in_thread(lambda: driver.run_scene(scene.pk, only=["render_result"], force=True), barrier),
                in_thread(
                    lambda: ArtifactService().create_artifact(
                        scene.pk, "render_result", render.payload, kind="image", content=png, mime_type="image/png"
                    ),
                    barrier,
                ),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
    assert errors == []
    assert "deadlock" not in caplog.text.lower()
    versions = sorted(Artifact.objects.filter(scene=scene, type="render_result").values_list("version", flat=True))
    assert versions == list(range(1, 2 * ROUNDS + 2))
    assert {a.content_sha256 for a in Artifact.objects.filter(scene=scene, type="render_result")} == {
        render.content_sha256
    }
