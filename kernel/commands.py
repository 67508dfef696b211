"""The bases of every management command of this project.

``RequestIdCommand``: one request id per invocation, printed first.

``BatchCommand``: what the backfill and maintenance commands of SPEC §9 share (after
Zulip's ``delete_old_unclaimed_attachments`` and django-reversion's backfill):
``--dry-run``, ``--batch-size``, a progress bar on a terminal only (never in a log file or
a pipe, and not at ``--verbosity 0``), a summary at the end, and an exit code that says how
it went: 0 done, 1 something was refused or found wrong, 2 a usage error, 130 interrupted.
The work itself lives in the apps' service modules, one transaction per batch, so a command
killed at any point leaves only whole batches behind and a rerun finishes the job.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable, Iterable, Iterator

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError, connection
from django.utils import timezone
from tqdm import tqdm

from .api import database_unavailable
from .request_id import request_id_scope

EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
# Rows in one batch, one transaction: past a million a batch is no batch (its locks, its
# memory); the bound also keeps the number within what a LIMIT and islice() take.
MAX_BATCH_SIZE = 1_000_000


class RequestIdCommand(BaseCommand):
    """Runs ``handle`` under a fresh request id, printed first, so every row the command
    writes can be traced back to this invocation (and its log lines carry the same id)."""

    def execute(self, *args, **options):
        if options.get("stdout"):  # call_command(stdout=...): the id goes where the rest goes
            self.stdout = OutputWrapper(options["stdout"])
        with request_id_scope() as request_id:
            self.stdout.write(f"request id: {request_id}")
            return super().execute(*args, **options)


# argparse types: a value they refuse is a usage error, one line, exit 2, never a traceback
# from deeper in the command (an OverflowError of a timedelta, a ValueError of islice()).


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def positive_int(text: str) -> int:
    """A whole number from 1 up."""
    try:
        value = int(text)
    except ValueError:  # not a number, or one of over 4,300 digits
        raise argparse.ArgumentTypeError(f"{_shown(text)!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {_shown(text)}")
    return value


def batch_size(text: str) -> int:
    """``--batch-size``: a whole number from 1 to MAX_BATCH_SIZE."""
    value = positive_int(text)
    if value > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_SIZE:,}, got {_shown(text)}")
    return value


def non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shown(text)!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number from 0 up, got {_shown(text)}")
    return value


def time_back(unit: str) -> Callable[[str], float]:
    """A type for a span back from now in ``unit`` (``days``, ``hours``): from 0 up, and no
    further back than 0001-01-01, the first day a date holds (``--older-than 1e9`` was an
    OverflowError when the command made its cutoff)."""

    def parse(text: str) -> float:
        value = non_negative_number(text)
        earliest = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        limit = (timezone.now() - earliest) // datetime.timedelta(**{unit: 1}) - 1
        if value > limit:
            raise argparse.ArgumentTypeError(
                f"must be at most {limit:,} {unit} (further back than the year 1 is no date), got {_shown(text)}"
            )
        return value

    parse.__name__ = unit  # argparse names the type in its own messages
    return parse


class BatchCommand(RequestIdCommand):
    """A backfill or maintenance command: dry run, batches, progress, summary, exit code.

    Subclasses add their own arguments in ``add_command_arguments`` and call ``progress``,
    ``report``, ``summary`` and ``fail`` from ``handle``.
    """

    default_batch_size = 1000
    dry_run_help = "report what would change, change nothing"

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help=self.dry_run_help)
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=self.default_batch_size,
            metavar="N",
            help=f"rows per batch, each batch one transaction (default {self.default_batch_size:,})",
        )
        self.add_command_arguments(parser)

    def add_command_arguments(self, parser):
        """The command's own arguments."""

    def execute(self, *args, **options):
        self.verbosity = options.get("verbosity", 1)
        without_statement_timeout()
        try:
            return super().execute(*args, **options)
        except KeyboardInterrupt:
            # Every batch is its own transaction: the one in flight rolled back, the ones
            # before it are committed, and a rerun carries on from there.
            raise CommandError(
                "interrupted: finished batches are kept, the one in progress was rolled back; run it again to finish",
                returncode=EXIT_INTERRUPTED,
            ) from None
        except DatabaseError as exc:
            if not database_unavailable(exc):
                raise  # a fault of this code: its traceback is what to read
            # The database went away (restarted, the connection terminated, unreachable):
            # one line for the operator, as for an interruption; the batches are the same.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(
                f"the database became unavailable ({reason}): finished batches are kept, the one in progress "
                "was rolled back; run it again once the database is back",
                returncode=EXIT_PROBLEMS,
            ) from None

    # -- output ----------------------------------------------------------------------

    @property
    def interactive(self) -> bool:
        """A progress bar only for a person at a terminal: not in logs, pipes or cron mail."""
        return self.verbosity > 0 and self.stderr.isatty()

    def progress(self, *, total: int | None = None, unit: str = "row", desc: str | None = None, **options) -> tqdm:
        """A tqdm bar on standard error, disabled (every call a no-op) when not interactive."""
        return tqdm(
            total=total,
            unit=unit,
            desc=desc,
            disable=not self.interactive,
            file=getattr(self.stderr, "_out", sys.stderr),
            dynamic_ncols=True,
            leave=False,
            **options,
        )

    def tracked(self, items: Iterable, *, total: int | None = None, unit: str = "row", desc=None) -> Iterator:
        """Iterate ``items`` with a progress bar."""
        with self.progress(total=total, unit=unit, desc=desc) as bar:
            for item in items:
                yield item
                bar.update(1)

    def say(self, message: str, *, level: int = 1) -> None:
        """A line on standard output from ``--verbosity level`` up."""
        if self.verbosity >= level:
            self.stdout.write(message)

    def report(self, message: str) -> None:
        """A problem (a refused line, a drift, a broken invariant): on standard error,
        whatever the verbosity, so it reaches the operator even with ``-v 0``."""
        self.stderr.write(message)

    def summary(self, title: str, rows: Iterable[tuple[str, object]]) -> None:
        rows = list(rows)
        if self.verbosity < 1:
            return
        width = max((len(label) for label, _ in rows), default=0)
        self.stdout.write(title)
        for label, value in rows:
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
            self.stdout.write(f"  {label:<{width}}  {shown}")

    def fail(self, message: str, *, returncode: int = EXIT_PROBLEMS):
        raise CommandError(message, returncode=returncode)

    def usage_error(self, message: str):
        raise CommandError(message, returncode=EXIT_USAGE)


def without_statement_timeout() -> None:
    """Lift the service's per-statement timeout (DATABASE_STATEMENT_TIMEOUT, meant to turn a
    request stuck behind a lock into a 503) for this connection: a maintenance command reads
    whole tables in statements that rightly take longer, and holds its locks per batch only."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size:,} B" if unit == "B" else f"{value:,.1f} {unit} ({size:,} B)"
        value /= 1024
    return f"{size:,} B"
