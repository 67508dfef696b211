"""Three more rules the database keeps, whatever the client (SPEC §5, §12):

- **Lifecycle** (``artifacts_artifact``): ``lifecycle_state`` changes only along SPEC §5's
  transitions, never on a pruned artifact, and a published artifact that is a primary
  somewhere is not archived (nor moved anywhere) until another takes its place. The
  service may UPDATE that column (a transition is its job), so without this a raw UPDATE
  as the service role could publish an intermediate or archive a primary.
- **Primary links** (``stories_storyartifactlink``): a link is primary only while its
  artifact is published and not pruned.
- **No TRUNCATE** of artifacts and audit events (PostgreSQL; SQLite has no TRUNCATE): a
  statement trigger refuses it for every role but a superuser, the owner included, so a
  ``manage.py flush`` or a stray TRUNCATE as the owner cannot erase history. The service role
  has no TRUNCATE privilege anyway. A superuser is let through: it can drop any trigger
  anyway, and the test suite's flush (a TRUNCATE of every table, as a superuser) needs it.

Violations raise restrict_violation on PostgreSQL (an IntegrityError in Django), ABORT on
SQLite. The services check the same rules first and answer with their own errors.
"""

from django.db import migrations

from artifacts.migrations._immutability import LIFECYCLE_TRANSITIONS, SQLITE_LIFECYCLE, SQLITE_PRIMARY_LINK

_PAIRS = ", ".join(f"('{old}', '{new}')" for old, new in LIFECYCLE_TRANSITIONS)

# (0008's rebuild of the table may have made the lifecycle guard already: see _immutability.)
SQLITE_FORWARD = ["DROP TRIGGER IF EXISTS artifacts_artifact_lifecycle", SQLITE_LIFECYCLE, *SQLITE_PRIMARY_LINK.values()]
SQLITE_REVERSE = ["DROP TRIGGER IF EXISTS artifacts_artifact_lifecycle"] + [
    f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_PRIMARY_LINK
]

POSTGRES_FORWARD = [
    f"""CREATE OR REPLACE FUNCTION artifacts_artifact_lifecycle_guard() RETURNS trigger AS $$
    BEGIN
      IF NEW.lifecycle_state IS NOT DISTINCT FROM OLD.lifecycle_state THEN
        RETURN NEW;
      END IF;
      IF OLD.pruned_at IS NOT NULL THEN
        RAISE EXCEPTION 'artifact % is pruned: its lifecycle_state stays %', OLD.id, OLD.lifecycle_state
          USING ERRCODE = 'restrict_violation';
      END IF;
      IF (OLD.lifecycle_state, NEW.lifecycle_state) NOT IN ({_PAIRS}) THEN
        RAISE EXCEPTION 'artifact %: lifecycle_state cannot go from % to % (SPEC 5)',
          OLD.id, OLD.lifecycle_state, NEW.lifecycle_state USING ERRCODE = 'restrict_violation';
      END IF;
      IF OLD.lifecycle_state = 'published' AND EXISTS (
          SELECT 1 FROM stories_storyartifactlink WHERE artifact_id = OLD.id AND is_primary) THEN
        RAISE EXCEPTION 'artifact % is a primary link and stays published until another takes its place', OLD.id
          USING ERRCODE = 'restrict_violation';
      END IF;
      RETURN NEW;
    END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER artifacts_artifact_lifecycle BEFORE UPDATE OF lifecycle_state ON artifacts_artifact
       FOR EACH ROW EXECUTE FUNCTION artifacts_artifact_lifecycle_guard()""",
    """CREATE OR REPLACE FUNCTION stories_storyartifactlink_primary_guard() RETURNS trigger AS $$
    BEGIN
      IF NEW.is_primary AND NOT EXISTS (
          SELECT 1 FROM artifacts_artifact
          WHERE id = NEW.artifact_id AND lifecycle_state = 'published' AND pruned_at IS NULL) THEN
        RAISE EXCEPTION 'a primary link needs a published artifact (artifact %)', NEW.artifact_id
          USING ERRCODE = 'restrict_violation';
      END IF;
      RETURN NEW;
    END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER stories_storyartifactlink_primary_published
       BEFORE INSERT OR UPDATE OF is_primary, artifact_id ON stories_storyartifactlink
       FOR EACH ROW EXECUTE FUNCTION stories_storyartifactlink_primary_guard()""",
    """CREATE OR REPLACE FUNCTION artifacts_no_truncate() RETURNS trigger AS $$
    BEGIN
      IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
      END IF;
      RAISE EXCEPTION '% is never truncated: its rows are history', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER artifacts_artifact_no_truncate BEFORE TRUNCATE ON artifacts_artifact
       FOR EACH STATEMENT EXECUTE FUNCTION artifacts_no_truncate()""",
    """CREATE TRIGGER artifacts_auditevent_no_truncate BEFORE TRUNCATE ON artifacts_auditevent
       FOR EACH STATEMENT EXECUTE FUNCTION artifacts_no_truncate()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS artifacts_auditevent_no_truncate ON artifacts_auditevent",
    "DROP TRIGGER IF EXISTS artifacts_artifact_no_truncate ON artifacts_artifact",
    "DROP FUNCTION IF EXISTS artifacts_no_truncate()",
    "DROP TRIGGER IF EXISTS stories_storyartifactlink_primary_published ON stories_storyartifactlink",
    "DROP FUNCTION IF EXISTS stories_storyartifactlink_primary_guard()",
    "DROP TRIGGER IF EXISTS artifacts_artifact_lifecycle ON artifacts_artifact",
    "DROP FUNCTION IF EXISTS artifacts_artifact_lifecycle_guard()",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)  # the SQL holds literal % signs

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("artifacts", "0008_fingerprint"),
        ("stories", "0003_orderings_scene_index"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}),
        )
    ]
