"""OpenLineage events of runs (SPEC §15), sent only when ``OPENLINEAGE_URL`` is set.

A run emits START when it starts (or resumes) and COMPLETE, FAIL or ABORT (cancelled) when it
ends. The job is the run's workflow in ``OPENLINEAGE_NAMESPACE``; the run id is the run's own.
Inputs are the artifacts the run consumed, outputs those it produced (made or reused): each a
dataset named for its version stream (``scene/<id>/<type>``, ``story/<id>/<type>``), its
version the ``datasetVersion`` facet and the artifact itself an ``artifact`` facet.

The run never waits on the receiver and never fails because of it: an event is built once the
run's change commits (``transaction.on_commit``, one read of the run's links) and sent by one
worker thread, in order, with a short timeout and no retries; a refusal or an error is logged.
The thread drains what it holds before the process exits, so a command's last event is sent.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import attr
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import dataset_version_dataset, error_message_run
from openlineage.client.generated.base import DatasetFacet
from openlineage.client.transport.http import HttpConfig, HttpTransport

from .models import Direction, RunArtifactLink, RunStatus

logger = logging.getLogger(__name__)

PRODUCER = "https://github.com/artifact-store/artifacts"
ENDING_STATES = {
    RunStatus.SUCCEEDED: RunState.COMPLETE,
    RunStatus.FAILED: RunState.FAIL,
    RunStatus.CANCELLED: RunState.ABORT,
}


@attr.define
class ArtifactDatasetFacet(DatasetFacet):
    """The artifact a dataset version is: its id, type, version and lifecycle state."""

    artifactId: str  # noqa: N815
    type: str
    version: int
    lifecycleState: str  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return "urn:artifact-store:openlineage:ArtifactDatasetFacet"


def enabled() -> bool:
    return bool(getattr(settings, "OPENLINEAGE_URL", ""))


def run_started(run) -> None:
    """Inside the action that started ``run``: START once it commits."""
    if enabled():
        transaction.on_commit(lambda: _emit_safely(run, RunState.START))


def run_ended(run) -> None:
    """Inside the action that ended ``run``: COMPLETE, FAIL or ABORT once it commits."""
    if enabled() and run.status in ENDING_STATES:
        transaction.on_commit(lambda: _emit_safely(run, ENDING_STATES[run.status]))


def _emit_safely(run, state: RunState) -> None:
    try:
        event = build_event(run, state)
    except Exception:  # a lineage consumer's trouble is never the run's
        logger.exception("OpenLineage: the %s event of run %s could not be built", state.value, run.pk)
        return
    _sender().submit(_send, event, run.pk)


def build_event(run, state: RunState) -> RunEvent:
    """The event for ``run`` in ``state``: one query, the run's links with their artifacts."""
    links = (
        RunArtifactLink.objects.filter(run_id=run.pk)
        .order_by("created_at", "id")
        .values_list(
            "direction",
            "artifact_id",
            "artifact__type",
            "artifact__version",
            "artifact__lifecycle_state",
            "artifact__scene_id",
            "artifact__story_id",
        )
    )
    namespace = settings.OPENLINEAGE_NAMESPACE
    inputs, outputs = {}, {}
    for direction, artifact_id, type_name, version, state_name, scene_id, story_id in links:
        name = f"scene/{scene_id}/{type_name}" if scene_id is not None else f"story/{story_id}/{type_name}"
        facets = {
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(version)),
            "artifact": ArtifactDatasetFacet(
                artifactId=str(artifact_id), type=type_name, version=version, lifecycleState=state_name
            ),
        }
        if direction == Direction.CONSUMED:
            inputs.setdefault(artifact_id, InputDataset(namespace=namespace, name=name, facets=facets))
        else:
            outputs.setdefault(artifact_id, OutputDataset(namespace=namespace, name=name, facets=facets))
    run_facets = {}
    if state in (RunState.FAIL, RunState.ABORT) and run.error:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=run.error, programmingLanguage="python"
        )
    at = (run.finished_at if state != RunState.START else run.started_at) or timezone.now()
    return RunEvent(
        eventType=state,
        eventTime=at.isoformat(),
        run=Run(runId=str(run.pk), facets=run_facets),
        job=Job(namespace=namespace, name=run.workflow),
        producer=PRODUCER,
        inputs=list(inputs.values()),
        outputs=list(outputs.values()),
    )


_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_client: tuple[str, OpenLineageClient] | None = None


def _sender() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            # One worker: events of a run arrive in the order they happened.
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openlineage")
        return _executor


def _client_for(url: str) -> OpenLineageClient:
    global _client
    key = f"{url} {settings.OPENLINEAGE_ENDPOINT} {settings.OPENLINEAGE_TIMEOUT}"
    if _client is None or _client[0] != key:
        config = HttpConfig.from_dict(
            {
                "url": url,
                "endpoint": settings.OPENLINEAGE_ENDPOINT,
                "timeout": settings.OPENLINEAGE_TIMEOUT,
                "retry": {"total": 0},
            }
        )
        _client = (key, OpenLineageClient(transport=HttpTransport(config)))
    return _client[1]


def _send(event: RunEvent, run_id) -> None:
    try:
        _client_for(settings.OPENLINEAGE_URL).emit(event)
    except Exception as exc:
        logger.warning("OpenLineage: the %s event of run %s was not delivered: %s", event.eventType.value, run_id, exc)


def flush(timeout: float | None = None) -> None:
    """Wait until the events submitted so far are sent (or given up): tests and commands."""
    marker = _sender().submit(lambda: None)
    marker.result(timeout=timeout)
