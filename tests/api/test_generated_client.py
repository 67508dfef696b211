"""A client generated from the live /v1/schema by openapi-python-client drives a whole
workflow, with no hand-written request (SPEC §7: the schema is the contract).

The schema is read from a real server (pytest-django's live_server), the client is
generated into a temporary folder, imported, and used alone: stories, scenes, JSON and
multipart creates, a batch, latest, pages, lineage, transitions, primary, lock and unlock,
the pipeline, runs and steps. Refusals arrive as the typed error bodies of the schema.

One patch, of the generator's output and not of the schema: openapi-python-client 0.28 and
later write a module that does not import when one operation takes both a JSON and a
multipart body (upstream issue #1451: ``Unset`` is used and not imported). ``_generate``
adds the missing import.
"""

import importlib
import io
import pkgutil
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import pytest
from rest_framework.authtoken.models import Token

from tests.conftest import PNG_BYTES

from .conftest import WRITER_PERMS

PACKAGE = "artifact_store_client"
CONFIG = f"""
project_name_override: {PACKAGE}
package_name_override: {PACKAGE}
post_hooks: []
"""
FINISHED = {"succeeded", "failed", "cancelled"}

pytestmark = pytest.mark.django_db(transaction=True)


def _generate(schema_url: str, folder) -> object:
    """Generate the client from ``schema_url`` into ``folder`` and import it."""
    config = folder / "config.yaml"
    config.write_text(CONFIG)
    out = folder / "generated"
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--url", schema_url]
    command += ["--output-path", str(out), "--meta", "none", "--config", str(config)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Unable to" not in done.stdout + done.stderr, done.stdout + done.stderr  # every schema understood
    # Upstream #1451: a body that is JSON or multipart leaves ``Unset`` unimported.
    for module in (out / "api").rglob("*.py"):
        text = module.read_text()
        if "Unset" in text and "import Unset" not in text and ", Unset" not in text:
            module.write_text(
                text.replace("from ...types import Response, UNSET", "from ...types import Response, UNSET, Unset")
            )
    (folder / PACKAGE).symlink_to(out, target_is_directory=True)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))


@pytest.fixture
def client_package(live_server, tmp_path):
    package = _generate(f"{live_server.url}/v1/schema", tmp_path)
    yield package
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


@pytest.fixture
def api(client_package, live_server, make_user):
    token = Token.objects.create(user=make_user("generated", superuser=True))
    return client_package.AuthenticatedClient(base_url=live_server.url, token=token.key, prefix="Token")


def _module(name: str):
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def writer(client_package, live_server, make_user):
    token = Token.objects.create(user=make_user("generated-writer", *WRITER_PERMS))
    return client_package.AuthenticatedClient(base_url=live_server.url, token=token.key, prefix="Token")


