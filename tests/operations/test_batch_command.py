"""What every batch command shares (kernel.commands.BatchCommand): a progress bar
for a person at a terminal only, quiet at --verbosity 0, a summary, exit codes."""

import datetime
import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from tests.operations.conftest import chain, jsonl, run

COMMANDS = ["import_artifacts", "sync_story_links", "backfill_relations", "verify_artifacts", "prune_artifacts"]


def on_a_terminal(*args, **options) -> str:
    """Run a command with standard error on a pseudo-terminal; what the terminal showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal has a size
    os.set_blocking(leader, False)
    shown = b""
    with open(follower, "w", closefd=True) as terminal:
        call_command(*args, stdout=io.StringIO(), stderr=terminal, **options)
        terminal.flush()
        try:  # read while the terminal is still open: closing it would drop what it holds
            while chunk := os.read(leader, 65536):
                shown += chunk
        except BlockingIOError:
            pass
    os.close(leader)
    return shown.decode(errors="replace")


def test_a_terminal_gets_a_progress_bar_and_verbosity_0_silences_it(tmp_path, scene):
    path = jsonl(tmp_path / "a.jsonl", chain(scene, 3))
    shown = on_a_terminal("import_artifacts", path, dry_run=True)
    assert "import" in shown and "|" in shown  # tqdm's bar
    assert on_a_terminal("import_artifacts", path, dry_run=True, verbosity=0) == ""


def test_no_progress_bar_when_standard_error_is_not_a_terminal(tmp_path, scene):
    outcome = run("import_artifacts", jsonl(tmp_path / "a.jsonl", chain(scene, 3)))
    assert outcome.code == 0 and outcome.err == ""


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_prints_its_request_id_and_a_summary(db, name):
    args = {"import_artifacts": [os.devnull], "prune_artifacts": ["--older-than", "1"]}.get(name, [])
    outcome = run(name, *args)
    assert outcome.code == 0, outcome.err
    lines = outcome.out.splitlines()
    assert lines[0].startswith("request id: ") and len(lines[0]) == len("request id: ") + 32
    assert any(line.startswith(name) for line in lines[1:])


@pytest.mark.parametrize(
    "args",
    [
        ["import_artifacts"],  # no FILE
        ["import_artifacts", "x.jsonl", "--batch-size", "0"],
        ["prune_artifacts"],  # no --older-than
        ["prune_artifacts", "--older-than", "-1"],
        ["verify_artifacts", "--check", "nonsense"],
    ],
)
def test_usage_errors_exit_2_from_the_command_line(args):
    process = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=Path(settings.BASE_DIR), capture_output=True, timeout=60
    )
    assert process.returncode == 2, process.stderr.decode()[-500:]
    assert b"usage:" in process.stderr or b"Error" in process.stderr


THOUSANDS_OF_DIGITS = "9" * 5000


@pytest.mark.parametrize(
    "args, error",
    [
        # The repros: an OverflowError's traceback and exit 1.
        (["prune_artifacts", "--older-than", "1e9"], "argument --older-than: must be at most"),
        (["prune_artifacts", "--older-than", "1", "--grace-hours", "1e15"], "argument --grace-hours: must be at most"),
        # A cutoff before the year 1, though the days fit a timedelta.
        (["prune_artifacts", "--older-than", "800000"], "argument --older-than: must be at most"),
        (["prune_artifacts", "--older-than", "inf"], "argument --older-than: must be a number from 0 up"),
        (["verify_artifacts", "--grace-hours", "1e15"], "argument --grace-hours: must be at most"),
        # Batch sizes that islice() or a LIMIT cannot take, and one of thousands of digits.
        (
            ["sync_story_links", "--batch-size", "99999999999999999999"],
            "argument --batch-size: must be at most 1,000,000",
        ),
        (["backfill_relations", "--batch-size", "1000001"], "argument --batch-size: must be at most 1,000,000"),
        (["import_artifacts", "x.jsonl", "--batch-size", THOUSANDS_OF_DIGITS], "argument --batch-size: '999"),
        (["verify_artifacts", "--batch-size", "99999999999999999999"], "argument --batch-size: must be at most"),
    ],
    ids=lambda value: " ".join(value)[:60] if isinstance(value, list) else None,
)
def test_an_argument_out_of_range_is_a_one_line_usage_error(args, error):
    process = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=Path(settings.BASE_DIR), capture_output=True, timeout=60
    )
    stderr = process.stderr.decode()
    assert process.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"manage.py {args[0]}: error: {error}"), last
    assert len(last) < 200  # the value is shortened, not echoed in its thousands of digits


@pytest.mark.parametrize("name", ["prune_artifacts", "verify_artifacts"])
def test_the_longest_spans_back_a_date_holds_still_run(db, name):
    """The bounds refuse only what no date holds: a cutoff on the second day of the year 1 runs."""
    days = (timezone.now() - datetime.datetime.min.replace(tzinfo=datetime.UTC)).days - 2
    args = ["--grace-hours", str(days * 24), *(["--older-than", str(days)] if name == "prune_artifacts" else [])]
    outcome = run(name, *args)
    assert outcome.code == 0, outcome.err
