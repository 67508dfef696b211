"""Admin fixtures: a logged-in superuser client and a small story world built through
the services, which a test can grow to prove page costs do not grow with it."""

from dataclasses import dataclass, field

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from artifacts import services as artifact_services
from artifacts.services import ArtifactService
from runs import services as run_services
from stories import services as story_services
from tests.conftest import PNG_BYTES, SCENE_INTENT

PANEL_PLAN = {"panels": [{"grammar_id": "wide", "weight": 1.0, "must_show": ["keeper"]}]}


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def changelist_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def admin_view_url(obj, view: str) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])


def messages_of(response) -> list[str]:
    return [str(message.message) for message in get_messages(response.wsgi_request)]


@dataclass
class World:
    """Every kind of row the admin shows, grown ``add_rows`` at a time."""

    story: object
    svc: ArtifactService
    scenes: list = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    covers: list = field(default_factory=list)

    def add_rows(self, count: int = 1) -> None:
        for _ in range(count):
            scene = story_services.scene_create(story_id=self.story.pk, title=f"Scene {len(self.scenes) + 1}")
            self.scenes.append(scene)
            intent = self.svc.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
            edited = artifact_services.artifact_edit(artifact_id=intent.pk, payload={**SCENE_INTENT, "mood": "calm"})
            plan = self.svc.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
            artifact_services.relation_create(
                from_artifact_id=plan.pk, to_artifact_id=edited.pk, relation_type="derived_from"
            )
            image = self.svc.create_artifact(
                scene.pk,
                "cover_image",
                {"alt": "a storm"},
                content=PNG_BYTES + bytes(len(self.artifacts)),
                mime_type="image/png",
            )
            artifact_services.artifact_transition(artifact_id=image.pk, to="candidate")
            artifact_services.artifact_transition(artifact_id=image.pk, to="published")
            story_services.story_set_primary(story_id=self.story.pk, role="scene_image", artifact_id=image.pk)
            story_services.scene_lock_planning(scene_id=scene.pk)
            cover = artifact_services.artifact_create(
                story_id=self.story.pk,
                type="cover_image",
                payload={"alt": f"cover {len(self.covers)}"},
                content=PNG_BYTES + b"cover" + bytes(len(self.covers)),
                mime_type="image/png",
            )
            self.covers.append(cover)
            run = run_services.run_create(story_id=self.story.pk, scene_id=scene.pk, workflow="panels", start=True)
            step = run_services.step_start(run_id=run.pk, node="panel_plan", agent="planner")
            run_services.run_link_artifact(
                run_id=run.pk, artifact_id=edited.pk, stage="panel_plan", direction="consumed", step_id=step.pk
            )
            run_services.run_link_artifact(
                run_id=run.pk, artifact_id=plan.pk, stage="panel_plan", direction="produced", step_id=step.pk
            )
            run_services.step_finish(step_id=step.pk, status="succeeded", output_summary={"panels": 1})
            run_services.run_set_status(run_id=run.pk, status="succeeded")
            self.runs.append(run)
            self.artifacts += [intent, edited, plan, image, cover]
            self._grow_first_scene_and_run()

    def _grow_first_scene_and_run(self) -> None:
        """More versions, audit events, steps and links on the first scene and run, whose
        pages the query-count tests open."""
        first_scene, first_run = self.scenes[0], self.runs[0]
        spec = self.svc.create_artifact(
            first_scene.pk,
            "render_spec",
            {"prompt": "storm", "style": "ink", "characters": [], "reference_images": []},
        )
        if len(self.scenes) > 1:
            story_services.scene_unlock_planning(scene_id=first_scene.pk)
            story_services.scene_lock_planning(scene_id=first_scene.pk)
        step = run_services.step_start(run_id=first_run.pk, node="render_spec", agent="renderer")
        run_services.run_link_artifact(
            run_id=first_run.pk, artifact_id=spec.pk, stage="render_spec", direction="produced", step_id=step.pk
        )
        run_services.step_finish(step_id=step.pk, status="succeeded")


@pytest.fixture
def world(story):
    built = World(story=story, svc=ArtifactService(request_id="world"))
    built.add_rows(1)
    return built


@pytest.fixture
def superuser(make_user):
    return make_user("boss", superuser=True)


@pytest.fixture
def editor_client(client, superuser):
    client.force_login(superuser)
    return client
