"""ArtifactSerializer writes its fields out by hand (a list page costs a fraction of DRF's
per-field walk, benchmarks/api.py): its output must stay DRF's own, value for value, from a
model instance and from a list's row (selectors.artifact_rows), in any time zone."""

import datetime
import json
import zoneinfo

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from artifacts import selectors
from artifacts.api import ArtifactSerializer
from artifacts.models import Artifact
from artifacts.payloads import ARTIFACT_TYPES
from kernel.api_defaults import JSONRenderer
from operations.retention import Retention
from runs import services as run_services
from tests.conftest import PNG_BYTES, SCENE_INTENT, make_image


def drf_output(artifact, context):
    """What DRF's ModelSerializer makes of the declared fields, without the override."""
    return serializers.ModelSerializer.to_representation(ArtifactSerializer(context=context), artifact)


def rendered(data) -> dict:
    """What a client reads: the answer as the API's renderer writes it (a list's payload goes
    in as the JSON text the database holds), parsed."""
    return json.loads(JSONRenderer().render(data))


@pytest.fixture
def artifacts(scene, service, make_user):
    editor = make_user("editor-repr")
    service.user = editor
    run = run_services.run_create(story_id=scene.story_id, workflow="representation", start=True)
    step = run_services.step_start(run_id=run.pk, node="render_spec", agent="test")
    spec = ARTIFACT_TYPES["render_spec"].example
    made = [
        service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT),
        service.create_artifact(scene.pk, "scene_intent", {**SCENE_INTENT, "mood": "calm"}),
        make_image(scene, content=PNG_BYTES),
        service.create_artifact(scene.pk, "render_spec", {**spec, "note": "ünïcödé \u2028"}),
        service.create_artifact(scene.pk, "render_spec", spec, created_by_step=step),
    ]
    # Version 1 of the scene_intent stream: intermediate, not the latest, old enough: pruned.
    with Retention(older_than=datetime.timedelta(0), now=timezone.now() + datetime.timedelta(days=1)) as retention:
        retention.plan()
        pruned = [pk for outcome in retention.prune(batch_size=100) for pk in outcome.pruned]
    assert made[0].pk in pruned
    return [Artifact.objects.get(pk=a.pk) for a in made]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_same_output_as_drf_from_instances_and_rows(artifacts, zone):
    request = APIRequestFactory().get("/v1/artifacts/x", HTTP_HOST="testserver")
    context = {"request": request}
    kinds = set()
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        for artifact in artifacts:
            expected = drf_output(artifact, context)
            assert ArtifactSerializer(artifact, context=context).data == expected
            row = selectors.artifact_rows(Artifact.objects.filter(pk=artifact.pk)).get()
            assert rendered(ArtifactSerializer(row, context=context).data) == rendered(expected)
            kinds.add((expected["kind"], expected["payload"] is None, expected["content_url"] is None))
    # The cases the fixture means to cover are there: a pruned JSON version, a media one, a live JSON one.
    assert {("json", True, True), ("image", False, False), ("json", False, True)} <= kinds
