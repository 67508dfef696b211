"""The one driver of pipeline runs (SPEC §10): what runs next, retries, resume, and who
holds a run, the same in-process and on the Celery workers.

- **What runs next** is ``ready``: the nodes not yet started whose inputs (among the run's
  nodes) are done. In-process, ``drive`` runs them one at a time in stage order; on the
  workers, ``schedule`` gives each a pending step and a task, so independent nodes (and the
  scenes of a story) run in parallel.
- **Attempts**: each attempt of a node is its own step, numbered from the node's previous
  step in the run (a resumed run carries on counting). A generator that raises is tried
  again after ``retry_delay`` (backoff doubling from PIPELINE_RETRY_BACKOFF) until
  PIPELINE_TASK_ATTEMPTS attempts have failed; then the run fails, keeping everything made.
- **Resume** (``resume``): a failed or cancelled run goes back to running; the nodes it
  finished stay done, the others run. A run whose holder died is first marked failed ("its
  process was lost"), by ``--resume``, by the next run of its scene, by the admin's run
  page; ``verify_artifacts`` reports it.
- **Holding** (``holding.RunHold``): the command holds its run; a POST without a broker
  answers 202 at once and a thread of the serving process holds and drives the runs; a
  worker holds the run while it runs one of its nodes.
- **Stopping**: the command stops between two writes on SIGINT or SIGTERM (the run is
  cancelled, its running step failed "interrupted"); a cancel through the API is seen at
  the run's next write, which then writes nothing.

The database, not the broker, knows what is done. Delivery to the workers is at least once:
a task delivered again finds its node's step done (it schedules what follows and stops),
pending (it begins it: of two deliveries at once, one does), running (its worker was lost:
that attempt fails and a new one begins), or failed (a retry); the node then decides by
fingerprint, so what an earlier attempt committed is reused, never made twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from celery import current_app as app
from django.conf import settings
from django.db import connection, transaction

from artifacts import selectors
from kernel import locks
from kernel.errors import BrokerUnavailable, InvalidInput, InvalidTransition
from kernel.lookups import get_or_not_found
from kernel.request_id import get_request_id, request_id_scope
from kernel.transactions import atomic_write
from runs import selectors as run_selectors
from runs import services as run_services
from runs.models import FINISHED_STATUSES, AgentStep, Run, RunStatus, StepStatus
from stories import selectors as story_selectors
from stories.models import Scene

from . import engine
from .engine import NEVER, WORKFLOW, Outcome, Stop
from .holding import Interrupted, RunHold, holder_label
from .nodes import BY_NAME, Node, selected

logger = logging.getLogger(__name__)

TASK = "runs.run_node"
DONE = run_selectors.DONE_STEPS
INTERRUPTED = "interrupted"


@dataclass
class SceneRun:
    scene: Scene
    run: Run
    outcomes: list[Outcome]

    @property
    def failed(self) -> bool:
        return self.run.status == RunStatus.FAILED


def queued() -> bool:
    return bool(settings.CELERY_BROKER_URL)


def ready(nodes: list[Node], *, done: set[str], started: set[str]) -> list[Node]:
    """What runs next: the nodes not started whose inputs among ``nodes`` are ``done``."""
    names = {node.name for node in nodes}
    return [
        node
        for node in nodes
        if node.name not in done and node.name not in started and all(t in done for t in node.consumes if t in names)
    ]


def retry_delay(outcome: Outcome) -> float | None:
    """Seconds before the next attempt of a node whose generator raised; None: no more."""
    if outcome.result != "failed" or not outcome.retryable or outcome.attempt >= settings.PIPELINE_TASK_ATTEMPTS:
        return None
    return settings.PIPELINE_RETRY_BACKOFF * 2 ** (outcome.attempt - 1)


def _new_run(
    scene: Scene, nodes: list[Node], *, force: bool, only, actor, holder: str, queued: bool = False, run_id=None
) -> Run:
    """A pipeline run of the scene: driven by ``holder`` (a process of ours), or queued. Pending,
    but running at once when its holder is the caller, which holds ``run_id`` already."""
    return run_services.run_create(
        story_id=scene.story_id,
        scene_id=scene.pk,
        workflow=WORKFLOW,
        params={"force": force, "only": [n.name for n in nodes] if only else []},
        actor=actor,
        queued=queued,
        holder=holder,
        run_id=run_id,
        start=run_id is not None,
    )


def _nodes_of(run: Run) -> list[Node]:
    return selected((run.params or {}).get("only") or None)


def _end(run: Run, status: str, *, error: str | None = None) -> Run:
    """End the run, unless it was ended meanwhile (cancelled through the API, found lost)."""
    try:
        return run_services.run_set_status(run_id=run.pk, status=status, error=error)
    except InvalidTransition:
        return Run.objects.get(pk=run.pk)


# -- in this process -------------------------------------------------------------------------


def reap_lost(scene_id) -> None:
    """Mark failed the runs of this scene whose holder is gone (one indexed read when none)."""
    for run_id in run_selectors.unfinished_runs(scene_id=scene_id).values_list("pk", flat=True):
        run_services.run_mark_lost(run_id=run_id)


def run_scene(
    scene_id,
    *,
    force: bool = False,
    only: list[str] | None = None,
    actor=None,
    on_node: Callable[[Outcome], None] | None = None,
    stop: Stop = NEVER,
) -> SceneRun:
    """Run the scene here and now, in a run of its own that this process holds."""
    scene = story_selectors.scene_for_pipeline(scene_id)
    nodes = selected(only)
    reap_lost(scene.pk)
    run_id = uuid.uuid4()
    with RunHold([run_id]):  # held from before it exists: running from its first commit
        run = _new_run(
            scene, nodes, force=force, only=only, actor=actor, holder=holder_label("run_pipeline"), run_id=run_id
        )
        return drive(scene, run, nodes, force=force, on_node=on_node, stop=stop, resumed=False)


def resume(
    run_id,
    *,
    scene_id=None,
    story_id=None,
    on_node: Callable[[Outcome], None] | None = None,
    stop: Stop = NEVER,
) -> SceneRun:
    """Continue a failed or cancelled run (or one whose process was lost) here: the nodes it
    finished stay done, the rest run. ``scene_id``/``story_id``: what the caller says the run
    belongs to; a run of another scene or story is refused (InvalidInput)."""
    run = get_or_not_found(Run, run_id, what="run")
    if run.workflow != WORKFLOW or run.scene_id is None:
        raise InvalidInput(f"run {run.pk} is not a {WORKFLOW} run", field="run_id")
    if scene_id is not None and str(run.scene_id) != str(scene_id):
        raise InvalidInput(f"run {run.pk} belongs to scene {run.scene_id}, not to scene {scene_id}", field="run_id")
    if story_id is not None and str(run.story_id) != str(story_id):
        raise InvalidInput(f"run {run.pk} belongs to story {run.story_id}, not to story {story_id}", field="run_id")
    if run.status in run_selectors.UNFINISHED and run_services.run_mark_lost(run_id=run.pk):
        run.refresh_from_db()
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        held = " by a process that is still alive" if run.status in run_selectors.UNFINISHED else ""
        raise InvalidTransition(f"run {run.pk} is {run.status}{held}: only a failed or cancelled run can be resumed")
    with RunHold([run.pk]):
        run = run_services.run_begin(run_id=run.pk, holder=holder_label("run_pipeline --resume"))
        nodes = _nodes_of(run)
        return drive(
            story_selectors.scene_for_pipeline(run.scene_id),
            run,
            nodes,
            force=bool((run.params or {}).get("force")),
            on_node=on_node,
            stop=stop,
        )


def drive(
    scene: Scene,
    run: Run,
    nodes: list[Node],
    *,
    force: bool,
    on_node: Callable[[Outcome], None] | None = None,
    stop: Stop = NEVER,
    resumed: bool = True,
) -> SceneRun:
    """Run the run's nodes in this thread, which holds the run, until it ends (``resumed``:
    it may have steps already; a run just created has none to read).

    The scene's latest versions are read once; each node is decided on them, and what a node
    makes takes its type's place there for the nodes after it. Nodes that reuse their latest
    version in a row are recorded together, in one transaction, once the next node is to make
    something (or at the end): a fully reused scene costs a read and a commit, not one of
    each per node. (A version another writer adds meanwhile is seen by the next run, as a
    decision read a moment earlier would have missed it too; the record's own checks under
    the stream's lock keep it consistent.)
    """
    on_node = on_node or (lambda outcome: None)
    last = {}
    if resumed:
        for step in run_selectors.run_steps(run.pk).only("id", "node", "status", "attempt"):
            last[step.node] = step
    done = {name for name, step in last.items() if step.status in DONE}
    outcomes = []
    for node in nodes:
        if node.name in done:
            outcomes.append(Outcome(node, "done", [f"finished earlier in this run ({last[node.name].status})"]))
            on_node(outcomes[-1])
    types = list(dict.fromkeys(t for node in nodes for t in (node.name, *node.consumes)))
    heads, reuses = None, []

    def record_reuses() -> bool:
        """The reuses gathered so far, recorded; False when the run was stopped meanwhile."""
        if not reuses:
            return True
        stop.check()
        try:
            run_services.pipeline_record_reused(
                run_id=run.pk, reuses=[engine.reuse_of(d, attempt=a) for d, a in reuses]
            )
        except run_services.RunStopped as exc:
            outcomes.extend(Outcome(d.node, "stopped", [str(exc)], attempt=a) for d, a in reuses)
            return False
        for decision, attempt in reuses:
            outcomes.append(Outcome(decision.node, "reused", decision.reasons, decision.latest, attempt=attempt))
            on_node(outcomes[-1])
        reuses.clear()
        return True

    try:
        while batch := ready(nodes, done=done, started=set()):
            node = batch[0]
            previous = last.get(node.name)
            if heads is None:
                heads = selectors.scene_heads(scene.pk, types)
            decision = engine.decide(scene, node, force=force, heads=heads)
            if decision.action == engine.REUSE and not (previous and previous.status == StepStatus.PENDING):
                reuses.append((decision, previous.attempt + 1 if previous is not None else 1))
                done.add(node.name)
                continue
            if not record_reuses():
                return SceneRun(scene, Run.objects.get(pk=run.pk), outcomes)
            outcome = _attempts(scene, run, node, force=force, last=previous, stop=stop, decision=decision)
            outcomes.append(outcome)
            on_node(outcome)
            if outcome.result in ("made", "reused"):
                heads[node.name] = outcome.artifact  # the new latest of its type, for the nodes that read it
                done.add(node.name)
                continue
            if outcome.result == "failed":
                return SceneRun(scene, _end(run, RunStatus.FAILED, error=f"{node.name}: {outcome.error}"), outcomes)
            return SceneRun(scene, Run.objects.get(pk=run.pk), outcomes)  # ended meanwhile: cancelled, lost
        if not record_reuses():
            return SceneRun(scene, Run.objects.get(pk=run.pk), outcomes)
        return SceneRun(scene, _end(run, RunStatus.SUCCEEDED), outcomes)
    except Interrupted as exc:
        exc.run_id = run.pk
        try:
            run_services.run_set_status(
                run_id=run.pk, status=RunStatus.CANCELLED, error=str(exc), step_error=INTERRUPTED
            )
        except InvalidTransition:  # ended meanwhile
            pass
        raise


def _attempts(
    scene: Scene, run: Run, node: Node, *, force: bool, last: AgentStep | None, stop: Stop, decision=None
) -> Outcome:
    """Attempts of one node until one does not call for another (``retry_delay``); the first
    on ``decision`` when the caller made it, the others decide again."""
    while True:
        if last is not None and last.status == StepStatus.PENDING:  # handed to the workers, never begun
            attempt, step_id = last.attempt, last.pk
        else:
            attempt, step_id = (last.attempt + 1 if last is not None else 1), None
        outcome = engine.attempt_node(
            scene, run.pk, node, force=force, attempt=attempt, step_id=step_id, stop=stop, decision=decision
        )
        decision = None
        delay = retry_delay(outcome)
        if delay is None:
            return outcome
        logger.warning(
            "pipeline node %s, attempt %d failed (%s); next attempt in %.1f s", node.name, attempt, outcome.error, delay
        )
        last = AgentStep(node=node.name, status=StepStatus.FAILED, attempt=attempt)
        stop.sleep(delay)


# -- started by a request ------------------------------------------------------------------


def start(scene_ids, *, force: bool = False, only: list[str] | None = None, actor=None) -> list[Run]:
    """Run the pipeline on these scenes and return their runs, pending, at once: on the
    workers with a broker; otherwise in a thread of this process, which takes them up once
    the caller's transaction commits (no request waits on generators)."""
    if queued():
        runs = []
        for scene_id in scene_ids:
            run, ready_names = _create(scene_id, force=force, only=only, actor=actor, on_workers=True)
            send(run.pk, ready_names)
            runs.append(run)
        return runs
    for scene_id in scene_ids:
        reap_lost(scene_id)
    runs = [_create(scene_id, force=force, only=only, actor=actor, on_workers=False)[0] for scene_id in scene_ids]
    run_ids, request_id = [run.pk for run in runs], get_request_id()
    if run_ids:  # a story without scenes has nothing to run
        transaction.on_commit(lambda: _in_background(run_ids, request_id))
    return runs


@atomic_write
def _create(scene_id, *, force: bool, only, actor, on_workers: bool) -> tuple[Run, list[str]]:
    scene = story_selectors.scene_for_pipeline(scene_id)
    nodes = selected(only)
    holder = "" if on_workers else holder_label("the serving process")
    run = _new_run(scene, nodes, force=force, only=only, actor=actor, holder=holder, queued=on_workers)
    return run, schedule(run.pk) if on_workers else []


_background: set[threading.Thread] = set()
_background_lock = threading.Lock()


def _in_background(run_ids, request_id: str) -> None:
    thread = threading.Thread(
        target=_drive_pending, args=(run_ids, request_id), name=f"pipeline runs {run_ids[0]}", daemon=True
    )
    with _background_lock:
        _background.add(thread)
    thread.start()


def _drive_pending(run_ids, request_id: str) -> None:
    """A thread of the serving process: hold the runs, then drive them one after the other."""
    try:
        with request_id_scope(request_id), RunHold(run_ids):
            for run_id in run_ids:
                try:
                    run = run_services.run_begin(run_id=run_id, holder=holder_label("the serving process"))
                except InvalidTransition:
                    continue  # cancelled, or found lost, before its turn
                except Exception:  # the database is down: the run stays pending, and is found lost
                    logger.exception("pipeline run %s could not start in the serving process", run_id)
                    continue
                try:
                    drive(
                        story_selectors.scene_for_pipeline(run.scene_id),
                        run,
                        _nodes_of(run),
                        force=bool(run.params.get("force")),
                    )
                except Exception:
                    logger.exception("pipeline run %s failed in the serving process", run_id)
                    try:
                        _end(run, RunStatus.FAILED, error="the serving process could not drive it; resume it")
                    except Exception:  # still down: once this thread is gone, the run is found lost
                        logger.exception("pipeline run %s could not be marked failed", run_id)
    finally:
        connection.close()
        with _background_lock:
            _background.discard(threading.current_thread())


def wait_for_background(timeout: float | None = None) -> bool:
    """Wait until the runs started in this process's background are driven (tests, and a
    graceful shutdown); False when some are still running after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with _background_lock:
            threads = list(_background)
        if not threads:
            return True
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        threads[0].join(remaining)
        if deadline is not None and time.monotonic() >= deadline and threads[0].is_alive():
            return False


# -- on the workers -----------------------------------------------------------------------------


@atomic_write(nestable=True)
def schedule(run_id) -> list[str]:
    """Under the run's lock: a pending step for each ``ready`` node, their names, to send. A
    run whose nodes are all done has succeeded."""
    run = locks.lock_run(run_id)
    if run.status in FINISHED_STATUSES:
        return []
    nodes = _nodes_of(run)
    status = dict(run_selectors.run_steps(run.pk).values_list("node", "status"))
    done = {name for name, value in status.items() if value in DONE}
    if done >= {node.name for node in nodes}:
        run_services.run_set_status(run_id=run.pk, status=RunStatus.SUCCEEDED)
        return []
    batch = ready(nodes, done=done, started=set(status))
    for node in batch:
        run_services.step_pending(run_id=run.pk, node=node.name, agent=node.generator_path[:100])
    return [node.name for node in batch]


def send(run_id, node_names, *, countdown: float | None = None) -> None:
    """A task per node, through the broker named in the settings (read now, so a test or a
    deployment can point it elsewhere without reloading the Celery app)."""
    if not node_names:
        return
    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as broker:
            for name in node_names:
                app.send_task(TASK, args=[str(run_id), name], connection=broker, countdown=countdown)
    except Exception as exc:  # kombu's errors for a broker that cannot be reached
        logger.error("could not send pipeline tasks of run %s: %s", run_id, exc)
        run_services.run_set_status(run_id=run_id, status=RunStatus.FAILED, error=f"broker unavailable: {exc}")
        raise BrokerUnavailable(
            f"the pipeline's broker cannot be reached ({type(exc).__name__}); run {run_id} failed"
        ) from exc


def execute(run_id, node_name: str) -> float | None:
    """One delivery of one node's task, holding the run while it runs. Returns the seconds to
    wait before the node's next attempt, or None when nothing more is to be done for this
    delivery."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status in FINISHED_STATUSES:
        return None
    node = BY_NAME[node_name]
    with RunHold([run.pk]):
        if run.status == RunStatus.PENDING:
            try:
                run = run_services.run_begin(run_id=run.pk, holder=holder_label("the pipeline workers"))
            except InvalidTransition:  # another task began it, or it ended meanwhile
                run = Run.objects.get(pk=run.pk)
                if run.status != RunStatus.RUNNING:
                    return None
        step = run_selectors.run_steps(run.pk).filter(node=node_name).order_by("-sequence").first()
        if step is not None and step.status in DONE:
            send(run.pk, schedule(run.pk))  # a delivery after the work was done: what follows may not be sent
            return None
        if step is not None and step.status == StepStatus.RUNNING:
            try:
                run_services.step_finish(
                    step_id=step.pk, status=StepStatus.FAILED, error="its worker was lost; the task was delivered again"
                )
            except InvalidTransition:
                pass
        if step is None or step.status != StepStatus.PENDING:
            step = run_services.step_pending(
                run_id=run.pk,
                node=node_name,
                agent=node.generator_path[:100],
                attempt=(step.attempt + 1) if step is not None else 1,
            )
        outcome = engine.attempt_node(
            story_selectors.scene_for_pipeline(run.scene_id),
            run.pk,
            node,
            force=bool(run.params.get("force")),
            attempt=step.attempt,
            step_id=step.pk,
        )
    if outcome.result in ("superseded", "stopped"):
        return None
    if outcome.result == "failed":
        delay = retry_delay(outcome)
        if delay is not None:
            return delay
        _end(run, RunStatus.FAILED, error=f"{node_name}: {outcome.error} (attempt {step.attempt})")
        return None
    send(run.pk, schedule(run.pk))
    return None
