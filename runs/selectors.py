"""Reads of runs and their steps shared by the pipeline, the API, the admin and the commands."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .models import AgentStep, Run, RunStatus, StepStatus

UNFINISHED = (RunStatus.PENDING, RunStatus.RUNNING)
DONE_STEPS = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)


def unfinished_runs(*, scene_id=None) -> QuerySet:
    """Runs still pending or running: of one scene (run_scene_status_idx), or all of them
    (run_status_created_idx)."""
    runs = Run.objects.filter(status__in=UNFINISHED)
    return runs.filter(scene_id=scene_id) if scene_id is not None else runs


def run_steps(run_id) -> QuerySet:
    """A run's steps in sequence (step_unique_sequence_per_run)."""
    return AgentStep.objects.filter(run_id=run_id).order_by("sequence")


def may_be_lost(run: Run, *, by_heartbeat: bool, now=None) -> bool:
    """Whether ``run`` would be lost if nobody held it (SPEC §10, "Crash-safe runs").

    ``by_heartbeat``: no session lock can tell (SQLite), so a run is lost only once its
    heartbeat (or, never held yet, its creation) is older than PIPELINE_RUN_STALE_SECONDS.

    - A pending run on the workers waits in the broker: never lost here. A pending run of a
      serving process is held from just after its request commits; one that nobody took up
      within the stale period was lost with that process.
    - A running run on the workers is held only while a worker runs one of its nodes: lost
      when a step is running and nobody holds it (that worker died). Between two nodes it
      waits in the broker.
    - Any other running run of the pipeline is held by the process driving it, from start
      to end. A run that an API client records (no holder) is the client's: never lost here.
    """
    if not run.queued and not run.holder:
        return False
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.PIPELINE_RUN_STALE_SECONDS)
    if run.status == RunStatus.PENDING:
        if run.queued:
            return False
        return (run.heartbeat_at or run.created_at) < stale_before
    if run.status != RunStatus.RUNNING:
        return False
    if run.queued and not AgentStep.objects.filter(run_id=run.pk, status=StepStatus.RUNNING).exists():
        return False
    if by_heartbeat:
        return (run.heartbeat_at or run.created_at) < stale_before
    return True