def test_a_generated_client_runs_the_whole_workflow(client_package, api, writer):
    op = {}
    for group in ("artifacts", "stories", "runs"):
        for info in pkgutil.iter_modules(_module(f"api.{group}").__path__):
            op[info.name] = _module(f"api.{group}.{info.name}")
    m = _module("models")
    types = _module("types")

    # A story and two scenes.
    story = op["stories_create"].sync(client=api, body=m.StoryRequest(title="The Lighthouse"))
    assert isinstance(story, m.Story) and story.title == "The Lighthouse"
    scene = op["stories_scenes_create"].sync(story.story_id, client=api, body=m.SceneRequest(title="Storm"))
    second = op["stories_scenes_create"].sync(story.story_id, client=api, body=m.SceneRequest(title="Calm"))
    assert (scene.position, second.position) == (1, 2)

    # JSON creates: a typed body per artifact type, its payload's own model.
    def intent(mood):
        return m.SceneIntentCreateRequest(
            type_=m.SceneIntentCreateRequestType.SCENE_INTENT,
            payload=m.SceneIntentCreateRequestPayload(mood=mood, pacing="slow", key_beats=["dawn"]),
        )

    first = op["scenes_artifacts_create"].sync(scene.scene_id, client=api, body=intent("calm"))
    again = op["scenes_artifacts_create"].sync(scene.scene_id, client=api, body=intent("tense"))
    assert isinstance(again, m.Artifact) and (first.version, again.version) == (1, 2)
    assert again.parent_id == first.artifact_id

    # The README's three lines, as they are written there.
    readme = op["stories_scenes_create"].sync(story.story_id, client=api, body=m.SceneRequest(title="README"))
    intent_body = {"type": "scene_intent", "payload": {"mood": "calm", "pacing": "slow", "key_beats": ["dawn"]}}
    made = op["scenes_artifacts_create"].sync(
        readme.scene_id, client=api, body=m.SceneIntentCreateRequest.from_dict(intent_body)
    )
    assert isinstance(made, m.Artifact) and made.version == 1

    # A multipart create: the bytes in content, the payload as a JSON part.
    upload = m.StoryArtifactUploadRequest(
        type_=m.StoryArtifactUploadRequestType.COVER_IMAGE,
        payload=m.StoryArtifactUploadRequestPayload.from_dict({"alt": "a lighthouse at dusk"}),
        content=types.File(payload=io.BytesIO(PNG_BYTES), file_name="cover.png", mime_type="image/png"),
    )
    cover = op["stories_artifacts_create"].sync(story.story_id, client=api, body=upload)
    assert isinstance(cover, m.Artifact), cover
    assert cover.mime_type == "image/png" and cover.content_size == len(PNG_BYTES)
    content = op["artifacts_content_retrieve"].sync(cover.artifact_id, client=api)
    assert content.payload.read() == PNG_BYTES

    # A batch: all or nothing, versions in list order.
    plan = m.PanelPlanCreateRequestPayload(
        panels=[m.PanelPlanCreateRequestPayloadPanelsItem(grammar_id="establishing", weight=1.0, must_show=["sea"])]
    )
    batch = op["scenes_artifacts_batch_create"].sync(
        scene.scene_id,
        client=api,
        body=m.BatchBodyRequest(
            artifacts=[
                m.PanelPlanCreateRequest(type_=m.PanelPlanCreateRequestType.PANEL_PLAN, payload=plan),
                m.PanelPlanCreateRequest(type_=m.PanelPlanCreateRequestType.PANEL_PLAN, payload=plan),
            ]
        ),
    )
    assert [a.version for a in batch] == [1, 2]

    # Latest of each type, and a list read a page at a time, payloads left out.
    latest = op["scenes_artifacts_latest_list"].sync(scene.scene_id, client=api)
    assert {(a.type_, a.version) for a in latest} == {("scene_intent", 2), ("panel_plan", 2)}
    seen, cursor = [], None
    fields = [m.ScenesArtifactsListFieldsItem.ARTIFACT_ID, m.ScenesArtifactsListFieldsItem.VERSION]
    while True:
        page = op["scenes_artifacts_list"].sync(scene.scene_id, client=api, page_size=1, fields=fields, cursor=cursor)
        assert isinstance(page, m.PaginatedArtifactInListList), page
        seen += [(a.artifact_id, a.version) for a in page.results]
        assert all(isinstance(a.payload, types.Unset) for a in page.results)  # left out, as asked
        if page.next_ is None:
            break
        cursor = parse_qs(urlparse(page.next_).query)["cursor"][0]
    assert len(seen) == 4 and len(set(seen)) == 4

    # Lineage: the artifact asked about first, at depth 0.
    lineage = op["artifacts_lineage_retrieve"].sync(
        first.artifact_id, client=api, direction=m.ArtifactsLineageRetrieveDirection.DESCENDANTS
    )
    assert [(n.artifact_id, n.depth) for n in lineage.nodes] == [(first.artifact_id, 0), (again.artifact_id, 1)]

    # Transitions, and the cover made primary.
    for state in (m.LifecycleStateEnum.CANDIDATE, m.LifecycleStateEnum.PUBLISHED):
        moved = op["artifacts_transition_create"].sync(
            cover.artifact_id, client=api, body=m.TransitionRequest(to=state)
        )
        assert moved.lifecycle_state == state
    refused = op["artifacts_transition_create"].sync(
        cover.artifact_id, client=api, body=m.TransitionRequest(to=m.LifecycleStateEnum.INTERMEDIATE)
    )
    assert refused.code == m.ArtifactsTransitionCreateError409Code.INVALID_TRANSITION
    link = op["stories_primary_create"].sync(
        story.story_id, client=api, body=m.PrimaryRequest(role=m.RoleEnum.COVER, artifact_id=cover.artifact_id)
    )
    assert link.is_primary
    assert op["stories_retrieve"].sync(story.story_id, client=api).cover_artifact_id == cover.artifact_id

    # Lock and unlock, each safe to retry; a locked scene refuses a writer's planning types by
    # name (the superuser has the override), as the typed error body of the 409.
    for _ in range(2):
        assert op["scenes_lock_create"].sync(scene.scene_id, client=api).planning_locked is True
    locked_out = op["scenes_artifacts_create"].sync(scene.scene_id, client=writer, body=intent("late"))
    assert locked_out.code == m.ScenesArtifactsCreateError409Code.PLANNING_LOCKED
    missing = op["scenes_retrieve"].sync("6a3f0c1e-0000-4000-8000-000000000000", client=api)
    assert missing.code == m.NotFoundErrorCode.NOT_FOUND
    for _ in range(2):
        assert op["scenes_unlock_create"].sync(scene.scene_id, client=api).planning_locked is False

    # The pipeline on the second scene: 202 with the run, followed until it finishes.
    response = op["scenes_pipeline_create"].sync_detailed(second.scene_id, client=api, body=m.PipelineRequestRequest())
    assert response.status_code == 202 and isinstance(response.parsed, m.Run)
    run = response.parsed
    deadline = time.monotonic() + 120
    while run.status not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.2)
        run = op["runs_retrieve"].sync(run.run_id, client=api)
    assert run.status == m.RunStatusEnum.SUCCEEDED, run
    steps = op["runs_steps_list"].sync(run.run_id, client=api)
    assert steps.results and all(s.status == m.StepStatusEnum.SUCCEEDED for s in steps.results)
    produced = op["runs_artifacts_list"].sync(run.run_id, client=api, direction=m.DirectionEnum.PRODUCED)
    assert produced.results

    # A run recorded by a worker of its own: pending unless started, steps appended and finished.
    mine = op["runs_create"].sync(client=api, body=m.RunRequest(story_id=story.story_id, workflow="manual"))
    assert mine.status == m.RunStatusEnum.PENDING
    running = op["runs_partial_update"].sync(
        mine.run_id, client=api, body=m.RunStatusRequest(status=m.RunStatusEnum.RUNNING)
    )
    assert running.status == m.RunStatusEnum.RUNNING
    step = op["runs_steps_create"].sync(mine.run_id, client=api, body=m.StepRequest(node="panel_plan"))
    assert step.status == m.StepStatusEnum.RUNNING and step.sequence == 1
    finished = op["runs_steps_partial_update"].sync(
        mine.run_id, step.step_id, client=api, body=m.StepFinishRequest(status=m.StepFinishStatusEnum.SUCCEEDED)
    )
    assert finished.status == m.StepStatusEnum.SUCCEEDED
    linked = op["runs_artifacts_create"].sync(
        mine.run_id,
        client=api,
        body=m.RunArtifactRequest(
            artifact_id=batch[0].artifact_id,
            stage="panel_plan",
            direction=m.DirectionEnum.PRODUCED,
            step_id=step.step_id,
        ),
    )
    assert linked.artifact_id == batch[0].artifact_id
    done = op["runs_partial_update"].sync(
        mine.run_id, client=api, body=m.RunStatusRequest(status=m.RunStatusEnum.SUCCEEDED)
    )
    assert done.status == m.RunStatusEnum.SUCCEEDED and done.finished_at is not None
