"""The two PostgreSQL roles of SPEC §12, made once by a superuser.

The *owner* owns every table, sequence and function of the schema: migrations run as it
(``DATABASE_OWNER_URL``). The *service* (``DATABASE_URL``) owns nothing: it reads, inserts
and updates what the application writes (``INSERT_ONLY``, ``UPDATE_COLUMNS``: history
tables take inserts only, artifacts and links only the columns their services change),
deletes only what Django itself deletes (``DELETE_ALLOWED``: sessions, API tokens, a
user's rows), and can neither delete artifacts, relations or audit rows nor truncate or
alter any table. Since only an owner (or a
superuser) may ALTER a table or disable its triggers, and only a superuser may set
``session_replication_role``, the service cannot switch the immutability triggers off, and
these triggers decide which of the changes it may make are allowed (SPEC §3, §5).

Safe to run again: missing roles are created, existing ones are brought back to these
attributes and privileges. ``--dry-run`` prints the SQL without running it.
"""

import os
import secrets

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from psycopg import sql

from kernel.commands import RequestIdCommand

SCHEMA = "public"
# What the service role may write in each table (it may read them all), SPEC §12. A table
# not named here takes INSERT and UPDATE; a new table whose rows the service deletes must
# be added to DELETE_ALLOWED.
READ_ONLY = frozenset({"django_migrations"})  # only the owner migrates
# History: rows are added, never changed or removed.
INSERT_ONLY = frozenset({"artifacts_artifactrelation", "artifacts_auditevent", "runs_runartifactlink"})
# The columns a service changes; the triggers of migrations artifacts/0003 and 0009 then
# say which changes are allowed (a SPEC §5 transition, the prune's path, a primary).
UPDATE_COLUMNS = {
    "artifacts_artifact": ("lifecycle_state", "payload", "content", "pruned_at"),
    "stories_storyartifactlink": ("is_primary",),
    # Primary history: an open interval is closed, nothing else (its trigger says so too).
    "stories_primaryinterval": ("until",),
    # Comments: resolved, never edited (its trigger says so too); never deleted.
    "comments_comment": ("resolved_at", "resolved_by_id"),
}
# Extensions the migrations use that the owner, without CREATE on the database, cannot
# create: made here, as the superuser; their objects stay the extension's.
EXTENSIONS = ("btree_gist",)
# What Django deletes itself: expired sessions and logouts, regenerated API tokens, and a
# user deleted in the admin with their group and permission rows and admin log entries.
DELETE_ALLOWED = frozenset(
    {
        "django_session",
        "authtoken_token",
        "auth_user",
        "auth_group",
        "auth_user_groups",
        "auth_user_user_permissions",
        "auth_group_permissions",
        "django_admin_log",
        # The change feed: prune_changes deletes expired events (a trigger refuses their
        # UPDATE); webhooks are deleted with their deliveries.
        "changes_event",
        "changes_webhook",
        "changes_delivery",
        "changes_deliveryattempt",
    }
)
# Ordinary login roles: CREATEROLE would let the service grant itself membership in the
# owner role, so it is switched off explicitly, also on roles that already exist.
ROLE_ATTRIBUTES = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
ALTER_KEYWORD = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}

# Relations of the schema the owner does not own yet. Sequences behind serial/identity
# columns follow their table (ALTER SEQUENCE refuses them), and extension members stay
# with their extension.
RELATIONS_TO_ADOPT = """
    SELECT c.relkind, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND pg_get_userbyid(c.relowner) <> %s
      AND NOT EXISTS (
        SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
    ORDER BY c.relname
"""
ROUTINES_TO_ADOPT = """
    SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = %s AND p.prokind IN ('f', 'p') AND pg_get_userbyid(p.proowner) <> %s
      AND NOT EXISTS (
        SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    ORDER BY p.proname
"""


