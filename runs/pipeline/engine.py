"""One node of a scene: decide whether to reuse or make, and do it (SPEC §10).

1. **Decide**, without a lock: the node's inputs are the latest versions of the types it
   consumes, read with its own stream's latest in one query. It reuses its latest version
   when that version's fingerprint is the one computed now, or when the scene's planning is
   locked and the type is a planning type; otherwise it makes the next version (``force``
   makes one anyway, except for locked planning types). Every decision carries its reasons,
   and a remake names its *root* cause (``scene_intent changed (v1 -> v2)``, ``the scene
   text changed``, a generator's new version) and the input it arrives through: the
   question users of every other pipeline tool keep asking is "why did this re-run?".
2. **Generate**, outside any transaction: a generator may take minutes, and no row or
   stream stays locked meanwhile. The step is running (``step_claim``) while it does.
3. **Record**, in one action (``runs.services.pipeline_record_made`` or
   ``pipeline_record_reused``): a version made meanwhile by another run with this
   fingerprint is kept and the work dropped, so two runs of one scene end with at most one
   version per (type, fingerprint); a planning lock taken meanwhile keeps the locked
   version; a run cancelled meanwhile writes nothing.

What runs when, retries and resume are the driver's (``driver.py``), the same in-process
and on the workers.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field

from django.db.models import Q
from django.urls import reverse

from artifacts import selectors
from artifacts.content import prepare_content
from artifacts.models import Artifact
from artifacts.payloads import MEDIA_KINDS, check_payload, get_type
from kernel.errors import ArtifactError, InvalidContent, NodeRefused
from kernel.locks import LockOrderViolation
from kernel.request_id import get_request_id
from runs import services as run_services
from runs.services import RunStopped, StepTaken
from stories import selectors as story_selectors
from stories.models import Scene

from . import fingerprint as fp
from .generators import InputError
from .nodes import NODES, Node, selected

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
    # The changes at the origin of a remake, which the nodes downstream inherit.
    roots: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """What the node's step records of its decision (the admin's run page shows it)."""
        return {
            "decision": self.action,
            "reasons": self.reasons,
            "roots": self.roots,
            "inputs": {t: {"artifact_id": str(a.pk), "version": a.version} for t, a in self.inputs.items()},
            "fingerprint": self.fingerprint,
            "basis": self.basis,
        }


@dataclass
class Outcome:
    node: Node
    # "made", "reused", "failed", "done" (finished earlier in a resumed run), "stopped" (the
    # run was cancelled or failed meanwhile) or "superseded" (a second delivery of the same
    # node took its step over; that one carries on).
    result: str
    reasons: list[str]
    artifact: Artifact | None = None
    error: str = ""
    retryable: bool = False  # the generator raised: another attempt may succeed
    attempt: int = 1


class GeneratorFailed(Exception):
    """What a generator raised: plugged-in code, perhaps a model that is down for a while."""


# -- deciding ---------------------------------------------------------------------------------


@dataclass
class Known:
    """What explaining many scenes at once read up front (``explain_scenes``), so that a
    decision looks it up instead of querying: the basis recorded for each (scene, type,
    fingerprint) of a latest version, and (version, step summary) of artifacts by id."""

    bases: dict = field(default_factory=dict)
    made: dict = field(default_factory=dict)


def _previous_basis(scene: Scene, latest: Artifact, known: Known | None = None) -> dict | None:
    """The basis of the step that made a version with ``latest``'s fingerprint (an edit
    carries its parent's): one lookup on artifact_fingerprint_idx."""
    if not latest.fingerprint:
        return None
    if known is not None:
        return known.bases.get((scene.pk, latest.type, latest.fingerprint))
    summary = (
        Artifact.objects.filter(scene_id=scene.pk, type=latest.type, fingerprint=latest.fingerprint)
        .exclude(created_by_step=None)
        .order_by("-version")
        .values_list("created_by_step__input_summary", flat=True)
        .first()
    )
    return (summary or {}).get("basis")


