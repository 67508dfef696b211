"""One action, one transaction, retried when the database itself gives up on it.

A deadlock or serialization failure aborts a transaction through no fault of its input;
every service action is safe to run again from the start, so the outermost transaction
is retried a few times before the caller is told ``conflict`` (SPEC §7). A nested call
runs inside its caller's transaction and leaves retrying to the outermost one.
"""

from __future__ import annotations

import functools
import logging
import random
import time

from django.db import OperationalError, transaction

from artifacts_project.errors import Conflict

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
# SQLSTATE deadlock_detected and serialization_failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def is_retryable(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) in RETRYABLE_SQLSTATES


def atomic_write(func):
    """Run ``func`` in a transaction; when it is the outermost one, retry it on deadlock."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():
                return func(*args, **kwargs)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    return func(*args, **kwargs)
            except OperationalError as exc:
                if not is_retryable(exc):
                    raise
                logger.warning("%s: %s (attempt %d of %d)", func.__qualname__, exc, attempt, MAX_ATTEMPTS)
                time.sleep(random.uniform(0.005, 0.02) * attempt)
        logger.error("%s: gave up after %d deadlocks or serialization failures", func.__qualname__, MAX_ATTEMPTS)
        raise Conflict("the database kept refusing this write (deadlock or serialization failure); retry it")

    return wrapper
