"""The drills' tools: the service under gunicorn on loopback, writers that record every
answer, and the check of what the database and the storage hold afterwards.

Nothing here is a stand-in: a real gunicorn master with real workers, real PostgreSQL,
real HTTP over loopback, files on a real filesystem. The drills break them on purpose.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.production import gunicorn_command

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2  # the drills' gunicorn runs the README's production command with 2 workers (2 cores)
HANG_SECONDS = 20  # an answer slower than this is a hang, and is reported
CLIENT_TIMEOUT = HANG_SECONDS + 10  # how long a client waits before it gives up (no answer)
WRITERS = 8
# The answer to a database outage, acceptable in every drill (SPEC §7).
DATABASE_BLIP = {503: "database_unavailable"}
PNG_HEAD = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)


class DrillFailure(AssertionError):
    pass


# -- HTTP ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: no answer at all (the connection was cut, or the client timed out)
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    error: str = ""
    elapsed: float = 0.0

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def request(base: str, method: str, path: str, *, token=None, body=None, headers=None, timeout=CLIENT_TIMEOUT):
    """One HTTP request on a new connection."""
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Token {token}"
    data = body
    if isinstance(body, dict):
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            answer = Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        answer = Answer(exc.code, dict(exc.headers), exc.read())
    except (OSError, urllib.error.URLError) as exc:  # reset, refused, timed out: no answer
        answer = Answer(None, error=f"{type(exc).__name__}: {exc}")
    answer.elapsed = time.monotonic() - started
    return answer


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """A multipart/form-data body: ``fields`` name -> text, ``files`` name -> (filename, bytes, type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content, content_type) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# -- the service under gunicorn --------------------------------------------------------------


def production_command(readme: Path = ROOT / "README.md") -> list[str]:
    """The README's production command as the drills run it (``benchmarks/production.py``):
    this Python's gunicorn, ``WORKERS`` workers, bound to a free loopback port, every other
    option the README's, so what the drills prove holds for what the README tells operators
    to run. The README's environment assignments are left out: the drill sets its own."""
    try:
        return gunicorn_command(readme, workers=WORKERS)[1]
    except ValueError as exc:
        raise DrillFailure(str(exc)) from None


def command_option(command: list[str], option: str, default: int) -> int:
    """The integer value of ``option`` in a gunicorn command line (``default`` without it)."""
    return int(command[command.index(option) + 1]) if option in command else default


class Service:
    """gunicorn with the project's WSGI application on a free loopback port, started with
    the README's production command."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.base = ""
        self.command = production_command()

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DrillFailure(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", self.log_path.read_text(errors="replace"))
            if found and request(found.group(1), "GET", "/healthz", timeout=5).status == 200:
                self.base = found.group(1)
                return
            time.sleep(0.2)
        raise DrillFailure(f"gunicorn did not serve /healthz within 60 s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # the master stops its workers
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def master_pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def worker_pids(self) -> list[int]:
        """The master's children, from /proc (gunicorn has no other way to list them)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.master_pid:
                pids.append(int(entry.name))
        return pids

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# -- writers ---------------------------------------------------------------------------------


@dataclass
class Write:
    request_id: str
    scene_id: str
    payload: dict
    kind: str  # "json" or "image"
    content: bytes = b""
    started: float = 0.0
    answer: Answer | None = None

    @property
    def status(self):
        return self.answer.status if self.answer else None

    @property
    def artifact_id(self):
        body = self.answer.json() if self.answer and self.status == 201 else None
        return body.get("artifact_id") if isinstance(body, dict) else None


