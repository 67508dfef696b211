"""A database that drops mid-prune: the command ends with one clear line and exit 1, not a
traceback; its finished batches are kept and a rerun finishes the job. A real process on
PostgreSQL whose connection the server terminates (pg_terminate_backend) while it prunes."""

import datetime
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from artifacts.models import Artifact
from artifacts.payloads import ARTIFACT_TYPES
from artifacts.services import artifacts_insert_as_given
from tests.operations.conftest import LONG_AGO, run, summary

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

VERSIONS = 3000  # all but the latest are pruned, one per batch: the prune runs for seconds


def old_stream(story, scene, count: int) -> None:
    """Versions 1..count of one stream, created long ago, inserted at once."""
    rows, parent = [], None
    for version in range(1, count + 1):
        artifact = Artifact(
            id=uuid.uuid4(),
            story_id=story.pk,
            scene_id=scene.pk,
            type="scene_intent",
            version=version,
            parent_id=parent,
            payload=ARTIFACT_TYPES["scene_intent"].example,
            created_at=LONG_AGO + datetime.timedelta(seconds=version),
            request_id="old",
        )
        row = {field.attname: getattr(artifact, field.attname) for field in Artifact._meta.local_concrete_fields}
        row["content"] = ""
        rows.append(row)
        parent = artifact.pk
    with transaction.atomic():  # a batch primitive writes in its caller's transaction
        artifacts_insert_as_given(rows)


def start_prune(tmp_path) -> subprocess.Popen:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    url = f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_MEDIA_ROOT": str(tmp_path / "media")}
    env.pop("DATABASE_OWNER_URL", None)
    return subprocess.Popen(
        [sys.executable, "manage.py", "prune_artifacts", "--older-than", "30", "--yes", "--batch-size", "1"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def terminate_once_pruning(process: subprocess.Popen) -> int:
    """Terminate the command's connections once it has committed a tombstone; how many it had."""
    deadline = time.monotonic() + 120
    while not Artifact.objects.filter(pruned_at__isnull=False).exists():
        assert process.poll() is None, f"the prune ended before the database dropped: {process.communicate()}"
        assert time.monotonic() < deadline, "the prune committed nothing in two minutes"
        time.sleep(0.005)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    return Artifact.objects.filter(pruned_at__isnull=False).count()


def test_a_database_that_drops_mid_prune_is_one_line_and_exit_1_and_a_rerun_finishes(story, scene, tmp_path):
    old_stream(story, scene, VERSIONS)
    process = start_prune(tmp_path)
    pruned_then = terminate_once_pruning(process)
    _, stderr = process.communicate(timeout=60)
    stderr = stderr.decode()

    assert process.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    [line] = stderr.strip().splitlines()
    assert line.startswith("CommandError: the database became unavailable (")
    assert "finished batches are kept" in line and "run it again" in line
    assert 0 < pruned_then < VERSIONS - 1, "the prune was not interrupted: make the stream longer"

    rerun = run("prune_artifacts", "--older-than", "30", "--yes")
    assert rerun.code == 0, rerun.err
    assert int(summary(rerun.out)["pruned (now tombstones)"].replace(",", "")) >= VERSIONS - 1 - pruned_then
    assert Artifact.objects.filter(pruned_at__isnull=False).count() == VERSIONS - 1  # all but the latest
    assert run("verify_artifacts").code == 0