def _through(roots_by_input: dict[str, list[str]]) -> list[str]:
    """Reasons from the roots that reach a node through its inputs: each root once, with the
    inputs it arrives through (``the scene text changed, through scene_intent, visual_plan``);
    a root that is the input itself (``scene_intent changed (v1 -> v2)``) needs no "through"."""
    arrivals: dict[str, list[str]] = {}
    for type_name, roots in roots_by_input.items():
        for root in roots:
            arrivals.setdefault(root, []).append(type_name)
    reasons = []
    for root, inputs in arrivals.items():
        indirect = [t for t in inputs if not root.startswith(f"{t} ")]
        reasons.append(f"{root}, through {', '.join(indirect)}" if indirect else root)
    return reasons


def _local_roots(node: Node, before: dict, basis: dict) -> list[str]:
    """Changes of the node itself (not of its inputs), named after it."""
    roots = []
    if before.get("scheme") != basis["scheme"]:
        roots.append(f"the fingerprint scheme changed ({before.get('scheme')} -> {basis['scheme']})")
    if before.get("generator") != basis["generator"]:
        roots.append(f"{node.name}'s generator changed ({before.get('generator')} -> {basis['generator']})")
    elif before.get("generator_version") != basis["generator_version"]:
        roots.append(
            f"{node.name}'s generator version changed ({before.get('generator_version')} -> "
            f"{basis['generator_version']})"
        )
    if before.get("text_sha256") != basis["text_sha256"]:
        roots.append("the scene text changed")
    old_params, new_params = before.get("params") or {}, basis["params"]
    changed = sorted(k for k in set(old_params) | set(new_params) if old_params.get(k) != new_params.get(k))
    if changed:
        roots.append(f"{node.name}'s params changed ({', '.join(changed)})")
    return roots


def _changes(
    scene: Scene, node: Node, latest: Artifact, basis: dict, known: Known | None = None
) -> tuple[list[str], list[str]]:
    """Why ``latest`` no longer fits: the reasons (each root cause with the input it arrives
    through) and the root causes themselves. Two queries: the previous basis, and the
    versions of the inputs that changed with the roots recorded by the steps that made them."""
    before = _previous_basis(scene, latest, known)
    if before is None:
        root = f"{node.name} v{latest.version} was made outside the pipeline"
        return [root], [root]
    roots = _local_roots(node, before, basis)
    reasons = list(roots)
    old, new = before.get("inputs") or {}, basis["inputs"]
    changed = [t for t in sorted(set(old) | set(new)) if old.get(t) != new.get(t)]
    if changed:
        ids = [value for t in changed for value in (old.get(t), new.get(t)) if value]
        if known is not None:
            found = {str(i): known.made[str(i)] for i in ids if str(i) in known.made}
        else:
            found = {
                str(pk): (version, summary)
                for pk, version, summary in Artifact.objects.filter(pk__in=ids).values_list(
                    "pk", "version", "created_by_step__input_summary"
                )
            }
        inherited = {}
        for t in changed:
            was = f"v{found[old[t]][0]}" if old.get(t) in found else "none"
            now_version, made_by = found.get(new.get(t), (None, None))
            inherited[t] = (made_by or {}).get("roots") or [f"{t} changed ({was} -> v{now_version})"]
        reasons += _through(inherited)
        roots += [root for upstream in inherited.values() for root in upstream]
    if not reasons:
        reasons = roots = ["its fingerprint differs"]
    return reasons, list(dict.fromkeys(roots))


