"""`make bench`: every benchmark in this folder, each run several times, and benchmarks/RESULTS.md.

PostgreSQL when DATABASE_URL names a PostgreSQL server, SQLite otherwise. On PostgreSQL each
benchmark gets a database of its own on that server, named ``artifacts_bench_<name>`` (or
``<BENCH_DB_PREFIX>_<name>``: two people on one server set different prefixes); the benchmarks
create, load and keep or drop them as their docstrings say, and the 1,000,000 artifacts of
``reads`` and ``api`` are loaded once and kept. The database named in DATABASE_URL itself is
never touched. On SQLite each gets a file in a temporary folder, removed afterwards. The
benchmarks that need PostgreSQL (the 1,000,000-row loads use its SQL) say so and are left
out on SQLite.

**Figures that hold.** Each benchmark warms up what it measures, then prints its tables
(every figure beside the baseline it measured in the same run) and one ``FIGURE`` line per
headline figure (``benchmarks/figures.py``). ``--repeat N`` (default 3) runs the whole list N
times, in rounds (every benchmark once, then again), so that a slow spell of the machine
falls on one run of several benchmarks rather than on every run of one. A headline figure
is the **median** of its runs, shown with their spread (min-max); its target is judged on the
median, and a figure whose runs differ by more than 1.5x (max / min) is marked **unstable**:
something other than the code moved it, and it says little until it holds. The load average
is read before and after every run.

RESULTS.md gets the machine, PostgreSQL's settings that move the figures, the date, a table
of every headline figure, the targets missed and the unstable figures, the runs with their
load, then each benchmark's output (its last run; earlier runs folded). Exit status 1 if a
run of a benchmark failed.

    make bench                                   # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench
    .venv/bin/python benchmarks/run.py --only create api --quick --output /tmp/RESULTS.md
    BENCH_DB_PREFIX=artifacts_bench_mine .venv/bin/python benchmarks/run.py --only pipeline --repeat 5
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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.databases import PREFIX_VARIABLE, database_name  # noqa: E402
from benchmarks.figures import UNSTABLE, Figure, Summary, parse_all, summarize  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    name: str
    figures: str  # what it measures, for RESULTS.md
    database: str  # its database on PostgreSQL, ``database_name(database)`` (reads and api share one)
    postgres_only: str = ""  # why, when it cannot run on SQLite


BENCHMARKS = [
    Benchmark("create", "1-2. create on a hot stream and on 1,000 streams; batch create", "create"),
    Benchmark(
        "reads",
        "3, 5. reads and lineage at 1,000,000 artifacts; the admin's pages",
        "reads",
        postgres_only="the 1,000,000 artifacts are loaded with PostgreSQL's SQL (generate_series, md5)",
    ),
    Benchmark("api", "4. the API under gunicorn (the README's command), against /healthz", "reads"),
    Benchmark(
        "commands",
        "6. import_artifacts on 100,000 lines, prune_artifacts on 1,000,000 rows",
        "commands",
        postgres_only="the import streams with COPY and the prune's rows are loaded with generate_series",
    ),
    Benchmark("pipeline", "7. the pipeline per node: a scene end to end, then all reused", "pipeline"),
    Benchmark(
        "storyboard",
        "the storyboard of a 50-scene story at 1,000,000 artifacts (SPEC §13): server time, / raw SQL",
        "reads",
    ),
    Benchmark(
        "feed",
        "the change feed (SPEC §14): events' cost to a hot-stream create, the feed to one reader, webhook delivery",
        "feed",
    ),
    Benchmark(
        "versioning",
        "the seed's versioning (read max + 1, retry) against the service, threads on one stream",
        "versioning",
        postgres_only="its point is concurrent writers, which SQLite serializes",
    ),
]

# PostgreSQL's settings that move the figures: memory for caches and sorts, what a commit
# waits for, how many connections, the planner's cost of a random read, JIT on short queries;
# and the checkpoints, which the write benchmarks run into.
POSTGRES_SETTINGS = (
    "server_version", "shared_buffers", "work_mem", "effective_cache_size", "synchronous_commit", "fsync",
    "wal_sync_method", "max_connections", "random_page_cost", "jit", "max_wal_size", "checkpoint_timeout",
)  # fmt: skip


@dataclass
class Run:
    benchmark: Benchmark
    number: int  # 1..repeat
    status: int
    text: str
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    figures: list[Figure] = field(default_factory=list)


def machine() -> list[str]:
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
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; memory {memory}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
    ]


def postgres_settings(url: str) -> list[tuple[str, str]]:
    """``SHOW`` of each of POSTGRES_SETTINGS on the server of ``url``."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as connection:
        return [(name, connection.execute(f"SHOW {name}").fetchone()[0]) for name in POSTGRES_SETTINGS]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def loads(values: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)


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


