"""Delivering webhooks (SPEC §14, §12): at least once, signed the Standard Webhooks way.

Who delivers: with a broker, a Celery task (``changes.tasks``) after each commit that made
deliveries; without one, a background thread of the serving process, woken after commit
and at the next retry's time, never the request itself; and ``manage.py
deliver_webhooks``, from cron, beside either. Each takes what is due with
``services.deliveries_claim`` (a conditional UPDATE), so two never send one attempt twice;
a slow or dead receiver only holds its deliverer (10 s at most), never a writer.

SSRF (SPEC §12): a URL is http or https, and its host must not resolve to a loopback,
private, link-local, multicast or otherwise non-public address, unless it is named in
``WEBHOOK_ALLOWED_HOSTS``. The check is made when the webhook is registered and again at
every delivery, which connects to the very address it checked (a name that resolves to
a public address at registration and to 127.0.0.1 later is refused then).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook as Signer

from kernel.errors import InvalidUrl

from . import selectors, services

logger = logging.getLogger(__name__)


class Refused(Exception):
    """The URL's address is not one a webhook may reach."""


def _allowed_host(host: str) -> bool:
    return host.lower().rstrip(".") in settings.WEBHOOK_ALLOWED_HOSTS


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _parts(url: str) -> tuple[str, str, int, str]:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise Refused("a webhook URL is http or https")
    host = parsed.hostname
    if not host:
        raise Refused("a webhook URL names a host")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        raise Refused("the URL's port is not a number from 0 to 65535") from None
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    return parsed.scheme, host, port, path


def resolve_checked(host: str, port: int) -> str:
    """The address to connect to: the first the host resolves to, all of them checked."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Refused(f"the host {host!r} does not resolve") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise Refused(f"the host {host!r} does not resolve")
    if not _allowed_host(host):
        for address in addresses:
            if not _public(address):
                raise Refused(
                    f"the host {host!r} resolves to {address}, a loopback, private, link-local or multicast "
                    "address (WEBHOOK_ALLOWED_HOSTS names the hosts allowed anyway)"
                )
    return addresses[0]


def check_url(url: str) -> str:
    """``url`` if a webhook may use it, else 400 ``invalid_url``."""
    if any(ch.isspace() for ch in url) or len(url) > 2000:
        raise InvalidUrl("the URL has spaces or is longer than 2,000 characters", field="url")
    try:
        _, host, port, _ = _parts(url)
        resolve_checked(host, port)
    except Refused as exc:
        raise InvalidUrl(str(exc), field="url") from None
    return url


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def send(url: str, *, body: bytes, headers: dict, timeout: float) -> tuple[int | None, str]:
    """POST ``body``; returns ``(status_code, "")`` or ``(None, error)``."""
    try:
        scheme, host, port, path = _parts(url)
        address = resolve_checked(host, port)
    except Refused as exc:
        return None, f"refused: {exc}"
    cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    conn = cls(host, port, address, timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        response.read(65536)
        return response.status, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    finally:
        conn.close()


def attempt(claimed: services.Claimed) -> services.Outcome:
    """POST one claimed delivery (no database access: attempts run in parallel)."""
    body = json.dumps(selectors.event_body(claimed.event), separators=(",", ":")).encode()
    msg_id = str(claimed.event.event_id)
    now = timezone.now()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Signer(claimed.secret).sign(msg_id, now, body),
    }
    started = time.monotonic()
    status_code, error = send(claimed.url, body=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    duration_ms = int((time.monotonic() - started) * 1000)
    if status_code is not None and not 200 <= status_code < 300:
        error = f"HTTP {status_code}"
    return services.Outcome(claimed, status_code, error, duration_ms)


# Receivers reached at once: one slow receiver holds one of them, not the batch's others.
PARALLEL_ATTEMPTS = 16


def deliver_due(*, limit: int = 100) -> dict:
    """Deliver whatever is due now, batch after batch: each batch claimed in one transaction,
    posted in parallel, and its attempts recorded in one more; returns the outcomes counted."""
    counted: dict[str, int] = {}
    while True:
        claimed = services.deliveries_claim(limit=limit)
        if not claimed:
            return counted
        with ThreadPoolExecutor(max_workers=min(PARALLEL_ATTEMPTS, len(claimed))) as pool:
            outcomes = list(pool.map(attempt, claimed))
        for status in services.deliveries_record_attempts(outcomes=outcomes):
            counted[status] = counted.get(status, 0) + 1


# -- the serving process's deliverer (no broker) -----------------------------------------------

_kick = threading.Event()
_stopping = threading.Event()
_thread_lock = threading.Lock()
_thread: threading.Thread | None = None


def kick() -> None:
    """After a commit that made deliveries, without a broker: wake this process's deliverer
    thread (started on first use)."""
    global _thread
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _stopping.clear()
            _thread = threading.Thread(target=_run, name="webhook-deliverer", daemon=True)
            _thread.start()
    _kick.set()


def stop() -> None:
    """End this process's deliverer thread (a test database about to go); a kick restarts it."""
    global _thread
    with _thread_lock:
        thread, _thread = _thread, None
        _stopping.set()
        _kick.set()
    if thread is not None:
        thread.join(15)


def _run() -> None:
    try:
        while not _stopping.is_set():
            _kick.wait(timeout=_sleep_seconds())
            _kick.clear()
            if _stopping.is_set():
                return
            try:
                deliver_due()
            except Exception:  # the database away for a moment: try again at the next wake-up
                logger.exception("webhook delivery failed; retrying later")
            finally:
                close_old_connections()
                if connection.vendor == "sqlite":
                    connection.close()
    finally:
        connection.close()


def _sleep_seconds() -> float:
    try:
        due = services.next_due()
    except Exception:
        return 5.0
    finally:
        if connection.vendor == "sqlite":
            connection.close()
    if due is None:
        return 60.0
    return min(max((due - timezone.now()).total_seconds(), 0.0), 60.0)
