"""Seed the editors' workbench flows (compare, restore, the planning lock in sight) into the
browser tests' database, after browser_seed.py, through the services only.

Run as a script with DATABASE_URL and DJANGO_MEDIA_ROOT of the running test server; prints
the ids the tests need as one JSON object.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artifacts_project.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402

from artifacts import services as artifact_services  # noqa: E402
from stories import services as story_services  # noqa: E402
from stories.models import Story  # noqa: E402
from tests.admin.browser_seed import USERNAME, png  # noqa: E402

SUMMARY = (
    "The keeper climbs the spiral stairs while the storm breaks over the rocks; the lamp gutters, "
    "and far below a small boat fights the swell toward the harbour mouth."
)


def main() -> None:
    editor = User.objects.get(username=USERNAME)
    story = Story.objects.get(title="The Lighthouse")
    scene = story_services.scene_create(story_id=story.pk, title="Harbour", source_text="The boat comes home.")
    intent = artifact_services.artifact_create(
        scene_id=scene.pk,
        type="scene_intent",
        payload={
            "mood": "tense",
            "pacing": "fast",
            "key_beats": ["lamp gutters", "boat in the swell"],
            "summary": SUMMARY,
        },
        actor=editor,
    )
    edited = artifact_services.artifact_edit(
        artifact_id=intent.pk,
        payload={
            "mood": "hopeful",
            "pacing": "fast",
            "key_beats": ["lamp gutters", "boat in the swell", "the boat reaches the harbour"],
            "summary": SUMMARY.replace("climbs", "races up").replace("small boat", "small fishing boat"),
            "camera": {"angle": "low", "lens": 24},
        },
        actor=editor,
    )
    latest = artifact_services.artifact_edit(
        artifact_id=edited.pk, payload={**edited.payload, "pacing": "slow"}, actor=editor
    )
    cover_v1 = artifact_services.artifact_create(
        story_id=story.pk,
        type="cover_image",
        payload={"alt": "a lighthouse at dusk"},
        content=png(),
        mime_type="image/png",
    )
    cover_v2 = artifact_services.artifact_create(
        story_id=story.pk,
        type="cover_image",
        payload={"alt": "a lighthouse at dusk, wider", "credit": "studio"},
        content=png(360, 200),
        mime_type="image/png",
    )
    quay = story_services.scene_create(story_id=story.pk, title="Quay", source_text="Nets dry on the quay.")
    locked_plan = artifact_services.artifact_create(
        scene_id=quay.pk,
        type="panel_plan",
        payload={"panels": [{"grammar_id": "establishing", "weight": 1, "must_show": ["quay", "nets"]}]},
        actor=editor,
    )
    story_services.scene_lock_planning(scene_id=quay.pk, actor=editor)
    print(
        json.dumps(
            {
                "wb_scene": str(scene.pk),
                "wb_intent_v1": str(intent.pk),
                "wb_intent_v2": str(edited.pk),
                "wb_intent_v3": str(latest.pk),
                "wb_cover_v1": str(cover_v1.pk),
                "wb_cover_v2": str(cover_v2.pk),
                "wb_locked_scene": str(quay.pk),
                "wb_locked_plan": str(locked_plan.pk),
            }
        )
    )


if __name__ == "__main__":
    main()
