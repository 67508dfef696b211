"""Lineage as W3C PROV (SPEC §15): a walk of ``lineage.py`` written with the ``prov`` package.

Each artifact reached is an entity ``artifact:<id>``; the agent step that made it an activity
``step:<id>`` (``wasGeneratedBy``), which ``used`` what it consumed and ``wasAssociatedWith``
its generator (a software agent) and with the user who started its run; a user who made an
artifact outside the pipeline is the agent it is ``wasAttributedTo``. Every lineage edge is a
``wasDerivedFrom``: a parent as ``prov:Revision``, a relation with its ``relation_type`` kept.

The document is closed over the walk: a step appears when it made one of the artifacts
reached, and its ``used`` names only artifacts reached too (the lineage's own rule for edges).

Two queries beside the walk's, whatever its size: the artifacts' authors with their steps, runs
and users (one joined read), and the consumed links of those steps.
"""

from __future__ import annotations

from prov.model import PROV, ProvDocument

from runs.models import Direction, RunArtifactLink

from .models import Artifact

# Our own names: a URN scheme, since the ids are the store's and resolve nowhere public.
NAMESPACES = {
    "store": "urn:artifact-store:",
    "artifact": "urn:artifact-store:artifact:",
    "step": "urn:artifact-store:step:",
    "run": "urn:artifact-store:run:",
    "user": "urn:artifact-store:user:",
    "generator": "urn:artifact-store:generator:",
}

_AUTHORSHIP = (
    "id",
    "content_sha256",
    "created_by_id",
    "created_by__username",
    "created_by_step_id",
    "created_by_step__node",
    "created_by_step__agent",
    "created_by_step__status",
    "created_by_step__attempt",
    "created_by_step__started_at",
    "created_by_step__finished_at",
    "created_by_step__input_summary__basis__generator_version",
    "created_by_step__run_id",
    "created_by_step__run__workflow",
    "created_by_step__run__triggered_by_id",
    "created_by_step__run__triggered_by__username",
)


def provenance_document(lineage) -> ProvDocument:
    """``lineage``: a ``lineage.Lineage`` (the walk, done by the caller)."""
    document = ProvDocument()
    namespaces = {prefix: document.add_namespace(prefix, uri) for prefix, uri in NAMESPACES.items()}
    store = namespaces["store"]  # qualified names for prov:type and prov:role, not strings
    ids = [node.id for node in lineage.nodes]
    authorship = {row["id"]: row for row in Artifact.objects.filter(pk__in=ids).values(*_AUTHORSHIP)}

    for node in lineage.nodes:
        row = authorship.get(node.id, {})
        attributes = {
            "prov:type": store["Artifact"],
            "prov:label": f"{node.type} v{node.version}",
            "store:type": node.type,
            "store:version": node.version,
            "store:kind": node.kind,
            "store:lifecycle_state": node.lifecycle_state,
            "store:content_sha256": row.get("content_sha256", ""),
            "store:story_id": str(node.story_id),
            "store:created_at": node.created_at,
        }
        if node.scene_id is not None:
            attributes["store:scene_id"] = str(node.scene_id)
        if node.pruned_at is not None:
            attributes["store:pruned_at"] = node.pruned_at
        document.entity(_artifact(node.id), attributes)

    steps, users = {}, {}
    for row in authorship.values():
        if row["created_by_id"] is not None:
            users[row["created_by_id"]] = row["created_by__username"]
        if row["created_by_step__run__triggered_by_id"] is not None:
            users[row["created_by_step__run__triggered_by_id"]] = row["created_by_step__run__triggered_by__username"]
        if row["created_by_step_id"] is not None:
            steps[row["created_by_step_id"]] = row
    for user_id, username in sorted(users.items()):
        document.agent(f"user:{user_id}", {"prov:type": PROV["Person"], "store:username": username or ""})
    generators = {}
    for step_id, row in steps.items():
        attributes = {
            "prov:type": store["AgentStep"],
            "prov:label": row["created_by_step__node"],
            "store:node": row["created_by_step__node"],
            "store:run": f"run:{row['created_by_step__run_id']}",
            "store:workflow": row["created_by_step__run__workflow"],
            "store:status": row["created_by_step__status"],
            "store:attempt": row["created_by_step__attempt"],
        }
        document.activity(
            f"step:{step_id}", row["created_by_step__started_at"], row["created_by_step__finished_at"], attributes
        )
        agent = row["created_by_step__agent"]
        if agent:
            generator = generators.setdefault(agent, f"generator:{agent}")
            association = {"prov:role": store["generator"]}
            version = row["created_by_step__input_summary__basis__generator_version"]
            if version is not None:
                association["store:generator_version"] = str(version)
            document.wasAssociatedWith(f"step:{step_id}", generator, other_attributes=association)
        user_id = row["created_by_step__run__triggered_by_id"]
        if user_id is not None:
            document.wasAssociatedWith(
                f"step:{step_id}", f"user:{user_id}", other_attributes={"prov:role": store["triggered_run"]}
            )
    for agent, identifier in sorted(generators.items()):
        document.agent(identifier, {"prov:type": PROV["SoftwareAgent"], "store:generator": agent})

    for node in lineage.nodes:
        row = authorship.get(node.id, {})
        if row.get("created_by_step_id") is not None:
            document.wasGeneratedBy(_artifact(node.id), f"step:{row['created_by_step_id']}")
        elif row.get("created_by_id") is not None:
            document.wasAttributedTo(_artifact(node.id), f"user:{row['created_by_id']}")

    if steps:
        reached = set(ids)
        used = (
            RunArtifactLink.objects.filter(step_id__in=list(steps), direction=Direction.CONSUMED)
            .order_by("step_id", "created_at", "id")
            .values_list("step_id", "artifact_id")
        )
        for step_id, artifact_id in used:
            if artifact_id in reached:
                document.used(f"step:{step_id}", _artifact(artifact_id))

    for edge in lineage.edges:
        if edge.kind == "parent":
            attributes = {"prov:type": PROV["Revision"], "store:relation_type": "parent"}
        else:
            attributes = {"store:relation_type": edge.kind}
        document.wasDerivedFrom(_artifact(edge.from_id), _artifact(edge.to_id), other_attributes=attributes)
    return document


def _artifact(artifact_id) -> str:
    return f"artifact:{artifact_id}"
