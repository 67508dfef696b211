"""backfill_relations: derived_from relations from what each run step consumed and produced.

    python manage.py backfill_relations [--dry-run] [--batch-size N]

For every step (or run and stage, for links without a step): each artifact it produced
derived_from each artifact it consumed. Existing relations are skipped, so a second run
writes nothing; one that would close a cycle is skipped and reported. One transaction per
batch of runs. Exit 0, or 1 when some relation was refused as a cycle. The rules are in
``operations/backfill.py``.
"""

from __future__ import annotations

import itertools

from kernel.commands import BatchCommand
from operations.backfill import backfill_runs
from runs.models import Run


class Command(BatchCommand):
    help = "Create the derived_from relations implied by runs' consumed and produced links."
    dry_run_help = "report what would be created (each batch is checked, then rolled back)"
    default_batch_size = 100

    def handle(self, *args, dry_run=False, batch_size, **options):
        ids = Run.objects.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=batch_size)
        runs = created = existing = reused = 0
        cycles = []
        with self.progress(total=Run.objects.count(), unit="run", desc="backfill_relations") as bar:
            while batch := list(itertools.islice(ids, batch_size)):
                result = backfill_runs(run_ids=batch, dry_run=dry_run)
                runs += result.runs
                created += len(result.created)
                existing += result.existing
                reused += result.reused
                for pair in result.created:
                    self.say(f"{'would create' if dry_run else 'created'}: {pair}", level=2)
                for pair in result.cycles:
                    self.report(f"cycle: {pair} would close a derived_from cycle; skipped")
                cycles.extend(result.cycles)
                bar.update(len(batch))
        would = "would be " if dry_run else ""
        self.summary(
            "backfill_relations (dry run: nothing written)" if dry_run else "backfill_relations",
            [
                ("runs read", runs),
                (f"relations {would}created", created),
                ("relations that exist", existing),
                ("reused outputs (made by another step)", reused),
                ("refused: would close a cycle", len(cycles)),
            ],
        )
        if cycles:
            self.fail(f"{len(cycles):,} relation(s) would close a cycle and were not written (listed above)")
