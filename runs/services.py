"""Runs and agent steps: what each pipeline stage consumed and produced.

Every function is one action in its own transaction (``atomic_write``); rows are locked
only through ``kernel.locks``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import IntegrityError, connection
from django.db.models import Max
from django.utils import timezone

from artifacts import selectors as artifact_selectors
from artifacts import services as artifact_services
from artifacts.content import PreparedContent, store_content
from artifacts.models import Artifact
from artifacts.payloads import get_type
from artifacts.services import hold_unpruned
from audit.services import acting_user
from changes import services as change_services
from kernel import locks
from kernel.errors import InvalidInput, InvalidTransition, NodeRefused, NotFound, VersionConflict
from kernel.input_limits import check_columns, check_int, check_json, check_text
from kernel.lookups import ensure_exists, get_or_not_found, parse_uuid
from kernel.request_id import get_request_id
from kernel.transactions import atomic_write, may_be_lost_in_a_crash
from stories import services as story_services
from stories.models import Scene, Story

from . import openlineage, selectors
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


@atomic_write(nestable=True)
def run_create(
    *,
    story_id,
    workflow: str,
    scene_id=None,
    params=None,
    actor=None,
    start: bool = False,
    queued: bool = False,
    holder: str = "",
    run_id=None,
) -> Run:
    """Record a run (pending, or running when ``start``); it becomes the story's current run.
    The pipeline's runs are driven by its workers (``queued``) or by a process of ours that
    holds them (``holder``, SPEC §10); a run an API client records drives itself.
    ``run_id``: an id chosen beforehand (a process that holds the run before it exists)."""
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
    now = timezone.now()
    run = Run.objects.create(
        id=parse_uuid(run_id, what="run") if run_id is not None else uuid.uuid4(),
        story=story,
        scene=scene,
        workflow=workflow.strip(),
        params=params or {},
        status=RunStatus.RUNNING if start else RunStatus.PENDING,
        started_at=now if start else None,
        queued=queued,
        holder=holder,
        heartbeat_at=now if start and holder else None,
        request_id=get_request_id(),
        triggered_by=acting_user(actor),
    )
    story_services.story_set_current_run(story_id=story.pk, run_id=run.pk)
    if start:
        openlineage.run_started(run)
    return run


STEP_ERROR_WHEN = {RunStatus.CANCELLED: "the run was cancelled", RunStatus.FAILED: "the run failed"}
LOST = "its process was lost"


@atomic_write(nestable=True)
def run_set_status(*, run_id, status: str, error: str | None = None, step_error: str | None = None) -> Run:
    """Move a run along pending -> running -> succeeded | failed | cancelled (resume: back to running).

    A run that ends failed or cancelled ends its unfinished steps with it, failed with
    ``step_error`` (by default, why the run ended): nothing stays running for ever, and the
    process still driving a cancelled run finds its step finished at its next write, which
    then writes nothing (SPEC §10).
    """
    if status not in RunStatus.values:
        raise InvalidInput(f"unknown run status {status!r}; one of {', '.join(RunStatus.values)}", field="status")
    check_text(error, field="error")
    run = locks.lock_run(run_id)
    if status == run.status:
        return run
    if status not in RUN_TRANSITIONS[run.status]:
        raise InvalidTransition(f"a {run.status} run cannot become {status}")
    now = timezone.now()
    from_status = run.status
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
    if status in STEP_ERROR_WHEN:
        _end_unfinished_steps(run.pk, error=step_error or STEP_ERROR_WHEN[status], at=now)
    if status == RunStatus.RUNNING:
        openlineage.run_started(run)
    else:
        openlineage.run_ended(run)
    if status in FINISHED_STATUSES:
        change_services.run_finished(run, from_status=from_status)
    return run


def _end_unfinished_steps(run_id, *, error: str, at) -> None:
    AgentStep.objects.filter(run_id=run_id, status__in=(StepStatus.PENDING, StepStatus.RUNNING)).update(
        status=StepStatus.FAILED, error=error, finished_at=at
    )


@atomic_write
def run_begin(*, run_id, holder: str) -> Run:
    """A pending run starts, or a failed or cancelled one resumes, held by ``holder`` (the
    process that drives it, which holds it as ``locks.hold_runs`` says)."""
    check_columns(Run, holder=holder)
    run = locks.lock_run(run_id)
    if run.status not in (RunStatus.PENDING, RunStatus.FAILED, RunStatus.CANCELLED):
        raise InvalidTransition(f"run {run.pk} is {run.status}: only a pending, failed or cancelled run can start")
    now = timezone.now()
    run.status = RunStatus.RUNNING
    run.started_at = run.started_at or now
    run.finished_at = None
    run.error = ""
    run.holder = holder
    run.heartbeat_at = now
    run.save(update_fields=["status", "started_at", "finished_at", "error", "holder", "heartbeat_at"])
    openlineage.run_started(run)
    return run


def run_heartbeat(*, run_ids) -> int:
    """The holder of these runs is alive (SQLite's stand-in for a session lock): one UPDATE."""
    return Run.objects.filter(pk__in=list(run_ids), status__in=selectors.UNFINISHED).update(heartbeat_at=timezone.now())


def run_is_lost(run: Run) -> bool:
    """Whether the process that held ``run`` is gone (a read: nothing is marked)."""
    if run.status not in selectors.UNFINISHED:
        return False
    with locks.unheld_run(run.pk) as unheld:
        if unheld is False:
            return False
        return selectors.may_be_lost(run, by_heartbeat=unheld is None)


def run_mark_lost(*, run_id) -> bool:
    """Fail the run, and its running step, when its holder is gone ("its process was lost",
    SPEC §10); True when it did. The run stays unheld while this runs, so a process about
    to take it up waits, then finds it failed, and resumes it if that is what it does."""
    with locks.unheld_run(run_id) as unheld:
        if unheld is False:
            return False
        return _mark_lost(run_id, by_heartbeat=unheld is None)


@atomic_write
def _mark_lost(run_id, *, by_heartbeat: bool) -> bool:
    run = locks.lock_run(run_id)
    if not selectors.may_be_lost(run, by_heartbeat=by_heartbeat):
        return False
    run_set_status(run_id=run.pk, status=RunStatus.FAILED, error=LOST, step_error=LOST)
    return True


@atomic_write(nestable=True)
def step_start(*, run_id, node: str, agent: str = "", input_summary=None, attempt: int = 1) -> AgentStep:
    """Append a running step to the run; sequence numbers are gapless per run."""
    return _append_step(run_id, node, agent, input_summary, attempt, status=StepStatus.RUNNING)


@atomic_write(nestable=True)
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


@atomic_write(nestable=True)
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


def _insert_link_rows(links: list[RunArtifactLink]) -> set:
    """One ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` of these links (PostgreSQL, and
    SQLite since 3.35): the ids of those created; the others existed already."""
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
        return {meta.pk.to_python(pk) for (pk,) in cursor.fetchall()}


def _insert_links(*, run_id, step_id, stage: str, keys) -> list[tuple[RunArtifactLink, bool]]:
    """One ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` (PostgreSQL, and SQLite since
    3.35): the ids it returns are the links created; the others existed, and are read."""
    now = timezone.now()
    links = [
        RunArtifactLink(run_id=run_id, step_id=step_id, artifact_id=a, stage=stage, direction=d, created_at=now)
        for a, d in keys
    ]
    created = _insert_link_rows(links)
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


# -- the pipeline's writes (SPEC §10) ---------------------------------------------------------
#
# A node's step begins running (``step_claim``) before its generator runs, so a run in flight
# shows what it is doing; what the node then records is one action, ``pipeline_record_made``
# or ``pipeline_record_reused``: its locks taken once, in locks.py's order, what it needs read
# once, and version, relations, links and step written in one transaction. Each checks last,
# under the run row's shared lock, that the run is still running and the step still its own:
# otherwise (cancelled, failed, or taken over by a second delivery of the node) the whole
# action rolls back, so no version is made after a cancel is answered.


class RunStopped(Exception):
    """The run is no longer running (cancelled or failed meanwhile): nothing was written."""

    def __init__(self, status: str | None):
        super().__init__(f"the run is {status or 'gone'}")
        self.status = status


class StepTaken(Exception):
    """The step is no longer this writer's: a second delivery of its node finished it."""


@dataclass
class Recorded:
    artifact: Artifact
    made: bool  # False: an existing version was kept (made meanwhile, or planning locked)
    reason: str = ""


_STEP_COLUMNS = (
    "id",
    "run",
    "node",
    "agent",
    "status",
    "attempt",
    "input_summary",
    "output_summary",
    "error",
    "started_at",
    "finished_at",
)


def _write_step(
    *, run_id, step_id, node: str, agent: str, attempt: int, status: str, input_summary, output_summary=None
) -> uuid.UUID:
    """The node's step in ``status``: the pending step ``step_id`` (a worker's) taken from
    pending, or a new one appended (sequence: the run's last + 1, in the same statement),
    provided the run is running (in the same statement too: RunStopped otherwise). Raises
    StepTaken when the pending step was taken meanwhile."""
    now = timezone.now()
    finished = status in FINISHED_STEP_STATUSES
    if step_id is not None:
        changes = {"status": status, "agent": agent, "started_at": now, "input_summary": input_summary or {}}
        if finished:
            changes.update(output_summary=output_summary or {}, finished_at=now)
        pending = AgentStep.objects.filter(pk=step_id, status=StepStatus.PENDING, run__status=RunStatus.RUNNING)
        if not pending.update(**changes):
            _stopped_or(StepTaken(f"step {step_id} is no longer pending"), run_id)
        return step_id
    step = AgentStep(
        id=uuid.uuid4(),
        run_id=run_id,
        node=node,
        agent=agent,
        status=status,
        attempt=attempt,
        input_summary=input_summary or {},
        output_summary=output_summary or {},
        started_at=now,
        finished_at=now if finished else None,
    )
    meta = AgentStep._meta
    fields = [meta.get_field(name) for name in _STEP_COLUMNS]
    quote = connection.ops.quote_name
    table, runs = quote(meta.db_table), quote(Run._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(f.column) for f in fields)}, {quote('sequence')}) "
        f"SELECT {', '.join(['%s'] * len(fields))}, "
        f"COALESCE((SELECT MAX(s.{quote('sequence')}) FROM {table} s WHERE s.{quote('run_id')} = r.id), 0) + 1 "
        f"FROM {runs} r WHERE r.id = %s AND r.status = %s "
        f"ON CONFLICT ({quote('run_id')}, {quote('sequence')}) DO NOTHING RETURNING 1"
    )
    params = [f.get_db_prep_save(getattr(step, f.attname), connection) for f in fields]
    params += [meta.get_field("run").get_db_prep_save(run_id, connection), RunStatus.RUNNING]
    for _ in range(3):  # a step appended meanwhile took the sequence (an API client's): the next one
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.fetchall():
                return step.pk
        _stopped_or(None, run_id)
    raise IntegrityError(f"no free sequence number for a step of run {run_id}")


