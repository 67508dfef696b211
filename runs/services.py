"""Runs and agent steps: what each pipeline stage consumed and produced.

Every function is one action in its own transaction (``atomic_write``); rows are locked
only through ``artifacts_project.locks``.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from artifacts.models import Artifact
from artifacts_project import locks
from artifacts_project.audit import acting_user
from artifacts_project.errors import InvalidInput, InvalidTransition
from artifacts_project.input_limits import check_columns, check_int, check_json, check_text
from artifacts_project.lookups import get_or_not_found
from artifacts_project.request_id import get_request_id
from artifacts_project.transactions import atomic_write
from stories.models import Scene, Story

from .models import FINISHED_STATUSES, AgentStep, Direction, Run, RunArtifactLink, RunStatus, StepStatus

# A failed or cancelled run may be resumed (back to running); a succeeded one is final. A
# pending run fails when it cannot be handed to the workers (the broker is down).
RUN_TRANSITIONS = {
    RunStatus.PENDING: {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED},  # failed: never handed over
    RunStatus.RUNNING: {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED},
    RunStatus.FAILED: {RunStatus.RUNNING},
    RunStatus.CANCELLED: {RunStatus.RUNNING},
    RunStatus.SUCCEEDED: set(),
}


FINISHED_STEP_STATUSES = (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED)


def _check_json_object(value, *, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object", field=field)
    check_json(value, field=field)


@atomic_write
def run_create(*, story_id, workflow: str, scene_id=None, params=None, actor=None, start: bool = False) -> Run:
    """Record a run (pending, or running when ``start``); it becomes the story's current run."""
    if not isinstance(workflow, str) or not workflow.strip():
        raise InvalidInput("workflow must be a non-empty string", field="workflow")
    check_columns(Run, workflow=workflow)
    _check_json_object(params, field="params")
    story = get_or_not_found(Story.objects.only("id"), story_id, what="story")
    scene = None
    if scene_id is not None:
        scene = get_or_not_found(Scene.objects.only("id", "story_id"), scene_id, what="scene")
        if scene.story_id != story.pk:
            raise InvalidInput(f"scene {scene.pk} belongs to another story", field="scene_id")
    run = Run.objects.create(
        story=story,
        scene=scene,
        workflow=workflow.strip(),
        params=params or {},
        status=RunStatus.RUNNING if start else RunStatus.PENDING,
        started_at=timezone.now() if start else None,
        request_id=get_request_id(),
        triggered_by=acting_user(actor),
    )
    # An UPDATE, not a read-then-save: the newest run wins without locking the story first.
    Story.objects.filter(pk=story.pk).update(current_run=run, updated_at=timezone.now())
    return run


@atomic_write
def run_set_status(*, run_id, status: str, error: str | None = None) -> Run:
    """Move a run along pending -> running -> succeeded | failed | cancelled (resume: back to running)."""
    if status not in RunStatus.values:
        raise InvalidInput(f"unknown run status {status!r}; one of {', '.join(RunStatus.values)}", field="status")
    check_text(error, field="error")
    run = locks.lock_run(run_id)
    if status == run.status:
        return run
    if status not in RUN_TRANSITIONS[run.status]:
        raise InvalidTransition(f"a {run.status} run cannot become {status}")
    now = timezone.now()
    run.status = status
    fields = ["status"]
    if status == RunStatus.RUNNING:
        run.started_at = run.started_at or now
        run.finished_at = None
        run.error = ""
        fields += ["started_at", "finished_at", "error"]
    if status in FINISHED_STATUSES:
        run.finished_at = now
        fields.append("finished_at")
    if error is not None:
        run.error = error
        fields.append("error")
    run.save(update_fields=sorted(set(fields)))
    return run


@atomic_write
def step_start(*, run_id, node: str, agent: str = "", input_summary=None, attempt: int = 1) -> AgentStep:
    """Append a running step to the run; sequence numbers are gapless per run."""
    return _append_step(run_id, node, agent, input_summary, attempt, status=StepStatus.RUNNING)


@atomic_write
def step_pending(*, run_id, node: str, agent: str = "", attempt: int = 1) -> AgentStep:
    """Append a step that waits for a worker to take it (``step_begin``)."""
    return _append_step(run_id, node, agent, None, attempt, status=StepStatus.PENDING)


