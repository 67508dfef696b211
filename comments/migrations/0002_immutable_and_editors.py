"""A comment is never edited or deleted, only resolved (SPEC §13), whatever the client:

- SQLite: triggers refuse a DELETE, and an UPDATE unless it only sets ``resolved_at`` and
  ``resolved_by_id`` on a comment that had neither;
- PostgreSQL: the same as one row trigger (restrict_violation, an IntegrityError in Django),
  and no TRUNCATE but by a superuser (``artifacts_no_truncate`` of artifacts/0009).

And the ``editors`` group (stories/0002) gets ``comments.add_comment`` (POST a comment),
``comments.change_comment`` (resolve one) and ``comments.view_comment``.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SQLITE_NO_DELETE = {
    "comments_comment": """CREATE TRIGGER comments_comment_no_delete BEFORE DELETE ON comments_comment
           BEGIN SELECT RAISE(ABORT, 'comments are never deleted'); END""",
}
SQLITE_FORWARD = [
    SQLITE_NO_DELETE["comments_comment"],
    """CREATE TRIGGER comments_comment_resolve_only BEFORE UPDATE ON comments_comment
           WHEN NOT (OLD.resolved_at IS NULL AND OLD.resolved_by_id IS NULL
                     AND NEW.resolved_at IS NOT NULL AND NEW.resolved_by_id IS NOT NULL
                     AND NEW.id IS OLD.id AND NEW.artifact_id IS OLD.artifact_id AND NEW.author_id IS OLD.author_id
                     AND NEW.body IS OLD.body AND NEW.created_at IS OLD.created_at)
           BEGIN SELECT RAISE(ABORT, 'comments are never edited, only resolved once'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS comments_comment_resolve_only",
    "DROP TRIGGER IF EXISTS comments_comment_no_delete",
]
POSTGRES_FORWARD = [
    """CREATE OR REPLACE FUNCTION comments_comment_guard() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'comments are never deleted (comment %)', OLD.id USING ERRCODE = 'restrict_violation';
      END IF;
      IF OLD.resolved_at IS NULL AND OLD.resolved_by_id IS NULL
         AND NEW.resolved_at IS NOT NULL AND NEW.resolved_by_id IS NOT NULL
         AND (NEW.id, NEW.artifact_id, NEW.author_id, NEW.body, NEW.created_at)
             IS NOT DISTINCT FROM (OLD.id, OLD.artifact_id, OLD.author_id, OLD.body, OLD.created_at)
      THEN
        RETURN NEW;
      END IF;
      RAISE EXCEPTION 'comments are never edited, only resolved once (comment %)', OLD.id
        USING ERRCODE = 'restrict_violation';
    END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER comments_comment_resolve_only BEFORE UPDATE OR DELETE ON comments_comment
       FOR EACH ROW EXECUTE FUNCTION comments_comment_guard()""",
    """CREATE TRIGGER comments_comment_no_truncate BEFORE TRUNCATE ON comments_comment
       FOR EACH STATEMENT EXECUTE FUNCTION artifacts_no_truncate()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS comments_comment_no_truncate ON comments_comment",
    "DROP TRIGGER IF EXISTS comments_comment_resolve_only ON comments_comment",
    "DROP FUNCTION IF EXISTS comments_comment_guard()",
]
EDITORS = "editors"
EDITOR_PERMISSIONS = ("add_comment", "change_comment", "view_comment")


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)  # the SQL holds literal % signs

    return apply


def grant_editors(apps, schema_editor):
    # Permissions are made by post_migrate, after every migration; make this app's now.
    app_config = apps.get_app_config("comments")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=EDITORS)
    for codename in EDITOR_PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label="comments", codename=codename))


def revoke_editors(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name=EDITORS).first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="comments", codename__in=EDITOR_PERMISSIONS)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("comments", "0001_initial"),
        ("artifacts", "0010_auditevent_moves_to_audit"),
        ("stories", "0002_editors_group"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}),
        ),
        migrations.RunPython(grant_editors, revoke_editors),
    ]
