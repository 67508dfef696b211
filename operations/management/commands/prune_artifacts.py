"""prune_artifacts --older-than DAYS: reclaim storage without breaking lineage (SPEC §9).

    python manage.py prune_artifacts --older-than 30            # dry run: what would go, bytes freed
    python manage.py prune_artifacts --older-than 30 --yes      # prune
        [--grace-hours 1] [--batch-size 1000]

A dry run by default. Kept: what is not intermediate, the latest of its stream, linked to a
story, younger than DAYS, and everything such an artifact was made from (relations and
runs' consumed links). Every other artifact becomes a tombstone: payload and content
dropped, row and version number kept, ``pruned_at`` set; its file goes when no other
artifact uses it. Then stored files no artifact uses are removed once older than the grace
period. One transaction per batch, each holding its row locks for milliseconds; safe to
interrupt and run again. Exit 0, 1 when another prune is running, 2 for a usage error.
The rules are in ``operations/retention.py``.
"""

from __future__ import annotations

import datetime

from kernel import locks
from kernel.commands import BatchCommand, human_bytes, time_back
from operations import retention

LISTED = 20  # targets listed at verbosity 1; -v 2 lists them all


class Command(BatchCommand):
    help = "Prune old intermediate artifacts to tombstones (dry run unless --yes), then sweep unreferenced files."
    dry_run_help = "list what would be pruned and the bytes freed (the default without --yes)"

    def add_command_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=time_back("days"),
            required=True,
            metavar="DAYS",
            help="prune only artifacts created more than DAYS days ago",
        )
        parser.add_argument("--yes", action="store_true", help="prune for real (without it, a dry run)")
        parser.add_argument(
            "--grace-hours",
            type=time_back("hours"),
            default=retention.DEFAULT_GRACE.total_seconds() / 3600,
            metavar="H",
            help="leave unreferenced files younger than this alone: a create may be about to use them (default 1)",
        )

    def handle(self, *args, older_than, yes=False, dry_run=False, grace_hours, batch_size, **options):
        if yes and dry_run:
            self.usage_error("--yes prunes and --dry-run does not: give one of them")
        apply = yes
        with locks.lock_prune_run() as acquired:
            if not acquired:
                self.fail("another prune_artifacts is running; let it finish (it holds the prune lock)")
            with retention.Retention(older_than=datetime.timedelta(days=older_than)) as run:
                plan = run.plan()
                self._show_plan(run, plan, apply=apply, batch_size=batch_size)
                pruned = kept = files = freed = batches = 0
                longest = 0.0
                if apply and plan.targets:
                    with self.progress(total=plan.targets, unit="artifact", desc="prune") as bar:
                        for outcome in run.prune(batch_size=batch_size):
                            batches += 1
                            pruned += len(outcome.pruned)
                            kept += len(outcome.kept)
                            files += outcome.files_removed
                            freed += outcome.bytes_freed
                            longest = max(longest, outcome.lock_seconds)
                            for pk in outcome.pruned:
                                self.say(f"pruned {pk}", level=2)
                            for pk in outcome.kept:
                                self.say(f"kept after all (changed since planning): {pk}")
                            bar.update(len(outcome.pruned) + len(outcome.kept))
            swept = self._sweep(apply=apply, grace=datetime.timedelta(hours=grace_hours), batch_size=batch_size)

        sweep_bytes = sum(f.size for f in swept["files"])
        if apply:
            self.summary(
                "prune_artifacts",
                [
                    ("cutoff", plan.cutoff.isoformat(timespec="seconds")),
                    ("pruned (now tombstones)", pruned),
                    ("kept after all (changed since planning)", kept),
                    ("kept by lineage (made from kept ones)", plan.kept_by_closure),
                    ("content files removed", files),
                    ("orphan and leftover files removed", len(swept["files"])),
                    ("unreferenced files in their grace period", swept["young"]),
                    ("bytes freed", human_bytes(freed + sweep_bytes)),
                    ("batches", batches),
                    ("longest batch transaction (row locks held)", f"{longest * 1000:.1f} ms"),
                ],
            )
        else:
            self.summary(
                "prune_artifacts (dry run: nothing changed; --yes prunes)",
                [
                    ("cutoff", plan.cutoff.isoformat(timespec="seconds")),
                    ("would prune", plan.targets),
                    ("kept by lineage (made from kept ones)", plan.kept_by_closure),
                    ("content files it would remove", plan.files),
                    ("orphan and leftover files it would remove", len(swept["files"])),
                    ("unreferenced files in their grace period", swept["young"]),
                    ("bytes it would free", human_bytes(plan.bytes + sweep_bytes)),
                ],
            )

    def _show_plan(self, run, plan, *, apply: bool, batch_size: int) -> None:
        self.say(
            f"planned in {plan.seconds:.1f} s: {plan.targets:,} artifact(s) to prune, "
            f"{plan.files:,} file(s), {human_bytes(plan.bytes)}"
        )
        for type_name, count in sorted(plan.by_type.items()):
            self.say(f"  {type_name:<24} {count:,}")
        if apply or not plan.targets:
            return
        listed = 0
        limit = None if self.verbosity >= 2 else LISTED
        for rows in run.target_rows(batch_size=batch_size):
            for pk, type_name, version, scene_id, story_id in rows:
                if limit is not None and listed >= limit:
                    self.say(f"  ... and {plan.targets - listed:,} more (-v 2 lists them all)")
                    return
                where = f"scene {scene_id}" if scene_id else f"story {story_id}"
                self.say(f"would prune {pk} ({type_name} v{version}, {where})")
                listed += 1

    def _sweep(self, *, apply: bool, grace: datetime.timedelta, batch_size: int) -> dict:
        found = {"files": [], "young": 0}
        with self.progress(unit="file", desc="sweep") as bar:
            for outcome in retention.sweep(grace=grace, dry_run=not apply, batch_size=batch_size):
                found["files"].extend(outcome.files)
                found["young"] += outcome.young
                for swept in outcome.files:
                    what = "removed" if swept.removed else "would remove"
                    hours = swept.age.total_seconds() / 3600
                    self.say(
                        f"{what} {swept.name} ({swept.reason}, {swept.size:,} bytes, {hours:,.1f} h old)",
                        level=1 if swept.reason == "orphan" else 2,
                    )
                for name in outcome.unknown:
                    self.report(f"not a content file, left alone: {name}")
                bar.update(outcome.seen)
        return found
