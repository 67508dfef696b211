"""Who holds a run, and how a driver is stopped (SPEC §10, "Crash-safe runs").

A run is held by the process driving it: the command, a thread of the serving process, the
worker running one of its nodes. On PostgreSQL the holder keeps a session lock keyed by the
run (``locks.hold_runs``), which the server drops when the process dies, so a lost run is
found at once; on SQLite a thread of the holder writes the run's heartbeat instead, and a
run whose heartbeat is older than PIPELINE_RUN_STALE_SECONDS is lost.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from kernel import locks
from runs import services as run_services

from .engine import Stop

logger = logging.getLogger(__name__)


def holder_label(what: str) -> str:
    """Who holds a run, for people reading it: what, on which host, which process."""
    return f"{what} on {socket.gethostname()} (pid {os.getpid()})"[:200]


class RunHold:
    """Hold ``run_ids`` for the duration of the block (see the module's docstring)."""

    def __init__(self, run_ids):
        self.run_ids = list(run_ids)
        self._stopping = threading.Event()
        self._beating: threading.Thread | None = None

    def __enter__(self):
        locks.hold_runs(self.run_ids)
        if connection.vendor != "postgresql":
            self._beating = threading.Thread(target=self._beat, name="run heartbeat", daemon=True)
            self._beating.start()
        return self

    def __exit__(self, *exc):
        if self._beating is not None:
            self._stopping.set()
            self._beating.join()
        try:
            locks.release_runs(self.run_ids)
        except Exception:  # a connection lost meanwhile took the locks with it
            logger.warning("could not release the hold of runs %s", self.run_ids, exc_info=True)
        return False

    def _beat(self):
        interval = max(0.05, settings.PIPELINE_RUN_STALE_SECONDS / 4)
        try:
            while not self._stopping.wait(interval):
                try:
                    run_services.run_heartbeat(run_ids=self.run_ids)
                except Exception:  # the next beat tries again; a run missing many is found lost
                    logger.warning("heartbeat of runs %s failed", self.run_ids, exc_info=True)
        finally:
            connection.close()


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the driver between two writes. A BaseException, as
    KeyboardInterrupt is: no handler of a generator's errors may take it for one."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.run_id = None  # the run it stopped, once the driver knows


class SignalStop(Stop):
    """Stops a driver on SIGINT or SIGTERM between two writes: a signal that arrives during
    a write is acted on before the next one; during a generator or a backoff, at once (what
    was generated is dropped: nothing was written)."""

    def __init__(self):
        self.signum: int | None = None
        self._waiting = False

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextmanager
    def interruptible(self):
        self.check()
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    def _handle(self, signum, frame):
        self.signum = signum
        if self._waiting:
            self._waiting = False
            raise Interrupted(signum)

    @contextmanager
    def installed(self):
        """Handle SIGINT and SIGTERM while the block runs (the main thread only can)."""
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
