"""sync_story_links: recompute the stories' derived references from their primary links.

    python manage.py sync_story_links [--dry-run] [--batch-size N]

A story's ``cover_artifact``, ``canonical_audio`` and ``canonical_video`` always equal the
primary link of roles cover, final_audio and final_video (SPEC §3); only curation writes
them, so a drift means something went around it (raw SQL, a restored backup). Each drift is
reported on standard error; without ``--dry-run`` it is repaired, one transaction per batch
of stories, with an audit event. Exit 0 when no drift is left, 1 when a dry run found some.
"""

from __future__ import annotations

import itertools

from kernel.commands import BatchCommand
from stories import selectors, services
from stories.models import Story


class Command(BatchCommand):
    help = "Recompute each story's cover/audio/video references from its primary links; report each drift."
    dry_run_help = "report each drift, repair nothing (exit 1 if there is one)"

    def handle(self, *args, dry_run=False, batch_size, **options):
        # Server-side on PostgreSQL: the ids stream in chunks, never all in memory.
        ids = Story.objects.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=batch_size)
        checked = found = repaired = 0
        with self.progress(total=Story.objects.count(), unit="story", desc="sync_story_links") as bar:
            while batch := list(itertools.islice(ids, batch_size)):
                checked += len(batch)
                # A read first, without locks; only stories that drift are locked and repaired.
                drifts = selectors.story_reference_drifts(batch)
                if drifts and not dry_run:
                    drifts = services.story_sync_references(story_ids={d.story_id for d in drifts})
                    repaired += len(drifts)
                found += len(drifts)
                for drift in drifts:
                    self.report(f"{'drift' if dry_run else 'repaired'}: {drift}")
                bar.update(len(batch))
        self.summary(
            "sync_story_links (dry run: nothing written)" if dry_run else "sync_story_links",
            [("stories checked", checked), ("drifts found", found), ("drifts repaired", repaired)],
        )
        if dry_run and found:
            self.fail(f"{found:,} reference(s) drift from the primary links; run without --dry-run to repair them")
