"""A pruned artifact takes no new reference (SPEC §9): a relation to or from it, a story link,
a primary, a run link are each refused with 409 ``pruned``, and nothing is written."""

import pytest
from django.utils import timezone

from artifacts.models import ArtifactRelation
from artifacts.services import ArtifactService, prune_rows
from runs.models import RunArtifactLink
from stories.models import StoryArtifactLink
from tests.api.conftest import assert_error
from tests.conftest import SCENE_INTENT, make_image


def pruned(artifact):
    prune_rows([artifact.pk], at=timezone.now())
    artifact.refresh_from_db()
    assert artifact.is_pruned
    return artifact


@pytest.fixture
def old(scene):
    return pruned(ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT))


@pytest.fixture
def new(scene):
    return ArtifactService().create_artifact(scene.pk, "scene_intent", {**SCENE_INTENT, "mood": "calm"})


def test_a_relation_to_or_from_a_pruned_artifact_is_409(writer, old, new):
    to_old = {"to_artifact_id": str(old.pk), "relation_type": "derived_from"}
    assert_error(
        writer.post(f"/v1/artifacts/{new.pk}/relations", to_old, format="json"), 409, "pruned", "to_artifact_id"
    )
    from_old = {"to_artifact_id": str(new.pk), "relation_type": "variant_of"}
    assert_error(
        writer.post(f"/v1/artifacts/{old.pk}/relations", from_old, format="json"), 409, "pruned", "from_artifact_id"
    )
    assert not ArtifactRelation.objects.exists()


def test_a_story_link_or_a_primary_to_a_pruned_artifact_is_409(writer, story):
    cover = pruned(make_image(story))
    body = {"artifact_id": str(cover.pk), "role": "cover"}
    assert_error(writer.post(f"/v1/stories/{story.pk}/links", body, format="json"), 409, "pruned", "artifact_id")
    assert_error(writer.post(f"/v1/stories/{story.pk}/primary", body, format="json"), 409, "pruned", "artifact_id")
    assert not StoryArtifactLink.objects.exists()
    story.refresh_from_db()
    assert story.cover_artifact_id is None


def test_a_run_link_to_a_pruned_artifact_is_409(writer, story, old, new):
    run = writer.post("/v1/runs", {"story_id": str(story.pk), "workflow": "w"}, format="json").json()
    url = f"/v1/runs/{run['run_id']}/artifacts"
    body = {"artifact_id": str(old.pk), "stage": "panel_plan", "direction": "consumed"}
    assert_error(writer.post(url, body, format="json"), 409, "pruned", "artifact_id")
    assert_error(writer.post(url, {**body, "direction": "produced"}, format="json"), 409, "pruned", "artifact_id")
    assert not RunArtifactLink.objects.exists()
    assert writer.post(url, {**body, "artifact_id": str(new.pk)}, format="json").status_code == 201
