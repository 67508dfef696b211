"""Deliver the webhook deliveries that are due (SPEC §14), e.g. from cron every minute:

    python manage.py deliver_webhooks

Safe beside the serving process and the workers: each delivery is claimed by one
deliverer (a conditional UPDATE), so none is sent twice by two of them at once.
"""

from __future__ import annotations

from changes import delivery
from kernel.commands import BatchCommand


class Command(BatchCommand):
    help = "Deliver the webhook deliveries that are due now."
    default_batch_size = 100
    dry_run_help = "deliver nothing (there is nothing to preview: a delivery is an HTTP request)"

    def handle(self, *args, dry_run=False, batch_size, **options):
        if dry_run:
            self.summary("deliver_webhooks (dry run: nothing sent)", [])
            return
        outcomes = delivery.deliver_due(limit=batch_size)
        self.summary(
            "deliver_webhooks",
            [(status, outcomes.get(status, 0)) for status in ("delivered", "pending", "failed")],
        )
        if outcomes.get("failed"):
            self.fail(f"{outcomes['failed']} deliveries failed for good (the admin lists them, with redeliver)")
