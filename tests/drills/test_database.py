"""Drill 1: the database goes away under load (SPEC §7, the database's own refusals).

Eight writers POST to gunicorn on PostgreSQL. Mid-load, first every connection of the
service is terminated, again and again for a while (pg_terminate_backend, as an operator
or a failover does); then, where this machine allows it, PostgreSQL itself restarts. During
the outage every answer is a JSON 503 ``database_unavailable`` with ``Retry-After``, none a
500 and none later than the worker timeout; afterwards the same gunicorn serves again.
"""

import os
import pwd
import shutil
import subprocess
import time
import urllib.parse

import pytest

from .harness import DATABASE_BLIP, WRITERS, DrillFailure, Load, server_up, terminate_connections, wait_until

pytestmark = pytest.mark.drill

WARMUP = 2.0  # seconds of load before the fault
STORM = 1.5  # seconds during which the service's connections are terminated every 50 ms


def test_terminated_connections_answer_503_and_the_service_recovers(site):
    master = site.service.master_pid
    with Load(site.base, site.token, site.scenes, drill="terminate") as load:
        time.sleep(WARMUP)
        terminated = 0
        storm_ends = time.monotonic() + STORM
        while time.monotonic() < storm_ends:
            terminated += terminate_connections(site.server_url, site.database)
            time.sleep(0.05)
        calm = time.monotonic()
        wait_until(
            lambda: load.answered_since(calm) >= WRITERS,
            timeout=30,
            what="writes acknowledged after the storm",
            load=load,
        )
        recovered = time.monotonic() - calm
    report = site.check(load.writes, drill="terminate", refusals=DATABASE_BLIP)
    report.counts.update(terminated=terminated, recovered_in=f"{recovered:.1f}s")
    site.assert_clean(report)
    assert report.counts["503s"] > 0, "no request was in flight when its connection was terminated"
    assert site.service.alive() and site.service.master_pid == master, "gunicorn was restarted"


def test_a_postgres_restart_answers_503_and_the_service_recovers(site):
    command, reason = restart_command(site.server_url)
    if command is None:
        print(f"drill restart: skipped, {reason}")
        pytest.skip(reason)
    master = site.service.master_pid
    with Load(site.base, site.token, site.scenes, drill="restart") as load:
        time.sleep(WARMUP)
        down = time.monotonic()
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        finally:
            # Whatever happened, the server is up again before this drill ends: other
            # engineers' tests share it.
            ensure_up(site.server_url, command)
        if out.returncode != 0:
            raise DrillFailure(f"{' '.join(command)} exited {out.returncode}: {out.stdout}{out.stderr}")
        restarted = time.monotonic() - down
        calm = time.monotonic()
        wait_until(
            lambda: load.answered_since(calm) >= WRITERS,
            timeout=30,
            what="writes acknowledged after the restart",
            load=load,
        )
        recovered = time.monotonic() - calm
    report = site.check(load.writes, drill="restart", refusals=DATABASE_BLIP)
    report.counts.update(restart=f"{restarted:.1f}s", recovered_in=f"{recovered:.1f}s")
    site.assert_clean(report)
    assert report.counts["503s"] > 0, "no request met the restart"
    assert site.service.alive() and site.service.master_pid == master, "gunicorn was restarted"


def restart_command(server_url: str) -> tuple[list[str] | None, str]:
    """The pg_ctlcluster command that restarts the server the drills were given, or why
    this machine does not allow it."""
    if os.environ.get("DRILL_PG_RESTART", "1") == "0":
        return None, "DRILL_PG_RESTART=0"
    if not (shutil.which("pg_ctlcluster") and shutil.which("pg_lsclusters")):
        return None, "no pg_ctlcluster on this machine"
    parts = urllib.parse.urlsplit(server_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None, f"PostgreSQL at {parts.hostname} is not on this machine"
    port = parts.port or 5432
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        version, cluster, cluster_port, status, owner, *_ = line.split()
        if int(cluster_port) != port or status != "online":
            continue
        if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != owner:
            return None, f"this user may not restart cluster {version}/{cluster} (owned by {owner})"
        return ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "restart"], ""
    return None, f"no online local cluster listens on port {port}"


def ensure_up(server_url: str, restart: list[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server_up(server_url):
            return
        time.sleep(0.2)
    subprocess.run([*restart[:-1], "start"], capture_output=True, text=True, timeout=120)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server_up(server_url):
            return
        time.sleep(0.5)
    raise DrillFailure(f"PostgreSQL is not back up after the drill: {' '.join(restart[:-1])} start")