def service_grants(cursor, service: str) -> list[sql.Composed]:
    """The service role's privileges on what the schema holds now, from scratch: every
    privilege it had is revoked (column grants too), then what ``READ_ONLY``,
    ``INSERT_ONLY``, ``UPDATE_COLUMNS`` and ``DELETE_ALLOWED`` say is granted, all in the
    caller's transaction. Run by create_db_roles and again by ``migrate`` as the owner, so
    the tables a migration creates get the same treatment."""
    schema, role = sql.Identifier(SCHEMA), sql.Identifier(service)
    statements = [sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema, role)]
    cursor.execute(
        "SELECT c.relname, array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL AND EXISTS ("
        "   SELECT 1 FROM aclexplode(a.attacl) x JOIN pg_roles r ON r.oid = x.grantee WHERE r.rolname = %s)"
        " GROUP BY c.relname ORDER BY c.relname",
        [SCHEMA, service],
    )
    for table, columns in cursor.fetchall():  # REVOKE ALL ON a table leaves its column grants
        statements.append(
            sql.SQL("REVOKE ALL ({}) ON {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(SCHEMA, table), role
            )
        )
    statements.append(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, role))
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        [SCHEMA],
    )
    for (table,) in cursor.fetchall():
        if table in READ_ONLY:
            continue
        if table in INSERT_ONLY:
            writes = sql.SQL("INSERT")
        elif table in UPDATE_COLUMNS:
            columns = sql.SQL(", ").join(map(sql.Identifier, UPDATE_COLUMNS[table]))
            writes = sql.SQL("INSERT, UPDATE ({})").format(columns)
        else:
            writes = sql.SQL("INSERT, UPDATE, DELETE" if table in DELETE_ALLOWED else "INSERT, UPDATE")
        statements.append(sql.SQL("GRANT {} ON {} TO {}").format(writes, sql.Identifier(SCHEMA, table), role))
    statements += [
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, role),
        sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(schema, role),
    ]
    return statements


