"""Settings come from the environment: checked in a fresh interpreter per case."""

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def settings_under(env: dict) -> dict:
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        "print(json.dumps({'debug': settings.DEBUG, 'engine': settings.DATABASES['default']['ENGINE'],"
        "'storage': settings.STORAGES['default'], 'hosts': settings.ALLOWED_HOSTS}))"
    )
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "artifacts_project.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_safe_defaults_sqlite_no_debug_local_storage():
    conf = settings_under({})
    assert conf["debug"] is False
    assert conf["engine"] == "django.db.backends.sqlite3"
    assert conf["storage"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"


def test_environment_switches_database_debug_hosts_and_s3_storage():
    conf = settings_under(
        {
            "DATABASE_URL": "postgres://u@db.example:5432/store",
            "DJANGO_DEBUG": "1",
            "DJANGO_ALLOWED_HOSTS": "store.example, api.example",
            "ARTIFACT_S3_BUCKET": "artifacts",
            "ARTIFACT_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        }
    )
    assert conf["debug"] is True
    assert conf["engine"] == "django.db.backends.postgresql"
    assert conf["hosts"] == ["store.example", "api.example"]
    assert conf["storage"]["BACKEND"] == "storages.backends.s3.S3Storage"
    assert conf["storage"]["OPTIONS"]["bucket_name"] == "artifacts"


def test_django_system_checks_pass(db):
    from django.core.management import call_command

    call_command("check", fail_level="WARNING")
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)


# The production environment of the README's Production section (a long random key is
# made per test run, as an operator would make one per deployment).
PRODUCTION = {
    "DJANGO_HTTPS": "1",
    "DJANGO_ALLOWED_HOSTS": "store.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://store.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
}


def run(args: list[str], env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter under exactly this environment, on a throwaway SQLite database."""
    base = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "artifacts_project.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def secret_key() -> str:
    return secrets.token_urlsafe(50)


@pytest.mark.parametrize("module", ["artifacts_project.wsgi", "artifacts_project.asgi"])
def test_service_refuses_to_start_without_secret_key_when_debug_is_off(module, tmp_path):
    out = run(["-c", f"import {module}"], {}, tmp_path)
    assert out.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set and DEBUG is off" in out.stderr
    assert "DJANGO_DEBUG=1" in out.stderr


def test_runserver_refuses_too(tmp_path):
    """runserver loads the WSGI application named by WSGI_APPLICATION: the same check."""
    out = run(["manage.py", "runserver", "--noreload", "127.0.0.1:0"], {}, tmp_path)
    assert out.returncode != 0
    assert "DJANGO_SECRET_KEY is not set and DEBUG is off" in out.stderr


@pytest.mark.parametrize("module", ["artifacts_project.wsgi", "artifacts_project.asgi"])
@pytest.mark.parametrize("env", [{"DJANGO_SECRET_KEY": secret_key()}, {"DJANGO_DEBUG": "1"}], ids=["key", "debug"])
def test_service_starts_with_the_key_or_in_debug(module, env, tmp_path):
    out = run(["-c", f"import {module}; print(callable({module}.application))"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_secret_key_without_the_variable_is_random_per_process_unless_debug(tmp_path):
    code = ["-c", "import django; from django.conf import settings; django.setup(); print(settings.SECRET_KEY)"]
    first, second = (run(code, {}, tmp_path).stdout.strip() for _ in range(2))
    assert len(first) >= 50 and first != second
    debug = run(code, {"DJANGO_DEBUG": "1"}, tmp_path).stdout.strip()
    assert debug.startswith("django-insecure-")  # check --deploy flags it if it ever reaches production
    key = secret_key()
    assert run(code, {"DJANGO_SECRET_KEY": key}, tmp_path).stdout.strip() == key


def test_management_commands_work_without_the_key(tmp_path):
    for command in (["migrate", "--noinput"], ["seed_demo"], ["check"]):
        out = run(["manage.py", *command], {}, tmp_path)
        assert out.returncode == 0, (command, out.stderr)


def test_check_deploy_is_clean_under_the_readme_production_environment(tmp_path):
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secret_key()}
    out = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "System check identified no issues" in out.stdout


def test_check_deploy_fails_without_https(tmp_path):
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secret_key()}
    del env["DJANGO_HTTPS"]
    out = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert out.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"security.{warning}" in out.stderr


def test_https_settings_and_their_overrides(tmp_path):
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        "print(json.dumps([settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE,"
        " settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS, settings.SECURE_HSTS_PRELOAD,"
        " settings.SECURE_PROXY_SSL_HEADER]))"
    )
    production = json.loads(run(["-c", code], PRODUCTION, tmp_path).stdout)
    assert production == [True, True, True, 365 * 24 * 3600, True, True, ["HTTP_X_FORWARDED_PROTO", "https"]]
    overridden = {**PRODUCTION, "DJANGO_HSTS_SECONDS": "3600", "DJANGO_HSTS_PRELOAD": "0"}
    assert json.loads(run(["-c", code], overridden, tmp_path).stdout)[3:6] == [3600, True, False]
    development = json.loads(run(["-c", code], {}, tmp_path).stdout)
    assert development == [False, False, False, 0, False, False, None]
    bad = run(["-c", code], {"DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO"}, tmp_path)
    assert bad.returncode != 0 and "DJANGO_SECURE_PROXY_SSL_HEADER must be 'HEADER,value'" in bad.stderr


def test_https_redirects_everything_but_healthz(tmp_path):
    """Load balancers probe /healthz over plain http; the proxy header marks https requests."""
    code = (
        "import json, django; django.setup(); from django.test import Client; c = Client();"
        "h = c.get('/healthz'); a = c.get('/admin/login/');"
        "s = c.get('/admin/login/', headers={'x-forwarded-proto': 'https'});"
        "print(json.dumps([h.status_code, a.status_code, a.get('Location'), s.status_code,"
        " s.get('Strict-Transport-Security')]))"
    )
    out = run(["-c", code], {**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "testserver"}, tmp_path)
    assert out.returncode == 0, out.stderr
    healthz, admin, location, secure, hsts = json.loads(out.stdout)
    assert healthz == 200
    assert (admin, location) == (301, "https://testserver/admin/login/")
    assert secure == 200 and hsts == "max-age=31536000; includeSubDomains; preload"


def test_healthz_never_echoes_the_database_error(tmp_path):
    """A real PostgreSQL connection failure (nothing listens on port 1): the answer says
    only "unavailable"; host, database and user names go to the log."""
    code = (
        "import django; django.setup(); from django.test import Client;"
        "r = Client().get('/healthz'); print(r.status_code); print(r.content.decode()); print(r['Retry-After'])"
    )
    env = {"DATABASE_URL": "postgres://secret_user:secret_pw@127.0.0.1:1/secret_db"}
    out = run(["-c", code], env, tmp_path)
    assert out.returncode == 0, out.stderr
    status, body, retry_after = out.stdout.strip().splitlines()
    assert status == "503" and int(retry_after) > 0
    assert json.loads(body) == {"status": "error", "database": "unavailable"}
    assert "secret" not in body and "127.0.0.1" not in body
    assert "healthz: the database is unavailable" in out.stderr
    assert "OperationalError" in out.stderr  # the driver's error is logged, with its traceback


def test_database_owner_url_adds_a_mirrored_owner_alias_and_migrate_defaults_to_it(tmp_path):
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        "from django.core.management import get_commands, load_command_class;"
        "app = get_commands()['migrate'];"  # the app whose migrate manage.py runs
        "parser = load_command_class(app, 'migrate').create_parser('manage.py', 'migrate');"
        "owner = settings.DATABASES.get('owner');"
        "print(json.dumps([app, parser.parse_args([]).database, owner and owner['USER'],"
        " owner and owner['TEST']['MIRROR']]))"
    )
    env = {
        "DATABASE_URL": "postgres://artifacts_service@db.example:5432/artifacts",
        "DATABASE_OWNER_URL": "postgres://artifacts_owner@db.example:5432/artifacts",
    }
    out = run(["-c", code], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["artifacts_project", "owner", "artifacts_owner", "default"]
    plain = run(["-c", code], {}, tmp_path)
    assert json.loads(plain.stdout) == ["artifacts_project", "default", None, None]


def test_create_db_roles_refuses_sqlite(tmp_path):
    out = run(["manage.py", "create_db_roles", "--owner", "o", "--service", "s"], {}, tmp_path)
    assert out.returncode != 0
    assert "create_db_roles is for PostgreSQL" in out.stderr
