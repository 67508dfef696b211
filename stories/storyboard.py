"""The storyboard (SPEC §13): a story's scenes in position order, each with its planning lock,
its primary ``scene_image`` and its latest ``render_result`` as thumbnails, whether the pipeline
would remake that render now, and its candidates awaiting review; one POST makes an image the
scene's primary, through ``story_set_primary`` (a candidate's through
``story_publish_and_set_primary``: published and made primary in one transaction).

The page reads a constant number of rows sets whatever the number of scenes: the scenes, the
latest version of every pipeline type of every scene (one query), the story's primaries and
its newest candidates. Staleness is ``run_pipeline --explain``'s decision
(``engine.actions``) computed from those rows in memory, writing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from artifacts import selectors as artifact_selectors
from artifacts.models import Artifact, LifecycleState
from artifacts.thumbnails import thumbnail_tag
from kernel.errors import ArtifactError
from runs.pipeline.engine import MAKE, REUSE, actions
from runs.pipeline.nodes import NODES

from . import selectors, services
from .models import ROLE_SCENE_IMAGE

RENDER_TYPE = "render_result"
PIPELINE_TYPES = tuple(node.name for node in NODES)
THUMBNAIL_SIZE = 160
CANDIDATE_THUMBNAIL_SIZE = 72
CANDIDATES_PER_SCENE = 4
# The newest candidates of the story read for its cards; a scene beyond them links to the
# review queue, which pages through all of them.
CANDIDATES_FETCHED = 400
SCENE_COLUMNS = (
    "id",
    "story_id",
    "position",
    "title",
    "source_text",
    "planning_locked",
    "planning_locked_at",
    "planning_locked_by__id",
    "planning_locked_by__username",
)


@dataclass
class Card:
    artifact: Artifact
    url: str
    thumbnail: str
    compare_url: str | None = None
    can_be_primary: bool = False


@dataclass
class SceneRow:
    scene: object
    url: str
    primary: Card | None
    render: Card | None
    # "stale" (the pipeline would remake the render now), "fresh" (it would reuse it), "kept"
    # (it could not remake it: an input is missing), or "none" (no render yet).
    render_status: str
    candidates: list[Card] = field(default_factory=list)
    more_candidates: int = 0


class Links:
    """The admin's URLs of many rows from one ``reverse`` each: a 50-scene board links some
    700 times, and reversing each would be a tenth of the page's time."""

    _ID = "00000000-0000-0000-0000-000000000000"

    def __init__(self):
        self.artifact = reverse("admin:artifacts_artifact_change", args=[self._ID])
        self.thumbnail = reverse("admin:artifacts_artifact_thumbnail", args=[self._ID])
        # h6's compare page: /admin/artifacts/artifact/<id>/compare/<other_id>/
        self.compare = self.artifact.replace("/change/", "/compare/{other}/")
        self.scene = reverse("admin:stories_scene_change", args=[self._ID])

    def of(self, template: str, pk, **more) -> str:
        return template.replace(self._ID, str(pk)).format(**more) if more else template.replace(self._ID, str(pk))

    def compare_url(self, artifact: Artifact, other: Artifact | None) -> str | None:
        """Two versions of one type side by side; None when there is nothing to compare."""
        if other is None or other.pk == artifact.pk or other.type != artifact.type:
            return None
        return self.of(self.compare, artifact.pk, other=other.pk)

    def card(self, artifact: Artifact, *, size: int, primary: Artifact | None) -> Card:
        return Card(
            artifact=artifact,
            url=self.of(self.artifact, artifact.pk),
            thumbnail=thumbnail_tag(artifact, size=size, url=self.of(self.thumbnail, artifact.pk)),
            compare_url=self.compare_url(artifact, primary),
            can_be_primary=(
                artifact.kind == "image"
                and artifact.lifecycle_state == LifecycleState.PUBLISHED
                and artifact.pruned_at is None
                and (primary is None or primary.pk != artifact.pk)
            ),
        )