def run_status(*, run_id) -> str | None:
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def _stopped_or(error: Exception | None, run_id) -> None:
    """After a conditional write that wrote nothing: RunStopped if the run is not running,
    else ``error`` (if any)."""
    status = run_status(run_id=run_id)
    if status != RunStatus.RUNNING:
        raise RunStopped(status)
    if error is not None:
        raise error


def _require_running(run_id) -> None:
    status = locks.share_run(run_id)
    if status != RunStatus.RUNNING:
        raise RunStopped(status)


@atomic_write
def step_claim(*, run_id, node: str, agent: str, attempt: int, input_summary: dict, step_id=None) -> uuid.UUID:
    """The node's step begins running: before its generator, so a run shows what it does.
    Raises RunStopped when the run is not running, StepTaken when a second delivery of the
    node began its pending step first. Lost in a server crash, the step is begun again by
    the run's next attempt (and the record, which needs it running, writes nothing)."""
    may_be_lost_in_a_crash()
    return _write_step(
        run_id=run_id,
        step_id=step_id,
        node=node,
        agent=agent,
        attempt=attempt,
        status=StepStatus.RUNNING,
        input_summary=input_summary,
    )


def _finish_running_step(step_id, *, status: str, output_summary=None, error: str = "") -> None:
    changes = {"status": status, "output_summary": output_summary or {}, "error": error, "finished_at": timezone.now()}
    if not AgentStep.objects.filter(pk=step_id, status=StepStatus.RUNNING).update(**changes):
        raise StepTaken(f"step {step_id} is no longer running")


