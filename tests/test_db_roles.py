"""SPEC §12 on a real PostgreSQL: create_db_roles makes an owner role and a service role
that owns nothing. Each test connects as those roles to the test database and tries what
the service must not be able to do; the refusals are PostgreSQL's own."""

import io
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from psycopg import errors, sql

from artifacts.models import Artifact, AuditEvent
from artifacts.services import ArtifactService
from stories.models import Story
from tests.conftest import SCENE_INTENT

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent


def run_sql(statement: sql.Composable) -> None:
    """DDL on the suite's own (superuser) connection, role names quoted by psycopg."""
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(connection.connection))


def drop_roles(*roles: str) -> None:
    """Give back what the roles own, drop their grants and default privileges, drop them:
    the test database returns to the superuser and a rerun starts clean."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(roles)])
        names = [name for (name,) in cursor.fetchall()]
    if names:
        existing = sql.SQL(", ").join(map(sql.Identifier, names))
        run_sql(sql.SQL("REASSIGN OWNED BY {} TO current_user").format(existing))
        for name in names:  # one at a time: PostgreSQL 15 fails on a default ACL shared by both
            run_sql(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        run_sql(sql.SQL("DROP ROLE {}").format(existing))


def postgres_url(role: str, password: str) -> str:
    """The test database, as another role (built from the suite's own connection settings)."""
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    return f"postgres://{quote(role)}:{quote(password)}@{host}:{port}/{quote(settings['NAME'])}"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "artifacts_project.settings",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


class Roles:
    def __init__(self):
        suffix = secrets.token_hex(4)
        self.owner, self.service = f"artifacts_owner_{suffix}", f"artifacts_service_{suffix}"
        self.owner_password, self.service_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)

    def connect(self, role: str) -> psycopg.Connection:
        password = self.owner_password if role == self.owner else self.service_password
        return psycopg.connect(postgres_url(role, password), autocommit=True)


@pytest.fixture
def roles(db, monkeypatch):
    made = Roles()
    monkeypatch.setenv("TEST_OWNER_PASSWORD", made.owner_password)
    monkeypatch.setenv("TEST_SERVICE_PASSWORD", made.service_password)
    options = {
        "owner": made.owner,
        "service": made.service,
        "owner_password_env": "TEST_OWNER_PASSWORD",
        "service_password_env": "TEST_SERVICE_PASSWORD",
    }
    try:
        first, second = io.StringIO(), io.StringIO()
        call_command("create_db_roles", **options, stdout=first)
        call_command("create_db_roles", **options, stdout=second)  # safe to run twice
        assert f"role {made.service}: created" in first.getvalue()
        assert f"role {made.service}: exists, brought up to date" in second.getvalue()
        yield made
    finally:
        drop_roles(made.owner, made.service)


@pytest.fixture
def artifact(scene):
    """A real artifact and an audit row, so a DELETE would have something to delete."""
    service = ArtifactService()
    made = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    service.transition(made.pk, "candidate")
    assert AuditEvent.objects.exists()
    return made


def test_service_role_reads_inserts_and_updates(roles, story):
    with roles.connect(roles.service) as conn:
        assert conn.execute("SELECT title FROM stories_story WHERE id = %s", [story.pk]).fetchone() == (story.title,)
        story_id = conn.execute(
            "INSERT INTO stories_story (id, title, description, created_at, updated_at)"
            " VALUES (gen_random_uuid(), 'Inserted by the service', '', now(), now()) RETURNING id"
        ).fetchone()[0]
        conn.execute("UPDATE stories_story SET title = 'Renamed by the service' WHERE id = %s", [story_id])
        # Django deletes sessions and tokens: DELETE stays granted where nothing is immutable.
        conn.execute("DELETE FROM django_session")
    assert Story.objects.get(pk=story_id).title == "Renamed by the service"


