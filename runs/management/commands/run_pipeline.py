"""run_pipeline: run a scene (or every scene of a story) through the resumable pipeline.

    python manage.py run_pipeline --scene ID | --story ID [--only TYPE ...] [--force]
                                  [--resume RUN_ID] [--explain] [--queue]

Progress per node on a terminal; a summary at the end (made and reused per type); exit 1
when a node failed (its run is failed and can be resumed), 2 for a usage error, 130 when
SIGINT or SIGTERM stopped it (between two writes: the run is cancelled, and resumable).
``--resume RUN_ID`` may stand alone or beside the ``--scene``/``--story`` its run belongs to.
``--queue`` hands the runs to the workers (CELERY_BROKER_URL), prints their ids and returns
at once; without a broker it runs them here.
"""

from __future__ import annotations

from collections import Counter

from django.core.management.base import CommandError
from tqdm import tqdm

from kernel.commands import EXIT_INTERRUPTED, EXIT_USAGE, RequestIdCommand
from kernel.errors import ArtifactError, ServerFault
from runs.pipeline import driver, engine
from runs.pipeline.holding import Interrupted, SignalStop
from runs.pipeline.nodes import NODES, selected
from stories import selectors as story_selectors


class Command(RequestIdCommand):
    help = "Run the resumable pipeline on a scene or on every scene of a story (SPEC §10)."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--scene", help="the scene to run")
        target.add_argument("--story", help="run every scene of the story, in position order, one run each")
        parser.add_argument(
            "--resume",
            metavar="RUN_ID",
            help="continue a failed, cancelled or lost run where it stopped (alone, or beside its --scene or --story)",
        )
        parser.add_argument(
            "--only", nargs="+", metavar="TYPE", choices=[n.name for n in NODES], help="run only these nodes"
        )
        parser.add_argument("--force", action="store_true", help="remake every node but locked planning types")
        parser.add_argument(
            "--explain", action="store_true", help="write nothing; say per node reuse or remake, and why"
        )
        parser.add_argument(
            "--queue", action="store_true", help="hand the runs to the workers and return (in-process without a broker)"
        )

    def handle(
        self, *args, scene=None, story=None, resume=None, only=None, force=False, explain=False, queue=False, **options
    ):
        if not (scene or story or resume):
            raise CommandError("give --scene ID, --story ID or --resume RUN_ID", returncode=EXIT_USAGE)
        if resume and (only or force or explain or queue):
            raise CommandError(
                "--resume continues a run as it was started: no --only, --force, --explain or --queue",
                returncode=EXIT_USAGE,
            )
        if explain and queue:
            raise CommandError("--explain writes nothing: there is nothing to queue", returncode=EXIT_USAGE)
        self.verbosity = options["verbosity"]
        self.interactive = self.stdout.isatty() and self.verbosity > 0
        stop = SignalStop()
        results = []
        try:
            with stop.installed():
                if resume:
                    results.append(
                        self._run(
                            lambda on_node: driver.resume(
                                resume, scene_id=scene, story_id=story, on_node=on_node, stop=stop
                            ),
                            label=f"run {resume}",
                        )
                    )
                else:
                    scenes = [scene] if scene else story_selectors.story_scene_ids(story)
                    if explain:
                        for scene_id in scenes:
                            self._explain(scene_id, force=force, only=only)
                        return
                    if queue and driver.queued():  # without a broker the runs are done here, as without --queue
                        self._queue(scenes, force=force, only=only)
                        return
                    for scene_id in scenes:
                        results.append(
                            self._run(
                                lambda on_node, s=scene_id: driver.run_scene(
                                    s, force=force, only=only, on_node=on_node, stop=stop
                                ),
                                label=f"scene {scene_id}",
                                total=len(selected(only)),
                            )
                        )
        except Interrupted as exc:
            self._summary(results)
            raise CommandError(
                f"{exc}: run {exc.run_id} is cancelled, its step in progress failed; "
                f"continue it with --resume {exc.run_id}",
                returncode=EXIT_INTERRUPTED,
            ) from None
        except ArtifactError as exc:  # a usage error (2), or the service's own fault (1: a broker down)
            raise CommandError(
                f"{exc.code}: {exc.message}", returncode=1 if isinstance(exc, ServerFault) else EXIT_USAGE
            ) from None
        self._summary(results)
        if any(result.failed for result in results):
            raise CommandError("a node failed: its run is failed; fix the cause and run with --resume RUN_ID")

    def _run(self, start, *, label: str, total: int = len(NODES)):
        bar = tqdm(total=total, desc=label, unit="node", disable=not self.interactive, file=self.stdout)

        def on_node(outcome):
            bar.update(1)
            bar.set_postfix_str(outcome.node.name)
            if self.interactive:
                bar.write(
                    f"  {outcome.node.name:<22} {outcome.result:<7} {outcome.error or '; '.join(outcome.reasons)}"
                )

        try:
            return start(on_node)
        finally:
            bar.close()

    def _queue(self, scenes, *, force: bool, only):
        runs = driver.start(scenes, force=force, only=only)
        for run in runs:
            self.stdout.write(f"run {run.pk} {run.status} (scene {run.scene_id})")
        if any(run.status == "failed" for run in runs):
            raise CommandError("a node failed: its run is failed; fix the cause and run with --resume RUN_ID")

    def _explain(self, scene_id, *, force: bool, only):
        decisions = engine.explain(scene_id, force=force, only=only)
        scene = story_selectors.scene_for_pipeline(scene_id)
        self.stdout.write(f"scene #{scene.position} {scene.title!r} ({scene.pk}): nothing is written")
        for decision in decisions:
            action = {"make": "remake", "reuse": "reuse", "refuse": "refuse"}[decision.action]
            self.stdout.write(f"  {decision.node.name:<22} {action:<7} {'; '.join(decision.reasons)}")

    def _summary(self, results):
        for result in results:
            made = Counter(o.node.name for o in result.outcomes if o.result == "made")
            reused = Counter(o.node.name for o in result.outcomes if o.result in ("reused", "done"))
            self.stdout.write(
                f"scene #{result.scene.position} {result.scene.title!r}: run {result.run.pk} {result.run.status}; "
                f"made {sum(made.values())} ({', '.join(made) or 'none'}), "
                f"reused {sum(reused.values())} ({', '.join(reused) or 'none'})"
            )
            for outcome in result.outcomes:
                if outcome.result == "failed":
                    self.stderr.write(f"  {outcome.node.name} failed: {outcome.error}")
