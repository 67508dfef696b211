"""derived_from relations from what runs consumed and produced (``backfill_relations``, SPEC §9).

A step that produced artifact P and consumed artifact C made P from C: "P derived_from C"
(the pipeline records it as it goes, SPEC §10; runs recorded before that, or by REST workers
that link without relating, lack it). Links without a step are grouped by run and stage.

A produced artifact that a *different* step created (``created_by_step``) was reused, not
made, by this step: it was made from that other step's inputs, so it gets no relation here
(a planning-locked version reused after its inputs changed would otherwise claim inputs it
never saw). Relations that exist are skipped; one that would close a cycle of derived_from
and transcoded_from is skipped and reported, never written.

Each batch of runs is one transaction under the relation-graph lock (the one ``relate``
takes), so the cycle check sees every relation committed before it and every one the
batch added.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction

from artifacts import lineage
from artifacts import services as artifact_services
from artifacts.models import ACYCLIC_RELATIONS, Artifact, ArtifactRelation, RelationType
from kernel import locks
from kernel.request_id import get_request_id
from kernel.transactions import atomic_write
from runs.models import Direction, RunArtifactLink


@dataclass(frozen=True)
class Candidate:
    run_id: uuid.UUID
    step_id: uuid.UUID | None
    stage: str
    produced: uuid.UUID
    consumed: uuid.UUID

    def __str__(self):
        where = f"step {self.step_id}" if self.step_id else f"stage {self.stage}"
        return f"run {self.run_id} {where}: {self.produced} derived_from {self.consumed}"


@dataclass
class BackfillResult:
    runs: int = 0
    created: list[Candidate] = field(default_factory=list)
    existing: int = 0
    reused: int = 0  # produced links of artifacts another step made
    cycles: list[Candidate] = field(default_factory=list)


def candidates(run_ids) -> tuple[list[Candidate], int]:
    """The (produced, consumed) pairs of these runs' steps, and how many produced links were
    left out as reused. Two queries: the runs' links, the producers of what they produced."""
    groups: dict[tuple, dict[str, set]] = defaultdict(lambda: {Direction.PRODUCED: set(), Direction.CONSUMED: set()})
    for run_id, step_id, stage, direction, artifact_id in (
        RunArtifactLink.objects.filter(run_id__in=list(run_ids))
        .order_by()
        .values_list("run_id", "step_id", "stage", "direction", "artifact_id")
    ):
        key = (run_id, step_id, "") if step_id else (run_id, None, stage)
        groups[key][direction].add(artifact_id)
    produced = {artifact for group in groups.values() for artifact in group[Direction.PRODUCED]}
    makers = dict(
        Artifact.objects.filter(pk__in=produced, created_by_step__isnull=False)
        .order_by()
        .values_list("pk", "created_by_step_id")
    )
    pairs, reused = [], 0
    for (run_id, step_id, stage), group in sorted(groups.items(), key=lambda item: tuple(map(str, item[0]))):
        for made in sorted(group[Direction.PRODUCED]):
            if step_id is not None and makers.get(made, step_id) != step_id:
                reused += 1
                continue
            pairs.extend(
                Candidate(run_id, step_id, stage, made, source)
                for source in sorted(group[Direction.CONSUMED])
                if source != made
            )
    return pairs, reused


@atomic_write
def backfill_runs(*, run_ids, dry_run: bool = False) -> BackfillResult:
    """Write the missing derived_from relations of these runs (one transaction). A dry run
    does the same work and rolls it back, so its cycle checks count the batch's own edges."""
    run_ids = list(run_ids)
    result = BackfillResult(runs=len(run_ids))
    pairs, result.reused = candidates(run_ids)
    if not pairs:
        return result
    locks.lock_relation_graph()
    existing = set(
        ArtifactRelation.objects.filter(
            from_artifact_id__in={p.produced for p in pairs},
            to_artifact_id__in={p.consumed for p in pairs},
            relation_type=RelationType.DERIVED_FROM,
        )
        .order_by()
        .values_list("from_artifact_id", "to_artifact_id")
    )
    # Only an artifact something derives from can be reached from elsewhere, so only those
    # need the (recursive) cycle check; the batch's own new edges count too.
    reachable = set(
        ArtifactRelation.objects.filter(
            to_artifact_id__in={p.produced for p in pairs}, relation_type__in=ACYCLIC_RELATIONS
        )
        .order_by()
        .values_list("to_artifact_id", flat=True)
        .distinct()
    )
    request_id = get_request_id()
    pending: list[ArtifactRelation] = []
    for pair in pairs:
        edge = (pair.produced, pair.consumed)
        if edge in existing:
            result.existing += 1
            continue
        if pair.produced in reachable:
            if pending:  # the walk reads the table: what the batch added must be in it
                artifact_services.relations_insert(pending)
                pending = []
            if lineage.reaches(start=pair.consumed, goal=pair.produced, over=ACYCLIC_RELATIONS):
                result.cycles.append(pair)
                continue
        pending.append(
            ArtifactRelation(
                from_artifact_id=pair.produced,
                to_artifact_id=pair.consumed,
                relation_type=RelationType.DERIVED_FROM,
                created_by_step_id=pair.step_id,
                request_id=request_id,
            )
        )
        existing.add(edge)
        reachable.add(pair.consumed)
        result.created.append(pair)
    if pending:
        artifact_services.relations_insert(pending)
    if dry_run:
        transaction.set_rollback(True)
    return result
