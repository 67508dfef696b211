"""The demo story (``seed_demo``) and, on top of it, what an editor reviews: for the first
scene a candidate render and then a newer published render (the latest, not yet primary); prints the ids as
JSON on its last line. Run as a script against the database the environment names."""

import io
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from artifacts import services as artifact_services  # noqa: E402
from operations.management.commands.seed_demo import DEMO_TITLE  # noqa: E402
from stories.models import Story  # noqa: E402


def png(label: str, color) -> bytes:
    image = Image.new("RGB", (480, 270), color)
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 460, 250), outline=(255, 255, 255), width=4)
    draw.text((40, 120), label, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def render(scene, label: str, color):
    return artifact_services.artifact_create(
        scene_id=scene.pk,
        type="render_result",
        kind="image",
        payload={"image_url": f"render://{label}.png", "metadata": {"note": label}, "generation_params": {}},
        content=png(label, color),
        mime_type="image/png",
    )


def main() -> None:
    call_command("seed_demo", username="editor", stdout=io.StringIO())
    story = Story.objects.get(title=DEMO_TITLE)
    first = story.scenes.order_by("position").first()
    candidate = render(first, "candidate for review", (120, 50, 40))
    artifact_services.artifact_transition(artifact_id=candidate.pk, to="candidate")
    retouched = render(first, "retouched by hand", (30, 70, 120))
    artifact_services.artifact_transition(artifact_id=retouched.pk, to="candidate")
    artifact_services.artifact_transition(artifact_id=retouched.pk, to="published")
    print(
        json.dumps(
            {
                "story": str(story.pk),
                "scene": str(first.pk),
                "retouched": str(retouched.pk),
                "candidate": str(candidate.pk),
            }
        )
    )


if __name__ == "__main__":
    main()
