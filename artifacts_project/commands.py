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
import sys
from collections.abc import Iterable, Iterator

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import connection
from tqdm import tqdm

from .request_id import request_id_scope

EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class RequestIdCommand(BaseCommand):
    """Runs ``handle`` under a fresh request id, printed first, so every row the command
    writes can be traced back to this invocation (and its log lines carry the same id)."""

    def execute(self, *args, **options):
        if options.get("stdout"):  # call_command(stdout=...): the id goes where the rest goes
            self.stdout = OutputWrapper(options["stdout"])
        with request_id_scope() as request_id:
            self.stdout.write(f"request id: {request_id}")
            return super().execute(*args, **options)


def positive_int(text: str) -> int:
    """An argparse type: a whole number from 1 up (argparse turns the error into exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number from 0 up, got {text}")
    return value


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
            type=positive_int,
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
