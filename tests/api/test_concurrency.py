"""Concurrency through HTTP on PostgreSQL: parallel POSTs to one stream all succeed, gapless."""

import threading

import pytest
from django.db import connection

from artifacts.models import Artifact
from tests.conftest import SCENE_INTENT

from .conftest import WRITER_PERMS, client_for

WRITERS = 16
POSTS_EACH = 2


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_parallel_posts_to_one_stream_get_gapless_versions(make_user, scene):
    user = make_user("parallel", *WRITER_PERMS)
    client_for(user)  # the token exists before the threads start
    barrier = threading.Barrier(WRITERS)
    statuses, errors = [], []

    def post():
        try:
            client = client_for(user)
            barrier.wait()
            for _ in range(POSTS_EACH):
                response = client.post(
                    f"/v1/scenes/{scene.pk}/artifacts", {"type": "scene_intent", "payload": SCENE_INTENT}, format="json"
                )
                statuses.append(response.status_code)
        except Exception as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert statuses == [201] * (WRITERS * POSTS_EACH)
    versions = list(
        Artifact.objects.filter(scene=scene, type="scene_intent").order_by("version").values_list("version", flat=True)
    )
    assert versions == list(range(1, WRITERS * POSTS_EACH + 1))
    parents = dict(Artifact.objects.filter(scene=scene).values_list("version", "parent__version"))
    assert parents == {v: (v - 1 if v > 1 else None) for v in versions}
