"""The immutability triggers' SQL on SQLite, for migrations that rebuild ``artifacts_artifact``.

SQLite alters a table by copying it into a new one, which drops the old table's triggers;
a migration that does so re-creates them with the columns the table has at that point
(the UPDATE guard names every column, so a new column must be added to the list).
Not a migration itself: Django's loader skips modules whose name starts with "_".
PostgreSQL keeps its triggers through ALTER TABLE, and its guard compares whole rows.
"""

PRUNED_COLUMNS = ("payload", "content", "pruned_at")

# Tables whose rows are never deleted, and the trigger that says so on each.
SQLITE_NO_DELETE = {
    "artifacts_artifact": """CREATE TRIGGER artifacts_artifact_no_delete BEFORE DELETE ON artifacts_artifact
           BEGIN SELECT RAISE(ABORT, 'artifact rows are never deleted'); END""",
    "artifacts_auditevent": """CREATE TRIGGER artifacts_auditevent_no_delete BEFORE DELETE ON artifacts_auditevent
           BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
}


def sqlite_artifact_triggers(columns: list[str]) -> list[str]:
    def unchanged(except_columns):
        return " AND ".join(f"NEW.{c} IS OLD.{c}" for c in columns if c not in except_columns)

    return [
        "DROP TRIGGER IF EXISTS artifacts_artifact_no_delete",
        "DROP TRIGGER IF EXISTS artifacts_artifact_immutable",
        SQLITE_NO_DELETE["artifacts_artifact"],
        f"""CREATE TRIGGER artifacts_artifact_immutable BEFORE UPDATE ON artifacts_artifact
           WHEN NOT (
             ({unchanged(["lifecycle_state"])})
             OR (OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL AND NEW.payload IS NULL
                 AND NEW.content = '' AND {unchanged(PRUNED_COLUMNS)})
           )
           BEGIN SELECT RAISE(ABORT, 'artifact rows are immutable: only lifecycle_state may change, or the prune path'); END""",
    ]


def recreate_on_sqlite(columns: list[str]):
    """A RunPython forward function: the triggers again, after a table rebuild."""

    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for statement in sqlite_artifact_triggers(columns):
                schema_editor.execute(statement, params=None)

    return apply
