"""``atomic_write``: one transaction per action, a deadlock retried, rollback hooks."""

import threading

import pytest
from django.db import connection, transaction

from kernel import locks
from kernel.transactions import NestedAction, atomic_write, composing, on_rollback
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
            Story.objects.filter(pk=one.pk).update(title=title)

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
        return Story.objects.create(title="kept")

    @atomic_write
    def fails():
        on_rollback(lambda: ran.append("rollback"))
        Story.objects.create(title="rolled back")
        raise RuntimeError("after the write")

    commits()
    with pytest.raises(RuntimeError):
        fails()
    assert ran == ["rollback"]
    assert list(Story.objects.values_list("title", flat=True)) == ["kept"]


def test_hooks_are_not_called_inside_a_callers_own_transaction(db):
    """Composed into a caller's transaction, atomic_write cannot tell rollback from commit;
    a test case's own transaction is no caller's (each action of a test is its own)."""
    ran = []

    @atomic_write(nestable=True)
    def fails():
        on_rollback(lambda: ran.append("rollback"))
        raise RuntimeError

    with pytest.raises(RuntimeError), composing():
        fails()
    assert ran == []
    with pytest.raises(RuntimeError):
        fails()
    assert ran == ["rollback"]


def test_an_action_called_inside_another_transaction_is_refused_unless_it_composes_on_purpose(db):
    """Zulip's durable=True: a job folded into one transaction by accident (the demo seed ran
    every pipeline run inside one, holding every lock it took to the end) fails at once."""

    @atomic_write
    def action():
        return Story.objects.create(title="its own")

    @atomic_write(nestable=True)
    def part():
        return Story.objects.create(title="a part")

    with pytest.raises(NestedAction) as refused, transaction.atomic():
        action()
    assert "action" in str(refused.value) and "composing()" in str(refused.value)
    with transaction.atomic():
        part()  # declared a part of larger actions
    with composing():
        action()  # composed on purpose
    action()  # on its own
    assert sorted(Story.objects.values_list("title", flat=True)) == ["a part", "its own", "its own"]
