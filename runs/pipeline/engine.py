"""Running a scene through the nodes: reuse what is still valid, make only what changed
(SPEC §10).

For each node, in stage order:

1. **Decide**, without a lock: its inputs are the latest versions of the types it consumes;
   it reuses the latest version of its own type when that version's fingerprint is the
   one computed now, or when the scene's planning is locked and the type is a planning
   type; otherwise it makes the next version (``--force`` makes one anyway, except for
   locked planning types). Every decision carries its reasons, which ``--explain`` prints.
2. **Generate**, outside any transaction: a generator may take minutes, and no row or
   stream stays locked meanwhile.
3. **Record**, in one transaction holding the stream's lock: if another run committed a
   version with this fingerprint meanwhile, that one is reused and the work is dropped;
   otherwise the new version is created with its fingerprint, a ``derived_from`` relation
   to each input, and the step's consumed and produced links. So two runs of one scene at
   once end with at most one version per (type, fingerprint).

A run is one ``Run`` (workflow ``scene_pipeline``) with one ``AgentStep`` per node:
succeeded when it made a version, skipped when it reused one, failed with its error. A
failure keeps everything made before it and fails the run; ``resume`` continues the same
run from the node that failed, and the nodes it finished are not run again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.urls import reverse

from artifacts import selectors
from artifacts.models import Artifact, RelationType
from artifacts.payloads import MEDIA_KINDS, get_type
from artifacts.services import ArtifactService
from artifacts_project import locks
from artifacts_project.errors import ArtifactError, InvalidInput, InvalidTransition
from artifacts_project.lookups import get_or_not_found
from artifacts_project.transactions import atomic_write
from runs import services as run_services
from runs.models import AgentStep, Direction, Run, RunStatus, StepStatus
from stories import selectors as story_selectors
from stories.models import Scene, Story

from . import fingerprint as fp
from .nodes import Node, selected

logger = logging.getLogger(__name__)

WORKFLOW = "scene_pipeline"

MAKE, REUSE, REFUSE = "make", "reuse", "refuse"


@dataclass
class NodeContext:
    """What a generator sees (SPEC §10): the scene, its inputs by type, its params, and the
    URL its content will have (for a media type that names its own image)."""

    scene: Scene
    inputs: dict[str, Artifact]
    params: dict
    content_url: str


@dataclass
class Decision:
    node: Node
    action: str  # MAKE, REUSE or REFUSE
    reasons: list[str]
    inputs: dict[str, Artifact] = field(default_factory=dict)
    latest: Artifact | None = None
    basis: dict | None = None
    fingerprint: str | None = None


@dataclass
class Outcome:
    node: Node
    # "made", "reused", "failed", "done" (finished earlier in a resumed run), or "superseded"
    # (a second delivery of the same node took its step over; that one carries on).
    result: str
    reasons: list[str]
    artifact: Artifact | None = None
    error: str = ""
    retryable: bool = False  # the generator raised: another attempt may succeed


@dataclass
class SceneRun:
    scene: Scene
    run: Run
    outcomes: list[Outcome]

    @property
    def failed(self) -> bool:
        return self.run.status == RunStatus.FAILED


class NodeRefused(ArtifactError):
    code = "node_refused"


class GeneratorFailed(Exception):
    """What a generator raised: plugged-in code, perhaps a model that is down for a while."""


def load_scene(scene_id) -> Scene:
    return get_or_not_found(
        Scene.objects.only("id", "story_id", "position", "title", "source_text", "planning_locked"),
        scene_id,
        what="scene",
    )


def _latest(scene: Scene, type_name: str) -> Artifact | None:
    return selectors.stream_latest(story_id=scene.story_id, scene_id=scene.pk, type=type_name)


def _previous_basis(scene: Scene, latest: Artifact) -> dict | None:
    """The basis of the step that made a version with ``latest``'s fingerprint (an edit
    carries its parent's): one lookup on artifact_fingerprint_idx."""
    if not latest.fingerprint:
        return None
    summary = (
        Artifact.objects.filter(scene_id=scene.pk, type=latest.type, fingerprint=latest.fingerprint)
        .exclude(created_by_step=None)
        .order_by("-version")
        .values_list("created_by_step__input_summary", flat=True)
        .first()
    )
    return (summary or {}).get("basis")


