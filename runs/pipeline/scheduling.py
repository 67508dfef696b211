"""Pipeline work on Celery workers (SPEC §10 "Workers"): one task per node execution,
chained by the nodes' dependencies.

With ``CELERY_BROKER_URL`` set, starting a scene creates its run (pending) and a pending
step for each node that waits for nothing; a task is sent for each. A task runs its node
with the engine (``engine.run_node``: no transaction or lock while the generator runs),
then, under the run's row lock, gives a pending step to every node whose inputs are now
all done and sends a task for it. So the scenes of a story run in parallel across workers,
and so do the independent nodes of one scene (scene_intent, visual_plan,
dialogue_suggestions); the run is running while any step is, then succeeded or failed.

The database, not the broker, knows what is done. Delivery is at least once:
- a task delivered again finds its node's step: done (it schedules what follows and
  stops), pending (it begins it: of two deliveries at once, one does), running (its worker
  was lost: that attempt is marked failed and a new attempt begins), or failed (a retry);
- the node then decides by fingerprint, so what an earlier attempt committed is reused,
  never made twice; and its record is one transaction under the stream's lock.
A generator that raises is tried again with backoff, each attempt its own step, up to
``PIPELINE_TASK_ATTEMPTS``; then the run fails, with everything made so far kept, and
``run_pipeline --resume RUN_ID`` finishes it.

Without a broker, ``start`` runs the work in this process, as ``run_pipeline`` does.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from artifacts_project import locks
from artifacts_project.celery import app
from artifacts_project.errors import BrokerUnavailable, InvalidTransition
from artifacts_project.transactions import atomic_write
from runs import services as run_services
from runs.models import AgentStep, Run, RunStatus, StepStatus

from . import engine
from .nodes import BY_NAME, selected

logger = logging.getLogger(__name__)

TASK = "runs.run_node"
DONE = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
FINISHED_RUN = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def queued() -> bool:
    return bool(settings.CELERY_BROKER_URL)


def start(scene_ids, *, force: bool = False, only: list[str] | None = None, actor=None) -> list[Run]:
    """Run the pipeline on these scenes: on the workers (runs come back pending) or, without
    a broker, here and now (runs come back finished)."""
    if not queued():
        return [engine.run_scene(scene_id, force=force, only=only, actor=actor).run for scene_id in scene_ids]
    runs = []
    for scene_id in scene_ids:
        run, ready = _enqueue(scene_id, force=force, only=only, actor=actor)
        send(run.pk, ready)
        runs.append(run)
    return runs


@atomic_write
def _enqueue(scene_id, *, force: bool, only, actor) -> tuple[Run, list[str]]:
    scene = engine.load_scene(scene_id)
    nodes = selected(only)
    run = run_services.run_create(
        story_id=scene.story_id,
        scene_id=scene.pk,
        workflow=engine.WORKFLOW,
        params={"force": force, "only": [n.name for n in nodes] if only else []},
        actor=actor,
    )
    return run, schedule(run.pk)


def schedule(run_id) -> list[str]:
    """Under the run's lock: a pending step for each node whose inputs (among the run's
    nodes) are all done and which has no step yet; their names, to send. A run whose nodes
    are all done has succeeded."""
    with transaction.atomic():
        run = locks.lock_run(run_id)
        if run.status in FINISHED_RUN:
            return []
        nodes = selected((run.params or {}).get("only") or None)
        names = {n.name for n in nodes}
        status = dict(AgentStep.objects.filter(run=run).order_by("sequence").values_list("node", "status"))
        done = {name for name, value in status.items() if value in DONE}
        if done >= names:
            run_services.run_set_status(run_id=run.pk, status=RunStatus.SUCCEEDED)
            return []
        ready = [
            node.name
            for node in nodes
            if node.name not in status and all(t in done for t in node.consumes if t in names)
        ]
        for name in ready:
            run_services.step_pending(run_id=run.pk, node=name, agent=BY_NAME[name].generator_path[:100])
        return ready


def send(run_id, node_names, *, countdown: float | None = None) -> None:
    """A task per node, through the broker named in the settings (read now, so a test or a
    deployment can point it elsewhere without reloading the Celery app)."""
    if not node_names:
        return
    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            for name in node_names:
                app.send_task(TASK, args=[str(run_id), name], connection=connection, countdown=countdown)
    except Exception as exc:  # kombu's errors for a broker that cannot be reached
        logger.error("could not send pipeline tasks of run %s: %s", run_id, exc)
        run_services.run_set_status(run_id=run_id, status=RunStatus.FAILED, error=f"broker unavailable: {exc}")
        raise BrokerUnavailable(
            f"the pipeline's broker cannot be reached ({type(exc).__name__}); run {run_id} failed"
        ) from exc


def execute(run_id, node_name: str) -> float | None:
    """One delivery of one node's task. Returns the seconds to wait before trying the node
    again, or None when nothing more is to be done for this delivery."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status in FINISHED_RUN:
        return None
    if run.status == RunStatus.PENDING:
        run = run_services.run_set_status(run_id=run.pk, status=RunStatus.RUNNING)
    node = BY_NAME[node_name]
    step = AgentStep.objects.filter(run=run, node=node_name).order_by("-sequence").first()
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
        attempt = (step.attempt + 1) if step is not None else 1
        step = run_services.step_pending(
            run_id=run.pk, node=node_name, agent=node.generator_path[:100], attempt=attempt
        )

    def begin(summary, agent):
        try:
            return run_services.step_begin(step_id=step.pk, input_summary=summary, agent=agent)
        except InvalidTransition:
            return None  # another delivery began it

    outcome = engine.run_node(
        engine.load_scene(run.scene_id), run, node, force=bool(run.params.get("force")), begin=begin
    )
    if outcome.result == "superseded":
        return None
    if outcome.result == "failed":
        if outcome.retryable and step.attempt < settings.PIPELINE_TASK_ATTEMPTS:
            return settings.PIPELINE_RETRY_BACKOFF * 2 ** (step.attempt - 1)
        run_services.run_set_status(
            run_id=run.pk, status=RunStatus.FAILED, error=f"{node_name}: {outcome.error} (attempt {step.attempt})"
        )
        return None
    send(run.pk, schedule(run.pk))
    return None