# -- RESULTS.md ------------------------------------------------------------------------------


def show(value: float) -> str:
    """A figure for people: thousands separated, three significant digits below 100."""
    if value != value or value in (float("inf"), float("-inf")):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def figures_table(summaries: list[Summary], runs_of: dict[str, int]) -> list[str]:
    """``runs_of``: how many times each benchmark ran (a failed run may print no figure)."""
    rows = [
        "| benchmark | figure | median | spread (min–max) | runs | target | verdict | stable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        runs = len(s.measured)
        if runs < 2 or s.low == s.high:
            spread = show(s.low) + (" (every run)" if runs > 1 else "")
        elif s.spread == float("inf"):
            spread = f"{show(s.low)}–{show(s.high)} (0 and not 0)"
        else:
            spread = f"{show(s.low)}–{show(s.high)} ({show(s.spread)}x)"
        target = f"{s.op} {show(s.target)}" if s.op else ""
        verdict = {None: "", True: "met", False: "**missed**"}[s.met]
        stable = "1 run" if runs < 2 else ("**unstable**" if s.unstable else "stable")
        total = runs_of.get(s.benchmark, len(s.values))
        runs_text = f"{runs}" if runs == total else f"{runs} of {total}"
        rows.append(
            f"| {s.benchmark} | {s.name} | {show(s.median)} {s.unit} | {spread} | {runs_text} | {target}"
            f" | {verdict} | {stable} |"
        )
    return rows


def summary_line(s: Summary) -> str:
    spread = f" ({show(s.low)}–{show(s.high)} over {len(s.measured)} runs)" if len(s.measured) > 1 else ""
    target = f", target {s.op} {show(s.target)}" if s.op else ""
    return f"- {s.benchmark}: {s.name}: median {show(s.median)} {s.unit}{spread}{target}"


def benchmark_section(benchmark: Benchmark, runs: list[Run], skipped: str) -> str:
    if skipped:
        return f"## {benchmark.name}\n\n{benchmark.figures}\n\n{skipped}\n"
    took = " / ".join(f"{r.seconds:.0f}" for r in runs)
    load = ", ".join(f"{r.load_before[0]:.2f} → {r.load_after[0]:.2f}" for r in runs)
    failed = [f"run {r.number} **failed with exit status {r.status}**" for r in runs if r.status]
    lines = [
        f"## {benchmark.name}",
        "",
        f"{benchmark.figures}; {len(runs)} run(s), took {took} s; load average (1 min) before → after: {load}."
        + (f" {'; '.join(failed)}." if failed else ""),
        "",
    ]
    *earlier, last = runs
    for r in earlier:  # folded: the table above has their figures
        lines += [
            f"<details><summary>run {r.number} of {len(runs)}</summary>",
            "",
            "```",
            r.text.rstrip(),
            "```",
            "",
            "</details>",
            "",
        ]
    lines += [f"Run {last.number} of {len(runs)}:" if earlier else "Output:", "", "```", last.text.rstrip(), "```", ""]
    return "\n".join(lines)


def results(
    *,
    command: str,
    started_at: datetime.datetime,
    postgres: bool,
    repeat: int,
    machine_lines: list[str],
    settings: list[tuple[str, str]],
    host: str,
    selected: list[Benchmark],
    runs: list[Run],
    skipped: dict[str, str],
) -> str:
    summaries = summarize([(r.benchmark.name, r.figures) for r in runs])
    runs_of = {b.name: sum(r.benchmark is b for r in runs) for b in selected}
    missed = [s for s in summaries if s.met is False]
    unstable = [s for s in summaries if s.unstable]
    failed = sorted({r.benchmark.name for r in runs if r.status}, key=[b.name for b in selected].index)
    if postgres:
        database = ["## PostgreSQL settings", "", f"On {host} (`SHOW`):", ""]
        database += [f"- `{name}`: {value}" for name, value in settings]
    else:
        database = ["## Database", "", f"SQLite {sqlite3.sqlite_version}, a file per benchmark in a temporary folder."]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` (benchmarks/run.py) on {started_at:%Y-%m-%d %H:%M} UTC, on"
        f" {'PostgreSQL' if postgres else 'SQLite'}: each benchmark run {repeat} time{'s' if repeat > 1 else ''},"
        " in rounds. A headline figure is the median of its runs, with their spread (min–max, and max / min);"
        f" its target is judged on the median; a figure whose runs differ by more than {UNSTABLE:g}x is"
        " unstable. Every figure is beside a baseline measured in the same run: see the README's Benchmarks"
        " section for what each means.",
        "",
        "## Machine",
        "",
        *machine_lines,
        "",
        *database,
        "",
        "## Headline figures",
        "",
        *(figures_table(summaries, runs_of) if summaries else ["None printed."]),
        "",
        "## Targets missed (judged on the medians)",
        "",
        *([summary_line(s) for s in missed] or ["None."]),
        "",
        f"## Unstable figures (runs differ by more than {UNSTABLE:g}x)",
        "",
        *(
            [summary_line(s) for s in unstable]
            or ["None." if repeat > 1 else "Not judged: one run each (`--repeat 3` or more to judge)."]
        ),
        *(["", f"**Failed:** {', '.join(failed)}"] if failed else []),
        "",
        "## Runs",
        "",
        "| round | benchmark | took | load average before | after | exit |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r.number} | {r.benchmark.name} | {r.seconds:.0f} s | {loads(r.load_before)} | {loads(r.load_after)}"
            f" | {r.status} |"
            for r in runs
        ],
        "",
    ]
    sections = [benchmark_section(b, [r for r in runs if r.benchmark is b], skipped.get(b.name, "")) for b in selected]
    return "\n".join(lines) + "\n" + "\n".join(sections)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], help="these benchmarks only")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, short durations, 1 run")
    parser.add_argument("--repeat", type=int, help="runs of each benchmark (default 3; 1 with --quick)")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"), help="where to write the results")
    args = parser.parse_args()
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be at least 1")

    url = os.environ.get("DATABASE_URL", "").strip()
    postgres = url.startswith(("postgres://", "postgresql://"))
    try:
        names = {b.name: database_name(b.database) for b in BENCHMARKS}
    except ValueError as exc:
        parser.error(str(exc))
    env = dict(os.environ)
    env.setdefault("DJANGO_SECRET_KEY", "benchmark-only-not-secret")
    env.setdefault("PYTHONWARNINGS", "ignore:No directory at")  # WhiteNoise: no collectstatic for benchmarks
    env.pop("DATABASE_OWNER_URL", None)  # each benchmark migrates its own database as its owner
    selected = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    extra = ["--quick"] if args.quick else []

    started_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    machine_lines = machine()
    settings = postgres_settings(with_database(url, "postgres")) if postgres else []
    print("\n".join(machine_lines))
    if settings:
        print("PostgreSQL: " + ", ".join(f"{name} {value}" for name, value in settings))
        print(f"databases: {', '.join(sorted({names[b.name] for b in selected}))} ({PREFIX_VARIABLE} to rename)")
    print(f"{repeat} run(s) of each of: {', '.join(b.name for b in selected)}", flush=True)

    runs: list[Run] = []
    skipped = {
        b.name: f"left out on SQLite: {b.postgres_only}; run `make bench` with DATABASE_URL set."
        for b in selected
        if not postgres and b.postgres_only
    }
    scratch = None if postgres else Path(tempfile.mkdtemp(prefix="artifacts-bench-"))
    try:
        for number in range(1, repeat + 1):
            for benchmark in selected:
                if benchmark.name in skipped:
                    if number == 1:
                        print(f"\n== {benchmark.name}: {skipped[benchmark.name]}", flush=True)
                    continue
                print(f"\n== {benchmark.name}, run {number} of {repeat}: {benchmark.figures}", flush=True)
                if postgres:
                    env["DATABASE_URL"] = with_database(url, names[benchmark.name])
                else:
                    env["DATABASE_URL"] = f"sqlite:///{scratch / benchmark.name}.sqlite3"
                before = load_average()
                status, text, seconds = run(benchmark, env, extra)
                after = load_average()
                print(f"-- {benchmark.name} run {number}: {seconds:.0f} s, exit {status}, load average"
                      f" before {loads(before)}, after {loads(after)}", flush=True)  # fmt: skip
                runs.append(Run(benchmark, number, status, text, seconds, before, after, parse_all(text)))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    command = " ".join(["make bench", *(["--quick"] if args.quick else []), *([f"--repeat {repeat}"])])
    if args.only:
        command += f" --only {' '.join(args.only)}"
    text = results(
        command=command,
        started_at=started_at,
        postgres=postgres,
        repeat=repeat,
        machine_lines=machine_lines,
        settings=settings,
        host=(urlsplit(url).hostname or "") if postgres else "",
        selected=selected,
        runs=runs,
        skipped=skipped,
    )
    Path(args.output).write_text(text)
    summaries = summarize([(r.benchmark.name, r.figures) for r in runs])
    for s in summaries:
        if s.met is False:
            print("MISSES " + summary_line(s)[2:])
        if s.unstable:
            print("UNSTABLE " + summary_line(s)[2:])
    failed = sorted({r.benchmark.name for r in runs if r.status})
    print(f"\nwrote {args.output}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