def _versions(ids) -> dict[str, int]:
    return {str(pk): version for pk, version in Artifact.objects.filter(pk__in=ids).values_list("pk", "version")}


def _changes(scene: Scene, latest: Artifact, basis: dict) -> list[str]:
    before = _previous_basis(scene, latest)
    reasons = fp.differences(before, basis)
    if before is None:
        return reasons
    old, new = before.get("inputs") or {}, basis["inputs"]
    versions = _versions([*old.values(), *new.values()])
    described = []
    for reason in reasons:
        type_name = reason.removeprefix("input ").removesuffix(" changed")
        if reason.startswith("input ") and type_name in new:
            was = f"v{versions[old[type_name]]}" if old.get(type_name) in versions else "another version"
            described.append(f"input {type_name} changed ({was} -> v{versions.get(new[type_name], '?')})")
        else:
            described.append(reason)
    return described


def decide(scene: Scene, node: Node, *, force: bool = False, pending: frozenset[str] = frozenset()) -> Decision:
    """What ``node`` would do now, and why. ``pending``: nodes that will make a new version
    before this one runs (``--explain`` cannot know those versions' ids yet)."""
    latest = _latest(scene, node.name)
    will_change = [t for t in node.consumes if t in pending]
    inputs = {t: _latest(scene, t) for t in node.consumes if t not in pending}
    if get_type(node.name).planning and scene.planning_locked:
        found = {t: a for t, a in inputs.items() if a is not None}
        if latest is not None:
            return Decision(node, REUSE, [f"v{latest.version}: planning is locked on this scene"], found, latest)
        return Decision(node, REFUSE, ["planning is locked on this scene and it has no version to keep"], found)
    if will_change:
        return Decision(node, MAKE, [f"input {t} will be remade" for t in will_change], latest=latest)
    missing = [t for t, artifact in inputs.items() if artifact is None]
    if missing:
        return Decision(node, REFUSE, [f"no {t} to read yet" for t in missing], latest=latest)
    _, version = node.generator()
    basis = fp.basis(
        node=node.name,
        generator=node.generator_path,
        generator_version=version,
        inputs={t: a.pk for t, a in inputs.items()},
        text_sha256=fp.text_digest(scene.source_text) if node.reads_text else None,
        params=node.params,
    )
    decision = Decision(node, MAKE, [], inputs=inputs, latest=latest, basis=basis, fingerprint=fp.fingerprint(basis))
    if force:
        decision.reasons = ["forced"]
    elif latest is None:
        decision.reasons = ["nothing yet"]
    elif latest.fingerprint == decision.fingerprint:
        decision.action, decision.reasons = REUSE, [f"v{latest.version}: fingerprint matches"]
    else:
        decision.reasons = _changes(scene, latest, basis)
    return decision


def explain(scene_id, *, force: bool = False, only: list[str] | None = None) -> list[Decision]:
    """Every node's decision, in stage order, writing nothing."""
    scene = load_scene(scene_id)
    decisions, pending = [], set()
    for node in selected(only):
        decision = decide(scene, node, force=force, pending=frozenset(pending))
        if decision.action == MAKE:
            pending.add(node.name)
        decisions.append(decision)
    return decisions


# -- running -----------------------------------------------------------------------------


def run_scene(
    scene_id,
    *,
    force: bool = False,
    only: list[str] | None = None,
    actor=None,
    on_node: Callable[[Outcome], None] | None = None,
) -> SceneRun:
    scene = load_scene(scene_id)
    nodes = selected(only)
    run = run_services.run_create(
        story_id=scene.story_id,
        scene_id=scene.pk,
        workflow=WORKFLOW,
        params={"force": force, "only": [n.name for n in nodes] if only else []},
        actor=actor,
        start=True,
    )
    return _execute(scene, run, nodes, force=force, on_node=on_node)


