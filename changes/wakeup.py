"""Who waits for a commit of events, and how they are woken (SPEC §14, ``wait``).

In this process, a writer's commit wakes the waiting requests at once (``committed``,
called on commit by the event writer). Writers in other processes reach them through
PostgreSQL: each event-writing transaction sends ``pg_notify('changes')``, delivered at its
commit, and one listener thread per process, on a connection of its own, turns each
notification into the same wake-up. On SQLite, waiters poll (``poll_interval``).

A waiter takes the ``generation`` before it reads the feed and waits for it to change, so
a commit between its read and its wait is never missed.
"""

from __future__ import annotations

import logging
import threading

from django.db import connection

logger = logging.getLogger(__name__)

CHANNEL = "changes"

_condition = threading.Condition()
_generation = 0
_delivery_hooks: list = []


def generation() -> int:
    return _generation


def wake() -> None:
    global _generation
    with _condition:
        _generation += 1
        _condition.notify_all()


def wait_for_change(seen: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a commit after generation ``seen``."""
    with _condition:
        return _condition.wait_for(lambda: _generation != seen, timeout=max(timeout, 0))


def on_deliveries(hook) -> None:
    """Register what to call after a commit that made webhook deliveries (the deliverer)."""
    if hook not in _delivery_hooks:
        _delivery_hooks.append(hook)


def committed(*, deliveries: bool) -> None:
    wake()
    if deliveries:
        for hook in _delivery_hooks:
            try:
                hook()
            except Exception:  # a deliverer that cannot start must not fail the write that committed
                logger.exception("webhook delivery hook %r failed", hook)


# -- the listener (PostgreSQL) ------------------------------------------------------------

_listener_lock = threading.Lock()
_listener: threading.Thread | None = None
_listening = threading.Event()
_stop = threading.Event()


def poll_interval() -> float:
    """How often a waiter reads again without being woken: on SQLite the only way to see
    another process's commit; on PostgreSQL a fallback for events a notification made
    visible only later (behind an older transaction still in flight) or a lost listener."""
    return 0.05 if connection.vendor == "sqlite" else 0.5


def ensure_listening(timeout: float = 2.0) -> None:
    """Start this process's listener thread once (PostgreSQL only); wait until it listens."""
    global _listener
    if connection.vendor != "postgresql":
        return
    with _listener_lock:
        _stop.clear()
        if _listener is None or not _listener.is_alive():
            params = connection.get_connection_params()
            _listener = threading.Thread(target=_listen, args=(params,), name="changes-listener", daemon=True)
            _listener.start()
    _listening.wait(timeout)


def stop_listening() -> None:
    """End the listener (a test database about to be dropped); the next waiter restarts it."""
    global _listener
    with _listener_lock:
        thread, _listener = _listener, None
        _stop.set()
    if thread is not None:
        thread.join(5)


def _listen(params: dict) -> None:
    import psycopg

    params = {k: v for k, v in params.items() if k not in ("cursor_factory", "context", "server_side_binding")}
    while not _stop.is_set():
        try:
            with psycopg.connect(**params, autocommit=True) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                _listening.set()
                wake()  # anything committed while no one listened is read again
                while not _stop.is_set():
                    for _notify in conn.notifies(timeout=0.5):
                        wake()
        except Exception:  # the server restarted or dropped us: waiters poll meanwhile
            logger.warning("changes listener lost its connection; reconnecting", exc_info=True)
        _listening.clear()
        _stop.wait(1.0)