def storyboard_rows(story) -> list[SceneRow]:
    """One row per scene, by position: four queries whatever the number of scenes."""
    scenes = list(selectors.story_scenes(story.pk).select_related("planning_locked_by").only(*SCENE_COLUMNS))
    heads = artifact_selectors.story_scene_heads(story.pk, PIPELINE_TYPES)
    primaries = {
        link.scene_id: link.artifact for link in selectors.story_primaries(story.pk) if link.role == ROLE_SCENE_IMAGE
    }
    waiting: dict = {}
    for candidate in artifact_selectors.story_candidates(story.pk, limit=CANDIDATES_FETCHED):
        if candidate.scene_id is not None:
            waiting.setdefault(candidate.scene_id, []).append(candidate)
    links = Links()
    rows = []
    for scene in scenes:
        scene_heads = heads.get(scene.pk, {})
        primary = primaries.get(scene.pk)
        render = scene_heads.get(RENDER_TYPE)
        if render is None:
            status = "none"
        else:
            status = {MAKE: "stale", REUSE: "fresh"}.get(actions(scene, scene_heads)[RENDER_TYPE], "kept")
        candidates = waiting.get(scene.pk, [])
        rows.append(
            SceneRow(
                scene=scene,
                url=links.of(links.scene, scene.pk),
                primary=links.card(primary, size=THUMBNAIL_SIZE, primary=None) if primary else None,
                render=links.card(render, size=THUMBNAIL_SIZE, primary=primary) if render else None,
                render_status=status,
                candidates=[
                    links.card(c, size=CANDIDATE_THUMBNAIL_SIZE, primary=primary)
                    for c in candidates[:CANDIDATES_PER_SCENE]
                ],
                more_candidates=max(0, len(candidates) - CANDIDATES_PER_SCENE),
            )
        )
    return rows


def _story(model_admin, request, object_id):
    story = model_admin.get_object(request, unquote(object_id))
    if story is None:
        raise Http404("no such story")
    if not model_admin.has_view_permission(request, story):
        raise PermissionDenied
    return story


def storyboard_view(model_admin, request, object_id):
    story = _story(model_admin, request, object_id)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": story,
        "title": f"Storyboard: {story.title}",
        "rows": storyboard_rows(story),
        "can_choose_primary": model_admin.may_choose_primary(request, story),
        "can_publish": model_admin.may_publish(request),
        "review_url": f"{reverse('admin:artifacts_artifact_review')}?story={story.pk}",
        "set_primary_url": reverse("admin:stories_story_storyboard_set_primary", args=[story.pk]),
        "thumbnail_size": THUMBNAIL_SIZE,
    }
    return TemplateResponse(request, "admin/stories/story/storyboard.html", context)


def storyboard_set_primary_view(model_admin, request, object_id):
    """POST ``artifact_id`` and ``scene_id``: that image becomes the scene's primary
    ``scene_image``, with the permission the API's primary needs."""
    story = _story(model_admin, request, object_id)
    if not model_admin.may_choose_primary(request, story):
        raise PermissionDenied
    artifact_id, scene_id = request.POST.get("artifact_id", ""), request.POST.get("scene_id", "")
    publish = request.POST.get("publish") == "1"  # a candidate: "publish and make primary"
    if publish and not model_admin.may_publish(request):
        raise PermissionDenied
    set_primary = services.story_publish_and_set_primary if publish else services.story_set_primary
    back = reverse("admin:stories_story_storyboard", args=[story.pk])
    try:
        link = set_primary(
            story_id=story.pk, role=ROLE_SCENE_IMAGE, artifact_id=artifact_id, scene_id=scene_id, actor=request.user
        )
    except ArtifactError as exc:
        messages.error(request, f"Primary image not changed ({exc.code}): {exc.message}")
        return HttpResponseRedirect(back)
    messages.success(request, f"Scene image primary set to {link.artifact.type} v{link.artifact.version}.")
    return HttpResponseRedirect(f"{back}#scene-{link.scene_id}")
