"""The benchmarks' databases on PostgreSQL: made afresh or kept, and the raw client's connection.

Every benchmark writes only to a database whose name contains "bench" (``make bench`` names
them ``artifacts_bench_<name>``, or ``$BENCH_DB_PREFIX_<name>``: ``database_name``); these
helpers refuse any other. Django has not connected yet when they run: the server's
maintenance database does the dropping and creating.
"""

import os
import sys

import psycopg
from django.db import connection
from psycopg import sql


def _connect(dbname: str, **options) -> psycopg.Connection:
    params = connection.settings_dict
    return psycopg.connect(
        dbname=dbname,
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        autocommit=True,
        **options,
    )


PREFIX_VARIABLE, DEFAULT_PREFIX = "BENCH_DB_PREFIX", "artifacts_bench"


def database_name(name: str) -> str:
    """``make bench``'s database for ``name``: ``artifacts_bench_<name>``, or with BENCH_DB_PREFIX
    set, ``<prefix>_<name>``, so that two people benchmarking on one server (or a benchmark
    beside a colleague's) never drop or fill each other's databases. The prefix must contain
    "bench", like every database a benchmark writes to."""
    prefix = os.environ.get(PREFIX_VARIABLE, "").strip() or DEFAULT_PREFIX
    if "bench" not in prefix or not prefix.replace("_", "").isalnum():
        raise ValueError(f"{PREFIX_VARIABLE}={prefix!r}: letters, digits and '_', containing 'bench'")
    return f"{prefix}_{name}"


def bench_name() -> str:
    name = str(connection.settings_dict["NAME"])
    if "bench" not in name:
        sys.exit(f"refusing database {name!r}: a benchmark fills (and may drop) it; name one with 'bench'")
    return name


def prepare(*, fresh: bool) -> None:
    """Create Django's PostgreSQL database if it is missing; with ``fresh``, drop it first."""
    name = bench_name()
    with _connect("postgres") as maintenance:
        if fresh:
            maintenance.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def raw_connection() -> psycopg.Connection:
    """A plain psycopg connection to Django's database, autocommit: the baselines' client.

    No prepared statements, as Django sends none (client-side binding): each statement is
    planned as Django's is. (psycopg would prepare a statement after its fifth run: that
    skips planning on point reads but may settle on a generic plan; it is not what the
    service does, so it would not compare like with like.)"""
    return _connect(connection.settings_dict["NAME"], prepare_threshold=None)
