"""Admin for runs, their steps and what they consumed and produced (SPEC §8).

The pipeline writes these rows through ``runs.services``; the admin shows them. Each list
is ordered by an index and never counts its whole table, like the artifact list.
"""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from kernel.admin_kit import (
    ArtifactRowColumns,
    BaseAdmin,
    EstimatedCountPaginator,
    IndexedSearchMixin,
    ViewOnlyInline,
    ViewOnlyMixin,
    admin_url,
    changelist_url,
    short_id,
    uuid_or_none,
)

from . import selectors, services
from .models import AgentStep, Direction, Run, RunArtifactLink


def duration(started_at, finished_at) -> str:
    if started_at is None:
        return "—"
    if finished_at is None:
        return "running"
    seconds = (finished_at - started_at).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def step_reasons(step: AgentStep) -> str:
    """Why the step reused or remade its node (SPEC §10: what ``--explain`` says), and what
    it kept when it reused."""
    summary = step.input_summary or {}
    reasons = "; ".join(summary.get("reasons") or [])
    kept = (step.output_summary or {}).get("reason")
    if kept and kept != reasons:
        reasons = f"{reasons}; {kept}" if reasons else kept
    return reasons or "—"


class StepInline(ViewOnlyInline):
    model = AgentStep
    fields = ("sequence", "node", "status", "attempt", "why", "started_at", "took", "error")
    readonly_fields = fields
    ordering = ("sequence",)

    @admin.display(description="took")
    def took(self, obj):
        return duration(obj.started_at, obj.finished_at)

    @admin.display(description="why")
    def why(self, obj):
        return step_reasons(obj)


class _ArtifactLinkInline(ArtifactRowColumns, ViewOnlyInline):
    model = RunArtifactLink
    fk_name = "run"
    fields = ("stage", "step_label", "artifact_column", "artifact_state", "created_at")
    readonly_fields = fields
    ordering = ("created_at",)
    direction = ""
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(direction=self.direction).select_related("artifact", "step")

    @admin.display(description="step")
    def step_label(self, obj):
        return f"#{obj.step.sequence} {obj.step.node}" if obj.step else "—"


class ProducedInline(_ArtifactLinkInline):
    direction = Direction.PRODUCED
    verbose_name = "produced artifact"
    verbose_name_plural = "Produced artifacts"


class ConsumedInline(_ArtifactLinkInline):
    direction = Direction.CONSUMED
    verbose_name = "consumed artifact"
    verbose_name_plural = "Consumed artifacts"


@admin.register(Run)
class RunAdmin(ArtifactRowColumns, IndexedSearchMixin, ViewOnlyMixin, BaseAdmin):
    list_display = (
        "short_id",
        "workflow",
        "story",
        "scene_label",
        "status",
        "started_at",
        "finished_at",
        "took",
        "request_id",
    )
    list_display_links = ("short_id",)
    list_select_related = ("story", "scene")
    list_filter = ("status", "created_at")
    sortable_by = ("created_at",)
    ordering = ("-created_at", "-id")  # run_status_created_idx / the created_at index
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    search_fields = ("=id", "=story", "=scene", "=request_id", "story__title")
    search_help_text = "A run, story or scene id or a request id (exact), or a story title (contains)."
    fieldsets = (
        (None, {"fields": ("run_id", "workflow", "status", "story", "scene", "triggered_by", "request_id")}),
        ("Timings", {"fields": ("created_at", "started_at", "finished_at", "took", "held_by")}),
        ("Details", {"fields": ("params", "error", "artifacts_link")}),
    )
    readonly_fields = (
        "run_id",
        "workflow",
        "status",
        "story",
        "scene",
        "triggered_by",
        "request_id",
        "created_at",
        "started_at",
        "finished_at",
        "took",
        "held_by",
        "params",
        "error",
        "artifacts_link",
    )
    inlines = (StepInline, ConsumedInline, ProducedInline)

    object_select_related = ("story", "scene__story", "triggered_by")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # A run whose process was lost is marked failed when someone looks at it (SPEC §10),
        # so the page never shows "running" for a run that nothing drives any more.
        run = Run.objects.filter(pk=uuid_or_none(object_id), status__in=selectors.UNFINISHED).only("pk").first()
        if run is not None:
            services.run_mark_lost(run_id=run.pk)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="run", ordering="id")
    def short_id(self, obj):
        return short_id(obj.pk)

    @admin.display(description="run id")
    def run_id(self, obj):
        return str(obj.pk)

    @admin.display(description="took")
    def took(self, obj):
        return duration(obj.started_at, obj.finished_at)

    @admin.display(description="driven by")
    def held_by(self, obj):
        if obj.queued:
            return "the pipeline workers"
        return obj.holder or "—"

    @admin.display(description="link records")
    def artifacts_link(self, obj):
        return format_html(
            '<a href="{}?run={}">all consumed/produced records</a> · <a href="{}?run={}">steps</a>',
            changelist_url(RunArtifactLink),
            obj.pk,
            changelist_url(AgentStep),
            obj.pk,
        )


@admin.register(AgentStep)
class AgentStepAdmin(IndexedSearchMixin, ViewOnlyMixin, BaseAdmin):
    list_display = ("short_id", "run_column", "sequence", "node", "agent", "status", "attempt", "started_at", "took")
    list_select_related = ("run",)
    search_fields = ("=id", "=run", "=node")
    link_lookups = ("run",)  # the run page's link to its steps
    search_help_text = "A step or run id, or a node name (exact)."
    sortable_by = ()
    ordering = ("-started_at", "-id")  # step_started_idx
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = (
        "id",
        "run",
        "sequence",
        "node",
        "agent",
        "status",
        "attempt",
        "why",
        "started_at",
        "finished_at",
        "took",
        "input_summary",
        "output_summary",
        "error",
    )
    readonly_fields = fields

    object_select_related = ("run",)

    @admin.display(description="step")
    def short_id(self, obj):
        return short_id(obj.pk)

    @admin.display(description="run")
    def run_column(self, obj):
        return format_html('<a href="{}">{}</a>', admin_url(obj.run), obj.run)

    @admin.display(description="why")
    def why(self, obj):
        return step_reasons(obj)

    @admin.display(description="took")
    def took(self, obj):
        return duration(obj.started_at, obj.finished_at)


@admin.register(RunArtifactLink)
class RunArtifactLinkAdmin(ArtifactRowColumns, IndexedSearchMixin, ViewOnlyMixin, BaseAdmin):
    list_display = ("short_id", "run", "step", "stage", "direction", "artifact_column", "created_at")
    list_select_related = ("run", "step", "artifact")
    search_fields = ("=id", "=run", "=artifact", "=stage")
    link_lookups = ("run",)  # the run page's link to its records
    search_help_text = "A record, run or artifact id, or a stage name (exact)."
    sortable_by = ()
    ordering = ("-created_at", "-id")  # runlink_created_idx
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = ("id", "run", "step", "stage", "direction", "artifact", "created_at")
    readonly_fields = fields

    object_select_related = ("run", "step", "artifact")

    @admin.display(description="record")
    def short_id(self, obj):
        return short_id(obj.pk)
