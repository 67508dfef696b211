"""The pipeline from the admin (SPEC §13): "Explain" and "Run pipeline" on scene and story pages.

Explain is ``run_pipeline --explain`` as a page: per scene, per node, reuse or remake and why,
from ``engine.explain_scenes`` (the command's decisions), writing nothing, in a constant number
of queries whatever the number of scenes. Run pipeline is a POST (CSRF, ``runs.add_run``, like
``POST /v1/scenes/{id}/pipeline``) that calls the API's entry, ``driver.start``: the run starts
in the background (or on the workers) and the editor lands on its page.

A mixin of the scene and story admins, so each keeps its own ``get_urls`` and templates and
adds these with one line each.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from kernel.errors import ArtifactError
from runs.models import Run
from stories import selectors as story_selectors

from . import driver, engine

RUN_PERMISSION = f"{Run._meta.app_label}.add_{Run._meta.model_name}"
# What the pipeline reads of a scene (``story_selectors.scene_for_pipeline``).
SCENE_COLUMNS = ("id", "story_id", "position", "title", "source_text", "planning_locked")
# A story's explain page shows this many scenes (in position order), like the primary chooser.
SCENES_EXPLAINED = 100
ACTION_LABELS = {engine.MAKE: "remake", engine.REUSE: "reuse", engine.REFUSE: "refuse"}


class PipelinePagesMixin:
    """For ``StoryAdmin`` and ``SceneAdmin``: ``pipeline_urls()`` in ``get_urls``, and
    ``pipeline_tools`` in the change page's context (the object-tools buttons)."""

    def pipeline_urls(self) -> list:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/explain/", wrap(self.pipeline_explain_view), name=f"{prefix}_explain"),
            path(
                "<path:object_id>/run-pipeline/",
                wrap(require_POST(self.pipeline_run_view)),
                name=f"{prefix}_run_pipeline",
            ),
        ]

    def may_run_pipeline(self, request, obj) -> bool:
        return self.has_view_permission(request, obj) and request.user.has_perm(RUN_PERMISSION)

    def pipeline_tools(self, request, obj) -> dict:
        prefix = f"admin:{self.opts.app_label}_{self.opts.model_name}"
        return {
            "explain_url": reverse(f"{prefix}_explain", args=[obj.pk]),
            "run_url": reverse(f"{prefix}_run_pipeline", args=[obj.pk]),
            "can_run": self.may_run_pipeline(request, obj),
        }

    def _pipeline_object(self, request, object_id):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"no such {self.opts.verbose_name}")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        return obj

    def _pipeline_scenes(self, obj) -> list:
        if self.opts.model_name == "scene":
            return [story_selectors.scene_for_pipeline(obj.pk)]
        return list(story_selectors.story_scenes(obj.pk).only(*SCENE_COLUMNS)[: SCENES_EXPLAINED + 1])

    def pipeline_explain_view(self, request, object_id):
        obj = self._pipeline_object(request, object_id)
        force = request.GET.get("force") == "1"
        scenes = self._pipeline_scenes(obj)
        more = len(scenes) > SCENES_EXPLAINED
        scenes = scenes[:SCENES_EXPLAINED]
        explained = engine.explain_scenes(scenes, force=force)
        sections = []
        for scene, decisions in zip(scenes, explained, strict=True):
            rows = [
                {
                    "node": d.node.name,
                    # A node with no version yet makes its first: nothing is remade.
                    "action": "make" if d.action == engine.MAKE and d.latest is None else ACTION_LABELS[d.action],
                    "latest": d.latest,
                    "reasons": d.reasons,
                    "roots": [r for r in d.roots if r not in d.reasons],
                }
                for d in decisions
            ]
            sections.append(
                {
                    "scene": scene,
                    "rows": rows,
                    "remakes": sum(1 for r in rows if r["action"] in ("make", "remake")),
                    "reuses": sum(1 for r in rows if r["action"] == "reuse"),
                    "refusals": sum(1 for r in rows if r["action"] == "refuse"),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": obj,
            "title": f"Explain the pipeline: {obj}",
            "subtitle": None,
            "sections": sections,
            "force": force,
            "is_story": self.opts.model_name == "story",
            "more_scenes": more,
            "scenes_explained": SCENES_EXPLAINED,
            **self.pipeline_tools(request, obj),
        }
        return TemplateResponse(request, "admin/runs/pipeline_explain.html", context)

    def pipeline_run_view(self, request, object_id):
        obj = self._pipeline_object(request, object_id)
        if not self.may_run_pipeline(request, obj):
            raise PermissionDenied
        scene_ids = [obj.pk] if self.opts.model_name == "scene" else story_selectors.story_scene_ids(obj.pk)
        force = request.POST.get("force") in ("1", "on")
        back = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
        if not scene_ids:
            messages.warning(request, f"{obj} has no scenes: nothing to run.")
            return HttpResponseRedirect(back)
        try:
            runs = driver.start(scene_ids, force=force, actor=request.user)
        except ArtifactError as exc:
            messages.error(request, f"The pipeline did not start ({exc.code}): {exc.message}")
            return HttpResponseRedirect(back)
        forced = " (forced)" if force else ""
        if len(runs) == 1:
            messages.success(request, f"Pipeline started{forced} on {obj}: this page follows its run.")
            return HttpResponseRedirect(reverse("admin:runs_run_change", args=[runs[0].pk]))
        messages.success(request, f"Pipeline started{forced} on the {len(runs)} scenes of {obj}: one run each.")
        return HttpResponseRedirect(f"{reverse('admin:runs_run_changelist')}?q={obj.pk}")