def _append_step(run_id, node, agent, input_summary, attempt, *, status) -> AgentStep:
    if not isinstance(node, str) or not node.strip():
        raise InvalidInput("node must be a non-empty string", field="node")
    check_columns(AgentStep, node=node, agent=agent or "")
    check_int(attempt, field="attempt", minimum=1)
    _check_json_object(input_summary, field="input_summary")
    run = locks.lock_run(run_id)  # the run row lock serializes sequence numbers
    sequence = (AgentStep.objects.filter(run_id=run.pk).aggregate(s=Max("sequence"))["s"] or 0) + 1
    return AgentStep.objects.create(
        run=run,
        sequence=sequence,
        node=node.strip(),
        agent=agent or "",
        attempt=attempt,
        status=status,
        input_summary=input_summary or {},
        started_at=timezone.now() if status == StepStatus.RUNNING else None,
    )


@atomic_write
def step_begin(*, step_id, input_summary=None, agent: str | None = None) -> AgentStep:
    """A pending step starts running. Of two deliveries of one task, one begins it and the
    other is told (InvalidTransition): the conditional UPDATE decides."""
    _check_json_object(input_summary, field="input_summary")
    if agent is not None:
        check_columns(AgentStep, agent=agent)
    changes = {"status": StepStatus.RUNNING, "started_at": timezone.now(), "input_summary": input_summary or {}}
    if agent is not None:
        changes["agent"] = agent
    if not AgentStep.objects.filter(pk=step_id, status=StepStatus.PENDING).update(**changes):
        step = get_or_not_found(AgentStep.objects.only("id", "status"), step_id, what="step")
        raise InvalidTransition(f"step {step.pk} is {step.status}, not pending")
    return AgentStep.objects.get(pk=step_id)


@atomic_write
def step_record(
    *,
    run_id,
    node: str,
    agent: str = "",
    input_summary=None,
    attempt: int = 1,
    status: str = StepStatus.RUNNING,
    output_summary=None,
    error: str = "",
) -> AgentStep:
    """Append a step as running, or already finished when a worker reports it after the fact."""
    if status == StepStatus.RUNNING:
        if output_summary or error:
            raise InvalidInput("a running step has no output or error yet; finish it to record them", field="status")
        return step_start(run_id=run_id, node=node, agent=agent, input_summary=input_summary, attempt=attempt)
    if status not in FINISHED_STEP_STATUSES:
        raise InvalidInput(
            f"a step is recorded as running or as one of {', '.join(FINISHED_STEP_STATUSES)}", field="status"
        )
    step = step_start(run_id=run_id, node=node, agent=agent, input_summary=input_summary, attempt=attempt)
    return step_finish(step_id=step.pk, status=status, output_summary=output_summary, error=error)


@atomic_write
def step_finish(*, step_id, status: str, output_summary=None, error: str = "") -> AgentStep:
    if status not in FINISHED_STEP_STATUSES:
        raise InvalidInput(f"a step finishes as one of {', '.join(FINISHED_STEP_STATUSES)}", field="status")
    _check_json_object(output_summary, field="output_summary")
    check_text(error, field="error")
    step = locks.lock_step(step_id)
    if step.status not in (StepStatus.PENDING, StepStatus.RUNNING):
        raise InvalidTransition(f"step {step.pk} already finished as {step.status}")
    step.status = status
    step.output_summary = output_summary or {}
    step.error = error or ""
    step.finished_at = timezone.now()
    step.save(update_fields=["status", "output_summary", "error", "finished_at"])
    return step


@atomic_write
def run_link_artifact(*, run_id, artifact_id, stage: str, direction: str, step_id=None) -> tuple[RunArtifactLink, bool]:
    """Record that ``stage`` of the run consumed or produced ``artifact``.

    Idempotent, so a resumed run can record the same fact again: returns (link, created).
    """
    if direction not in Direction.values:
        raise InvalidInput(f"direction must be one of {', '.join(Direction.values)}", field="direction")
    if not isinstance(stage, str) or not stage.strip():
        raise InvalidInput("stage must be a non-empty string", field="stage")
    check_columns(RunArtifactLink, stage=stage)
    run = get_or_not_found(Run.objects.only("id"), run_id, what="run")
    artifact = get_or_not_found(Artifact.objects.only("id"), artifact_id, what="artifact")
    step = None
    if step_id is not None:
        step = get_or_not_found(AgentStep.objects.only("id", "run_id"), step_id, what="step")
        if step.run_id != run.pk:
            raise InvalidInput(f"step {step.pk} belongs to another run", field="step_id")
    key = {"run": run, "artifact": artifact, "stage": stage.strip(), "direction": direction}
    existing = RunArtifactLink.objects.filter(**key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return RunArtifactLink.objects.create(step=step, **key), True
    except IntegrityError:  # a concurrent writer recorded the same fact first
        return RunArtifactLink.objects.get(**key), False