def decide(
    scene: Scene,
    node: Node,
    *,
    force: bool = False,
    pending: dict[str, list[str]] | None = None,
    heads: dict[str, Artifact] | None = None,
    known: Known | None = None,
) -> Decision:
    """What ``node`` would do now, and why. ``pending``: the nodes that will make a new version
    before this one runs, with their roots (``--explain`` cannot know those versions' ids
    yet). One query reads the latest version of the node's type and of each input, unless
    the caller read them already (``heads``, by type)."""
    pending = pending or {}
    if heads is None:
        heads = selectors.scene_heads(scene.pk, [node.name, *(t for t in node.consumes if t not in pending)])
    latest = heads.get(node.name)
    inputs = {t: heads.get(t) for t in node.consumes if t not in pending}
    if get_type(node.name).planning and scene.planning_locked:
        found = {t: a for t, a in inputs.items() if a is not None}
        if latest is not None:
            return Decision(node, REUSE, [f"v{latest.version}: planning is locked on this scene"], found, latest)
        return Decision(node, REFUSE, ["planning is locked on this scene and it has no version to keep"], found)
    will_change = {t: roots for t, roots in pending.items() if t in node.consumes}
    missing = [t for t, artifact in inputs.items() if artifact is None]
    if missing and not will_change:
        return Decision(node, REFUSE, [f"no {t} to read yet" for t in missing], latest=latest)
    _, version = node.generator()
    basis = fp.basis(
        node=node.name,
        generator=node.generator_path,
        generator_version=version,
        inputs={t: a.pk for t, a in inputs.items() if a is not None},
        text_sha256=fp.text_digest(scene.source_text) if node.reads_text else None,
        params=node.params,
    )
    if will_change:  # (--explain) its own changes, then those that will reach it
        if latest is None:
            return Decision(node, MAKE, ["nothing yet"], latest=latest)
        before = _previous_basis(scene, latest, known)
        roots = _local_roots(node, before, basis) if before is not None else []
        reasons = [*roots, *_through(will_change)]
        roots += [root for upstream in will_change.values() for root in upstream]
        return Decision(node, MAKE, reasons, latest=latest, roots=list(dict.fromkeys(roots)))
    decision = Decision(node, MAKE, [], inputs=inputs, latest=latest, basis=basis, fingerprint=fp.fingerprint(basis))
    if force:
        decision.reasons = decision.roots = ["forced"]
    elif latest is None:
        decision.reasons = ["nothing yet"]
    elif latest.fingerprint == decision.fingerprint:
        decision.action, decision.reasons = REUSE, [f"v{latest.version}: fingerprint matches"]
    else:
        decision.reasons, decision.roots = _changes(scene, node, latest, basis, known)
    return decision


def explain(scene_id, *, force: bool = False, only: list[str] | None = None) -> list[Decision]:
    """Every node's decision, in stage order, writing nothing."""
    scene = story_selectors.scene_for_pipeline(scene_id)
    return explain_scenes([scene], force=force, only=only)[0]


def explain_scenes(scenes: list[Scene], *, force: bool = False, only: list[str] | None = None) -> list[list[Decision]]:
    """``explain`` of each scene (its ``source_text`` and ``planning_locked`` loaded), writing
    nothing, in three queries whatever the number of scenes and nodes: the scenes' latest
    versions, the bases their steps recorded, and the inputs those bases name."""
    nodes = selected(only)
    types = list(dict.fromkeys(t for node in nodes for t in (node.name, *node.consumes)))
    heads = selectors.scenes_heads([scene.pk for scene in scenes], types)
    known = _known(heads)
    explained = []
    for scene in scenes:
        decisions, pending = [], {}
        for node in nodes:
            decision = decide(scene, node, force=force, pending=pending, heads=heads.get(scene.pk, {}), known=known)
            if decision.action == MAKE:
                pending[node.name] = decision.roots or [f"{node.name} has no version yet"]
            decisions.append(decision)
        explained.append(decisions)
    return explained


