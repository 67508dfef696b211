"""The lock module's promises, with real threads on PostgreSQL (kernel/locks.py).

A lock taken through the module holds its own row and no other, and the races that the
old accidental locks used to hide are closed on purpose.
"""

import threading

import pytest
from django.db import connection

from artifacts.services import ArtifactService
from kernel import locks
from kernel.errors import InvalidInput
from kernel.transactions import composing
from stories import services as story_services
from stories.models import Scene
from tests.conftest import SCENE_INTENT

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

WAIT = 10  # seconds: far longer than any of these writes takes when nothing blocks it


def hold(lock, *, released: threading.Event, held: threading.Event, errors: list):
    """In a thread: take ``lock`` in a transaction and keep it until ``released`` is set."""

    def run():
        try:
            with composing():
                lock()
                held.set()
                released.wait(WAIT * 2)
        except Exception as exc:  # surfaced by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(WAIT), errors
    return thread


def finishes_while_held(lock, action) -> bool:
    """Whether ``action`` (in its own thread and connection) completes while another
    transaction holds ``lock``."""
    released, held, errors, done = threading.Event(), threading.Event(), [], threading.Event()
    holder = hold(lock, released=released, held=held, errors=errors)

    def run():
        try:
            action()
            done.set()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    finished = done.wait(WAIT)
    released.set()
    worker.join(WAIT * 2)
    holder.join(WAIT * 2)
    assert errors == []
    return finished


def test_a_planning_create_does_not_queue_behind_a_lock_on_its_story(story, scene):
    """Scene.Meta.ordering used to follow the story: locking the scene for the planning
    check joined and locked the story too, so every planning write of a story waited for
    any curation of it (and for each other)."""
    assert finishes_while_held(
        lambda: locks.lock_story(story.pk),
        lambda: ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT),
    )


def test_planning_creates_on_one_scene_do_not_queue_behind_each_other(story, scene):
    """The planning check holds the scene FOR SHARE: another create's share does not block it."""
    assert finishes_while_held(
        lambda: locks.share_scene(scene.pk),
        lambda: ArtifactService().create_artifact(
            scene.pk, "panel_plan", {"panels": [{"grammar_id": "a", "weight": 1, "must_show": []}]}
        ),
    )


def test_locking_planning_waits_for_a_planning_create_in_flight(story, scene):
    """The other half of FOR SHARE: an UPDATE of the scene (lock planning) must wait."""
    assert not finishes_while_held(
        lambda: locks.share_scene(scene.pk),
        lambda: story_services.scene_lock_planning(scene_id=scene.pk),
    )


def test_locking_a_scene_does_not_lock_its_story(story, scene):
    assert finishes_while_held(
        lambda: locks.lock_scene(scene.pk),
        lambda: story_services.story_update(story_id=story.pk, title="Renamed while a scene is locked"),
    )


def test_an_insert_referencing_a_locked_row_is_not_blocked(story, scene):
    """FOR NO KEY UPDATE leaves the foreign-key checks' FOR KEY SHARE free: an artifact can
    be added to a story and a scene that curations hold."""
    spec = {"prompt": "p", "style": "s", "characters": [], "reference_images": []}
    assert finishes_while_held(
        lambda: (locks.lock_story(story.pk), locks.lock_scene(scene.pk)),
        lambda: ArtifactService().create_artifact(scene.pk, "render_spec", spec),
    )


def race(*actions, rounds: int = 1):
    """Run the actions at once (a barrier releases them), ``rounds`` times; return each
    round's (results, errors)."""
    outcomes = []
    for _ in range(rounds):
        barrier = threading.Barrier(len(actions))
        results, errors = [None] * len(actions), [None] * len(actions)

        def run(index, action, barrier=barrier, results=results, errors=errors):
            try:
                barrier.wait(WAIT)
                results[index] = action()
            except Exception as exc:
                errors[index] = exc
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 3)
        outcomes.append((results, errors))
    return outcomes


def test_two_scenes_moving_to_one_free_position_one_wins_the_other_is_told(story):
    """scene_update's position check used to hold only because locking a scene also locked
    its story. Now the story is locked on purpose: of two moves to one free position, one
    wins and the other is refused as bad input, never an IntegrityError."""
    for n in range(10):
        first = story_services.scene_create(story_id=story.pk, title="a", position=10 * n + 1)
        second = story_services.scene_create(story_id=story.pk, title="b", position=10 * n + 2)
        position = 1000 + n
        [(results, errors)] = race(
            lambda a=first, p=position: story_services.scene_update(scene_id=a.pk, position=p),
            lambda b=second, p=position: story_services.scene_update(scene_id=b.pk, position=p),
        )
        assert sum(r is not None for r in results) == 1, errors
        refused = [e for e in errors if e is not None]
        assert len(refused) == 1 and isinstance(refused[0], InvalidInput) and refused[0].field == "position"
        assert Scene.objects.filter(story=story, position=position).count() == 1


def test_a_new_scene_and_a_move_to_the_same_position(story):
    for n in range(10):
        existing = story_services.scene_create(story_id=story.pk, title="moving", position=10 * n + 1)
        position = 1000 + n
        [(results, errors)] = race(
            lambda p=position: story_services.scene_create(story_id=story.pk, title="new", position=p),
            lambda e=existing, p=position: story_services.scene_update(scene_id=e.pk, position=p),
        )
        assert sum(r is not None for r in results) == 1, errors
        assert all(e is None or (isinstance(e, InvalidInput) and e.field == "position") for e in errors)
        assert Scene.objects.filter(story=story, position=position).count() == 1
