"""Primary history (SPEC §13): each primary link's validity interval, in a table of its own.

The database keeps the rule that the intervals of one (story, role, scene) never overlap:
on PostgreSQL an exclusion constraint over ``tstzrange(since, until)`` (btree_gist gives
the equality operators of uuid and text to the GiST index; a NULL scene counts as one value
through COALESCE to the nil UUID); on SQLite, which has none, the partial unique indexes on
the open interval, the check ``until > since`` and a trigger refusing an overlapping
insert. Rows are history: DELETE is refused and the only UPDATE allowed closes an open
interval (``until`` from NULL to a time), on both databases.

``btree_gist`` is a trusted extension, but creating it needs CREATE on the database, which
the tables' owner (``create_db_roles``) lacks: ``create_db_roles`` creates it as the
superuser, and this migration's ``IF NOT EXISTS`` then finds it there.

The data migration builds the history of existing stories from the audit trail's
``set_primary`` events, and opens an interval at the link's creation for a primary that
has no event.
"""

import datetime
import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import DatabaseError, migrations, models, transaction

SQLITE_NO_DELETE = {
    "stories_primaryinterval": """CREATE TRIGGER stories_primaryinterval_no_delete BEFORE DELETE ON stories_primaryinterval
           BEGIN SELECT RAISE(ABORT, 'primary history is never deleted'); END""",
}
_SAME_KEY = "p.story_id = NEW.story_id AND p.role = NEW.role AND p.scene_id IS NEW.scene_id"
_OVERLAPS = "(p.until IS NULL OR p.until > NEW.since) AND (NEW.until IS NULL OR NEW.until > p.since)"
SQLITE_FORWARD = [
    SQLITE_NO_DELETE["stories_primaryinterval"],
    f"""CREATE TRIGGER stories_primaryinterval_no_overlap BEFORE INSERT ON stories_primaryinterval
           WHEN EXISTS (SELECT 1 FROM stories_primaryinterval p WHERE {_SAME_KEY} AND {_OVERLAPS})
           BEGIN SELECT RAISE(ABORT, 'primary intervals of one role and scene never overlap'); END""",
    """CREATE TRIGGER stories_primaryinterval_immutable BEFORE UPDATE ON stories_primaryinterval
           WHEN NOT (OLD.until IS NULL AND NEW.until IS NOT NULL AND NEW.id IS OLD.id
                     AND NEW.story_id IS OLD.story_id AND NEW.role IS OLD.role AND NEW.scene_id IS OLD.scene_id
                     AND NEW.artifact_id IS OLD.artifact_id AND NEW.since IS OLD.since
                     AND NEW.set_by_id IS OLD.set_by_id)
           BEGIN SELECT RAISE(ABORT, 'primary history is immutable: only an open interval may be closed'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS stories_primaryinterval_immutable",
    "DROP TRIGGER IF EXISTS stories_primaryinterval_no_overlap",
    "DROP TRIGGER IF EXISTS stories_primaryinterval_no_delete",
]
# restrict_violation (SQLSTATE 23001) surfaces in Django as an IntegrityError.
POSTGRES_FORWARD = [
    """ALTER TABLE stories_primaryinterval ADD CONSTRAINT primary_interval_no_overlap EXCLUDE USING gist (
         story_id WITH =, role WITH =,
         (COALESCE(scene_id, '00000000-0000-0000-0000-000000000000'::uuid)) WITH =,
         tstzrange(since, until, '[)') WITH &&)""",
    """CREATE OR REPLACE FUNCTION stories_primaryinterval_guard() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'primary history is never deleted (interval %)', OLD.id USING ERRCODE = 'restrict_violation';
      END IF;
      IF OLD.until IS NULL AND NEW.until IS NOT NULL
         AND (NEW.id, NEW.story_id, NEW.role, NEW.scene_id, NEW.artifact_id, NEW.since, NEW.set_by_id)
             IS NOT DISTINCT FROM (OLD.id, OLD.story_id, OLD.role, OLD.scene_id, OLD.artifact_id, OLD.since, OLD.set_by_id)
      THEN
        RETURN NEW;
      END IF;
      RAISE EXCEPTION 'primary history is immutable: only an open interval may be closed (interval %)', OLD.id
        USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER stories_primaryinterval_append_only BEFORE UPDATE OR DELETE ON stories_primaryinterval
       FOR EACH ROW EXECUTE FUNCTION stories_primaryinterval_guard()""",
    """CREATE TRIGGER stories_primaryinterval_no_truncate BEFORE TRUNCATE ON stories_primaryinterval
       FOR EACH STATEMENT EXECUTE FUNCTION artifacts_no_truncate()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS stories_primaryinterval_no_truncate ON stories_primaryinterval",
    "DROP TRIGGER IF EXISTS stories_primaryinterval_append_only ON stories_primaryinterval",
    "DROP FUNCTION IF EXISTS stories_primaryinterval_guard()",
    "ALTER TABLE stories_primaryinterval DROP CONSTRAINT IF EXISTS primary_interval_no_overlap",
]
TICK = datetime.timedelta(microseconds=1)


