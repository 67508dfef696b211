"""verify_artifacts: check every invariant of SPEC §3 to §5 against what is stored.

    python manage.py verify_artifacts [--check NAME ...] [--fix [--dry-run]] [--grace-hours H] [--batch-size N]

Gapless streams, parents in their stream, scene and story agreeing, tombstones, payloads
against their schemas, links, one primary per role and every primary published, story
references equal to primaries, no relation cycles, run links, stored files present with
their digests and sizes, and no stored file that nothing references. Each problem is a
line on standard error with the ids concerned. ``--fix`` repairs derived data only (the
stories' references); with ``--dry-run`` it says what it would repair. Exit 0 when all is
well, 1 when a problem remains. The checks are in ``operations/verification.py``.
"""

from __future__ import annotations

import datetime
from collections import Counter

from kernel.commands import BatchCommand, time_back
from operations import retention
from operations.verification import CHECKS, Options


class Command(BatchCommand):
    help = "Check every stored invariant (streams, parents, payloads, links, references, relations, files)."
    dry_run_help = "with --fix: report what would be repaired, repair nothing"

    def add_command_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="append",
            choices=list(CHECKS),
            metavar="NAME",
            help=f"run only this check (repeatable): {', '.join(CHECKS)}",
        )
        parser.add_argument("--fix", action="store_true", help="repair derived data: the stories' references")
        parser.add_argument(
            "--grace-hours",
            type=time_back("hours"),
            default=retention.DEFAULT_GRACE.total_seconds() / 3600,
            metavar="H",
            help="report unreferenced files only once older than this (default 1)",
        )

    def handle(self, *args, check=None, fix=False, dry_run=False, grace_hours, batch_size, **options):
        names = check or list(CHECKS)
        found: Counter = Counter()
        fixed: Counter = Counter()
        for name in names:
            with self.progress(desc=name, unit="row") as bar:
                settings = Options(
                    batch_size=batch_size,
                    grace=datetime.timedelta(hours=grace_hours),
                    fix=fix,
                    dry_run=dry_run,
                    progress=bar.update,
                )
                for problem in CHECKS[name](settings):
                    self.report(str(problem))
                    (fixed if problem.fixed else found)[name] += 1
            self.say(
                f"{name}: {found[name]:,} problem(s)" + (f", {fixed[name]:,} fixed" if fixed[name] else ""), level=2
            )
        rows = [(name, f"{found[name]:,}" + (f" ({fixed[name]:,} fixed)" if fixed[name] else "")) for name in names]
        self.summary("verify_artifacts: problems per check", rows)
        total = sum(found.values())
        if total:
            self.fail(f"{total:,} problem(s) found (listed above)")
        self.say("all invariants hold")
