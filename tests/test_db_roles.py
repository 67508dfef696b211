"""SPEC §12 on a real PostgreSQL: create_db_roles makes an owner role and a service role
that owns nothing. Each test connects as those roles to the test database and tries what
the service must not be able to do; the refusals are PostgreSQL's own."""

import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from psycopg import errors, sql
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from artifacts import lineage as lineage_walk
from artifacts import services as artifact_services
from artifacts.models import Artifact
from artifacts.payloads import ARTIFACT_TYPES
from artifacts.services import ArtifactService
from audit.models import AuditEvent
from runs import services as run_services
from stories import services as story_services
from stories.models import Story
from tests.conftest import SCENE_INTENT
from tests.operations.conftest import run as run_command

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
    artifact_services.artifact_transition(artifact_id=made.pk, to="candidate")
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
        # Lineage and run history: added to, never changed or erased.
        ("DELETE FROM artifacts_artifactrelation", "permission denied for table artifacts_artifactrelation"),
        ("UPDATE artifacts_artifactrelation SET relation_type = 'variant_of'", "permission denied for table"),
        ("DELETE FROM runs_runartifactlink", "permission denied for table runs_runartifactlink"),
        ("UPDATE runs_runartifactlink SET stage = 'x'", "permission denied for table runs_runartifactlink"),
        ("UPDATE artifacts_auditevent SET action = 'x'", "permission denied for table artifacts_auditevent"),
        # Only the columns the services change, and no row the application never deletes.
        ("UPDATE artifacts_artifact SET version = version + 100", "permission denied for table artifacts_artifact"),
        (
            "UPDATE stories_storyartifactlink SET role = 'cover'",
            "permission denied for table stories_storyartifactlink",
        ),
        ("DELETE FROM stories_storyartifactlink", "permission denied for table stories_storyartifactlink"),
        ("DELETE FROM stories_scene", "permission denied for table stories_scene"),
        # Primary history: an open interval is closed (UPDATE of until), nothing else.
        ("DELETE FROM stories_primaryinterval", "permission denied for table stories_primaryinterval"),
        ("UPDATE stories_primaryinterval SET since = now()", "permission denied for table stories_primaryinterval"),
        ("TRUNCATE stories_primaryinterval", "permission denied for table stories_primaryinterval"),
        # Comments: resolved (UPDATE of the resolution columns), never edited or deleted.
        ("DELETE FROM comments_comment", "permission denied for table comments_comment"),
        ("UPDATE comments_comment SET body = 'x'", "permission denied for table comments_comment"),
        ("TRUNCATE comments_comment", "permission denied for table comments_comment"),
        ("DELETE FROM runs_run", "permission denied for table runs_run"),
        # Only the owner migrates.
        ("DELETE FROM django_migrations", "permission denied for table django_migrations"),
        ("UPDATE django_migrations SET name = 'x'", "permission denied for table django_migrations"),
        (
            "INSERT INTO django_migrations (app, name, applied) VALUES ('artifacts', '9999_fake', now())",
            "permission denied for table django_migrations",
        ),
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
    """UPDATE of lifecycle_state (and the prune's columns) is granted; the triggers allow a
    SPEC §5 transition only, and the prune's path only."""
    with roles.connect(roles.service) as conn:
        with pytest.raises(errors.RestrictViolation, match="artifact rows are immutable"):
            conn.execute("UPDATE artifacts_artifact SET payload = '{}' WHERE id = %s", [artifact.pk])
        with pytest.raises(errors.RestrictViolation, match="cannot go from candidate to intermediate"):
            conn.execute("UPDATE artifacts_artifact SET lifecycle_state = 'intermediate' WHERE id = %s", [artifact.pk])
        conn.execute("UPDATE artifacts_artifact SET lifecycle_state = 'published' WHERE id = %s", [artifact.pk])
    assert Artifact.objects.get(pk=artifact.pk).lifecycle_state == "published"


def test_not_even_the_owner_truncates_artifacts_or_audit_events(roles, artifact):
    with roles.connect(roles.owner) as conn:
        for table in ("artifacts_artifact", "artifacts_auditevent"):
            with pytest.raises(errors.RestrictViolation, match=f"{table} is never truncated"):
                conn.execute(f"TRUNCATE {table} CASCADE")
    assert Artifact.objects.filter(pk=artifact.pk).exists() and AuditEvent.objects.exists()


def test_owner_owns_everything_the_service_owns_nothing(roles):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
            " UNION SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            # An extension's functions (btree_gist's) stay its own, made by the superuser.
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass"
            " AND d.objid = p.oid AND d.deptype = 'e')"
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