def _btree_gist(schema_editor):
    """The extension, made here when this role may (a superuser: the test suite, a database
    without the two roles); else it must be there already, made by ``create_db_roles``."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'btree_gist'")
        if cursor.fetchone():
            return
        try:
            with transaction.atomic(using=schema_editor.connection.alias):
                cursor.execute("CREATE EXTENSION btree_gist")
        except DatabaseError as exc:
            raise RuntimeError(
                "stories 0004 needs the PostgreSQL extension btree_gist, which this role may not create: run "
                "`manage.py create_db_roles` as a superuser first (it creates it), then migrate again"
            ) from exc


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql" and statements_by_vendor.get("postgresql") is POSTGRES_FORWARD:
            _btree_gist(schema_editor)
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)  # the SQL holds literal % signs

    return apply


def _uuid(value):
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def build_history(apps, schema_editor):
    """Intervals from the audit trail's ``set_primary`` events, oldest first per (story,
    role, scene): each event closes the interval before it and opens its own. A current
    primary whose artifact is not the last event's (a link made without an event) opens at
    the link's creation; an interval left open with no primary now is closed now."""
    AuditEvent = apps.get_model("audit", "AuditEvent")
    PrimaryInterval = apps.get_model("stories", "PrimaryInterval")
    Link = apps.get_model("stories", "StoryArtifactLink")
    Artifact = apps.get_model("artifacts", "Artifact")
    Scene = apps.get_model("stories", "Scene")
    from django.utils import timezone

    done, open_now = [], {}

    def open_interval(key, artifact_id, at, set_by_id):
        previous = open_now.get(key)
        if previous is not None:
            at = max(at, previous.since + TICK)
            previous.until = at
            done.append(previous)
        open_now[key] = PrimaryInterval(
            id=uuid.uuid4(),
            story_id=key[0],
            role=key[1],
            scene_id=key[2],
            artifact_id=artifact_id,
            since=at,
            set_by_id=set_by_id,
        )

    events = (
        AuditEvent.objects.filter(action="set_primary", story__isnull=False)
        .order_by("created_at", "id")
        .values_list("story_id", "actor_id", "to_value", "created_at")
    )
    for story_id, actor_id, to_value, at in events.iterator():
        if not isinstance(to_value, dict) or not to_value.get("role"):
            continue
        artifact_id = _uuid(to_value.get("artifact_id"))
        if artifact_id is None:
            continue
        key = (story_id, to_value["role"], _uuid(to_value.get("scene_id")))
        current = open_now.get(key)
        if current is None or current.artifact_id != artifact_id:
            open_interval(key, artifact_id, at, actor_id)

    primaries = Link.objects.filter(is_primary=True).values_list(
        "story_id", "role", "scene_id", "artifact_id", "created_at", "created_by_id"
    )
    current_keys = set()
    for story_id, role, scene_id, artifact_id, created_at, created_by_id in primaries.iterator():
        key = (story_id, role, scene_id)
        current_keys.add(key)
        interval = open_now.get(key)
        if interval is None or interval.artifact_id != artifact_id:
            open_interval(key, artifact_id, created_at, created_by_id)
    now = timezone.now()
    for key, interval in list(open_now.items()):
        if key not in current_keys:
            interval.until = max(now, interval.since + TICK)
            done.append(interval)
            del open_now[key]

    rows = done + list(open_now.values())
    # An event may name what no longer fits (an artifact or scene of another story): left out.
    artifacts = set(Artifact.objects.filter(pk__in={r.artifact_id for r in rows}).values_list("pk", "story_id"))
    scenes = set(Scene.objects.filter(pk__in={r.scene_id for r in rows if r.scene_id}).values_list("pk", "story_id"))
    rows = [
        r
        for r in rows
        if (r.artifact_id, r.story_id) in artifacts and (r.scene_id is None or (r.scene_id, r.story_id) in scenes)
    ]
    rows.sort(key=lambda r: r.since)
    PrimaryInterval.objects.bulk_create(rows, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("artifacts", "0010_auditevent_moves_to_audit"),
        ("audit", "0001_initial"),
        ("stories", "0003_orderings_scene_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="PrimaryInterval",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                (
                    "role",
                    models.CharField(
                        choices=[
                            ("cover", "Cover"),
                            ("final_audio", "Final audio"),
                            ("final_video", "Final video"),
                            ("scene_image", "Scene image"),
                        ],
                        max_length=20,
                    ),
                ),
                ("since", models.DateTimeField()),
                ("until", models.DateTimeField(blank=True, null=True)),
                (
                    "artifact",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="artifacts.artifact"
                    ),
                ),
                (
                    "scene",
                    models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="stories.scene",
                    ),
                ),
                (
                    "set_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "story",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="primary_intervals",
                        to="stories.story",
                    ),
                ),
            ],
            options={
                "ordering": ["story_id", "-since", "-id"],
                "indexes": [
                    models.Index(fields=["story", "-since", "-id"], name="primary_interval_story_idx"),
                    models.Index(fields=["story", "role", "-since", "-id"], name="primary_interval_role_idx"),
                    models.Index(fields=["scene", "-since", "-id"], name="primary_interval_scene_idx"),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("until__isnull", True), ("until__gt", models.F("since")), _connector="OR"),
                        name="primary_interval_until_after_since",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("scene__isnull", True), ("until__isnull", True)),
                        fields=("story", "role"),
                        name="primary_interval_one_open_per_role",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("scene__isnull", False), ("until__isnull", True)),
                        fields=("story", "role", "scene"),
                        name="primary_interval_one_open_per_scene",
                    ),
                ],
            },
        ),
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}),
        ),
        migrations.RunPython(build_history, migrations.RunPython.noop),
    ]
