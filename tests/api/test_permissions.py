"""The permission matrix of SPEC §7 on every write: anonymous 401, reader 403, writer and
editor succeed; each write needs its own model permission; planning_locked binds writers only."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from artifacts.models import Artifact, ArtifactRelation
from artifacts.services import ArtifactService
from audit.models import AuditEvent
from runs import services as run_services
from runs.models import AgentStep, Run, RunArtifactLink
from stories import services as story_services
from stories.models import Scene, Story, StoryArtifactLink
from tests.conftest import PNG_BYTES, SCENE_INTENT

from .conftest import WRITER_PERMS, assert_error, client_for


@pytest.fixture
def world(story, scene, published_cover):
    svc = ArtifactService()
    intent = svc.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    other = svc.create_artifact(
        scene.pk, "render_spec", {"prompt": "p", "style": "s", "characters": [], "reference_images": []}
    )
    locked = story_services.scene_create(story_id=story.pk, title="Locked")
    story_services.scene_lock_planning(scene_id=locked.pk)
    run = run_services.run_create(story_id=story.pk, workflow="w")
    step = run_services.step_start(run_id=run.pk, node="scene_intent")
    return {
        "step": step.pk,
        "story": story.pk,
        "scene": scene.pk,
        "locked": locked.pk,
        "intent": intent.pk,
        "other": other.pk,
        "cover": published_cover.pk,
        "run": run.pk,
    }


def cover_upload():
    return {
        "type": "cover_image",
        "payload": json.dumps({"alt": "a"}),
        "content": SimpleUploadedFile("c.png", PNG_BYTES, content_type="image/png"),
    }


# (name, method, path, body or body factory, format, permission needed, success status)
WRITES = [
    (
        "create scene artifact",
        "post",
        "/v1/scenes/{scene}/artifacts",
        {"type": "scene_intent", "payload": SCENE_INTENT},
        "json",
        "artifacts.add_artifact",
        201,
    ),
    (
        "create story artifact",
        "post",
        "/v1/stories/{story}/artifacts",
        cover_upload,
        "multipart",
        "artifacts.add_artifact",
        201,
    ),
    (
        "transition",
        "post",
        "/v1/artifacts/{intent}/transition",
        {"to": "candidate"},
        "json",
        "artifacts.change_artifact",
        200,
    ),
    (
        "relate",
        "post",
        "/v1/artifacts/{other}/relations",
        lambda w: {"to_artifact_id": str(w["intent"]), "relation_type": "derived_from"},
        "json",
        "artifacts.add_artifactrelation",
        201,
    ),
    ("create story", "post", "/v1/stories", {"title": "New"}, "json", "stories.add_story", 201),
    ("edit story", "patch", "/v1/stories/{story}", {"title": "Renamed"}, "json", "stories.change_story", 200),
    ("create scene", "post", "/v1/stories/{story}/scenes", {"title": "Next"}, "json", "stories.add_scene", 201),
    ("edit scene", "patch", "/v1/scenes/{scene}", {"title": "Renamed"}, "json", "stories.change_scene", 200),
    ("lock planning", "post", "/v1/scenes/{scene}/lock", None, "json", "stories.change_scene", 200),
    ("unlock planning", "post", "/v1/scenes/{locked}/unlock", None, "json", "stories.change_scene", 200),
    (
        "link",
        "post",
        "/v1/stories/{story}/links",
        lambda w: {"artifact_id": str(w["cover"]), "role": "cover"},
        "json",
        "stories.add_storyartifactlink",
        201,
    ),
    (
        "set primary",
        "post",
        "/v1/stories/{story}/primary",
        lambda w: {"artifact_id": str(w["cover"]), "role": "cover"},
        "json",
        "stories.change_storyartifactlink",
        200,
    ),
    (
        "create run",
        "post",
        "/v1/runs",
        lambda w: {"story_id": str(w["story"]), "workflow": "w"},
        "json",
        "runs.add_run",
        201,
    ),
    ("run status", "patch", "/v1/runs/{run}", {"status": "running"}, "json", "runs.change_run", 200),
    ("start step", "post", "/v1/runs/{run}/steps", {"node": "scene_intent"}, "json", "runs.add_agentstep", 201),
    (
        "finish step",
        "patch",
        "/v1/runs/{run}/steps/{step}",
        {"status": "succeeded"},
        "json",
        "runs.change_agentstep",
        200,
    ),
    (
        "record run artifact",
        "post",
        "/v1/runs/{run}/artifacts",
        lambda w: {"artifact_id": str(w["intent"]), "stage": "s", "direction": "consumed"},
        "json",
        "runs.add_runartifactlink",
        201,
    ),
]


def send(client, world, method, path, body, fmt):
    if callable(body):
        body = body(world) if body is not cover_upload else body()
    return getattr(client, method)(path.format(**world), body, format=fmt)


def fingerprint():
    models = [Artifact, ArtifactRelation, AuditEvent, Story, Scene, StoryArtifactLink, Run, AgentStep, RunArtifactLink]
    return [m.objects.count() for m in models] + [
        list(Story.objects.values_list("title", flat=True)),
        list(Scene.objects.order_by("position").values_list("title", "planning_locked")),
        list(Artifact.objects.values_list("lifecycle_state", flat=True)),
        list(Run.objects.values_list("status", flat=True)),
        list(AgentStep.objects.values_list("status", flat=True)),
    ]


@pytest.mark.parametrize("name, method, path, body, fmt, perm, ok", WRITES, ids=[w[0] for w in WRITES])
@pytest.mark.parametrize("role", ["anonymous", "reader", "writer", "editor"])
def test_permission_matrix(clients, world, role, name, method, path, body, fmt, perm, ok):
    before = fingerprint()
    response = send(clients[role], world, method, path, body, fmt)
    if role == "anonymous":
        assert_error(response, 401, "not_authenticated")
    elif role == "reader":
        assert_error(response, 403, "permission_denied")
    else:
        assert response.status_code == ok, response.content
        return
    assert fingerprint() == before


@pytest.mark.parametrize("name, method, path, body, fmt, perm, ok", WRITES, ids=[w[0] for w in WRITES])
def test_each_write_needs_its_own_permission(make_user, world, name, method, path, body, fmt, perm, ok):
    without = client_for(make_user("almost", *[p for p in WRITER_PERMS if p != perm]))
    assert_error(send(without, world, method, path, body, fmt), 403, "permission_denied")
    only = client_for(make_user("only", perm))
    assert send(only, world, method, path, body, fmt).status_code == ok


@pytest.mark.parametrize("role, status", [("anonymous", 401), ("reader", 403), ("writer", 409), ("editor", 201)])
def test_planning_lock_matrix(clients, world, role, status):
    response = clients[role].post(
        f"/v1/scenes/{world['locked']}/artifacts",
        {"type": "panel_plan", "payload": {"panels": [{"grammar_id": "g", "weight": 1, "must_show": []}]}},
        format="json",
    )
    assert response.status_code == status, response.content
    if role == "writer":
        assert_error(response, 409, "planning_locked")


@pytest.mark.parametrize("role", ["reader", "writer", "editor"])
def test_every_signed_in_role_can_read(clients, world, role):
    for path in [
        "/v1/stories",
        "/v1/artifacts/{intent}",
        "/v1/scenes/{scene}/artifacts",
        "/v1/runs",
        "/v1/artifact-types",
    ]:
        assert clients[role].get(path.format(**world)).status_code == 200
