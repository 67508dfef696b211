"""Events are never changed: an UPDATE is refused on both databases (the audit rows' way).
A DELETE stays possible: ``prune_changes`` removes events past their retention."""

from django.db import migrations

SQLITE_FORWARD = [
    """CREATE TRIGGER changes_event_no_update BEFORE UPDATE ON changes_event
       BEGIN SELECT RAISE(ABORT, 'events are never changed'); END""",
]
SQLITE_REVERSE = ["DROP TRIGGER IF EXISTS changes_event_no_update"]

POSTGRES_FORWARD = [
    """CREATE OR REPLACE FUNCTION changes_event_guard() RETURNS trigger AS $$
    BEGIN
      RAISE EXCEPTION 'events are never changed (event %)', OLD.seq USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER changes_event_no_update BEFORE UPDATE ON changes_event
       FOR EACH ROW EXECUTE FUNCTION changes_event_guard()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS changes_event_no_update ON changes_event",
    "DROP FUNCTION IF EXISTS changes_event_guard()",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    return apply


class Migration(migrations.Migration):
    dependencies = [("changes", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}),
        )
    ]
