"""The SQLite trigger that refuses an UPDATE of an event, for the migrations that rebuild
the table (a rebuild drops its triggers)."""

SQLITE = [
    "DROP TRIGGER IF EXISTS changes_event_no_update",
    """CREATE TRIGGER changes_event_no_update BEFORE UPDATE ON changes_event
       BEGIN SELECT RAISE(ABORT, 'events are never changed'); END""",
]


def recreate_on_sqlite(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE:
            schema_editor.execute(statement, params=None)
