"""An import killed mid-run (SIGKILL: no cleanup at all) or stopped with Ctrl-C, then run
again, holds the same rows as one uninterrupted import: whole batches only, never a line
twice, never half a line. A real process on PostgreSQL, polled from outside."""

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from artifacts.models import Artifact
from stories import services as story_services
from tests.operations.conftest import jsonl, line, run, summary

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

BATCH = 100
SPEC = {"prompt": "p", "style": "ink", "characters": [], "reference_images": []}


def export(story, *, scenes: int, versions: int) -> list[dict]:
    """A seed export, streams interleaved as a dump ordered by time would have them."""
    made = [story_services.scene_create(story_id=story.pk, title=f"s{n}") for n in range(scenes)]
    heads: dict = {}
    rows = []
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    for version in range(1, versions + 1):
        for scene in made:
            for type_name, payload in (("scene_intent", None), ("render_spec", SPEC)):
                row = line(
                    scene,
                    version,
                    type=type_name,
                    payload=payload,
                    parent=heads.get((scene.pk, type_name)),
                    request_id=f"export-{version}",
                    created_at=(start + datetime.timedelta(seconds=len(rows))).isoformat(),
                )
                heads[(scene.pk, type_name)] = row
                rows.append(row)
    return rows


def stored_rows() -> set[tuple]:
    columns = ("id", "scene_id", "type", "version", "parent_id", "payload", "request_id", "created_at")
    return {
        (*row[:5], json.dumps(row[5], sort_keys=True), *row[6:])
        for row in Artifact.objects.order_by().values_list(*columns)
    }


def expected_rows(rows: list[dict]) -> set[tuple]:
    return {
        (
            *map(uuid.UUID, (row["artifact_id"], row["scene_id"])),
            row["type"],
            row["version"],
            uuid.UUID(row["parent_id"]) if row["parent_id"] else None,
            json.dumps(row["payload"], sort_keys=True),
            row["request_id"],
            datetime.datetime.fromisoformat(row["created_at"]),
        )
        for row in rows
    }


def start_import(path: str, tmp_path) -> subprocess.Popen:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    url = f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_MEDIA_ROOT": str(tmp_path / "media")}
    env.pop("DATABASE_OWNER_URL", None)
    return subprocess.Popen(
        [sys.executable, "manage.py", "import_artifacts", path, "--batch-size", str(BATCH)],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def interrupt_after(process: subprocess.Popen, *, rows: int, sig: int) -> int:
    """Send ``sig`` once at least ``rows`` artifacts are committed; the count when it died."""
    deadline = time.monotonic() + 120
    while Artifact.objects.count() < rows:
        assert process.poll() is None, f"the import ended before it could be interrupted: {process.communicate()}"
        assert time.monotonic() < deadline, "the import committed nothing in two minutes"
        time.sleep(0.005)
    process.send_signal(sig)
    process.wait(60)
    return Artifact.objects.count()


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_an_interrupted_import_rerun_holds_the_rows_of_one_uninterrupted_import(story, tmp_path, sig, exit_code):
    rows = export(story, scenes=100, versions=100)  # 20,000 lines
    path = jsonl(tmp_path / "export.jsonl", rows)

    process = start_import(path, tmp_path)
    committed = interrupt_after(process, rows=BATCH * 5, sig=sig)

    assert process.returncode == exit_code, process.stderr.read().decode()[-2000:]
    assert 0 < committed < len(rows), "interrupted after the end: make the export bigger"
    assert committed % BATCH == 0, "a batch was half committed"
    if sig == signal.SIGINT:
        assert b"interrupted: finished batches are kept" in process.stderr.read()

    rerun = run("import_artifacts", path, batch_size=BATCH)

    assert rerun.code == 0, rerun.err
    facts = summary(rerun.out)
    assert (facts["skipped (already imported)"], facts["imported"]) == (f"{committed:,}", f"{len(rows) - committed:,}")
    assert stored_rows() == expected_rows(rows)
    assert run("verify_artifacts", check=["version_gaps", "parents"]).code == 0