@pytest.mark.parametrize(
    "statement, refusal",
    [
        ("DELETE FROM artifacts_artifact", "permission denied for table artifacts_artifact"),
        ("DELETE FROM artifacts_auditevent", "permission denied for table artifacts_auditevent"),
        ("TRUNCATE artifacts_artifact", "permission denied for table artifacts_artifact"),
        ("TRUNCATE artifacts_auditevent", "permission denied for table artifacts_auditevent"),
        ("TRUNCATE stories_story", "permission denied for table stories_story"),
        ("ALTER TABLE artifacts_artifact DISABLE TRIGGER USER", "must be owner of table artifacts_artifact"),
        ("ALTER TABLE artifacts_auditevent DISABLE TRIGGER USER", "must be owner of table artifacts_auditevent"),
        ("DROP TRIGGER artifacts_artifact_immutable ON artifacts_artifact", "must be owner of"),
        ("ALTER TABLE stories_story ADD COLUMN probe integer", "must be owner of table stories_story"),
        (
            "CREATE OR REPLACE FUNCTION artifacts_artifact_guard() RETURNS trigger AS $$ BEGIN RETURN OLD; END $$"
            " LANGUAGE plpgsql",
            "permission denied for schema public",  # no CREATE there, let alone ownership of the function
        ),
        ("SET session_replication_role = replica", 'permission denied to set parameter "session_replication_role"'),
        ("CREATE TABLE public.probe (i integer)", "permission denied for schema public"),
    ],
)
def test_service_role_cannot_delete_truncate_or_alter(roles, artifact, statement, refusal):
    with roles.connect(roles.service) as conn:
        with pytest.raises(errors.InsufficientPrivilege, match=refusal):
            conn.execute(statement)
    assert Artifact.objects.filter(pk=artifact.pk).exists()
    assert AuditEvent.objects.exists()


def test_the_triggers_still_guard_what_the_service_may_update(roles, artifact):
    """UPDATE is granted (lifecycle changes); the immutability trigger refuses the rest."""
    with roles.connect(roles.service) as conn:
        with pytest.raises(errors.RestrictViolation, match="artifact rows are immutable"):
            conn.execute("UPDATE artifacts_artifact SET payload = '{}' WHERE id = %s", [artifact.pk])
        conn.execute("UPDATE artifacts_artifact SET lifecycle_state = 'published' WHERE id = %s", [artifact.pk])
    assert Artifact.objects.get(pk=artifact.pk).lifecycle_state == "published"


def test_owner_owns_everything_the_service_owns_nothing(roles):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
            " UNION SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
        )
        assert cursor.fetchall() == [(roles.owner,)]
        cursor.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s", [roles.service])
        assert cursor.fetchone() == (False, False, False)


def test_owner_can_alter_and_its_new_tables_reach_the_service(roles):
    with roles.connect(roles.owner) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("ALTER TABLE artifacts_artifact DISABLE TRIGGER USER")
            conn.execute("ALTER TABLE artifacts_artifact ENABLE TRIGGER USER")
            conn.execute("ALTER TABLE stories_story ADD COLUMN probe integer")
        # What a later migration creates gets the service's grants by default privileges.
        conn.execute("CREATE TABLE probe_later_migration (i integer)")
        try:
            with roles.connect(roles.service) as service:
                service.execute("INSERT INTO probe_later_migration VALUES (1)")
                service.execute("UPDATE probe_later_migration SET i = 2")
                assert service.execute("SELECT i FROM probe_later_migration").fetchall() == [(2,)]
        finally:
            conn.execute("DROP TABLE probe_later_migration")


def test_migrate_as_the_owner_takes_delete_back_from_the_immutable_tables(roles):
    """Default privileges give every table a migration creates DELETE; migrate (as the
    owner, via DATABASE_OWNER_URL) revokes it again on artifacts and audit rows."""
    with roles.connect(roles.owner) as conn:
        conn.execute(
            sql.SQL("GRANT DELETE ON artifacts_artifact, artifacts_auditevent TO {}").format(
                sql.Identifier(roles.service)
            )
        )

    def may_delete(table: str) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT has_table_privilege(%s, %s, 'DELETE')", [roles.service, table])
            return cursor.fetchone()[0]

    assert may_delete("artifacts_artifact") and may_delete("artifacts_auditevent")

    out = manage(
        "migrate",
        "--noinput",
        DATABASE_URL=postgres_url(roles.service, roles.service_password),
        DATABASE_OWNER_URL=postgres_url(roles.owner, roles.owner_password),
    )
    assert out.returncode == 0, out.stderr
    assert f"privileges of the service role {roles.service} applied" in out.stdout
    assert not may_delete("artifacts_artifact") and not may_delete("artifacts_auditevent")
    assert may_delete("django_session")


