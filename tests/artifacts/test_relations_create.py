"""relations_create: many relations of one artifact in one INSERT, with relate's
rules (SPEC §3: unique per edge, no self-edges, derived_from and transcoded_from never form
a cycle). (The pipeline's new versions take ``relations_of_new_version``: tests/runs.)"""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from artifacts import services as artifact_services
from artifacts.models import Artifact, ArtifactRelation
from artifacts.services import prune_rows
from kernel.errors import Cycle, DuplicateRelation, InvalidRelation, NotFound, Pruned
from tests.conftest import SCENE_INTENT


def intents(service, scene, n):
    return [service.create_artifact(scene.pk, "scene_intent", {**SCENE_INTENT, "mood": f"m{i}"}) for i in range(n)]


def edges():
    return sorted(ArtifactRelation.objects.values_list("from_artifact_id", "to_artifact_id", "relation_type"))


def test_relations_are_recorded_all_at_once(service, scene):
    source, a, b = intents(service, scene, 3)
    made = artifact_services.relations_create(
        from_artifact_id=source.pk,
        targets=[(a.pk, "derived_from"), (str(b.pk), "variant_of")],
        request_id="test-request",
    )
    assert [(r.from_artifact_id, r.to_artifact_id, r.relation_type) for r in made] == [
        (source.pk, a.pk, "derived_from"),
        (source.pk, b.pk, "variant_of"),
    ]
    assert {r.request_id for r in ArtifactRelation.objects.all()} == {"test-request"}
    assert artifact_services.relations_create(from_artifact_id=source.pk, targets=[]) == []


def test_queries_do_not_grow_with_the_number_of_relations(service, scene, is_postgres):
    artifacts = intents(service, scene, 14)

    def relate(source, targets, **options):
        with CaptureQueriesContext(connection) as queries:
            artifact_services.relations_create(
                from_artifact_id=source.pk, targets=[(t.pk, "derived_from") for t in targets], **options
            )
        return [q["sql"] for q in queries]

    # The relation graph's lock (PostgreSQL), the artifacts' row locks (one IN, against a
    # prune), the artifacts (one IN, with what the checks need), one INSERT, and this test's
    # transaction's savepoint; nothing points at these sources, so there is no walk.
    one, many = relate(artifacts[0], artifacts[1:2]), relate(artifacts[2], artifacts[3:7])
    assert len(one) == len(many) == (6 if is_postgres else 5)
    assert not any("RECURSIVE" in sql for sql in one + many)
    one, many = relate(artifacts[7], artifacts[8:9]), relate(artifacts[9], artifacts[10:14])
    assert len(one) == len(many) == (6 if is_postgres else 5)
    assert len(edges()) == 10


def test_a_missing_artifact_is_refused_and_nothing_is_written(service, scene):
    source, a = intents(service, scene, 2)
    missing = uuid.uuid4()
    with pytest.raises(NotFound) as refused:
        artifact_services.relations_create(
            from_artifact_id=source.pk, targets=[(a.pk, "derived_from"), (missing, "derived_from")]
        )
    assert (refused.value.field, str(missing) in str(refused.value)) == ("to_artifact_id", True)
    with pytest.raises(NotFound) as refused:
        artifact_services.relations_create(from_artifact_id=missing, targets=[(a.pk, "derived_from")])
    assert refused.value.field == "from_artifact_id"
    with pytest.raises(NotFound):
        artifact_services.relations_create(from_artifact_id=source.pk, targets=[("not-a-uuid", "derived_from")])
    assert edges() == []


def test_relates_rules_hold_and_a_refusal_writes_nothing(service, scene):
    a, b, c = intents(service, scene, 3)
    artifact_services.relation_create(from_artifact_id=a.pk, to_artifact_id=b.pk, relation_type="derived_from")
    refusals = [
        (DuplicateRelation, a.pk, [(c.pk, "derived_from"), (b.pk, "derived_from")]),  # exists
        (DuplicateRelation, a.pk, [(c.pk, "derived_from"), (c.pk, "derived_from")]),  # given twice
        (InvalidRelation, a.pk, [(c.pk, "derived_from"), (a.pk, "variant_of")]),  # self-edge
        (InvalidRelation, a.pk, [(c.pk, "copied_from")]),
        (InvalidRelation, a.pk, [c.pk]),
        (InvalidRelation, a.pk, "not a list"),
        (Cycle, b.pk, [(c.pk, "derived_from"), (a.pk, "transcoded_from")]),  # b -> a -> b
    ]
    for error, source, targets in refusals:
        with pytest.raises(error):
            artifact_services.relations_create(from_artifact_id=source, targets=targets)
    assert edges() == [(a.pk, b.pk, "derived_from")]
    # Another type of an existing edge is no duplicate; variant_of may point back.
    artifact_services.relations_create(from_artifact_id=a.pk, targets=[(b.pk, "variant_of")])
    artifact_services.relations_create(from_artifact_id=b.pk, targets=[(a.pk, "variant_of"), (c.pk, "derived_from")])
    assert len(edges()) == 4


def test_an_edge_into_a_source_makes_its_new_edges_take_the_cycle_walk(service, scene):
    a, b = intents(service, scene, 2)
    artifact_services.relation_create(
        from_artifact_id=b.pk, to_artifact_id=a.pk, relation_type="derived_from"
    )  # something points at a...
    with CaptureQueriesContext(connection) as queries, pytest.raises(Cycle):
        artifact_services.relations_create(
            from_artifact_id=a.pk, targets=[(b.pk, "derived_from")]
        )  # ...so a's edges take the walk
    assert any("RECURSIVE" in q["sql"] for q in queries)
    assert edges() == [(b.pk, a.pk, "derived_from")]


def test_relations_to_a_pruned_artifact_are_refused_whole(service, scene):
    kept, gone = intents(service, scene, 2)
    (source,) = intents(service, scene, 1)
    prune_rows([gone.pk], at=timezone.now())
    with pytest.raises(Pruned) as refused:
        artifact_services.relations_create(
            from_artifact_id=source.pk, targets=[(kept.pk, "derived_from"), (gone.pk, "derived_from")]
        )
    assert (refused.value.code, refused.value.field) == ("pruned", "to_artifact_id")
    assert edges() == []
    with pytest.raises(Pruned) as refused:
        artifact_services.relation_create(from_artifact_id=gone.pk, to_artifact_id=kept.pk, relation_type="variant_of")
    assert refused.value.field == "from_artifact_id" and edges() == []
    assert Artifact.objects.filter(pk=gone.pk, pruned_at__isnull=False).exists()
