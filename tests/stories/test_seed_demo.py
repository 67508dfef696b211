from django.contrib.auth.models import User
from django.core.management import call_command

from artifacts.models import Artifact, AuditEvent
from runs.models import Run
from runs.pipeline.nodes import downstream
from stories.models import Story


def test_seed_demo_runs_the_pipeline_edits_one_plan_and_curates_once(db, capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "admin login: demo / " in out and "request id: " in out
    story = Story.objects.get()
    assert story.cover_artifact.lifecycle_state == "published"
    scenes = list(story.scenes.order_by("position"))
    assert len(scenes) == 3
    for scene in scenes:
        assert Artifact.objects.filter(scene=scene).values("type").distinct().count() == 11
    # The pipeline made it: every scene artifact but the edit has its fingerprint and step.
    made = Artifact.objects.filter(scene__isnull=False, created_by_step__isnull=True)
    assert list(made.values_list("type", flat=True)) == ["panel_plan"]
    assert AuditEvent.objects.filter(action="edit").count() == 1
    # The second run of the first scene remade exactly what follows the edited plan.
    second = {a.type for a in Artifact.objects.filter(scene=scenes[0], version=2)}
    assert second == {"panel_plan"} | downstream({"panel_plan"})
    assert Run.objects.filter(status="succeeded").count() == 4
    assert story.links.filter(role="scene_image", is_primary=True).count() == 3
    assert User.objects.get(username="demo").is_superuser
    request_ids = set(Artifact.objects.values_list("request_id", flat=True))
    assert len(request_ids) == 1 and request_ids.pop() in out
