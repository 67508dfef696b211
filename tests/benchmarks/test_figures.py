"""How `make bench` turns the benchmarks' FIGURE lines into RESULTS.md: medians over runs, the
target judged on the median, a spread over 1.5x marked unstable (benchmarks/figures.py,
benchmarks/run.py). Pure functions on made-up runs: no benchmark runs here."""

import datetime
import math

import pytest

from benchmarks import figures
from benchmarks.databases import database_name
from benchmarks.production import gunicorn_command
from benchmarks.run import BENCHMARKS, Run, results


def test_a_figure_line_reads_back_as_printed():
    text = figures.line("hot stream, 16 writers: service / raw", 0.8123, "x", (">=", 0.8))
    assert text == "FIGURE hot stream, 16 writers: service / raw = 0.8123 x target >= 0.8"
    assert figures.parse(text) == figures.Figure("hot stream, 16 writers: service / raw", 0.8123, "x", ">=", 0.8)
    assert figures.parse("FIGURE prune = 4251.3 rows/s") == figures.Figure("prune", 4251.3, "rows/s")
    assert figures.parse("  FIGURE lock = 12 ms target < 1000  ") == figures.Figure("lock", 12, "ms", "<", 1000)
    for other in ("one hot stream 16 writers: ratio 0.81", "FIGURE x = fast ms", "FIGURE x = 1", "FIGURE = 1 ms"):
        assert figures.parse(other) is None, other


@pytest.mark.parametrize(
    "arguments",
    [("a = b", 1, "x"), ("", 1, "x"), ("two\nlines", 1, "x"), ("name", 1, "two words"), ("name", 1, "x", ("=", 1))],
)
def test_a_figure_that_would_not_read_back_is_refused(arguments):
    with pytest.raises(ValueError):
        figures.line(*arguments)


def fold(*runs):
    return figures.summarize([("bench", [figures.Figure(*f) for f in run]) for run in runs])


def test_the_target_is_judged_on_the_median_of_the_runs():
    # Two of three runs miss 0.8, the median meets it; and the other way round.
    met, missed = fold(
        [("ratio", 0.70, "x", ">=", 0.8), ("p99", 200, "ms", "<=", 250)],
        [("ratio", 0.81, "x", ">=", 0.8), ("p99", 260, "ms", "<=", 250)],
        [("ratio", 0.90, "x", ">=", 0.8), ("p99", 300, "ms", "<=", 250)],
    )
    assert (met.median, met.low, met.high, met.met) == (0.81, 0.70, 0.90, True)
    assert (missed.median, missed.met) == (260, False)
    assert fold([("no target", 3, "x")])[0].met is None


def test_runs_that_differ_by_more_than_one_and_a_half_times_are_unstable():
    steady, moving, zero = fold(
        [("steady", 100, "ms"), ("moving", 100, "ms"), ("zero", 0, "failures", "<=", 0)],
        [("steady", 150, "ms"), ("moving", 151, "ms"), ("zero", 0, "failures", "<=", 0)],
    )
    assert steady.spread == 1.5 and not steady.unstable
    assert moving.unstable
    assert zero.spread == 1 and not zero.unstable and zero.met
    (failures,) = fold([("f", 0, "failures")], [("f", 2, "failures")])
    assert failures.spread == math.inf and failures.unstable
    assert not fold([("once", 1, "x")])[0].unstable  # one run: nothing to compare


def test_a_run_without_a_value_is_left_out_of_the_median():
    (summary,) = fold([("r", math.nan, "x")], [("r", 2, "x")], [("r", 4, "x")])
    assert (summary.median, summary.measured, len(summary.values)) == (3, [2, 4], 3)


def make_run(name, number, text, status=0):
    benchmark = next(b for b in BENCHMARKS if b.name == name)
    return Run(benchmark, number, status, text, 10.0, (1.0, 1.0, 1.0), (2.0, 1.5, 1.0), figures.parse_all(text))


def test_results_md_has_the_table_the_misses_the_unstable_figures_and_folds_earlier_runs():
    create_runs = [
        make_run("create", n, f"run {n} table\nFIGURE hot, 16 writers = {value} x target >= 0.8\n")
        for n, value in ((1, 0.5), (2, 0.9), (3, 0.85))
    ]
    made = "FIGURE queries per made node = 9 queries target <= 10\n"
    pipeline_runs = [make_run("pipeline", n, made) for n in (1, 2)]
    pipeline_runs.append(make_run("pipeline", 3, "Traceback: it broke\n", status=1))
    text = results(
        command="make bench --repeat 3",
        started_at=datetime.datetime(2026, 12, 7, 12, 0),
        postgres=True,
        repeat=3,
        machine_lines=["- CPU: test"],
        settings=[("server_version", "15.20"), ("shared_buffers", "128MB")],
        host="127.0.0.1",
        selected=[b for b in BENCHMARKS if b.name in ("create", "pipeline")],
        runs=create_runs + pipeline_runs,
        skipped={},
    )
    assert "## PostgreSQL settings" in text and "- `shared_buffers`: 128MB" in text
    assert "| create | hot, 16 writers | 0.85 x | 0.5–0.9 (1.8x) | 3 | >= 0.8 | met | **unstable** |" in text
    assert "| pipeline | queries per made node | 9 queries | 9 (every run) | 2 of 3 | <= 10 | met | stable |" in text
    missed, unstable = text.split("## Targets missed")[1].split("## Unstable figures")
    assert missed.strip().splitlines()[-1] == "None."
    assert "- create: hot, 16 writers: median 0.85 x (0.5–0.9 over 3 runs), target >= 0.8" in unstable
    assert "**Failed:** pipeline" in text and "run 3 **failed with exit status 1**" in text
    # The last run's output in full, the earlier ones folded.
    create_section = text.split("## create\n")[1].split("\n## ")[0]
    assert create_section.count("<details>") == 2 and "Run 3 of 3:\n\n```\nrun 3 table" in create_section


def test_a_database_prefix_keeps_benchmarks_apart(monkeypatch):
    monkeypatch.delenv("BENCH_DB_PREFIX", raising=False)
    assert database_name("reads") == "artifacts_bench_reads"
    monkeypatch.setenv("BENCH_DB_PREFIX", "artifacts_bench_h5")
    assert database_name("reads") == "artifacts_bench_h5_reads"
    for refused in ("artifacts_mine", "bench; DROP DATABASE x"):
        monkeypatch.setenv("BENCH_DB_PREFIX", refused)
        with pytest.raises(ValueError):
            database_name("reads")


def test_the_api_benchmark_runs_the_readmes_production_command(tmp_path):
    env, command = gunicorn_command()
    assert command[1:4] == ["-m", "gunicorn", "artifacts_project.wsgi"]
    assert command[command.index("--worker-class") + 1] == "gthread"
    assert command[command.index("--bind") + 1] == "127.0.0.1:0"
    assert "DATABASE_CONN_MAX_AGE" in env
    readme = tmp_path / "README.md"
    readme.write_text("A=1 gunicorn artifacts_project.wsgi --workers 4 \\\n    --threads 2 --bind 0.0.0.0:80\n")
    assert gunicorn_command(readme, workers=2)[1][2:] == [
        "gunicorn", "artifacts_project.wsgi", "--workers", "2", "--threads", "2", "--bind", "127.0.0.1:0",
    ]  # fmt: skip
    readme.write_text("gunicorn artifacts_project.wsgi --bind x\ngunicorn artifacts_project.wsgi --bind y\n")
    with pytest.raises(ValueError, match="one production gunicorn command, found 2"):
        gunicorn_command(readme)
