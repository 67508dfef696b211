"""Database triggers that make artifacts immutable and audit events append-only.

They refuse, whatever the client (ORM ``update()``, raw SQL, a console):
- every DELETE of an artifact or an audit event;
- every UPDATE of an audit event;
- every UPDATE of an artifact except (a) a change of ``lifecycle_state`` alone, or
  (b) the retention path of ``prune_artifacts``: ``pruned_at`` goes from NULL to a
  time, ``payload`` becomes NULL and ``content`` empty, and nothing else changes.

TRUNCATE is left alone (it is not row-by-row, and test databases are flushed with it).

On SQLite, Django rebuilds a table to alter it, which drops its triggers: a later
migration that alters artifacts_artifact must re-run ``SQLITE_FORWARD`` (the
database-level tests would fail otherwise).
"""

from django.db import migrations

ARTIFACT_COLUMNS = [
    "id", "story_id", "scene_id", "type", "version", "parent_id", "kind", "payload", "content",
    "content_sha256", "content_size", "mime_type", "lifecycle_state", "request_id",
    "created_by_step_id", "created_by_id", "created_at", "pruned_at",
]
PRUNED_COLUMNS = ["payload", "content", "pruned_at"]


def _unchanged(except_columns):
    return " AND ".join(f"NEW.{c} IS OLD.{c}" for c in ARTIFACT_COLUMNS if c not in except_columns)


SQLITE_FORWARD = [
    """CREATE TRIGGER artifacts_artifact_no_delete BEFORE DELETE ON artifacts_artifact
       BEGIN SELECT RAISE(ABORT, 'artifact rows are never deleted'); END""",
    f"""CREATE TRIGGER artifacts_artifact_immutable BEFORE UPDATE ON artifacts_artifact
       WHEN NOT (
         ({_unchanged(["lifecycle_state"])})
         OR (OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL AND NEW.payload IS NULL
             AND NEW.content = '' AND {_unchanged(PRUNED_COLUMNS)})
       )
       BEGIN SELECT RAISE(ABORT, 'artifact rows are immutable: only lifecycle_state may change, or the prune path'); END""",
    """CREATE TRIGGER artifacts_auditevent_no_update BEFORE UPDATE ON artifacts_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
    """CREATE TRIGGER artifacts_auditevent_no_delete BEFORE DELETE ON artifacts_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS artifacts_artifact_no_delete",
    "DROP TRIGGER IF EXISTS artifacts_artifact_immutable",
    "DROP TRIGGER IF EXISTS artifacts_auditevent_no_update",
    "DROP TRIGGER IF EXISTS artifacts_auditevent_no_delete",
]

# restrict_violation (SQLSTATE 23001) surfaces in Django as an IntegrityError.
POSTGRES_FORWARD = [
    """CREATE OR REPLACE FUNCTION artifacts_artifact_guard() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'artifact rows are never deleted (artifact %)', OLD.id
          USING ERRCODE = 'restrict_violation';
      END IF;
      IF (to_jsonb(NEW) - 'lifecycle_state') = (to_jsonb(OLD) - 'lifecycle_state') THEN
        RETURN NEW;
      END IF;
      IF OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL AND NEW.payload IS NULL AND NEW.content = ''
         AND (to_jsonb(NEW) - ARRAY['payload', 'content', 'pruned_at'])
           = (to_jsonb(OLD) - ARRAY['payload', 'content', 'pruned_at']) THEN
        RETURN NEW;
      END IF;
      RAISE EXCEPTION 'artifact rows are immutable: only lifecycle_state may change, or the prune path (artifact %)', OLD.id
        USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER artifacts_artifact_immutable BEFORE UPDATE OR DELETE ON artifacts_artifact
       FOR EACH ROW EXECUTE FUNCTION artifacts_artifact_guard()""",
    """CREATE OR REPLACE FUNCTION artifacts_auditevent_guard() RETURNS trigger AS $$
    BEGIN
      RAISE EXCEPTION 'audit events are append-only (event %)', OLD.id USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER artifacts_auditevent_append_only BEFORE UPDATE OR DELETE ON artifacts_auditevent
       FOR EACH ROW EXECUTE FUNCTION artifacts_auditevent_guard()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS artifacts_artifact_immutable ON artifacts_artifact",
    "DROP FUNCTION IF EXISTS artifacts_artifact_guard()",
    "DROP TRIGGER IF EXISTS artifacts_auditevent_append_only ON artifacts_auditevent",
    "DROP FUNCTION IF EXISTS artifacts_auditevent_guard()",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)  # the SQL holds literal % signs

    return apply


class Migration(migrations.Migration):
    dependencies = [("artifacts", "0002_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}),
        )
    ]
