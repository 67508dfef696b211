"""import_artifacts FILE: JSON Lines of the seed's artifacts table into the store (SPEC §9).

    python manage.py import_artifacts artifacts.jsonl [--create-missing [--story ID]] [--dry-run] [--batch-size N]
    python manage.py import_artifacts - < artifacts.jsonl

Keeps ids, versions, parents, request ids and times; each refused line is reported as
``line N: reason`` and the rest imported; a line already imported is skipped, so a rerun
(after an interruption, say) finishes the job. Exit 0 when every line was imported or
skipped, 1 when some were refused, 2 for a usage error. With ``--create-missing``, the
scenes lines name that do not exist are made (in the line's story, else the ``--story``,
else one story made for this import), and the summary names every story and scene made.
The rules are in ``operations/importing.py``.
"""

from __future__ import annotations

import os
import sys
import uuid

from kernel.commands import BatchCommand
from operations.importing import Importer


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
        parser.add_argument(
            "--story",
            metavar="ID",
            help="with --create-missing: the story (made if missing) of the scenes made for lines that name no"
            " story_id; without it, one story is made for this import, titled after the file and the date",
        )

    def handle(self, *args, file, create_missing=False, story=None, dry_run=False, batch_size, **options):
        if story is not None:
            if not create_missing:
                self.usage_error("--story names where --create-missing makes scenes: give --create-missing too")
            try:
                story = uuid.UUID(str(story))
            except ValueError:
                self.usage_error(f"--story {story!r} is not a story id (a UUID)")
        if file == "-":
            stdin = options.get("stdin") or sys.stdin
            stream, total = getattr(stdin, "buffer", stdin), None
        else:
            try:
                stream, total = open(file, "rb"), os.path.getsize(file)
            except OSError as exc:
                self.usage_error(f"cannot read {file}: {exc.strerror or exc}")
        importer = Importer(create_missing=create_missing, dry_run=dry_run, story_id=story, source=file)
        totals = {"lines": 0, "imported": 0, "skipped": 0, "refused": 0}
        stories, scenes = [], []
        try:
            with self.progress(total=total, unit="B", desc="import", unit_scale=True) as bar:
                for batch in importer.import_stream(stream, batch_size=batch_size):
                    for number, reason in batch.refused:
                        self.report(f"line {number}: {reason}")
                    totals["lines"] += batch.lines
                    totals["imported"] += batch.imported
                    totals["skipped"] += batch.skipped
                    totals["refused"] += len(batch.refused)
                    stories.extend(batch.stories_created)
                    scenes.extend(batch.scenes_created)
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
                (f"stories {would}created", len(stories)),
                (f"scenes {would}created", len(scenes)),
            ],
        )
        made = "would create" if dry_run else "created"
        for story_id, title in stories:
            self.say(f"{made} story {story_id} {title!r}")
        for scene_id, story_id in scenes:
            self.say(f"{made} scene {scene_id} in story {story_id}")
        if totals["refused"]:
            self.fail(f"{totals['refused']:,} line(s) refused (listed above with their reasons); the others were kept")
