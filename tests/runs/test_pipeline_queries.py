"""The pipeline's queries per node (SPEC §11: no N+1): what a node records costs the same
whatever the number of its inputs; only deciding reads one latest version per input."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from artifacts.payloads import MEDIA_KINDS, get_type
from runs.pipeline import engine
from runs.pipeline.nodes import NODES


def counted_run(scene_id, monkeypatch) -> dict[str, tuple[str, int]]:
    figures = {}
    original = engine.run_node

    def run_node(scene, run, node, **kwargs):
        with CaptureQueriesContext(connection) as queries:
            outcome = original(scene, run, node, **kwargs)
        figures[node.name] = (outcome.result, len(queries))
        return outcome

    with monkeypatch.context() as patch:
        patch.setattr(engine, "run_node", run_node)
        engine.run_scene(scene_id)
    return figures


def test_a_node_records_in_queries_that_do_not_grow_with_its_inputs(scene, monkeypatch):
    made = counted_run(scene.pk, monkeypatch)
    reused = counted_run(scene.pk, monkeypatch)
    assert {result for result, _ in made.values()} == {"made"}
    assert {result for result, _ in reused.values()} == {"reused"}
    # Reused: the latest of its own type and of each input; the step started (savepoint, the
    # run's lock, its last sequence, INSERT, release); the step finished with its links
    # (savepoint, the artifacts' locks in one IN, whether any is pruned, the step's lock, the
    # links' INSERT, UPDATE, release).
    for node in NODES:
        assert reused[node.name][1] == 1 + len(node.consumes) + 5 + 7, node.name
    # Made: the same plus the create and the relations (one INSERT); per input, only its read.
    # What a create costs depends on the type (a planning type holds its scene, a media type
    # its content) and a node without inputs records no relations: compared within each kind.
    beyond_inputs = {}
    for node in NODES:
        artifact_type = get_type(node.name)
        kind = (artifact_type.planning, bool(set(artifact_type.kinds) & set(MEDIA_KINDS)), bool(node.consumes))
        beyond_inputs.setdefault(kind, set()).add(made[node.name][1] - len(node.consumes))
    assert all(len(counts) == 1 for counts in beyond_inputs.values()), beyond_inputs
