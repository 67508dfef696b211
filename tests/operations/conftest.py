"""Running the batch commands for real, and building rows with the times a test needs."""

from __future__ import annotations

import datetime
import io
import json
import uuid
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from artifacts.content import prepare_content, store_content
from artifacts.models import Artifact
from artifacts.payloads import ARTIFACT_TYPES
from artifacts.services import artifacts_insert_as_given
from tests.conftest import PNG_BYTES, SCENE_INTENT

LONG_AGO = timezone.now() - datetime.timedelta(days=400)


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run(name: str, *args, stdin=None, **options) -> Outcome:
    """``manage.py name args``: exit code (0, or the CommandError's), standard output and error."""
    out, err = io.StringIO(), io.StringIO()
    extra = {"stdin": stdin} if stdin is not None else {}
    try:
        call_command(name, *args, stdout=out, stderr=err, **extra, **options)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return Outcome(code, out.getvalue(), err.getvalue())


def summary(out: str) -> dict[str, str]:
    """The summary lines of a command's output ("  label   value"), by label."""
    found = {}
    for entry in out.splitlines():
        if entry.startswith("  ") and "  " in entry.strip():
            label, value = entry.strip().rsplit("  ", 1)
            found[label.strip()] = value.strip()
    return found


def jsonl(path, rows) -> str:
    """Write ``rows`` (dicts, or raw strings written as they are) one per line; return the path."""
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return str(path)


def line(scene, version, *, parent=None, type="scene_intent", payload=None, **extra) -> dict:
    """One row of the seed's artifacts table, with a fresh id unless one is given."""
    row = {
        "artifact_id": str(extra.pop("artifact_id", uuid.uuid4())),
        "scene_id": str(scene.pk) if scene is not None else None,
        "type": type,
        "version": version,
        "parent_id": str(parent["artifact_id"]) if isinstance(parent, dict) else (str(parent) if parent else None),
        "payload": payload if payload is not None else SCENE_INTENT,
        "request_id": "seed-export-1",
        "created_at": "2024-03-01T12:00:00.123456+00:00",
    }
    row.update(extra)
    return row


def chain(scene, count, **extra) -> list[dict]:
    """Versions 1..count of one stream, each the parent of the next."""
    rows = []
    for version in range(1, count + 1):
        rows.append(line(scene, version, parent=rows[-1] if rows else None, **extra))
    return rows


def snapshot() -> list[tuple]:
    """Every artifact row, every column: what "nothing changed" compares."""
    columns = [f.attname for f in Artifact._meta.concrete_fields]
    return sorted(Artifact.objects.order_by().values_list(*columns), key=lambda row: str(row[0]))


def insert(artifact: Artifact) -> None:
    """Insert an unsaved artifact exactly as it is, its created_at included."""
    values = {field.attname: getattr(artifact, field.attname) for field in Artifact._meta.local_concrete_fields}
    values["content"] = artifact.content.name or ""
    # A batch primitive writes in its caller's transaction (its artifact.created events too).
    with transaction.atomic():
        artifacts_insert_as_given([values])


class Rows:
    """Artifacts inserted as given (times included): a graph built for a test."""

    def __init__(self, story):
        self.story = story

    def make(
        self,
        *,
        scene,
        type="scene_intent",
        version,
        parent=None,
        state="intermediate",
        created_at=LONG_AGO,
        content: bytes | None = None,
        payload: dict | None = None,
    ) -> Artifact:
        row = Artifact(
            id=uuid.uuid4(),
            story_id=self.story.pk,
            scene_id=scene.pk if scene is not None else None,
            type=type,
            version=version,
            parent_id=parent.pk if parent is not None else None,
            payload=payload if payload is not None else ARTIFACT_TYPES[type].example,
            lifecycle_state=state,
            created_at=created_at,
            request_id="test",
        )
        if content is not None:
            with transaction.atomic():
                stored = store_content(prepare_content(content, mime_type="image/png", kind="image"))
            row.kind = "image"
            row.content = stored.name
            row.content_sha256 = stored.sha256
            row.content_size = stored.size
            row.mime_type = stored.mime_type
        insert(row)
        return Artifact.objects.get(pk=row.pk)

    def stream(self, *, scene, count, type="scene_intent", **options) -> list[Artifact]:
        versions = []
        for version in range(1, count + 1):
            versions.append(
                self.make(scene=scene, type=type, version=version, parent=versions[-1] if versions else None, **options)
            )
        return versions


@pytest.fixture
def rows(story):
    return Rows(story)


def png(seed: int) -> bytes:
    """A valid PNG whose bytes (and so digest) differ per seed: a text chunk before IEND."""
    import struct
    import zlib

    text = b"tEXt" + b"seed\x00" + str(seed).encode()
    chunk = struct.pack(">I", len(text) - 4) + text + struct.pack(">I", zlib.crc32(text))
    return PNG_BYTES[:-12] + chunk + PNG_BYTES[-12:]