def test_migrate_as_the_owner_takes_back_what_the_service_should_not_have(roles):
    """Whatever the service was granted since (by hand, or by an older create_db_roles that
    gave every table DELETE), migrate (as the owner, via DATABASE_OWNER_URL) applies the
    service's privileges afresh: column grants included."""
    immutable = ("artifacts_artifact", "artifacts_auditevent", "artifacts_artifactrelation", "django_migrations")
    with roles.connect(roles.owner) as conn:
        service = sql.Identifier(roles.service)
        conn.execute(
            sql.SQL("GRANT DELETE ON {} TO {}").format(sql.SQL(", ").join(map(sql.Identifier, immutable)), service)
        )
        conn.execute(sql.SQL("GRANT UPDATE (version) ON artifacts_artifact TO {}").format(service))

    def may_delete(table: str) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT has_table_privilege(%s, %s, 'DELETE')", [roles.service, table])
            return cursor.fetchone()[0]

    def may_renumber() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT has_column_privilege(%s, 'artifacts_artifact', 'version', 'UPDATE')", [roles.service]
            )
            return cursor.fetchone()[0]

    assert all(may_delete(table) for table in immutable) and may_renumber()

    out = manage(
        "migrate",
        "--noinput",
        DATABASE_URL=postgres_url(roles.service, roles.service_password),
        DATABASE_OWNER_URL=postgres_url(roles.owner, roles.owner_password),
    )
    assert out.returncode == 0, out.stderr
    assert f"privileges of the service role {roles.service} applied" in out.stdout
    assert not any(may_delete(table) for table in immutable) and not may_renumber()
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
    assert f'REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "{service}"' in printed
    assert f'GRANT INSERT ON "public"."artifacts_artifactrelation" TO "{service}"' in printed
    assert (
        f'GRANT INSERT, UPDATE ("lifecycle_state", "payload", "content", "pruned_at")'
        f' ON "public"."artifacts_artifact" TO "{service}"' in printed
    )
    assert f'GRANT INSERT, UPDATE, DELETE ON "public"."django_session" TO "{service}"' in printed
    assert f'ON "public"."django_migrations" TO "{service}"' not in printed
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


@contextlib.contextmanager
def connected_as(role: str, password: str):
    """The suite's own connection, as ``role``, for what runs inside: the real services,
    commands and API then write with that role's privileges and nothing more."""
    settings = connection.settings_dict
    saved = settings["USER"], settings["PASSWORD"]
    connection.close()
    settings["USER"], settings["PASSWORD"] = role, password
    try:
        yield
    finally:
        connection.close()
        settings["USER"], settings["PASSWORD"] = saved


def test_every_feature_works_as_the_service_role(roles, tmp_path, settings):
    """The narrowed grants leave no write path of the application without a privilege it
    needs: the demo seed (stories, scenes, the pipeline, edits, transitions, primaries, a
    media upload), relations, links, runs, the batch commands, the API and its tokens, and
    an admin login's session."""
    user = User.objects.create_user("service-probe", password="pw-service-probe", is_staff=True)
    with connected_as(roles.service, roles.service_password):
        assert run_command("seed_demo", username="demo-owner").code == 0
        story = Story.objects.get()
        scene = story.scenes.order_by("position").first()
        service = ArtifactService()
        intent = service.get_latest_artifact(scene.pk, "scene_intent")
        plan = service.get_latest_artifact(scene.pk, "panel_plan")
        extra = service.create_artifact(
            scene.pk, "dialogue_suggestions", ARTIFACT_TYPES["dialogue_suggestions"].example
        )
        artifact_services.relation_create(
            from_artifact_id=extra.pk, to_artifact_id=intent.pk, relation_type="derived_from"
        )
        artifact_services.relations_create(from_artifact_id=extra.pk, targets=[(plan.pk, "variant_of")])
        assert lineage_walk.walk(extra.pk).nodes  # the walk's temporary table
        story_services.scene_update(scene_id=scene.pk, title="Renamed")
        story_services.scene_lock_planning(scene_id=scene.pk)
        story_services.scene_unlock_planning(scene_id=scene.pk)
        run = run_services.run_create(story_id=story.pk, scene_id=scene.pk, workflow="w", start=True)
        step = run_services.step_start(run_id=run.pk, node="dialogue_suggestions")
        run_services.step_finish(step_id=step.pk, status="succeeded", links=[(extra.pk, "produced")])
        run_services.run_set_status(run_id=run.pk, status="succeeded")

        export = [
            {"artifact_id": str(uuid.uuid4()), "scene_id": str(uuid.uuid4()), "type": "scene_intent", "version": 1}
        ]
        export[0]["payload"] = SCENE_INTENT
        path = tmp_path / "seed.jsonl"
        path.write_text(json.dumps(export[0]) + "\n")
        for command, args, options in [
            ("import_artifacts", [str(path)], {"create_missing": True}),  # COPY, new story and scene
            ("backfill_relations", [], {}),
            ("sync_story_links", [], {}),
            ("prune_artifacts", ["--older-than", "0", "--yes"], {}),  # temporary tables, locks, the UPDATE
            ("verify_artifacts", [], {}),
        ]:
            outcome = run_command(command, *args, **options)
            assert outcome.code == 0, (command, outcome.err)
        assert Artifact.objects.filter(pruned_at__isnull=False).exists()

        api = APIClient()
        token = Token.objects.create(user=user)
        api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        assert api.get(f"/v1/stories/{story.pk}").status_code == 200
        token.delete()  # a key regenerated
        browser = Client()
        assert browser.login(username="service-probe", password="pw-service-probe")  # the session's INSERT
        assert browser.get("/admin/").status_code == 200
        browser.logout()  # its DELETE
    assert Artifact.objects.filter(story=story).count() > 20
