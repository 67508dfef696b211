"""One action, one transaction, retried when the database itself gives up on it.

A deadlock or serialization failure aborts a transaction through no fault of its input;
every service action is safe to run again from the start, so the outermost transaction
is retried a few times before the caller is told ``conflict`` (SPEC §7).

An action runs in a transaction of its own: called inside another transaction, it is
refused (``NestedAction``, as Zulip's ``durable=True`` refuses), so no caller can fold a
long job into one transaction by accident (a pipeline run inside one ``atomic`` held every
lock it took to the end). Two ways to compose on purpose, each written where it happens:
an action declared ``@atomic_write(nestable=True)`` is also a part of larger ones (it then
runs in its caller's transaction, which retries); and ``composing()`` opens a transaction
whose actions are meant to stand or fall together (the admin's change form and its
inlines, a test holding a transaction open). A test case's own transaction does not count:
each action of a test is its own transaction in production.

Django runs callbacks on commit but not on rollback; ``on_rollback`` gives the outermost
``atomic_write`` that second hook, for the one side effect a transaction cannot undo by
itself: a stored file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import threading
import time

from django.db import OperationalError, transaction

from kernel.errors import Conflict

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
# SQLSTATE deadlock_detected and serialization_failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


# SQLITE_LOCKED: in shared-cache mode (an in-memory database shared by threads, as the test
# suite's is) SQLite refuses at once a table another connection is using, where a file
# database would wait for it (the busy timeout): as safe to retry as a deadlock.
SQLITE_LOCKED = 6


def is_retryable(exc: BaseException) -> bool:
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    return (getattr(cause, "sqlite_errorcode", 0) & 0xFF) == SQLITE_LOCKED


_outermost = threading.local()


def on_rollback(callback) -> None:
    """Call ``callback`` after the outermost ``atomic_write`` in force rolls back.

    Outside one (a caller's own ``transaction.atomic``), nothing can tell a rollback from a
    commit here, so nothing is called: ``prune_artifacts`` sweeps what is left behind.
    """
    hooks = getattr(_outermost, "rollback_hooks", None)
    if hooks is not None:
        hooks.append(callback)


def _run_rollback_hooks(hooks) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception:  # a failed cleanup must not hide the error that caused the rollback
            logger.exception("rollback hook %r failed", hook)


class NestedAction(RuntimeError):
    """An action called inside another transaction that did not ask for it (a bug)."""


def _callers(connection) -> list:
    """The atomic blocks around this call, a test case's own set aside."""
    return [block for block in connection.atomic_blocks if not getattr(block, "_from_testcase", False)]


@contextlib.contextmanager
def composing(using=None):
    """A transaction in which actions compose on purpose: they run in it and commit or roll
    back with it (no retry: a deadlock is the caller's to report)."""
    block = transaction.atomic(using=using)
    block._composing = True  # the Atomic object sits in connection.atomic_blocks while it runs
    with block:
        yield


def atomic_write(func=None, *, nestable: bool = False):
    """Run ``func`` as an action: in a transaction of its own, retried on deadlock; inside
    another transaction only when ``nestable`` or within ``composing()`` (see above)."""
    if func is None:
        return functools.partial(atomic_write, nestable=nestable)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        callers = _callers(transaction.get_connection())
        if callers:
            if not (nestable or any(getattr(block, "_composing", False) for block in callers)):
                raise NestedAction(
                    f"{func.__qualname__} is an action with a transaction of its own, called inside another one: "
                    "declare it @atomic_write(nestable=True) if it is also a part of larger actions, "
                    "or open the outer transaction with kernel.transactions.composing()"
                )
            with transaction.atomic():
                return func(*args, **kwargs)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            _outermost.rollback_hooks = []
            try:
                with transaction.atomic():
                    result = func(*args, **kwargs)
                _outermost.rollback_hooks = None
                return result
            except BaseException as exc:
                hooks, _outermost.rollback_hooks = _outermost.rollback_hooks, None
                _run_rollback_hooks(hooks)
                if not (isinstance(exc, OperationalError) and is_retryable(exc)):
                    raise
                logger.warning("%s: %s (attempt %d of %d)", func.__qualname__, exc, attempt, MAX_ATTEMPTS)
                time.sleep(random.uniform(0.005, 0.02) * attempt)
        logger.error("%s: gave up after %d deadlocks or serialization failures", func.__qualname__, MAX_ATTEMPTS)
        raise Conflict("the database kept refusing this write (deadlock or serialization failure); retry it")

    return wrapper


def may_be_lost_in_a_crash() -> None:
    """Let the transaction in progress commit without waiting for its WAL to reach the disk
    (PostgreSQL's ``synchronous_commit = off``, for this transaction only).

    For bookkeeping that is cheap to lose and that nothing else depends on durably: should
    the database server crash in the next few hundred milliseconds, the transaction is gone,
    but never half there, and a later synchronous commit flushes it with itself (the WAL is
    written in order). The pipeline's "this step began" and "these steps reused" records use
    it: lost, they are redone by the run's next attempt. Never for a new version.
    """
    connection = transaction.get_connection()
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
