"""Runs and agent steps: what each pipeline stage consumed and produced.

Every function is one action in its own transaction (``atomic_write``); rows are locked
only through ``artifacts_project.locks``.
"""

from __future__ import annotations

from django.db import IntegrityError, connection
from django.db.models import Max
from django.utils import timezone

from artifacts.services import hold_unpruned
from artifacts_project import locks
from artifacts_project.audit import acting_user
from artifacts_project.errors import InvalidInput, InvalidTransition, NotFound
from artifacts_project.input_limits import check_columns, check_int, check_json, check_text
from artifacts_project.lookups import ensure_exists, get_or_not_found, parse_uuid
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

# Links recorded at once (one INSERT of 7 parameters a row stays far inside SQLite's limit).
MAX_LINKS = 1000


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
def step_finish(*, step_id, status: str, output_summary=None, error: str = "", links=()) -> AgentStep:
    """Finish a pending or running step; ``links``, ``(artifact_id, direction)`` pairs, are
    recorded with it as the step's consumed and produced artifacts (stage: the step's node),
    as ``run_link_artifacts`` records them, in the same transaction: a step that cannot
    finish (finished already, e.g. by a second delivery that took it over) records nothing."""
    if status not in FINISHED_STEP_STATUSES:
        raise InvalidInput(f"a step finishes as one of {', '.join(FINISHED_STEP_STATUSES)}", field="status")
    _check_json_object(output_summary, field="output_summary")
    check_text(error, field="error")
    keys = _link_keys(links)
    if keys:  # the artifact rows before the step's (the lock order)
        _check_artifacts_exist(keys)
    step = locks.lock_step(step_id)
    if step.status not in (StepStatus.PENDING, StepStatus.RUNNING):
        raise InvalidTransition(f"step {step.pk} already finished as {step.status}")
    if keys:
        _insert_links(run_id=step.run_id, step_id=step.pk, stage=step.node, keys=keys)
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
    (result,) = run_link_artifacts(run_id=run_id, stage=stage, links=[(artifact_id, direction)], step_id=step_id)
    return result


@atomic_write
def run_link_artifacts(*, run_id, stage: str, links, step_id=None) -> list[tuple[RunArtifactLink, bool]]:
    """Record what ``stage`` of the run consumed and produced: ``links`` are
    ``(artifact_id, direction)`` pairs. Returns ``(link, created)`` per distinct pair, in
    the order given.

    Idempotent as ``run_link_artifact`` is: a link that exists already (the same run,
    artifact, stage and direction) is returned as it is, not an error. Whatever the number
    of links: one read of the step (or of the run, without a step), two ``IN`` queries that
    lock the artifacts and check them (a missing one is refused, NotFound, and a pruned one,
    Pruned, before anything is written), and one INSERT of the links that do not exist yet
    (``ON CONFLICT DO NOTHING``, so a concurrent writer of the same link is no error
    either); one more read only when some existed already.
    """
    if not isinstance(stage, str) or not stage.strip():
        raise InvalidInput("stage must be a non-empty string", field="stage")
    check_columns(RunArtifactLink, stage=stage)
    keys = _link_keys(links)
    run_pk = parse_uuid(run_id, what="run")
    if step_id is not None:
        step = AgentStep.objects.filter(pk=parse_uuid(step_id, what="step")).only("id", "run_id").first()
        if step is None:
            ensure_exists(Run, run_pk, what="run")  # the run is reported first, as it is named first
            raise NotFound(f"step {step_id} does not exist", field="step_id")
        if step.run_id != run_pk:
            ensure_exists(Run, run_pk, what="run")
            raise InvalidInput(f"step {step.pk} belongs to another run", field="step_id")
        step_id = step.pk
    else:
        ensure_exists(Run, run_pk, what="run")
    if not keys:
        return []
    _check_artifacts_exist(keys)
    return _insert_links(run_id=run_pk, step_id=step_id, stage=stage.strip(), keys=keys)


def _link_keys(links) -> list[tuple]:
    """``(artifact_id, direction)`` pairs, checked, parsed, each once, in the order given."""
    if isinstance(links, str | bytes | dict) or not hasattr(links, "__iter__"):
        raise InvalidInput("links must be a list of (artifact_id, direction) pairs", field="links")
    keys = {}
    for item in links:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise InvalidInput("links must be a list of (artifact_id, direction) pairs", field="links")
        artifact_id, direction = item
        if direction not in Direction.values:
            raise InvalidInput(f"direction must be one of {', '.join(Direction.values)}", field="direction")
        keys.setdefault((parse_uuid(artifact_id, what="artifact"), str(direction)), None)
        if len(keys) > MAX_LINKS:
            raise InvalidInput(f"at most {MAX_LINKS} links at once", field="links")
    return list(keys)


def _check_artifacts_exist(keys) -> None:
    """NotFound names the first artifact (in the order given) that does not exist, Pruned
    the first that is pruned (it takes no new run link); the rows stay locked against a
    prune until the transaction ends (``artifacts.services.hold_unpruned``)."""
    hold_unpruned({artifact_id: "artifact_id" for artifact_id, _ in keys})


_LINK_COLUMNS = ("id", "run", "step", "artifact", "stage", "direction", "created_at")


def _insert_links(*, run_id, step_id, stage: str, keys) -> list[tuple[RunArtifactLink, bool]]:
    """One ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` (PostgreSQL, and SQLite since
    3.35): the ids it returns are the links created; the others existed, and are read."""
    now = timezone.now()
    links = [
        RunArtifactLink(run_id=run_id, step_id=step_id, artifact_id=a, stage=stage, direction=d, created_at=now)
        for a, d in keys
    ]
    meta = RunArtifactLink._meta
    fields = [meta.get_field(name) for name in _LINK_COLUMNS]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES {', '.join([row] * len(links))} ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}"
    )
    params = [f.get_db_prep_save(getattr(link, f.attname), connection) for link in links for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        created = {meta.pk.to_python(pk) for (pk,) in cursor.fetchall()}
    for link in links:
        link._state.adding, link._state.db = False, connection.alias
    existing = {}
    if len(created) < len(links):  # recorded before (a resumed run, a repeated request) or meanwhile
        artifact_ids = [link.artifact_id for link in links if link.pk not in created]
        for link in RunArtifactLink.objects.filter(run_id=run_id, stage=stage, artifact_id__in=artifact_ids):
            existing[(link.artifact_id, link.direction)] = link
    result = []
    for link in links:
        if link.pk in created:
            result.append((link, True))
            continue
        found = existing.get((link.artifact_id, link.direction))
        if found is None:  # ON CONFLICT skips uniqueness conflicts only: this cannot happen
            raise IntegrityError(f"link of artifact {link.artifact_id} was neither inserted nor found")
        result.append((found, False))
    return result