def resume(run_id, *, on_node: Callable[[Outcome], None] | None = None) -> SceneRun:
    """Continue a failed (or cancelled) run: the nodes it finished stay done, the rest run."""
    run = get_or_not_found(Run, run_id, what="run")
    if run.workflow != WORKFLOW or run.scene_id is None:
        raise InvalidInput(f"run {run.pk} is not a {WORKFLOW} run", field="run_id")
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise InvalidTransition(f"run {run.pk} is {run.status}: only a failed or cancelled run can be resumed")
    run = run_services.run_set_status(run_id=run.pk, status=RunStatus.RUNNING)
    params = run.params or {}
    return _execute(
        load_scene(run.scene_id),
        run,
        selected(params.get("only") or None),
        force=bool(params.get("force")),
        on_node=on_node,
    )


def _execute(scene: Scene, run: Run, nodes: list[Node], *, force: bool, on_node) -> SceneRun:
    finished = dict(
        AgentStep.objects.filter(run=run, status__in=(StepStatus.SUCCEEDED, StepStatus.SKIPPED)).values_list(
            "node", "status"
        )
    )
    attempts = {}
    for node_name in AgentStep.objects.filter(run=run).values_list("node", flat=True):
        attempts[node_name] = attempts.get(node_name, 0) + 1
    outcomes = []
    for node in nodes:
        if node.name in finished:
            outcome = Outcome(node, "done", [f"finished earlier in this run ({finished[node.name]})"])
        else:
            scene = load_scene(scene.pk)  # the planning lock or the text may have changed meanwhile
            outcome = _run_node(scene, run, node, force=force, attempt=attempts.get(node.name, 0) + 1)
        outcomes.append(outcome)
        if on_node is not None:
            on_node(outcome)
        if outcome.result == "failed":
            run = run_services.run_set_status(
                run_id=run.pk, status=RunStatus.FAILED, error=f"{node.name}: {outcome.error}"
            )
            return SceneRun(scene, run, outcomes)
    run = run_services.run_set_status(run_id=run.pk, status=RunStatus.SUCCEEDED)
    return SceneRun(scene, run, outcomes)


def _run_node(scene: Scene, run: Run, node: Node, *, force: bool, attempt: int) -> Outcome:
    """In-process: the node gets a new running step."""

    def begin(summary, agent):
        return run_services.step_start(
            run_id=run.pk, node=node.name, agent=agent, attempt=attempt, input_summary=summary
        )

    return run_node(scene, run, node, force=force, begin=begin)


def run_node(scene: Scene, run: Run, node: Node, *, force: bool, begin) -> Outcome:
    """Decide, then reuse or make, on the step that ``begin(input_summary, agent)`` returns
    running (None: another delivery of this node holds it)."""
    decision = decide(scene, node, force=force)
    step = begin(
        {
            "decision": decision.action,
            "reasons": decision.reasons,
            "inputs": {t: {"artifact_id": str(a.pk), "version": a.version} for t, a in decision.inputs.items()},
            "fingerprint": decision.fingerprint,
            "basis": decision.basis,
        },
        node.generator_path[:100],
    )
    if step is None:
        return Outcome(node, "superseded", ["another delivery of this node runs it"])
    try:
        if decision.action == REFUSE:
            raise NodeRefused("; ".join(decision.reasons))
        if decision.action == REUSE:
            artifact = _record_reuse(step, decision, decision.latest)
            return Outcome(node, "reused", decision.reasons, artifact)
        artifact, made = _make(scene, run, step, decision, force=force)
        reasons = decision.reasons if made else ["made meanwhile by another run"]
        return Outcome(node, "made" if made else "reused", reasons, artifact)
    except Exception as exc:  # a generator is plugged-in code: whatever it raises fails the node, not the process
        cause = exc.__cause__ if isinstance(exc, GeneratorFailed) else exc
        error = f"{type(cause).__name__}: {cause}"
        logger.warning(
            "pipeline node %s of scene %s failed: %s",
            node.name,
            scene.pk,
            error,
            exc_info=not isinstance(exc, ArtifactError),
        )
        try:
            run_services.step_finish(step_id=step.pk, status=StepStatus.FAILED, error=error)
        except InvalidTransition:  # finished meanwhile by a second delivery that took the step over
            return Outcome(node, "superseded", decision.reasons, error=error)
        return Outcome(node, "failed", decision.reasons, error=error, retryable=isinstance(exc, GeneratorFailed))