def _known(heads: dict) -> Known:
    """What the decisions on ``heads`` may look up: two queries (none without versions)."""
    known = Known()
    wanted = Q()
    for scene_heads in heads.values():
        for artifact in scene_heads.values():
            if artifact.fingerprint:
                wanted |= Q(scene_id=artifact.scene_id, type=artifact.type, fingerprint=artifact.fingerprint)
    if not wanted:
        return known
    rows = (
        Artifact.objects.filter(wanted)
        .exclude(created_by_step=None)
        .order_by("version")
        .values_list("scene_id", "type", "fingerprint", "created_by_step__input_summary")
    )
    for scene_id, type_name, fingerprint, summary in rows:  # the newest version's step wins, as in _previous_basis
        known.bases[(scene_id, type_name, fingerprint)] = (summary or {}).get("basis")
    ids = {str(a.pk) for scene_heads in heads.values() for a in scene_heads.values()}
    for basis in known.bases.values():
        ids |= {str(i) for i in ((basis or {}).get("inputs") or {}).values() if i}
    for pk, version, summary in Artifact.objects.filter(pk__in=ids).values_list(
        "pk", "version", "created_by_step__input_summary"
    ):
        known.made[str(pk)] = (version, summary)
    return known


def actions(scene: Scene, heads: dict[str, Artifact]) -> dict[str, str]:
    """What a run of the whole pipeline would do at each node now (MAKE, REUSE or REFUSE):
    ``explain``'s decisions, from the latest versions the caller read (``heads``, by type),
    without their reasons, so without a query (the storyboard asks it of every scene of a
    story at once). A node is made when a node it consumes will be; otherwise as ``decide``
    says: kept when planning is locked on a planning type, refused when an input is missing,
    else made unless its latest version's fingerprint is the one computed now."""
    found: dict[str, str] = {}
    text_sha256 = None
    for node in NODES:
        latest = heads.get(node.name)
        if get_type(node.name).planning and scene.planning_locked:
            found[node.name] = REUSE if latest is not None else REFUSE
            continue
        if any(found.get(t) == MAKE for t in node.consumes):
            found[node.name] = MAKE
            continue
        inputs = {t: heads.get(t) for t in node.consumes}
        if any(artifact is None for artifact in inputs.values()):
            found[node.name] = REFUSE
            continue
        if latest is None:
            found[node.name] = MAKE
            continue
        if node.reads_text and text_sha256 is None:
            text_sha256 = fp.text_digest(scene.source_text)
        _, version = node.generator()
        basis = fp.basis(
            node=node.name,
            generator=node.generator_path,
            generator_version=version,
            inputs={t: a.pk for t, a in inputs.items()},
            text_sha256=text_sha256 if node.reads_text else None,
            params=node.params,
        )
        found[node.name] = REUSE if latest.fingerprint == fp.fingerprint(basis) else MAKE
    return found


# -- doing ------------------------------------------------------------------------------------


class Stop:
    """Where a driver may be stopped (SIGINT, SIGTERM): ``check`` before each write, and
    ``interruptible`` around what only waits or computes (a generator, a retry's backoff).
    This one never stops; the command's (``holding.SignalStop``) stops on a signal."""

    def check(self) -> None:
        pass

    def interruptible(self):
        return nullcontext()

    def sleep(self, seconds: float) -> None:
        with self.interruptible():
            time.sleep(seconds)


NEVER = Stop()


def reuse_of(decision: Decision, *, attempt: int, step_id=None) -> run_services.Reuse:
    """What the step of a node that reuses its latest version records."""
    return run_services.Reuse(
        node=decision.node.name,
        agent=decision.node.generator_path[:100],
        attempt=attempt,
        input_summary=decision.summary(),
        artifact=decision.latest,
        inputs=[a.pk for a in decision.inputs.values()],
        reason="; ".join(decision.reasons),
        step_id=step_id,
    )


