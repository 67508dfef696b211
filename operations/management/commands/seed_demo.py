"""Demo data for `make run`: a story whose scenes went through the pipeline, one artifact
edited by hand and the pipeline run again (so versions, lineage and reuse show in the
admin), published scene images as primaries, a published cover, sound track and video as
the story's primaries (so the admin previews an image, a sound and a video), and an admin
login printed on screen."""

import io
import os
import secrets

from django.contrib.auth import get_user_model
from PIL import Image, ImageDraw

from artifacts import services as artifact_services
from artifacts.services import ArtifactService
from kernel.commands import RequestIdCommand
from operations.demo_media import beam_webm, sea_wav
from runs.pipeline import driver
from stories import services as story_services
from stories.models import Story

DEMO_TITLE = "The Lighthouse Keeper"
SCENES = [
    (
        "Dusk",
        "Mara climbs the spiral stairs as the sea darkens. "
        '"The lamp needs oil before nightfall," Mara tells Tomas. '
        "Tomas carries the heavy can up, step by step, in his yellow coat.",
    ),
    (
        "Storm",
        "Waves hit the rocks and the lamp flickers. "
        '"Hold it steady!" Tomas shouts over the wind. '
        "Mara shields the flame with her grey shawl until the gust passes.",
    ),
    (
        "Dawn",
        "A fishing boat returns safely at first light. "
        '"You kept the light for us," says Captain Elin. '
        "Mara sleeps at last while Tomas waves from the gallery.",
    ),
]


def cover_png() -> bytes:
    """A lighthouse beam over a dark sea, drawn with Pillow."""
    image = Image.new("RGB", (480, 300), (14, 24, 52))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 220, 480, 300), fill=(20, 50, 90))
    draw.polygon([(232, 90), (248, 90), (256, 220), (224, 220)], fill=(235, 235, 235))
    draw.polygon([(240, 95), (480, 40), (480, 150)], fill=(250, 210, 110))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Command(RequestIdCommand):
    help = "Create the demo story (once) and a demo admin login; prints the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument(
            "--site-url", default="http://127.0.0.1:8000", help="where the site is served, for the login line"
        )

    def handle(self, *args, username, site_url, **options):
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()

        if Story.objects.filter(title=DEMO_TITLE).exists():
            self.stdout.write("demo story already present; nothing added")
        else:
            # Each step is an action of its own: the pipeline's runs commit node by node,
            # as they do everywhere (a run inside one transaction would hold every lock it
            # takes to the end, out of locks.py's order).
            self._seed(user)
            self.stdout.write(self.style.SUCCESS(f"demo story {DEMO_TITLE!r} created"))
        self.stdout.write(self.style.SUCCESS(f"admin login: {username} / {password}  at {site_url.rstrip('/')}/admin/"))

    def _seed(self, user):
        service = ArtifactService(user=user)
        story = story_services.story_create(title=DEMO_TITLE, description="A keeper keeps the light through a storm.")
        scenes = [
            story_services.scene_create(story_id=story.pk, title=title, source_text=text, position=position)
            for position, (title, text) in enumerate(SCENES, start=1)
        ]
        for scene in scenes:
            driver.run_scene(scene.pk, actor=user)

        # An editor's hand on the first scene's plan, then the pipeline again: the edit is
        # kept, what follows it is remade, the rest reused.
        plan = service.get_latest_artifact(scenes[0].pk, "panel_plan")
        panels = [{**panel, "must_show": [*panel["must_show"], "lamp"]} for panel in plan.payload["panels"]]
        artifact_services.artifact_edit(artifact_id=plan.pk, payload={**plan.payload, "panels": panels}, actor=user)
        driver.run_scene(scenes[0].pk, actor=user)

        for scene in scenes:
            image = service.get_latest_artifact(scene.pk, "render_result")
            artifact_services.artifact_transition(artifact_id=image.pk, to="candidate", actor=user)
            artifact_services.artifact_transition(artifact_id=image.pk, to="published", actor=user)
            story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=image.pk, actor=user)

        scene_images = [service.get_latest_artifact(scene.pk, "render_result") for scene in scenes]
        media = [
            ("cover", "cover_image", "A lighthouse beam over a dark sea", cover_png(), "image/png"),
            ("final_audio", "audio_track", "Surf on the rocks below the lighthouse", sea_wav(), "audio/wav"),
            ("final_video", "video_render", "The lighthouse beam sweeps the sea", beam_webm(), "video/webm"),
        ]
        for role, type_, alt, content, mime_type in media:
            artifact = artifact_services.artifact_create(
                story_id=story.pk, type=type_, payload={"alt": alt}, content=content, mime_type=mime_type, actor=user
            )
            if type_ == "video_render":  # the video animates the scenes' images: lineage to them
                artifact_services.relations_create(
                    from_artifact_id=artifact.pk, targets=[(image.pk, "derived_from") for image in scene_images]
                )
            artifact_services.artifact_transition(artifact_id=artifact.pk, to="candidate", actor=user)
            artifact_services.artifact_transition(artifact_id=artifact.pk, to="published", actor=user)
            story_services.story_set_primary(story_id=story.pk, role=role, artifact_id=artifact.pk, actor=user)
