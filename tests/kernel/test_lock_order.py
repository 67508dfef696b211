"""locks.py's order, enforced while the tests run (LOCK_ORDER_CHECK, on in this suite): a
transaction that takes a lock of a lower level than one it holds fails at once, rather than
deadlocking once in a while in production."""

import pytest
from django.db import transaction

from artifacts.services import ArtifactService
from kernel import locks
from kernel.locks import LockOrderViolation
from kernel.transactions import composing
from tests.conftest import SCENE_INTENT


def test_the_check_is_on_in_this_suite(settings):
    assert settings.LOCK_ORDER_CHECK


def test_a_lock_taken_out_of_order_fails(scene):
    with transaction.atomic():
        locks.lock_stream(story_id=scene.story_id, scene_id=scene.pk, type="panel_plan")  # level 4
        with pytest.raises(LockOrderViolation) as refused:
            locks.lock_scene(scene.pk)  # level 2, after 4
    assert "the scene row (level 2) taken after the panel_plan stream (level 4)" in str(refused.value)


def test_a_service_composed_out_of_order_fails(scene):
    """A planning create shares its scene (2): inside a transaction that already holds a
    stream (4), as the old pipeline record did, it is refused."""
    with composing():
        locks.lock_stream(story_id=scene.story_id, scene_id=scene.pk, type="render_result")
        with pytest.raises(LockOrderViolation):
            ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)


def test_locks_in_order_and_locks_of_separate_transactions_pass(scene, story):
    with transaction.atomic():
        locks.lock_story(story.pk)
        locks.share_scene(scene.pk)
        locks.lock_content("0" * 64)
        locks.lock_stream(story_id=story.pk, scene_id=scene.pk, type="scene_intent")
        locks.lock_stream(story_id=story.pk, scene_id=scene.pk, type="visual_plan")  # the same level again
        locks.lock_relation_graph()
    with transaction.atomic():  # a new transaction starts from the bottom
        locks.lock_scene(scene.pk)
    ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)  # each action its own
    locks.lock_scene(scene.pk)  # outside a transaction of its own: one statement, nothing held after