def _consumed_and_produced(inputs, output_id) -> list[tuple]:
    return [*((artifact_id, Direction.CONSUMED) for artifact_id in inputs), (output_id, Direction.PRODUCED)]


def _reuse_summary(artifact: Artifact, reason: str) -> dict:
    return {"action": "reused", "artifact_id": str(artifact.pk), "version": artifact.version, "reason": reason}


@dataclass
class Reuse:
    """One node that reuses ``artifact``: what its step records."""

    node: str
    agent: str
    attempt: int
    input_summary: dict
    artifact: Artifact
    inputs: list  # the artifact ids it consumed
    reason: str
    step_id: uuid.UUID | None = None  # the pending step a worker was handed


@atomic_write
def pipeline_record_reused(*, run_id, reuses: list[Reuse]) -> list[uuid.UUID]:
    """Nodes reuse existing versions: each step is recorded skipped, with what it consumed and
    produced, all in one transaction (the in-process driver gathers the reuses it decides in a
    row: a fully reused scene is one commit). The run row shared, the new steps in one INSERT
    (a worker's pending step is taken one by one), the links of all in one INSERT. Lost in a
    server crash, they are decided again by the run's next attempt."""
    may_be_lost_in_a_crash()
    _require_running(run_id)
    now = timezone.now()
    steps = {
        index: AgentStep(
            id=uuid.uuid4(),
            run_id=run_id,
            node=reuse.node,
            agent=reuse.agent,
            status=StepStatus.SKIPPED,
            attempt=reuse.attempt,
            input_summary=reuse.input_summary,
            output_summary=_reuse_summary(reuse.artifact, reuse.reason),
            started_at=now,
            finished_at=now,
        )
        for index, reuse in enumerate(reuses)
        if reuse.step_id is None
    }
    appended = _append_steps(run_id, list(steps.values()))
    ids, links = [], []
    for index, reuse in enumerate(reuses):
        step = steps.get(index)
        if step is not None and step.pk in appended:
            ids.append(step.pk)
        else:  # a worker's pending step, or a sequence taken meanwhile: one at a time
            ids.append(
                _write_step(
                    run_id=run_id,
                    step_id=reuse.step_id,
                    node=reuse.node,
                    agent=reuse.agent,
                    attempt=reuse.attempt,
                    status=StepStatus.SKIPPED,
                    input_summary=reuse.input_summary,
                    output_summary=_reuse_summary(reuse.artifact, reuse.reason),
                )
            )
        links += [(ids[-1], reuse.node, *key) for key in _consumed_and_produced(reuse.inputs, reuse.artifact.pk)]
    _insert_step_links(run_id=run_id, links=links)
    return ids


