"""`make bench`: every benchmark in this folder, one after the other, and benchmarks/RESULTS.md.

PostgreSQL when DATABASE_URL names a PostgreSQL server, SQLite otherwise. On PostgreSQL each
benchmark gets a database of its own on that server, named ``artifacts_bench_<name>`` (the
benchmarks create, load and keep or drop them as their docstrings say); the database named in
DATABASE_URL itself is never touched. On SQLite each gets a file in a temporary folder, removed
afterwards. The benchmarks that need PostgreSQL (the 1,000,000-row loads use its SQL) say so
and are left out on SQLite.

Each benchmark prints its figures, one line each, beside the baseline it measured in the
same run; a line that misses its target says MISSES. RESULTS.md gets the machine, the date,
each benchmark's output and the list of missed targets. Exit status 1 if a benchmark failed.

    make bench                                   # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench
    .venv/bin/python benchmarks/run.py --only create api --quick --output /tmp/RESULTS.md
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Benchmark:
    name: str
    figures: str  # what it measures, for RESULTS.md
    database: str  # its database's name on PostgreSQL (reads and api share the 1,000,000 rows)
    postgres_only: str = ""  # why, when it cannot run on SQLite


BENCHMARKS = [
    Benchmark("create", "1-2. create on a hot stream and on 1,000 streams; batch create", "artifacts_bench_create"),
    Benchmark(
        "reads",
        "3, 5. reads and lineage at 1,000,000 artifacts; the admin's pages",
        "artifacts_bench_reads",
        postgres_only="the 1,000,000 artifacts are loaded with PostgreSQL's SQL (generate_series, md5)",
    ),
    Benchmark("api", "4. the API under gunicorn, against /healthz", "artifacts_bench_reads"),
    Benchmark(
        "commands",
        "6. import_artifacts on 100,000 lines, prune_artifacts on 1,000,000 rows",
        "artifacts_bench_commands",
        postgres_only="the import streams with COPY and the prune's rows are loaded with generate_series",
    ),
    Benchmark("pipeline", "7. the pipeline per node: a scene end to end, then all reused", "artifacts_bench_pipeline"),
    Benchmark(
        "versioning",
        "the seed's versioning (read max + 1, retry) against the service, threads on one stream",
        "artifacts_bench",
        postgres_only="its point is concurrent writers, which SQLite serializes",
    ),
]


def machine(postgres_url: str | None) -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = next(
            f"{int(line.split()[1]) / 1024**2:.1f} GiB"
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except OSError:
        memory = "unknown"
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; memory {memory}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
    ]
    if postgres_url:
        import psycopg

        with psycopg.connect(postgres_url, connect_timeout=5) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
        lines.append(f"- PostgreSQL {version} on {urlsplit(postgres_url).hostname}")
    return lines


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def run(benchmark: Benchmark, env: dict, args: list[str]) -> tuple[int, str, float]:
    """Run one benchmark, its output shown as it comes and kept for RESULTS.md."""
    command = [sys.executable, str(HERE / f"{benchmark.name}.py"), *args]
    started = time.perf_counter()
    output = []
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                output.append(line)
        except KeyboardInterrupt:
            process.terminate()  # the benchmark cleans up its own (servers, worker processes)
            process.wait()
            raise
    # Progress bars redraw with carriage returns; RESULTS.md keeps what they ended on.
    text = "".join(re.sub(r".*\r(?!\n)", "", line) for line in output)
    return process.returncode, text, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], help="these benchmarks only")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, short durations")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"), help="where to write the results")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "").strip()
    postgres = url.startswith(("postgres://", "postgresql://"))
    env = dict(os.environ)
    env.setdefault("DJANGO_SECRET_KEY", "benchmark-only-not-secret")
    env.setdefault("PYTHONWARNINGS", "ignore:No directory at")  # WhiteNoise: no collectstatic for benchmarks
    env.pop("DATABASE_OWNER_URL", None)  # each benchmark migrates its own database as its owner
    selected = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    extra = ["--quick"] if args.quick else []

    started_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    sections, missed, failed = [], [], []
    scratch = None if postgres else Path(tempfile.mkdtemp(prefix="artifacts-bench-"))
    try:
        for benchmark in selected:
            print(f"\n== {benchmark.name}: {benchmark.figures}", flush=True)
            if not postgres and benchmark.postgres_only:
                note = f"left out on SQLite: {benchmark.postgres_only}; run `make bench` with DATABASE_URL set."
                print(note, flush=True)
                sections.append(f"## {benchmark.name}\n\n{benchmark.figures}\n\n{note}\n")
                continue
            if postgres:
                env["DATABASE_URL"] = with_database(url, benchmark.database)
            else:
                env["DATABASE_URL"] = f"sqlite:///{scratch / benchmark.name}.sqlite3"
            status, text, seconds = run(benchmark, env, extra)
            if status:
                failed.append(benchmark.name)
            missed += [f"{benchmark.name}: {line.strip()}" for line in text.splitlines() if "MISSES" in line]
            outcome = f"took {seconds:.0f} s" + (f", **failed with exit status {status}**" if status else "")
            sections.append(f"## {benchmark.name}\n\n{benchmark.figures}; {outcome}.\n\n```\n{text.rstrip()}\n```\n")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    command = "make bench" + (" --quick" if args.quick else "")
    header = [
        "# Benchmark results",
        "",
        f"Written by `{command}` (benchmarks/run.py) on {started_at:%Y-%m-%d %H:%M} UTC,"
        f" on {'PostgreSQL' if postgres else 'SQLite'}. Every figure is beside a baseline measured in the same run."
        " See the README's Benchmarks section for what each figure means and its target.",
        "",
        "## Machine",
        "",
        *machine(with_database(url, "postgres") if postgres else None),
        "",
        "## Targets missed",
        "",
        *([f"- {line}" for line in missed] or ["None."]),
        *([""] + [f"**Failed:** {', '.join(failed)}"] if failed else []),
        "",
    ]
    Path(args.output).write_text("\n".join(header) + "\n" + "\n".join(sections))
    print(f"\nwrote {args.output}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
