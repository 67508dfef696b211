"""The pipeline's queries per node (SPEC §11: no N+1; the issue's budget: at most 10 per
made node, 4 per reused node): a node reads the latest of its type and of its inputs in one
query, and records in one action whatever the number of its inputs."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from artifacts.payloads import MEDIA_KINDS, get_type
from runs.pipeline import driver, engine
from runs.pipeline.nodes import NODES


def counted_run(scene_id, monkeypatch) -> dict[str, tuple[str, list[str]]]:
    figures = {}
    original = engine.attempt_node

    def attempt_node(scene, run_id, node, **kwargs):
        with CaptureQueriesContext(connection) as queries:
            outcome = original(scene, run_id, node, **kwargs)
        figures[node.name] = (outcome.result, [q["sql"] for q in queries.captured_queries])
        return outcome

    with monkeypatch.context() as patch:
        patch.setattr(engine, "attempt_node", attempt_node)
        driver.run_scene(scene_id)
    return figures


def queries(statements: list[str]) -> list[str]:
    """The statements but transaction control (SQLite's BEGIN and COMMIT are captured too,
    PostgreSQL's are not: the counts are the same on both)."""
    return [sql for sql in statements if not sql.startswith(("BEGIN", "COMMIT"))]


@pytest.mark.django_db(transaction=True)
def test_a_node_costs_at_most_10_queries_made_and_4_reused(scene):
    made = counted_run(scene.pk, pytest.MonkeyPatch())
    reused = counted_run(scene.pk, pytest.MonkeyPatch())
    assert {result for result, _ in made.values()} == {"made"}
    assert {result for result, _ in reused.values()} == {"reused"}
    for node in NODES:
        # Reused: the latest of its own type and of each input (one query); the run row
        # shared, the skipped step, its consumed and produced links.
        assert len(queries(reused[node.name][1])) == 4, (node.name, reused[node.name][1])
        # Made: the same read; the step claimed (the run row shared, the step); then one
        # record: the scene row shared (a planning type), the content digest's lock (a media
        # type; an advisory lock, PostgreSQL only), the stream's lock with the INSERT, the
        # run row shared, the relations (a node with inputs), the links, the step.
        artifact_type = get_type(node.name)
        media = bool(set(artifact_type.kinds) & set(MEDIA_KINDS)) and connection.vendor == "postgresql"
        expected = 7 + artifact_type.planning + media + bool(node.consumes)
        assert len(queries(made[node.name][1])) == expected <= 10, (node.name, made[node.name][1])
