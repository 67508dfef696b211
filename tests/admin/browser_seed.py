"""Seed a fresh database for the browser tests, through the services only.

Run as a script with DATABASE_URL pointing at a migrated throw-away database; prints
the ids the tests need as one JSON object.
"""

import json
import math
import os
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402

from artifacts import services as artifact_services  # noqa: E402
from artifacts.services import ArtifactService  # noqa: E402
from runs import services as run_services  # noqa: E402
from stories import services as story_services  # noqa: E402

USERNAME, PASSWORD = "editor", "browser-test-pw"


def png(width: int = 480, height: int = 270) -> bytes:
    """A small real PNG: a dusk sky, a sea and a lighthouse, so previews show something."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            if y > height * 0.7:
                r, g, b = 30, 60 + (y % 7) * 4, 110
            else:
                t = y / (height * 0.7)
                r, g, b = int(250 - 170 * t), int(170 - 110 * t), int(90 + 60 * t)
            if abs(x - width * 0.7) < 10 - (y - height * 0.3) * 0.02 and height * 0.3 < y < height * 0.72:
                r, g, b = (220, 40, 40) if (y // 18) % 2 else (245, 245, 245)
            row += bytes((r, g, b))
        rows.append(bytes(row))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate))
    )
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(samples))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", len(samples))
        + samples
    )


def main() -> None:
    User.objects.create_superuser(USERNAME, "editor@example.com", PASSWORD)
    svc = ArtifactService(request_id="browser-seed")
    story = story_services.story_create(title="The Lighthouse", description="A keeper and a storm.")
    scene = story_services.scene_create(story_id=story.pk, title="Storm", source_text="The keeper climbs the stairs.")
    story_services.scene_create(story_id=story.pk, title="Dawn", source_text="The sea is calm again.")
    intent = svc.create_artifact(
        scene.pk, "scene_intent", {"mood": "tense", "pacing": "fast", "key_beats": ["door creaks", "lights fail"]}
    )
    plan = svc.create_artifact(
        scene.pk,
        "panel_plan",
        {
            "panels": [
                {"grammar_id": "establishing", "weight": 1.5, "must_show": ["lighthouse", "storm"]},
                {"grammar_id": "close_up", "weight": 1.0, "must_show": ["keeper"]},
            ]
        },
    )
    artifact_services.relation_create(from_artifact_id=plan.pk, to_artifact_id=intent.pk, relation_type="derived_from")
    spec = svc.create_artifact(
        scene.pk,
        "render_spec",
        {"prompt": "a lighthouse in a storm", "style": "ink", "characters": ["keeper"], "reference_images": []},
    )
    artifact_services.relation_create(from_artifact_id=spec.pk, to_artifact_id=plan.pk, relation_type="derived_from")
    cover = artifact_services.artifact_create(
        story_id=story.pk,
        type="cover_image",
        payload={"alt": "a lighthouse at dusk"},
        content=png(),
        mime_type="image/png",
    )
    artifact_services.relation_create(from_artifact_id=cover.pk, to_artifact_id=spec.pk, relation_type="derived_from")
    audio = artifact_services.artifact_create(
        story_id=story.pk, type="audio_track", payload={"alt": "a 440 Hz tone"}, content=wav(), mime_type="audio/wav"
    )
    run = run_services.run_create(story_id=story.pk, scene_id=scene.pk, workflow="panels", start=True)
    step = run_services.step_start(run_id=run.pk, node="panel_plan", agent="planner")
    run_services.run_link_artifact(
        run_id=run.pk, artifact_id=intent.pk, stage="panel_plan", direction="consumed", step_id=step.pk
    )
    run_services.run_link_artifact(
        run_id=run.pk, artifact_id=plan.pk, stage="panel_plan", direction="produced", step_id=step.pk
    )
    run_services.step_finish(step_id=step.pk, status="succeeded", output_summary={"panels": 2})
    run_services.run_set_status(run_id=run.pk, status="succeeded")
    print(
        json.dumps(
            {
                "username": USERNAME,
                "password": PASSWORD,
                "story": str(story.pk),
                "scene": str(scene.pk),
                "intent": str(intent.pk),
                "plan": str(plan.pk),
                "cover": str(cover.pk),
                "audio": str(audio.pk),
                "run": str(run.pk),
            }
        )
    )


if __name__ == "__main__":
    main()
