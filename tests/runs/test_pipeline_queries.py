"""The pipeline's queries per node (SPEC §11: no N+1; the budget: at most 10 per made node,
4 per reused node): a node reads the latest of its type and of its inputs in one query, and
records in one action whatever the number of its inputs; reuses in a row are decided on one
read and recorded in one transaction."""

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
def test_a_node_costs_at_most_10_queries_made_and_under_2_reused(scene):
    made = counted_run(scene.pk, pytest.MonkeyPatch())
    assert {result for result, _ in made.values()} == {"made"}
    for node in NODES:
        # Made: the latest of its own type and of each input (one query, before); the step
        # claimed (one INSERT, if the run is running; on PostgreSQL, with its commit relaxed,
        # one more statement); then one record: the scene row shared (a planning type), the
        # content digest's lock (a media type; an advisory lock, PostgreSQL only), the
        # stream's lock with the INSERT, the inputs' rows shared and the relations (a node
        # with inputs), the links, the step.
        artifact_type = get_type(node.name)
        postgres = connection.vendor == "postgresql"
        media = bool(set(artifact_type.kinds) & set(MEDIA_KINDS)) and postgres
        # The version's artifact.created event goes with its INSERT on PostgreSQL; on SQLite
        # it is two statements of its own (the event, its fan-out to webhooks), in-process.
        sqlite_events = 0 if postgres else 2
        expected = 4 + postgres + artifact_type.planning + media + 2 * bool(node.consumes) + sqlite_events
        assert len(queries(made[node.name][1])) == expected, (node.name, made[node.name][1])
        assert expected - sqlite_events + 1 <= 10

    # Reused, all of them: the latest of every type the run reads (one query), then one
    # record of all: the run row shared, the steps (one INSERT), the links (one INSERT).
    with CaptureQueriesContext(connection) as captured:
        outcome = driver.run_scene(scene.pk)
    assert {o.result for o in outcome.outcomes} == {"reused"}
    statements = queries([q["sql"] for q in captured.captured_queries])

    def count(prefix):
        return sum(sql.startswith(prefix) for sql in statements)

    assert count('SELECT "artifacts_artifact"') == 1
    assert count("SELECT status FROM runs_run") == 1
    assert count('INSERT INTO "runs_agentstep"') == 1
    assert count('INSERT INTO "runs_runartifactlink"') == 1
    # The run itself: the scene, lost runs, the run (4: created running), its end (2) and its
    # run.finished event (1; on SQLite 2: the event's fan-out to webhooks is a statement of
    # its own), and on PostgreSQL its holder (2) and the reuses' relaxed commit.
    overhead = 9 + (3 if connection.vendor == "postgresql" else 1)
    assert len(statements) == overhead + 1 + 1 + 1 + 1, statements