class Load:
    """``WRITERS`` threads POSTing artifacts with unique payloads (and, for images, unique
    bytes) as fast as the service answers, every answer recorded. A refused write is not
    retried: each attempt is its own write, with its own request id, checked afterwards."""

    def __init__(self, base: str, token: str, scenes: list[str], *, drill: str, kind: str = "json", size=16384):
        self.base, self.token, self.scenes, self.drill, self.kind, self.size = base, token, scenes, drill, kind, size
        self.writes: list[Write] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._writer, args=(n,), daemon=True) for n in range(WRITERS)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT + 5)

    def _writer(self, n: int) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1
            write = self._next(n, count)
            with self._lock:
                self.writes.append(write)
            write.started = time.monotonic()
            write.answer = self._post(write)
            if write.status != 201:
                # Retry-After is for clients that retry the same write; these writers go on with
                # new ones, a little slower, to keep hitting the outage without flooding the log.
                time.sleep(0.05)

    def _next(self, n: int, count: int) -> Write:
        request_id = f"{self.drill}-{n}-{count}-{uuid.uuid4().hex[:8]}"
        scene_id = self.scenes[n % len(self.scenes)]
        if self.kind == "json":
            # Unique and not trivially comparable: nested, non-ASCII, a float.
            payload = {"mood": "drill ☂", "pacing": f"writer {n}", "key_beats": [request_id], "n": count + 0.5}
            return Write(request_id, scene_id, payload, "json")
        payload = {"alt": f"frame {request_id}"}
        content = PNG_HEAD + hashlib.sha256(request_id.encode()).digest() * (self.size // 32)
        return Write(request_id, scene_id, payload, "image", content)

    def _post(self, write: Write) -> Answer:
        headers = {"X-Request-ID": write.request_id}
        path = f"/v1/scenes/{write.scene_id}/artifacts"
        if write.kind == "json":
            body = {"type": "scene_intent", "payload": write.payload}
            return request(self.base, "POST", path, token=self.token, body=body, headers=headers)
        data, content_type = multipart(
            {"type": "cover_image", "payload": json.dumps(write.payload)},
            {"content": ("frame.png", write.content, "image/png")},
        )
        headers["Content-Type"] = content_type
        return request(self.base, "POST", path, token=self.token, body=data, headers=headers)

    def answered_since(self, moment: float, status: int = 201) -> int:
        """How many writes sent at ``moment`` or later were answered ``status``."""
        with self._lock:
            return sum(1 for w in self.writes if w.started >= moment and w.answer and w.status == status)

    def statuses(self) -> dict:
        """How many writes got each status (None: no answer), for a drill that fails early."""
        with self._lock:
            return dict(Counter(w.status for w in self.writes if w.answer is not None))

    def unanswered(self) -> int:
        with self._lock:
            return sum(1 for w in self.writes if w.answer is not None and w.status is None)


def wait_until(predicate, *, timeout: float, what: str, load: Load | None = None, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise DrillFailure(f"{what}: not within {timeout:.0f} s" + (f"; answers so far: {load.statuses()}" if load else ""))


# -- the check afterwards --------------------------------------------------------------------


@dataclass
class Report:
    drill: str
    counts: dict
    problems: list[str]

    def line(self) -> str:
        return f"drill {self.drill}: " + " ".join(f"{key}={value}" for key, value in self.counts.items())


def check(
    writes: list[Write],
    *,
    drill: str,
    database_url: str,
    media_root: Path,
    refusals: dict[int, str],
    unanswered_allowed: bool = False,
    env: dict,
    api: tuple[str, str],
) -> Report:
    """Every acknowledged write exists with exactly its payload (and bytes); nothing refused
    left a row or a file; streams are gapless; every stored file is whole and referenced;
    the refusals are the JSON errors the contract names; ``verify_artifacts`` agrees."""
    problems: list[str] = []
    ids = [w.request_id for w in writes]
    with psycopg.connect(database_url, autocommit=True) as db:
        rows = {
            request_id: (str(pk), payload, sha256, size, name)
            for request_id, pk, payload, sha256, size, name in db.execute(
                "SELECT request_id, id, payload, content_sha256, content_size, content FROM artifacts_artifact"
                " WHERE request_id = ANY(%s)",
                [ids],
            )
        }
        duplicates = db.execute(
            "SELECT request_id, count(*) FROM artifacts_artifact WHERE request_id = ANY(%s)"
            " GROUP BY request_id HAVING count(*) > 1",
            [ids],
        ).fetchall()
        gaps = db.execute(
            "SELECT scene_id, type, count(*), count(DISTINCT version), min(version), max(version)"
            " FROM artifacts_artifact GROUP BY story_id, scene_id, type"
            " HAVING count(*) <> max(version) OR count(DISTINCT version) <> count(*) OR min(version) <> 1"
        ).fetchall()
        media = db.execute(
            "SELECT content, content_sha256, content_size FROM artifacts_artifact WHERE content <> ''"
        ).fetchall()
    problems += [f"request {rid} made {n} rows" for rid, n in duplicates]
    problems += [f"stream {scene}/{type_} is not 1..n: {rest}" for scene, type_, *rest in gaps]

    counts = {"writes": len(writes), "acknowledged": 0, "found": 0, "lost": 0}
    counts.update({f"{status}s": 0 for status in refusals})
    counts.update({"500s": 0, "unanswered": 0, "committed_unanswered": 0, "hangs": 0})
    for write in writes:
        answer = write.answer
        row = rows.get(write.request_id)
        if answer is None:
            problems.append(f"{write.request_id}: never sent (the writer did not finish)")
            continue
        if answer.elapsed > HANG_SECONDS:
            counts["hangs"] += 1
            problems.append(f"{write.request_id}: answered after {answer.elapsed:.1f} s, a hang")
        if write.status == 201:
            counts["acknowledged"] += 1
            if row is None:
                counts["lost"] += 1
                problems.append(f"{write.request_id}: acknowledged ({write.artifact_id}) but not in the database")
            elif row[0] != write.artifact_id or row[1] != write.payload:
                counts["lost"] += 1
                problems.append(f"{write.request_id}: stored as {row[:2]!r}, acknowledged {write.payload!r}")
            elif write.kind == "image" and (row[2], row[3]) != (
                hashlib.sha256(write.content).hexdigest(),
                len(write.content),
            ):
                counts["lost"] += 1
                problems.append(f"{write.request_id}: stored content {row[2]}/{row[3]} is not the bytes sent")
            else:
                counts["found"] += 1
        elif write.status is None:
            counts["unanswered"] += 1
            if not unanswered_allowed:
                problems.append(f"{write.request_id}: no answer ({answer.error})")
            if row is not None:
                # The connection was cut after the commit: the write happened, the client can
                # find it by its request id; it must be whole.
                counts["committed_unanswered"] += 1
                if row[1] != write.payload:
                    problems.append(f"{write.request_id}: committed unanswered with a payload not the one sent")
        else:
            if write.status == 500:
                counts["500s"] += 1
            if write.status in refusals:
                counts[f"{write.status}s"] += 1
                problems += _refusal_problems(write, refusals[write.status])
            else:
                problems.append(f"{write.request_id}: answered {write.status} {answer.body[:300]!r}")
            if row is not None:
                # Only a connection lost during COMMIT itself could do this (the README's one
                # exception); a refusal that committed anything else is a bug.
                problems.append(f"{write.request_id}: answered {write.status}, yet its row {row[0]} was committed")

    problems += _lookup_problems(writes, rows, api)
    problems += _file_problems(media, media_root)
    verified = _verify_artifacts(env)
    counts["verify_artifacts"] = "absent" if verified is None else ("failed" if verified else "ok")
    problems += verified or []
    return Report(drill, counts, problems)


def _lookup_problems(writes: list[Write], rows: dict, api: tuple[str, str]) -> list[str]:
    """The README's retry rule, followed as a client would: a write without a 201 is looked
    up by its request id, and the API must say what the database holds (up to 30 of them)."""
    base, token = api
    problems = []
    for write in [w for w in writes if w.answer and w.status != 201][:30]:
        path = f"/v1/scenes/{write.scene_id}/artifacts?request_id={write.request_id}"
        answer = request(base, "GET", path, token=token)
        listed = [item["artifact_id"] for item in (answer.json() or {}).get("results", [])]
        stored = [rows[write.request_id][0]] if write.request_id in rows else []
        if answer.status != 200 or listed != stored:
            problems.append(
                f"{write.request_id}: lookup by request id answered {answer.status} {listed}, stored {stored}"
            )
    return problems


def _refusal_problems(write: Write, code: str) -> list[str]:
    """A refusal the client can act on: JSON with the contract's code, its request id, and
    ``Retry-After`` on a 503."""
    answer = write.answer
    body = answer.json()
    problems = []
    if not (answer.headers.get("Content-Type", "").startswith("application/json") and isinstance(body, dict)):
        return [f"{write.request_id}: {write.status} is not JSON: {answer.body[:200]!r}"]
    if body.get("code") != code or body.get("request_id") != write.request_id:
        problems.append(f"{write.request_id}: {write.status} body {body!r}, expected code {code}")
    if write.status == 503 and not str(answer.headers.get("Retry-After", "")).isdigit():
        problems.append(f"{write.request_id}: 503 without a Retry-After in seconds ({answer.headers})")
    return problems


def _file_problems(media: list[tuple], media_root: Path) -> list[str]:
    """Every file a row names is there, whole; every file under content/ is named by a row
    (a refused or rolled-back upload leaves none, not even part of one)."""
    problems = []
    named = set()
    for name, sha256, size in media:
        named.add(name)
        path = media_root / name
        if not path.is_file():
            problems.append(f"{name}: named by a row, missing from storage")
            continue
        data = path.read_bytes()
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            problems.append(f"{name}: {len(data)} bytes, not the {size} bytes of sha256 {sha256}")
    content = media_root / "content"
    for path in content.rglob("*") if content.exists() else ():
        if path.is_file() and str(path.relative_to(media_root)) not in named:
            problems.append(f"{path}: a file no row names ({path.stat().st_size} bytes)")
    return problems


def _verify_artifacts(env: dict) -> list[str] | None:
    """``manage.py verify_artifacts`` (every invariant) when the command exists: its problems,
    or None when there is no such command (the checks above still ran)."""
    from django.core.management import get_commands

    if "verify_artifacts" not in get_commands():
        return None
    out = subprocess.run(
        [sys.executable, "manage.py", "verify_artifacts"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        return [f"verify_artifacts exited {out.returncode}:\n{out.stdout[-2000:]}{out.stderr[-3000:]}"]
    return []


# -- the database ---------------------------------------------------------------------------


def maintenance_url(database_url: str) -> str:
    return database_url.rsplit("/", 1)[0] + "/postgres"


def recreate_database(database_url: str, name: str) -> None:
    with psycopg.connect(maintenance_url(database_url), autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(database_url: str, name: str) -> None:
    with psycopg.connect(maintenance_url(database_url), autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def terminate_connections(database_url: str, name: str) -> int:
    """pg_terminate_backend on every connection to the drill's database (only that one:
    other databases on the server, other engineers' tests, are left alone)."""
    with psycopg.connect(maintenance_url(database_url), autocommit=True, connect_timeout=3) as db:
        return db.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchone()[0]


def server_up(database_url: str) -> bool:
    try:
        psycopg.connect(maintenance_url(database_url), connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


def manage(env: dict, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise DrillFailure(f"manage.py {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def clean_env(**overrides) -> dict:
    """The service's environment: this process's, without what would point it elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_", "CELERY_", "ARTIFACT_"))}
    env.update(overrides)
    return env