def _append_steps(run_id, steps: list[AgentStep]) -> set:
    """Steps appended to the run in one INSERT, numbered after its last in the order given
    (the run's last sequence read in the same statement); the ids of those written (a
    sequence another writer took meanwhile leaves its step out, for the caller to retry)."""
    if not steps:
        return set()
    meta = AgentStep._meta
    fields = [meta.get_field(name) for name in _STEP_COLUMNS]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    width = len(fields) + 1
    values = ", ".join("(" + ", ".join(["%s"] * width) + ")" for _ in steps)
    columns = ", ".join(f"v.column{i}" for i in range(1, len(fields) + 1))
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(f.column) for f in fields)}, {quote('sequence')}) "
        f"SELECT {columns}, last.number + v.column{width} FROM (VALUES {values}) AS v "
        f"CROSS JOIN (SELECT COALESCE(MAX({quote('sequence')}), 0) AS number FROM {table} "
        f"WHERE {quote('run_id')} = %s) AS last WHERE true "
        f"ON CONFLICT ({quote('run_id')}, {quote('sequence')}) DO NOTHING RETURNING {quote('id')}"
    )
    params = []
    for order, step in enumerate(steps, start=1):
        params += [f.get_db_prep_save(getattr(step, f.attname), connection) for f in fields]
        params.append(order)
    params.append(meta.get_field("run").get_db_prep_save(run_id, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {meta.pk.to_python(pk) for (pk,) in cursor.fetchall()}


def _insert_step_links(*, run_id, links) -> None:
    """Links of several steps, ``(step_id, stage, artifact_id, direction)``, in one INSERT; one
    recorded already (a run resumed) is left as it is."""
    if not links:
        return
    now = timezone.now()
    _insert_link_rows(
        [
            RunArtifactLink(run_id=run_id, step_id=step, artifact_id=a, stage=stage, direction=d, created_at=now)
            for step, stage, a, d in links
        ]
    )


@atomic_write
def pipeline_record_made(
    *,
    run_id,
    step_id,
    story_id,
    scene_id,
    type: str,
    kind: str,
    payload: dict,
    content: PreparedContent | None,
    inputs: list,
    fingerprint: str,
    force: bool,
    artifact_id: uuid.UUID,
    request_id: str,
) -> Recorded:
    """What a node made becomes the next version of its stream, unless meanwhile another run
    made this very version (its fingerprint is the stream's latest: that one is kept), or
    the scene's planning was locked (a planning type keeps its latest version, SPEC §10).

    ``payload`` is checked and ``content`` prepared by the caller, before this transaction.
    Locks, each once, in locks.py's order: the scene row shared (planning types), the content
    digest (media), the stream (with the INSERT, one round trip), the inputs' rows shared
    (against a prune). Then the version's derived_from relations (one INSERT), the step's
    links (one INSERT) and the step, from running to succeeded (one conditional UPDATE, last).

    That UPDATE is what stops a cancelled run: a cancel ends the run's unfinished steps in its
    own transaction, so either it committed first, the step is no longer running and
    StepTaken rolls everything back, or it waits for this transaction's lock on the step
    row and is answered after this version exists.
    """
    if get_type(type).planning:
        scene = locks.share_scene(scene_id)
        if scene is not None and scene.planning_locked:
            return _keep_latest(
                run_id=run_id,
                step_id=step_id,
                story_id=story_id,
                scene_id=scene_id,
                type=type,
                inputs=inputs,
                reason="planning was locked on this scene while the run was in flight",
            )
    artifact = Artifact(
        id=artifact_id,
        story_id=story_id,
        scene_id=scene_id,
        type=type,
        kind=kind,
        payload=payload,
        fingerprint=fingerprint,
        created_by_step_id=step_id,
        request_id=request_id,
    )
    if content is not None:
        stored = store_content(content)
        artifact.content.name = stored.name
        artifact.content_sha256, artifact.content_size, artifact.mime_type = (
            stored.sha256,
            stored.size,
            stored.mime_type,
        )
    made = None
    for attempt in range(1, artifact_services.MAX_CREATE_ATTEMPTS + 1):
        made = artifact_services.insert_next_version(
            artifact,
            inherit_parent=True,
            inherit_fingerprint=False,
            lock=attempt == 1,
            unless_fingerprint=None if force else fingerprint,
        )
        if made is not None or force:
            break
        latest = artifact_selectors.stream_latest(story_id=story_id, scene_id=scene_id, type=type)
        if latest is not None and latest.fingerprint == fingerprint:
            return _keep(
                run_id=run_id,
                step_id=step_id,
                node=type,
                kept=latest,
                inputs=inputs,
                reason="made meanwhile by another run",
            )
    if made is None:
        raise VersionConflict(f"could not assign a version on {type}")
    # Its inputs held against a prune (a pruned one refuses the version: 409 pruned, SPEC §9).
    hold_unpruned({artifact_id: "inputs" for artifact_id in inputs})
    artifact_services.relations_of_new_version(made, inputs, created_by_step_id=step_id, request_id=request_id)
    _insert_step_links(run_id=run_id, links=[(step_id, type, *k) for k in _consumed_and_produced(inputs, made.pk)])
    _finish_running_step(
        step_id,
        status=StepStatus.SUCCEEDED,
        output_summary={"action": "made", "artifact_id": str(made.pk), "version": made.version},
    )
    return Recorded(made, True)


def _keep_latest(*, run_id, step_id, story_id, scene_id, type: str, inputs, reason: str) -> Recorded:
    latest = artifact_selectors.stream_latest(story_id=story_id, scene_id=scene_id, type=type)
    if latest is None:
        raise NodeRefused("planning is locked on this scene and it has no version to keep")
    return _keep(
        run_id=run_id, step_id=step_id, node=type, kept=latest, inputs=inputs, reason=f"v{latest.version}: {reason}"
    )


def _keep(*, run_id, step_id, node: str, kept: Artifact, inputs, reason: str) -> Recorded:
    _insert_step_links(run_id=run_id, links=[(step_id, node, *k) for k in _consumed_and_produced(inputs, kept.pk)])
    _finish_running_step(step_id, status=StepStatus.SKIPPED, output_summary=_reuse_summary(kept, reason))
    return Recorded(kept, False, reason)


@atomic_write
def step_fail(*, step_id, error: str) -> None:
    """A running step of the pipeline fails (its generator raised, its output was refused).
    Raises StepTaken when it is no longer running (the run was cancelled or failed meanwhile,
    or a second delivery took it over)."""
    _finish_running_step(step_id, status=StepStatus.FAILED, error=error[:10_000])
