"""Constant query counts: each list and detail endpoint costs as many queries for 50 rows as for 1."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from artifacts import services as artifact_services
from artifacts.models import Artifact, ArtifactRelation
from artifacts.services import ArtifactService
from runs import services as run_services
from runs.models import AgentStep, Run, RunArtifactLink
from stories import services as story_services
from stories.models import Scene, Story, StoryArtifactLink
from tests.conftest import PNG_BYTES, SCENE_INTENT

svc = ArtifactService()


def scene_artifacts(ctx, n):
    for _ in range(n - Artifact.objects.filter(scene=ctx.scene, type="scene_intent").count()):
        ctx.last = svc.create_artifact(ctx.scene.pk, "scene_intent", SCENE_INTENT)
    return f"/v1/scenes/{ctx.scene.pk}/artifacts", n


def story_artifacts(ctx, n):
    for i in range(n - Artifact.objects.filter(story=ctx.story, scene=None).count()):
        artifact_services.artifact_create(
            story_id=ctx.story.pk, type="cover_image", payload={"alt": str(i)}, content=PNG_BYTES, mime_type="image/png"
        )
    return f"/v1/stories/{ctx.story.pk}/artifacts", n


def artifact_detail(ctx, n):
    scene_artifacts(ctx, n)
    return f"/v1/artifacts/{ctx.last.pk}", None


def versions(ctx, n):
    scene_artifacts(ctx, n)
    return f"/v1/artifacts/{ctx.last.pk}/versions", n


def lineage(ctx, n):
    scene_artifacts(ctx, n + 1)
    return f"/v1/artifacts/{ctx.last.pk}/lineage?depth=100", None


def latest(ctx, n):
    scene_artifacts(ctx, n)
    for _ in range(n - Artifact.objects.filter(type="render_spec").count()):
        svc.create_artifact(
            ctx.scene.pk, "render_spec", {"prompt": "p", "style": "s", "characters": [], "reference_images": []}
        )
    return f"/v1/scenes/{ctx.scene.pk}/artifacts/latest", None


def relations(ctx, n):
    if ctx.first is None:
        ctx.first = svc.create_artifact(
            ctx.scene.pk, "render_spec", {"prompt": "p", "style": "s", "characters": [], "reference_images": []}
        )
    for _ in range(n - ArtifactRelation.objects.count()):
        other = svc.create_artifact(ctx.scene.pk, "scene_intent", SCENE_INTENT)
        artifact_services.relation_create(
            from_artifact_id=ctx.first.pk, to_artifact_id=other.pk, relation_type="derived_from"
        )
    return f"/v1/artifacts/{ctx.first.pk}/relations", n


def stories(ctx, n):
    for i in range(n - Story.objects.count()):
        story_services.story_create(title=f"s{i}")
    return "/v1/stories", n


def story_detail(ctx, n):
    stories(ctx, n)
    return f"/v1/stories/{ctx.story.pk}", None


def scenes(ctx, n):
    for _ in range(n - Scene.objects.count()):
        story_services.scene_create(story_id=ctx.story.pk)
    return f"/v1/stories/{ctx.story.pk}/scenes", n


def scene_detail(ctx, n):
    scenes(ctx, n)
    return f"/v1/scenes/{ctx.scene.pk}", None


def links(ctx, n):
    for i in range(n - StoryArtifactLink.objects.count()):
        art = artifact_services.artifact_create(
            story_id=ctx.story.pk, type="cover_image", payload={"alt": str(i)}, content=PNG_BYTES, mime_type="image/png"
        )
        story_services.link_create(story_id=ctx.story.pk, artifact_id=art.pk, role="cover")
    return f"/v1/stories/{ctx.story.pk}/links", n


def runs(ctx, n):
    for _ in range(n - Run.objects.count()):
        ctx.run = run_services.run_create(story_id=ctx.story.pk, workflow="w")
    ctx.run = ctx.run or Run.objects.first()
    return "/v1/runs", n


def run_detail(ctx, n):
    runs(ctx, n)
    return f"/v1/runs/{ctx.run.pk}", None


def steps(ctx, n):
    runs(ctx, 1)
    for _ in range(n - AgentStep.objects.count()):
        run_services.step_start(run_id=ctx.run.pk, node="x")
    return f"/v1/runs/{ctx.run.pk}/steps", n


def run_artifacts(ctx, n):
    runs(ctx, 1)
    for i in range(n - RunArtifactLink.objects.count()):
        art = svc.create_artifact(ctx.scene.pk, "scene_intent", SCENE_INTENT)
        run_services.run_link_artifact(run_id=ctx.run.pk, artifact_id=art.pk, stage=f"s{i}", direction="produced")
    return f"/v1/runs/{ctx.run.pk}/artifacts", n


class Context:
    def __init__(self, story, scene):
        self.story, self.scene, self.last, self.first, self.run = story, scene, None, None, None


ENDPOINTS = [
    scene_artifacts,
    story_artifacts,
    artifact_detail,
    versions,
    lineage,
    latest,
    relations,
    stories,
    story_detail,
    scenes,
    scene_detail,
    links,
    runs,
    run_detail,
    steps,
    run_artifacts,
]


@pytest.mark.parametrize("setup", ENDPOINTS, ids=[e.__name__ for e in ENDPOINTS])
def test_query_count_is_the_same_for_1_and_50_rows(writer, story, scene, setup, django_assert_max_num_queries):
    ctx = Context(story, scene)
    url, _ = setup(ctx, 1)
    with CaptureQueriesContext(connection) as one:
        assert writer.get(url).status_code == 200
    url, rows = setup(ctx, 50)
    with django_assert_max_num_queries(len(one)):
        response = writer.get(url)
    assert response.status_code == 200
    if rows is not None:
        assert len(response.json()["results"]) == rows
