"""`make bench` still runs: every benchmark in its --quick form, on SQLite, through run.py.

The figures of a smoke run mean nothing (a second per figure, one run each, on whatever else
the machine is doing); what is checked is that each benchmark runs to the end on today's
code, prints its headline figures, and that RESULTS.md is written with the machine, the
table of figures, the missed targets, the runs and a section per benchmark. How the
figures of several runs are folded is tests/benchmarks/test_figures.py's. The full run is
`make bench` (README, Benchmarks).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from benchmarks.run import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(
        connection.vendor != "sqlite",
        reason="the smoke run uses SQLite files of its own; on PostgreSQL it would create databases beside the suite's",
    ),
]


def test_every_benchmark_runs_and_results_are_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_OWNER_URL")}
    output = tmp_path / "RESULTS.md"
    finished = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    results = output.read_text()
    assert "## Machine" in results and "logical cores" in results
    assert "## Targets missed (judged on the medians)" in results and "## Runs" in results
    assert "one run each" in results  # --quick: one run, so no figure is judged stable or not
    table = results.split("## Headline figures")[1].split("\n## ")[0]
    for row in (
        "| create | one hot stream, 4 writers: service / raw locked counter |",
        "| api | list p99 |",
        "| api | lineage depth 10 p99 / /healthz p99 beside it |",
        "| pipeline | queries per made node",
        "| storyboard | storyboard 50 scenes: server time |",
    ):
        assert row in table, row
    for benchmark in BENCHMARKS:
        assert f"## {benchmark.name}\n" in results
        if benchmark.postgres_only:
            assert f"left out on SQLite: {benchmark.postgres_only}" in results
        else:
            assert "failed with exit status" not in results.split(f"## {benchmark.name}\n", 1)[1].split("\n## ")[0]
    assert "Traceback" not in finished.stdout