def attempt_node(
    scene: Scene,
    run_id,
    node: Node,
    *,
    force: bool,
    attempt: int,
    step_id=None,
    stop: Stop = NEVER,
    decision: Decision | None = None,
) -> Outcome:
    """One attempt of one node: decide (unless the caller did, ``decision``), then reuse or
    make, on the run's step for it (``step_id``: the pending step a worker was handed;
    otherwise a new one)."""
    decision = decision or decide(scene, node, force=force)
    stop.check()
    try:
        if decision.action == REUSE:
            run_services.pipeline_record_reused(
                run_id=run_id, reuses=[reuse_of(decision, attempt=attempt, step_id=step_id)]
            )
            return Outcome(node, "reused", decision.reasons, decision.latest, attempt=attempt)
        step_id = run_services.step_claim(
            run_id=run_id,
            node=node.name,
            agent=node.generator_path[:100],
            attempt=attempt,
            input_summary=decision.summary(),
            step_id=step_id,
        )
    except RunStopped as exc:
        return Outcome(node, "stopped", [str(exc)], attempt=attempt)
    except StepTaken:
        return Outcome(node, "superseded", ["another delivery of this node runs it"], attempt=attempt)
    try:
        if decision.action == REFUSE:
            raise NodeRefused("; ".join(decision.reasons))
        recorded = _make(scene, run_id, step_id, decision, force=force, stop=stop)
        if recorded.made:
            return Outcome(node, "made", decision.reasons, recorded.artifact, attempt=attempt)
        return Outcome(node, "reused", [recorded.reason], recorded.artifact, attempt=attempt)
    except RunStopped as exc:
        return Outcome(node, "stopped", [str(exc)], attempt=attempt)
    except StepTaken:  # ended meanwhile: by a cancel (or a failure) of the run, or by a second delivery
        return _taken(node, run_id, decision, attempt=attempt)
    except LockOrderViolation:  # a bug of ours, not the node's: never a node failure
        raise
    except Exception as exc:  # a generator is plugged-in code: whatever it raises fails the node, not the process
        cause = exc.__cause__ if isinstance(exc, GeneratorFailed) else exc
        error = f"{type(cause).__name__}: {cause}"
        logger.warning(
            "pipeline node %s of scene %s failed: %s",
            node.name,
            scene.pk,
            error,
            exc_info=not isinstance(exc, ArtifactError | NodeRefused),
        )
        try:
            run_services.step_fail(step_id=step_id, error=error)
        except StepTaken:  # ended meanwhile: the run was cancelled, or a second delivery took it over
            return _taken(node, run_id, decision, attempt=attempt)
        retryable = isinstance(exc, GeneratorFailed) and not isinstance(exc.__cause__, InputError)
        return Outcome(node, "failed", decision.reasons, error=error, retryable=retryable, attempt=attempt)


def _taken(node: Node, run_id, decision: Decision, *, attempt: int) -> Outcome:
    """The node's step was ended by someone else: the run's end (stopped), or a second
    delivery of the node that took the step over (superseded; that one carries on)."""
    status = run_services.run_status(run_id=run_id)
    if status != "running":
        return Outcome(node, "stopped", [f"the run is {status}"], attempt=attempt)
    return Outcome(node, "superseded", decision.reasons, attempt=attempt)


def _make(scene: Scene, run_id, step_id, decision: Decision, *, force: bool, stop: Stop):
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
        with stop.interruptible():
            result = generator(context)  # no transaction and no lock are held while it runs
    except Exception as exc:
        raise GeneratorFailed(str(exc)) from exc
    artifact_type = get_type(node.name)
    content = mime_type = None
    if isinstance(result, tuple):
        payload, content, mime_type = result
    else:
        payload = result
    check_payload(artifact_type, payload)
    kind = artifact_type.default_kind
    prepared = None
    if content is not None:
        kind = next((k for k in artifact_type.kinds if k in MEDIA_KINDS), None)
        if kind is None:
            raise InvalidContent(f"{node.name} artifacts carry no content; its generator returned bytes")
        prepared = prepare_content(content, mime_type=mime_type, kind=kind)
    elif kind in MEDIA_KINDS:
        raise InvalidContent(f"a {kind} artifact needs its bytes: its generator returned none")
    stop.check()
    return run_services.pipeline_record_made(
        run_id=run_id,
        step_id=step_id,
        story_id=scene.story_id,
        scene_id=scene.pk,
        type=node.name,
        kind=kind,
        payload=payload,
        content=prepared,
        inputs=[a.pk for a in decision.inputs.values()],
        fingerprint=decision.fingerprint,
        force=force,
        artifact_id=artifact_id,
        request_id=get_request_id(),
    )
