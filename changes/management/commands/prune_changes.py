"""Remove the events the change feed no longer keeps (SPEC §14, §9's rules):

    python manage.py prune_changes            # dry run: how many events would go
    python manage.py prune_changes --yes      # delete them, in batches

Events older than ``CHANGES_RETENTION_DAYS`` (default 30) go, with their webhook deliveries;
a cursor older than that is answered 410 ``cursor_expired`` anyway. One transaction per
batch: interrupted, a rerun finishes the job; run twice, the second removes nothing.
"""

from __future__ import annotations

from changes import services
from changes.models import Event
from kernel.commands import BatchCommand


class Command(BatchCommand):
    help = "Delete change-feed events past CHANGES_RETENTION_DAYS (dry run unless --yes)."
    dry_run_help = "count what would be deleted (the default without --yes)"

    def add_command_arguments(self, parser):
        parser.add_argument("--yes", action="store_true", help="delete for real (without it, a dry run)")

    def handle(self, *args, yes=False, dry_run=False, batch_size, **options):
        if yes and dry_run:
            self.usage_error("--yes deletes and --dry-run does not: give one of them")
        cutoff = services.retention_cutoff()
        expired = Event.objects.filter(created_at__lt=cutoff).count()
        if not yes:
            self.summary(
                "prune_changes (dry run: nothing changed; --yes deletes)",
                [("older than", cutoff.isoformat()), ("events to delete", expired)],
            )
            return
        deleted = 0
        with self.progress(total=expired, unit="event", desc="prune") as bar:
            while True:
                count = services.events_prune_batch(cutoff=cutoff, batch_size=batch_size)
                if not count:
                    break
                deleted += count
                bar.update(count)
        self.summary("prune_changes", [("older than", cutoff.isoformat()), ("events deleted", deleted)])
