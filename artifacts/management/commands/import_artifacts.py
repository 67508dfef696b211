"""import_artifacts FILE: JSON Lines of the seed's artifacts table into the store (SPEC §9).

    python manage.py import_artifacts artifacts.jsonl [--create-missing] [--dry-run] [--batch-size N]
    python manage.py import_artifacts - < artifacts.jsonl

Keeps ids, versions, parents, request ids and times; each refused line is reported as
``line N: reason`` and the rest imported; a line already imported is skipped, so a rerun
(after an interruption, say) finishes the job. Exit 0 when every line was imported or
skipped, 1 when some were refused, 2 for a usage error. The rules are in
``artifacts/importing.py``.
"""

from __future__ import annotations

import os
import sys

from artifacts.importing import Importer
from artifacts_project.commands import BatchCommand


class Command(BatchCommand):
    help = "Import artifacts from JSON Lines (one row of the artifacts table per line), keeping ids and lineage."
    dry_run_help = "check every line against the store and report, import nothing"
    # Tests hand the command a stream as standard input, as createsuperuser's tests do.
    stealth_options = ("stdin",)

    def add_command_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", help="a JSON Lines file, or - for standard input")
        parser.add_argument(
            "--create-missing",
            action="store_true",
            help="create the stories and scenes lines name that do not exist (with the given ids)",
        )

    def handle(self, *args, file, create_missing=False, dry_run=False, batch_size, **options):
        if file == "-":
            stdin = options.get("stdin") or sys.stdin
            stream, total = getattr(stdin, "buffer", stdin), None
        else:
            try:
                stream, total = open(file, "rb"), os.path.getsize(file)
            except OSError as exc:
                self.usage_error(f"cannot read {file}: {exc.strerror or exc}")
        importer = Importer(create_missing=create_missing, dry_run=dry_run)
        totals = {"lines": 0, "imported": 0, "skipped": 0, "refused": 0, "stories": 0, "scenes": 0}
        try:
            with self.progress(total=total, unit="B", desc="import", unit_scale=True) as bar:
                for batch in importer.import_stream(stream, batch_size=batch_size):
                    for number, reason in batch.refused:
                        self.report(f"line {number}: {reason}")
                    totals["lines"] += batch.lines
                    totals["imported"] += batch.imported
                    totals["skipped"] += batch.skipped
                    totals["refused"] += len(batch.refused)
                    totals["stories"] += batch.stories_created
                    totals["scenes"] += batch.scenes_created
                    bar.update(batch.bytes)
                    bar.set_postfix(imported=totals["imported"], refused=totals["refused"], refresh=False)
        finally:
            if file != "-":
                stream.close()
        would = "would be " if dry_run else ""
        self.summary(
            "import_artifacts (dry run: nothing written)" if dry_run else "import_artifacts",
            [
                ("lines read", totals["lines"]),
                (f"{would}imported", totals["imported"]),
                ("skipped (already imported)", totals["skipped"]),
                ("refused", totals["refused"]),
                (f"stories {would}created", totals["stories"]),
                (f"scenes {would}created", totals["scenes"]),
            ],
        )
        if totals["refused"]:
            self.fail(f"{totals['refused']:,} line(s) refused (listed above with their reasons); the others were kept")
