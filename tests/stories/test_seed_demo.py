from django.contrib.auth.models import User
from django.core.management import call_command

from artifacts.models import Artifact
from runs.models import Run
from stories.models import Story


def test_seed_demo_builds_a_curated_story_once_and_prints_a_login(db, capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "admin login: demo / " in out and "request id: " in out
    story = Story.objects.get()
    assert story.cover_artifact.lifecycle_state == "published"
    assert story.scenes.count() == 3
    assert Artifact.objects.filter(scene__isnull=False).values("type").distinct().count() == 11
    assert Run.objects.filter(status="succeeded").count() == 3
    assert User.objects.get(username="demo").is_superuser
    request_ids = set(Artifact.objects.values_list("request_id", flat=True))
    assert len(request_ids) == 1 and request_ids.pop() in out
