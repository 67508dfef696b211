"""Concurrency through HTTP on PostgreSQL: parallel POSTs to one stream all succeed,
gapless, and writes that touch the same rows from two sides never deadlock into a 500."""

import threading

import pytest
from django.db import connection

from artifacts.models import Artifact
from stories import services as story_services
from tests.conftest import SCENE_INTENT, make_image

from .conftest import WRITER_PERMS, client_for

ROUNDS = 20

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


def _pair(user, first, second):
    """Two requests released at once, each from its own client and database connection."""
    barrier = threading.Barrier(2)
    answers, errors = [None, None], []

    def send(index, request):
        try:
            client = client_for(user)
            barrier.wait(10)
            answers[index] = request(client)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i, r)) for i, r in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    return answers


def _statuses(answers):
    return [a.status_code for a in answers]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_links_beside_primary_never_deadlock(make_user, story):
    """A link insert takes FOR KEY SHARE on the story and the artifact; set-primary used to
    lock both FOR UPDATE, in the other order of need: a deadlock, answered 500."""
    user = make_user("pair", *WRITER_PERMS)
    for n in range(ROUNDS):
        primary = make_image(story, "primary", state="published")
        # Half the rounds link the very artifact being made primary, half another one.
        linked = primary if n % 2 else make_image(story, "linked", state="published")
        answers = _pair(
            user,
            lambda c, a=linked: c.post(
                f"/v1/stories/{story.pk}/links", {"artifact_id": str(a.pk), "role": "cover"}, format="json"
            ),
            lambda c, a=primary: c.post(
                f"/v1/stories/{story.pk}/primary", {"artifact_id": str(a.pk), "role": "cover"}, format="json"
            ),
        )
        link_status, primary_status = _statuses(answers)
        assert primary_status == 200, answers[1].content
        # Linking the new primary after set-primary made its link is a duplicate: 409.
        assert link_status == 201 or (linked is primary and link_status == 409), answers[0].content
    story.refresh_from_db()
    assert story.cover_artifact_id == primary.pk


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_primary_beside_archiving_never_deadlocks(make_user, story):
    """The old primary is archived while a new one takes its place: archiving waits for
    the primary change or is refused as still primary, never a 500."""
    user = make_user("pair", *WRITER_PERMS)
    current = make_image(story, "first", state="published")
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=current.pk)
    for _ in range(ROUNDS):
        new = make_image(story, "next", state="published")
        answers = _pair(
            user,
            lambda c, a=new: c.post(
                f"/v1/stories/{story.pk}/primary", {"artifact_id": str(a.pk), "role": "cover"}, format="json"
            ),
            lambda c, a=current: c.post(f"/v1/artifacts/{a.pk}/transition", {"to": "archived"}, format="json"),
        )
        primary_status, archive_status = _statuses(answers)
        assert primary_status == 200, answers[0].content
        assert archive_status in (200, 409), answers[1].content
        if archive_status == 409:
            assert answers[1].json()["code"] == "still_primary"
        current = new
    story.refresh_from_db()
    assert story.cover_artifact_id == current.pk


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_run_beside_a_planning_create_never_deadlocks(make_user, story, scene):
    """A run insert locks the story for its current_run; a planning create used to lock the
    scene and, through Scene's ordering, the story FOR UPDATE."""
    user = make_user("pair", *WRITER_PERMS)
    for n in range(ROUNDS):
        answers = _pair(
            user,
            lambda c: c.post(
                "/v1/runs", {"story_id": str(story.pk), "scene_id": str(scene.pk), "workflow": "w"}, format="json"
            ),
            lambda c, n=n: c.post(
                f"/v1/scenes/{scene.pk}/artifacts",
                {"type": "scene_intent", "payload": {**SCENE_INTENT, "round": n}},
                format="json",
            ),
        )
        assert _statuses(answers) == [201, 201], [a.content for a in answers]
    assert Artifact.objects.filter(scene=scene, type="scene_intent").count() == ROUNDS