def test_migrate_as_the_owner_refuses_an_unknown_or_identical_service_role(roles):
    owner_url = postgres_url(roles.owner, roles.owner_password)
    missing = f"artifacts_missing_{secrets.token_hex(4)}"
    out = manage("migrate", "--noinput", DATABASE_URL=postgres_url(missing, "x"), DATABASE_OWNER_URL=owner_url)
    assert out.returncode != 0
    assert f"the service role '{missing}' does not exist: run create_db_roles first" in out.stderr
    out = manage("migrate", "--noinput", DATABASE_URL=owner_url, DATABASE_OWNER_URL=owner_url)
    assert out.returncode != 0
    assert "DATABASE_URL must name the service role, a different user" in out.stderr


def test_create_db_roles_refuses_a_connection_that_is_not_a_superuser(roles):
    out = manage(
        "create_db_roles",
        "--owner",
        "anyone",
        "--service",
        "anyone_else",
        DATABASE_URL=postgres_url(roles.service, roles.service_password),
    )
    assert out.returncode != 0
    assert f"create_db_roles needs a superuser connection; '{roles.service}' is not one" in out.stderr


def test_create_db_roles_refuses_superuser_roles_and_one_role_for_both(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        superuser = cursor.fetchone()[0]
    with pytest.raises(CommandError, match="is a superuser, which bypasses every privilege"):
        call_command("create_db_roles", owner="artifacts_owner_x", service=superuser, stdout=io.StringIO())
    with pytest.raises(CommandError, match="two different roles"):
        call_command("create_db_roles", owner="artifacts_same", service="artifacts_same", stdout=io.StringIO())
    with pytest.raises(CommandError, match="NO_SUCH_VARIABLE_FOR_TESTS .* is unset or empty"):
        call_command(
            "create_db_roles",
            owner="a",
            service="b",
            owner_password_env="NO_SUCH_VARIABLE_FOR_TESTS",
            stdout=io.StringIO(),
        )


def test_dry_run_prints_the_sql_and_changes_nothing(db, monkeypatch):
    suffix = secrets.token_hex(4)
    owner, service = f"artifacts_owner_{suffix}", f"artifacts_service_{suffix}"
    monkeypatch.setenv("TEST_SERVICE_PASSWORD", "never-printed-password")
    out = io.StringIO()
    call_command(
        "create_db_roles",
        owner=owner,
        service=service,
        service_password_env="TEST_SERVICE_PASSWORD",
        dry_run=True,
        stdout=out,
    )
    printed = out.getvalue()
    assert f'CREATE ROLE "{service}" LOGIN NOSUPERUSER' in printed
    assert (
        f'REVOKE DELETE, TRUNCATE ON "public"."artifacts_artifact", "public"."artifacts_auditevent" FROM "{service}"'
        in printed
    )
    assert f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}"' in printed
    assert "never-printed-password" not in printed and "dry run: nothing changed" in printed
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)", [owner, service])
        assert cursor.fetchone() == (0,)


def test_new_roles_without_a_password_variable_get_one_printed_once(db):
    suffix = secrets.token_hex(4)
    owner, service = f"artifacts_owner_{suffix}", f"artifacts_service_{suffix}"
    try:
        first, second = io.StringIO(), io.StringIO()
        call_command("create_db_roles", owner=owner, service=service, stdout=first)
        call_command("create_db_roles", owner=owner, service=service, stdout=second)
        assert f"password of the new role {owner} (shown once): " in first.getvalue()
        assert f"password of the new role {service} (shown once): " in first.getvalue()
        assert "password" not in second.getvalue()
    finally:
        drop_roles(owner, service)
