"""One action, one transaction, retried when the database itself gives up on it.

A deadlock or serialization failure aborts a transaction through no fault of its input;
every service action is safe to run again from the start, so the outermost transaction
is retried a few times before the caller is told ``conflict`` (SPEC §7). A nested call
runs inside its caller's transaction and leaves retrying to the outermost one.

Django runs callbacks on commit but not on rollback; ``on_rollback`` gives the outermost
``atomic_write`` that second hook, for the one side effect a transaction cannot undo by
itself: a stored file.
"""

from __future__ import annotations

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


def atomic_write(func):
    """Run ``func`` in a transaction; when it is the outermost one, retry it on deadlock."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if transaction.get_connection().in_atomic_block:
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
