import logging

from django.contrib import admin
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import include, path, re_path
from django.views.decorators.http import require_safe
from rest_framework.routers import SimpleRouter

from artifacts.api import ArtifactTypeViewSet, ArtifactViewSet, SceneArtifactViewSet, StoryArtifactViewSet
from changes.api import ChangesView, WebhookViewSet
from comments.api import ArtifactCommentViewSet, CommentViewSet
from kernel.api import RETRY_AFTER_SECONDS, DocsView, SchemaView, UnknownEndpoint
from runs.api import RunArtifactViewSet, RunStepViewSet, RunViewSet, ScenePipelineView, StoryPipelineView
from stories.api import SceneViewSet, StoryLinkViewSet, StoryPrimaryViewSet, StorySceneViewSet, StoryViewSet

logger = logging.getLogger(__name__)


def healthz(request):
    """Liveness that includes the database: a service that cannot query is not healthy.

    The endpoint is public and exempt from the https redirect, so a failure says only
    "unavailable": the driver's text (host names, user names, paths) goes to the log."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any driver error means the database is unusable
        logger.exception("healthz: the database is unavailable")
        response = JsonResponse({"status": "error", "database": "unavailable"}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return JsonResponse({"status": "ok", "database": connection.vendor})


@require_safe
def landing(request):
    """The site's front page, where the admin's "View site" leads: links to the admin, the
    API docs and the health check."""
    return render(request, "landing.html")


def _v1_router(trailing_slash: bool) -> SimpleRouter:
    router = SimpleRouter(trailing_slash=trailing_slash, use_regex_path=False)
    router.register("artifact-types", ArtifactTypeViewSet, basename="artifact-type")
    router.register("artifacts/<uuid:artifact_id>/comments", ArtifactCommentViewSet, basename="artifact-comment")
    router.register("artifacts", ArtifactViewSet, basename="artifact")
    router.register("comments", CommentViewSet, basename="comment")
    router.register("scenes/<uuid:scene_id>/artifacts", SceneArtifactViewSet, basename="scene-artifact")
    router.register("stories/<uuid:story_id>/artifacts", StoryArtifactViewSet, basename="story-artifact")
    router.register("stories/<uuid:story_id>/scenes", StorySceneViewSet, basename="story-scene")
    router.register("stories/<uuid:story_id>/links", StoryLinkViewSet, basename="story-link")
    router.register("stories/<uuid:story_id>/primaries", StoryPrimaryViewSet, basename="story-primaries")
    router.register("stories", StoryViewSet, basename="story")
    router.register("scenes", SceneViewSet, basename="scene")
    router.register("runs/<uuid:run_id>/steps", RunStepViewSet, basename="run-step")
    router.register("runs/<uuid:run_id>/artifacts", RunArtifactViewSet, basename="run-artifact")
    router.register("runs", RunViewSet, basename="run")
    router.register("webhooks", WebhookViewSet, basename="webhook")
    return router


# Every /v1 route answers with and without a trailing slash, so no client is redirected
# (a 301 would turn a POST into a GET). The slashed twins come first because reverse()
# picks the last pattern of a name: links name the bare form. Whatever no route matches
# is a JSON 404.
v1_patterns = [
    path("schema", SchemaView.as_view(), name="schema"),
    path("schema/", SchemaView.as_view()),
    path("docs", DocsView.as_view(url_name="schema"), name="docs"),
    path("docs/", DocsView.as_view(url_name="schema")),
    path("scenes/<uuid:scene_id>/pipeline/", ScenePipelineView.as_view()),
    path("scenes/<uuid:scene_id>/pipeline", ScenePipelineView.as_view(), name="scene-pipeline"),
    path("stories/<uuid:story_id>/pipeline/", StoryPipelineView.as_view()),
    path("stories/<uuid:story_id>/pipeline", StoryPipelineView.as_view(), name="story-pipeline"),
    path("changes/", ChangesView.as_view()),
    path("changes", ChangesView.as_view(), name="changes"),
    *_v1_router(trailing_slash=True).urls,
    *_v1_router(trailing_slash=False).urls,
    re_path(r"", UnknownEndpoint.as_view()),
]

# The lists are wide (ids, types, states, stories, scenes, times): the app list stays on the
# admin's home page and in the breadcrumbs, and its sidebar no longer takes a quarter of a
# 1,280-pixel window from every table (issue 23).
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("v1/", include(v1_patterns)),
    # /v1 without its slash is still the API: a JSON 404, not a redirect.
    re_path(r"^v1$", UnknownEndpoint.as_view()),
]

handler400 = "kernel.api.handler400"
handler403 = "kernel.api.handler403"
handler404 = "kernel.api.handler404"
handler500 = "kernel.api.handler500"
