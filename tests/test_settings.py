"""Settings come from the environment: checked in a fresh interpreter per case."""

import json
import subprocess
import sys
from pathlib import Path

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
