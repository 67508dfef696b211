"""``atomic_write``: one transaction per action, a deadlock retried, rollback hooks."""

import threading

import pytest
from django.db import connection

from kernel import locks
from kernel.transactions import atomic_write, on_rollback
from stories import services as story_services
from stories.models import Story


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_deadlock_is_retried_and_both_writes_land():
    """Two actions lock two stories in opposite orders: PostgreSQL aborts one of them as a
    deadlock, and atomic_write runs it again instead of failing the request."""
    first = story_services.story_create(title="a")
    second = story_services.story_create(title="b")
    barrier = threading.Barrier(2)
    attempts, errors = [], []

    def crossing(one, other, title):
        @atomic_write
        def action():
            attempts.append(title)
            locks.lock_story(one.pk)
            if len(attempts) <= 2:  # the first attempts meet in the middle
                barrier.wait(10)
            locks.lock_story(other.pk)
            story_services.story_update(story_id=one.pk, title=title)

        def run():
            try:
                action()
            except Exception as exc:
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=run)

    threads = [crossing(first, second, "first wins"), crossing(second, first, "second wins")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(attempts) == 3  # one of the two ran twice
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.title, second.title) == ("first wins", "second wins")


@pytest.mark.django_db(transaction=True)
def test_rollback_hooks_run_after_a_rollback_and_never_after_a_commit():
    ran = []

    @atomic_write
    def commits():
        on_rollback(lambda: ran.append("commit"))
        return story_services.story_create(title="kept")

    @atomic_write
    def fails():
        on_rollback(lambda: ran.append("rollback"))
        story_services.story_create(title="rolled back")
        raise RuntimeError("after the write")

    commits()
    with pytest.raises(RuntimeError):
        fails()
    assert ran == ["rollback"]
    assert list(Story.objects.values_list("title", flat=True)) == ["kept"]


def test_hooks_are_not_called_inside_a_callers_own_transaction(db):
    """Inside a transaction it does not own, atomic_write cannot tell rollback from commit."""
    ran = []

    @atomic_write
    def fails():
        on_rollback(lambda: ran.append("rollback"))
        raise RuntimeError

    with pytest.raises(RuntimeError):
        fails()
    assert ran == []