class Command(RequestIdCommand):
    help = (
        "Create (or bring up to date) the PostgreSQL owner role that migrations run as and the "
        "service role the application connects as (SPEC §12). Needs a superuser connection."
    )

    def add_arguments(self, parser):
        parser.add_argument("--owner", required=True, help="role that owns the tables; migrations connect as it")
        parser.add_argument("--service", required=True, help="role the service connects as; it owns nothing")
        parser.add_argument(
            "--owner-password-env",
            metavar="VAR",
            help="environment variable holding the owner's password (without it: a new role gets a "
            "generated password, printed once; an existing role keeps its password)",
        )
        parser.add_argument("--service-password-env", metavar="VAR", help="the same, for the service role")
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="connection to run as (a superuser's); default: default"
        )
        parser.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")

    def handle(self, *args, owner, service, owner_password_env, service_password_env, database, dry_run, **options):
        connection = connections[database]
        if connection.vendor != "postgresql":
            raise CommandError(
                f"create_db_roles is for PostgreSQL; the {database!r} database is {connection.vendor}, "
                "which has no roles (set DATABASE_URL=postgres://<superuser>@host/db)."
            )
        if owner == service:
            raise CommandError("--owner and --service must be two different roles")
        passwords = {owner: self.password_from(owner_password_env), service: self.password_from(service_password_env)}

        generated = {}
        with transaction.atomic(using=database), connection.cursor() as cursor:
            existing = self.check_preconditions(cursor, owner, service)
            for role in (owner, service):
                if role not in existing and passwords[role] is None:
                    generated[role] = passwords[role] = secrets.token_urlsafe(24)
            statements = self.plan(cursor, owner, service, existing, passwords, dry_run=dry_run)
            for statement in statements:
                text = statement.as_string(connection.connection)
                if dry_run:
                    self.stdout.write(text + ";")
                else:
                    cursor.execute(text)

        if dry_run:
            self.stdout.write("dry run: nothing changed")
            return
        for role in (owner, service):
            self.stdout.write(f"role {role}: {'exists, brought up to date' if role in existing else 'created'}")
        for role, password in generated.items():
            self.stdout.write(self.style.WARNING(f"password of the new role {role} (shown once): {password}"))
        self.stdout.write(self.style.SUCCESS(f"{owner} owns the schema's objects; {service} owns nothing"))

    def password_from(self, variable: str | None) -> str | None:
        if variable is None:
            return None
        password = os.environ.get(variable, "")
        if not password:
            raise CommandError(f"environment variable {variable} (a role's password) is unset or empty")
        return password

    def check_preconditions(self, cursor, owner: str, service: str) -> set[str]:
        """Refuse what would make the roles pointless; return which of them exist."""
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        current_user, is_superuser = cursor.fetchone()
        if not is_superuser:
            raise CommandError(
                f"create_db_roles needs a superuser connection; {current_user!r} is not one "
                "(run it with DATABASE_URL=postgres://<superuser>@host/db)."
            )
        cursor.execute("SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN (%s, %s)", [owner, service])
        existing = dict(cursor.fetchall())
        superusers = sorted(name for name, is_super in existing.items() if is_super)
        if superusers:
            raise CommandError(f"{', '.join(superusers)} is a superuser, which bypasses every privilege: pick another")
        if len(existing) == 2:
            cursor.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [service, owner])
            if cursor.fetchone()[0]:
                raise CommandError(f"{service} is a member of {owner}, so it would have the owner's rights: revoke it")
        return set(existing)

    def plan(self, cursor, owner, service, existing, passwords, *, dry_run) -> list[sql.Composed]:
        schema, owner_id, service_id = sql.Identifier(SCHEMA), sql.Identifier(owner), sql.Identifier(service)
        statements = []
        for role in (owner, service):
            password = passwords[role]
            if dry_run and password is not None:
                password = "<password>"  # never print a real one
            verb = sql.SQL("ALTER" if role in existing else "CREATE")
            statement = sql.SQL("{} ROLE {} {}").format(verb, sql.Identifier(role), ROLE_ATTRIBUTES)
            if password is not None:
                statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
            statements.append(statement)

        cursor.execute("SELECT current_database()")
        database = sql.Identifier(cursor.fetchone()[0])
        statements += [
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, owner_id),
            # TEMPORARY: the lineage walk (migration artifacts/0005) keeps its visited set in a temp table.
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(database, service_id),
            # Only the owner creates objects here (PostgreSQL < 15 lets every role create in public).
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC, {}").format(schema, service_id),
            sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(schema, owner_id),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, service_id),
        ]

        statements += [sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)) for name in EXTENSIONS]

        cursor.execute(RELATIONS_TO_ADOPT, [SCHEMA, owner])
        for relkind, name in cursor.fetchall():
            statements.append(
                sql.SQL("ALTER {} {} OWNER TO {}").format(
                    sql.SQL(ALTER_KEYWORD[relkind]), sql.Identifier(SCHEMA, name), owner_id
                )
            )
        cursor.execute(ROUTINES_TO_ADOPT, [SCHEMA, owner])
        for name, arguments in cursor.fetchall():
            # The argument list is PostgreSQL's own rendering of the signature
            # (pg_get_function_identity_arguments), already valid, quoted SQL.
            statements.append(
                sql.SQL("ALTER ROUTINE {}({}) OWNER TO {}").format(
                    sql.Identifier(SCHEMA, name), sql.SQL(arguments), owner_id
                )
            )

        statements += service_grants(cursor, service)
        # What later migrations create (as the owner) can be read and written at once, never
        # deleted from; `migrate` then applies service_grants to it.
        defaults = sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} ").format(owner_id, schema)
        statements += [
            defaults + sql.SQL("REVOKE ALL ON TABLES FROM {}").format(service_id),
            defaults + sql.SQL("GRANT SELECT, INSERT, UPDATE ON TABLES TO {}").format(service_id),
            defaults + sql.SQL("GRANT USAGE, SELECT ON SEQUENCES TO {}").format(service_id),
            defaults + sql.SQL("GRANT EXECUTE ON FUNCTIONS TO {}").format(service_id),
        ]
        return statements