def _make(scene: Scene, run: Run, step: AgentStep, decision: Decision, *, force: bool) -> tuple[Artifact, bool]:
    node = decision.node
    generator, _ = node.generator()
    artifact_id = uuid.uuid4()
    context = NodeContext(
        scene=scene,
        inputs=decision.inputs,
        params=decision.basis["params"],
        content_url=reverse("artifact-content", kwargs={"artifact_id": artifact_id}),
    )
    try:
        result = generator(context)  # no transaction and no lock are held while it runs
    except Exception as exc:
        raise GeneratorFailed(str(exc)) from exc
    content = mime_type = None
    if isinstance(result, tuple):
        payload, content, mime_type = result
    else:
        payload = result
    return _record_made(
        scene, run, step, decision, payload, content=content, mime_type=mime_type, artifact_id=artifact_id, force=force
    )


@atomic_write
def _record_made(
    scene, run, step, decision, payload, *, content, mime_type, artifact_id, force
) -> tuple[Artifact, bool]:
    node = decision.node
    locks.lock_stream(story_id=scene.story_id, scene_id=scene.pk, type=node.name)
    latest = _latest(scene, node.name)
    if not force and latest is not None and latest.fingerprint == decision.fingerprint:
        # Another run made this very version while this one generated: keep theirs.
        return _record_reuse(step, decision, latest, reason="made meanwhile by another run"), False
    service = ArtifactService()
    kind = next((k for k in get_type(node.name).kinds if k in MEDIA_KINDS), None) if content is not None else None
    artifact = service.create_artifact(
        scene.pk,
        node.name,
        payload,
        kind=kind,
        content=content,
        mime_type=mime_type,
        created_by_step=step,
        fingerprint=decision.fingerprint,
        artifact_id=artifact_id,
    )
    # The artifact was created just now, in this transaction: its relations cannot close a
    # cycle, and go in one INSERT without the relation graph's lock (see relate_many).
    service.relate_many(
        artifact.pk,
        [(source.pk, RelationType.DERIVED_FROM) for source in decision.inputs.values()],
        created_by_step=step,
        source_is_new=True,
    )
    run_services.step_finish(
        step_id=step.pk,
        status=StepStatus.SUCCEEDED,
        output_summary={"action": "made", "artifact_id": str(artifact.pk), "version": artifact.version},
        links=_links(decision, artifact),
    )
    return artifact, True


def _record_reuse(step, decision, artifact, *, reason: str | None = None) -> Artifact:
    """The step finishes skipped, with its links: one action (``step_finish``'s transaction,
    or the caller's when it runs inside ``_record_made``)."""
    run_services.step_finish(
        step_id=step.pk,
        status=StepStatus.SKIPPED,
        links=_links(decision, artifact),
        output_summary={
            "action": "reused",
            "artifact_id": str(artifact.pk),
            "version": artifact.version,
            "reason": reason or "; ".join(decision.reasons),
        },
    )
    return artifact


def _links(decision, output) -> list[tuple]:
    """What the step consumed and produced, recorded with its finish (stage: its node)."""
    return [*((source.pk, Direction.CONSUMED) for source in decision.inputs.values()), (output.pk, Direction.PRODUCED)]


def story_scenes(story_id) -> list[Scene]:
    """A story's scenes in position order, the order ``--story`` runs them in."""
    get_or_not_found(Story.objects.only("id"), story_id, what="story")
    return list(story_selectors.story_scenes(story_id).only("id", "position", "title"))
