"""schemathesis at depth against the real service: every check, every phase (examples,
coverage, fuzzing and the stateful phase, which chains operations along the schema's
OpenAPI links), on PostgreSQL, under gunicorn.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/artifacts_ci .venv/bin/python tests/api/fuzz_api.py

It works in its own database, the URL's name with ``_fuzz`` after it, made afresh (the
database the URL names is never touched), serves the WSGI application with gunicorn on a
free loopback port, signs in as a superuser (writes too are exercised) and runs
``schemathesis run`` with ``tests/api/schemathesis.toml``. It prints the operations, cases,
failures and seconds, and exits with schemathesis's status: 0 only when nothing failed.
Extra arguments go to schemathesis (``--max-examples 5`` for a quick look).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = "tests.api.fuzz_checks"


def main(argv: list[str]) -> int:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("fuzz_api.py needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    base, name = url.rsplit("/", 1)
    fuzz_url = f"{base}/{name}_fuzz"
    _recreate(f"{base}/postgres", f"{name}_fuzz")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_", "CELERY_"))}
        env.update(
            DATABASE_URL=fuzz_url,
            DJANGO_SECRET_KEY="fuzz-" + os.urandom(16).hex(),
            DJANGO_MEDIA_ROOT=str(Path(scratch) / "media"),
            PYTHONPATH=str(ROOT),
        )
        _manage(env, "migrate", "--noinput", "-v", "0")
        token = _manage(env, "shell", "-c", _SUPERUSER_TOKEN).strip().splitlines()[-1]
        log = Path(scratch) / "gunicorn.log"
        server = _serve(env, log)
        try:
            report = Path(scratch) / "report.json"
            command = [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(CONFIG),
                "run",
                f"{server['base']}/v1/schema",
                "-H",
                f"Authorization: Token {token}",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                str(report),
                *argv,
            ]
            run = subprocess.Popen(
                command, cwd=ROOT, env={**env, "SCHEMATHESIS_HOOKS": HOOKS}, stdout=subprocess.PIPE, text=True
            )
            output = []
            for line in run.stdout:
                print(line, end="", flush=True)
                output.append(line)
            status = run.wait()
            _summary(report, "".join(output), time.monotonic() - started)
        finally:
            server["process"].terminate()
            server["process"].wait(timeout=30)
            if status != 0:
                print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
    return status


_SUPERUSER_TOKEN = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
user = User.objects.create_superuser("fuzzer", "fuzzer@example.com", None)
print(Token.objects.create(user=user).key)
"""


def _recreate(maintenance_url: str, name: str) -> None:
    with psycopg.connect(maintenance_url, autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _manage(env: dict, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def _serve(env: dict, log: Path) -> dict:
    """gunicorn on a free loopback port (the kernel picks it; gunicorn logs it)."""
    command = [sys.executable, "-m", "gunicorn", "artifacts_project.wsgi", "--workers", "2", "--timeout", "60"]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*command, "--bind", "127.0.0.1:0"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if found:
            try:
                with urllib.request.urlopen(f"{found.group(1)}/healthz", timeout=5) as answer:
                    if answer.status == 200:
                        return {"base": found.group(1), "process": process}
            except OSError:
                pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("gunicorn did not serve /healthz within 60 s")


def _summary(report: Path, output: str, seconds: float) -> None:
    """The run's figures: operations (from the event stream), cases and failures (from the
    closing lines schemathesis prints)."""
    operations = set()
    if report.exists():
        for line in report.read_text().splitlines():
            label = json.loads(line).get("ScenarioFinished", {}).get("recorder", {}).get("label", "")
            if label and not label.startswith("Stateful"):
                operations.add(label)
    cases = re.search(r"(\d+) generated", output)
    failures = re.search(r"found (\d+) unique failures?", output)
    print(
        f"schemathesis: {len(operations)} operations, {cases.group(1) if cases else '?'} cases, "
        f"{failures.group(1) if failures else 0} failures, {seconds:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
