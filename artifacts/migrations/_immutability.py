"""The immutability triggers' SQL on SQLite, for migrations that rebuild ``artifacts_artifact``.

SQLite alters a table by copying it into a new one, which drops the old table's triggers;
a migration that does so re-creates them with the columns the table has at that point
(the UPDATE guard names every column, so a new column must be added to the list).
Not a migration itself: Django's loader skips modules whose name starts with "_".
PostgreSQL keeps its triggers through ALTER TABLE, and its guard compares whole rows.

The lifecycle guard (migration 0009) is re-created with them; so must the primary-link guard
on ``stories_storyartifactlink`` be by a migration that rebuilds that table.
"""

PRUNED_COLUMNS = ("payload", "content", "pruned_at")

# SPEC §5's transitions, as the lifecycle guard of migration 0009 spells them (fixed here,
# not read from the model: a migration's SQL must not change after it was applied).
LIFECYCLE_TRANSITIONS = (
    ("intermediate", "candidate"),
    ("intermediate", "archived"),
    ("candidate", "published"),
    ("candidate", "archived"),
    ("published", "archived"),
    ("archived", "candidate"),
)
_ALLOWED = ", ".join(f"'{old}>{new}'" for old, new in LIFECYCLE_TRANSITIONS)
SQLITE_LIFECYCLE = f"""CREATE TRIGGER artifacts_artifact_lifecycle
           BEFORE UPDATE OF lifecycle_state ON artifacts_artifact
           WHEN NEW.lifecycle_state IS NOT OLD.lifecycle_state AND (
             OLD.pruned_at IS NOT NULL
             OR (OLD.lifecycle_state || '>' || NEW.lifecycle_state) NOT IN ({_ALLOWED})
             OR (OLD.lifecycle_state = 'published'
                 AND EXISTS (SELECT 1 FROM stories_storyartifactlink WHERE artifact_id = OLD.id AND is_primary))
           )
           BEGIN SELECT RAISE(ABORT, 'lifecycle_state: no SPEC 5 transition, or pruned, or a primary'); END"""
SQLITE_PRIMARY_LINK = {
    name: f"""CREATE TRIGGER {name} BEFORE {event} ON stories_storyartifactlink
           WHEN NEW.is_primary AND NOT EXISTS (
             SELECT 1 FROM artifacts_artifact WHERE id = NEW.artifact_id AND lifecycle_state = 'published'
               AND pruned_at IS NULL)
           BEGIN SELECT RAISE(ABORT, 'a primary link needs a published artifact (SPEC 5)'); END"""
    for name, event in (
        ("stories_storyartifactlink_primary_on_insert", "INSERT"),
        ("stories_storyartifactlink_primary_on_update", "UPDATE OF is_primary, artifact_id"),
    )
}

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
        "DROP TRIGGER IF EXISTS artifacts_artifact_lifecycle",
        SQLITE_LIFECYCLE,
    ]


def recreate_on_sqlite(columns: list[str]):
    """A RunPython forward function: the triggers again, after a table rebuild."""

    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for statement in sqlite_artifact_triggers(columns):
                schema_editor.execute(statement, params=None)

    return apply
