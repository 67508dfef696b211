"""The lineage walk on PostgreSQL: breadth-first, each artifact visited once (SPEC §7).

``artifact_lineage(root, descendants, max_depth, max_nodes)`` returns (node_id, node_depth)
for at most ``max_nodes`` artifacts within ``max_depth`` hops of ``root``, root excluded.
It is one recursive CTE. Its step is a LATERAL pair of lookups, each served by an index:
children by ``parent_id`` or the parent by primary key, and relations by either end.
The step keeps a row only when ``artifact_lineage_visit`` reports a first visit: that
function inserts the id into a session-local temporary table with a primary key. A
recursive CTE runs one level at a time, so an artifact's first visit is at its least depth,
and no artifact is expanded twice however many paths lead to it.

The temporary table is created on a connection's first walk and emptied at every commit
(``ON COMMIT DELETE ROWS``), and at the start of every walk. Both functions run with the
caller's rights: the service role needs only its usual read rights and TEMP.

SQLite needs no migration: its walk registers the visited set as a Python function on
the connection (``artifacts/lineage.py``).
"""

from django.db import migrations

# The two steps, kept here so the EXPLAIN test checks exactly what the function runs
# (``frontier`` stands for the walk's current row).
STEP_DESCENDANTS = """
    SELECT a.id FROM artifacts_artifact a WHERE a.parent_id = frontier.id
    UNION ALL
    SELECT r.from_artifact_id FROM artifacts_artifactrelation r WHERE r.to_artifact_id = frontier.id
"""
STEP_ANCESTORS = """
    SELECT a.parent_id FROM artifacts_artifact a WHERE a.id = frontier.id AND a.parent_id IS NOT NULL
    UNION ALL
    SELECT r.to_artifact_id FROM artifacts_artifactrelation r WHERE r.from_artifact_id = frontier.id
"""


def _walk(step: str) -> str:
    return f"""
      RETURN QUERY WITH RECURSIVE frontier(id, depth) AS (
        SELECT p_root, 0
        UNION ALL
        SELECT step.id, frontier.depth + 1
        FROM frontier CROSS JOIN LATERAL ({step}) AS step(id)
        WHERE frontier.depth < p_max_depth AND artifact_lineage_visit(step.id, frontier.depth + 1)
      )
      SELECT frontier.id, frontier.depth FROM frontier WHERE frontier.depth > 0 LIMIT p_max_nodes;"""


FORWARD = [
    # The visited set does not exist when the functions are created; it is per connection.
    "SET LOCAL check_function_bodies = off",
    """CREATE OR REPLACE FUNCTION artifact_lineage_visit(p_id uuid, p_depth integer) RETURNS boolean
    LANGUAGE sql VOLATILE AS $$
      INSERT INTO pg_temp.artifact_lineage_seen (id, depth) VALUES (p_id, p_depth)
      ON CONFLICT (id) DO NOTHING
      RETURNING true
    $$""",
    f"""CREATE OR REPLACE FUNCTION artifact_lineage(
      p_root uuid, p_descendants boolean, p_max_depth integer, p_max_nodes integer
    ) RETURNS TABLE (node_id uuid, node_depth integer)
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
      IF to_regclass('pg_temp.artifact_lineage_seen') IS NULL THEN
        CREATE TEMPORARY TABLE artifact_lineage_seen (id uuid PRIMARY KEY, depth integer NOT NULL)
          ON COMMIT DELETE ROWS;
      ELSE
        DELETE FROM pg_temp.artifact_lineage_seen;
      END IF;
      INSERT INTO pg_temp.artifact_lineage_seen (id, depth) VALUES (p_root, 0);
      IF p_descendants THEN{_walk(STEP_DESCENDANTS)}
      ELSE{_walk(STEP_ANCESTORS)}
      END IF;
    END
    $$""",
]
REVERSE = [
    "DROP FUNCTION IF EXISTS artifact_lineage(uuid, boolean, integer, integer)",
    "DROP FUNCTION IF EXISTS artifact_lineage_visit(uuid, integer)",
]


def _run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement, params=None)

    return apply


class Migration(migrations.Migration):
    dependencies = [("artifacts", "0004_list_indexes")]

    operations = [migrations.RunPython(_run(FORWARD), _run(REVERSE))]
