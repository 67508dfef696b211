"""Drill 4: slow clients (slowloris) hold connections while real clients write.

Each slow client is anonymous: it opens a connection and sends its request line and headers
a byte a second, never finishing. Whatever reads a request's headers waits on it: gunicorn's
sync worker did, so two such clients stalled both workers of the old production command.
The README's command runs gthread workers: a slow client holds one thread of a worker, and
a worker accepts no more connections than it has threads, so the others wait in the
kernel's queue for a worker with a free thread rather than behind a slow client.

With half of all threads held by slow clients, the eight writers keep getting answers within
``BOUND`` seconds and nothing acknowledged is lost; the slow clients are still connected at
the end (so they held their threads all along, and the drill proved what it says).
"""

import select
import socket
import threading
import time
import urllib.parse

import pytest

from .harness import DATABASE_BLIP, WORKERS, WRITERS, DrillFailure, Load, command_option, request, wait_until

pytestmark = pytest.mark.drill

BOUND = 10.0  # seconds: the slowest answer a writer may get while the slow clients hold their threads
HOLD = 12.0  # seconds of writes while the slow clients trickle
HEAD = b"GET /v1/stories HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nX-Trickle: "


class SlowClients:
    """``count`` connections, each sending one more header byte every second, from one thread."""

    def __init__(self, base: str, count: int):
        parts = urllib.parse.urlsplit(base)
        self.address = (parts.hostname, parts.port)
        self.count = count
        self.sockets: list[socket.socket] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def __enter__(self):
        for _ in range(self.count):
            self.sockets.append(socket.create_connection(self.address, timeout=5))
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()

    def _trickle(self) -> None:
        position = 0
        while not self._stop.is_set():
            byte = HEAD[position : position + 1] or b"a"
            position += 1
            for sock in self.sockets:
                try:
                    sock.sendall(byte)
                    self.sent += 1
                except OSError:
                    pass  # closed by the server: counted by still_connected()
            self._stop.wait(1.0)

    def still_connected(self) -> int:
        """How many of the connections the server has neither closed nor answered."""
        readable, _, _ = select.select(self.sockets, [], [], 0)
        return len(self.sockets) - len(readable)  # readable: an answer or the server's close


def test_slow_header_clients_do_not_stall_the_service(site):
    master = site.service.master_pid
    # Half of all threads (gunicorn's default is one per worker; two slow clients at least:
    # the number that stalled the sync workers).
    slow_count = max(2, WORKERS * command_option(site.service.command, "--threads", 1) // 2)
    with SlowClients(site.base, slow_count) as slow:
        # Every slow connection has sent its first bytes: each holds a thread, reading headers.
        wait_until(lambda: slow.sent >= slow_count * 3, timeout=10, what="slow clients trickling")
        started = time.monotonic()
        with Load(site.base, site.token, site.scenes, drill="slowloris") as load:
            time.sleep(HOLD)
        anonymous = request(site.base, "GET", "/healthz", timeout=BOUND)
        connected = slow.still_connected()
    writes = [w for w in load.writes if w.started >= started]
    slowest = max((w.answer.elapsed for w in writes if w.answer), default=0.0)
    report = site.check(load.writes, drill="slowloris", refusals=DATABASE_BLIP)
    report.counts.update(
        slow_clients=slow_count, still_connected=connected, slowest=f"{slowest:.2f}s", bound=f"{BOUND:g}s"
    )
    site.assert_clean(report)
    if connected != slow_count:
        raise DrillFailure(f"{slow_count - connected} slow clients were cut: the drill did not hold their threads")
    if anonymous.status != 200:
        raise DrillFailure(f"/healthz beside the slow clients answered {anonymous.status} {anonymous.error}")
    late = [w for w in writes if w.answer is None or w.status is None or w.answer.elapsed > BOUND]
    if late:
        raise DrillFailure(
            f"{len(late)} of {len(writes)} writes had no answer within {BOUND:g} s beside {slow_count} slow clients;"
            f" answers: {load.statuses()}"
        )
    assert report.counts["acknowledged"] >= WRITERS * 5, "the writers barely wrote beside the slow clients"
    assert site.service.alive() and site.service.master_pid == master, "gunicorn was restarted"
