"""Demo data for `make run`: a story with scenes, every artifact type, lineage, a run,
a published cover as the story's primary, and an admin login printed on screen."""

import os
import secrets
import struct
import zlib

from django.contrib.auth import get_user_model
from django.db import transaction

from artifacts.payloads import ARTIFACT_TYPES
from artifacts.services import ArtifactService
from artifacts_project.commands import RequestIdCommand
from runs import services as run_services
from stories import services as story_services
from stories.models import Story

DEMO_TITLE = "The Lighthouse Keeper"
SCENES = [
    ("Dusk", "The keeper climbs the spiral stairs as the sea darkens."),
    ("Storm", "Waves hit the rocks; the lamp flickers and the keeper holds it steady."),
    ("Dawn", "A fishing boat returns safely; the keeper sleeps at last."),
]
PLANNING_ORDER = [
    "scene_intent",
    "visual_plan",
    "panel_plan",
    "panel_plan_normalized",
    "layout_template",
    "panel_semantics",
    "dialogue_suggestions",
    "render_spec",
    "render_result",
    "qc_report",
    "blind_test_report",
]


def png(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> bytes:
    """A vertical-gradient RGB PNG, written with the standard library alone."""
    rows = []
    for y in range(height):
        t = y / max(height - 1, 1)
        pixel = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        rows.append(b"\x00" + pixel * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


class Command(RequestIdCommand):
    help = "Create the demo story (once) and a demo admin login; prints the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")

    def handle(self, *args, username, **options):
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()

        if Story.objects.filter(title=DEMO_TITLE).exists():
            self.stdout.write("demo story already present; nothing added")
        else:
            with transaction.atomic():
                self._seed(user)
            self.stdout.write(self.style.SUCCESS(f"demo story {DEMO_TITLE!r} created"))
        self.stdout.write(self.style.SUCCESS(f"admin login: {username} / {password}  at http://127.0.0.1:8000/admin/"))

    def _seed(self, user):
        service = ArtifactService(user=user)
        story = story_services.story_create(title=DEMO_TITLE, description="A keeper keeps the light through a storm.")
        for position, (title, text) in enumerate(SCENES, start=1):
            scene = story_services.scene_create(story_id=story.pk, title=title, source_text=text, position=position)
            run = run_services.run_create(story_id=story.pk, scene_id=scene.pk, workflow="scene_pipeline", start=True)
            previous = None
            for type_name in PLANNING_ORDER:
                step = run_services.step_start(run_id=run.pk, node=type_name, agent="demo")
                payload = {**ARTIFACT_TYPES[type_name].example, "scene": title}
                if type_name == "render_result":
                    artifact = service.create_artifact(
                        scene.pk, type_name, payload, kind="image", created_by_step=step,
                        content=png(96, 64, (20, 30, 60 + 40 * position), (230, 180, 90)), mime_type="image/png",
                    )  # fmt: skip
                else:
                    artifact = service.create_artifact(scene.pk, type_name, payload, created_by_step=step)
                if previous is not None:
                    service.relate(artifact.pk, previous.pk, "derived_from", created_by_step=step)
                    run_services.run_link_artifact(
                        run_id=run.pk, artifact_id=previous.pk, stage=type_name, direction="consumed", step_id=step.pk
                    )
                run_services.run_link_artifact(
                    run_id=run.pk, artifact_id=artifact.pk, stage=type_name, direction="produced", step_id=step.pk
                )
                run_services.step_finish(
                    step_id=step.pk, status="succeeded", output_summary={"version": artifact.version}
                )
                previous = artifact
            run_services.run_set_status(run_id=run.pk, status="succeeded")
            # A second, edited version of the intent shows a version stream in the admin.
            intent = service.get_latest_artifact(scene.pk, "scene_intent")
            service.edit_artifact(intent.pk, {**intent.payload, "mood": "hopeful" if position == 3 else "ominous"})
            image = service.get_latest_artifact(scene.pk, "render_result")
            service.transition(image.pk, "candidate")
            service.transition(image.pk, "published")
            story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=image.pk, actor=user)

        cover = service.create_story_artifact(
            story.pk, "cover_image", {"alt": "A lighthouse beam over a dark sea"},
            content=png(160, 100, (10, 20, 50), (250, 200, 100)), mime_type="image/png",
        )  # fmt: skip
        service.transition(cover.pk, "candidate")
        service.transition(cover.pk, "published")
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=cover.pk, actor=user)
