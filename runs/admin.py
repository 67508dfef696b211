"""Admin for runs, their steps and what they consumed and produced (SPEC §8).

The pipeline writes these rows through ``runs.services``; the admin shows them. Each list
is ordered by an index and never counts its whole table, like the artifact list.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.utils.html import format_html

from artifacts.thumbnails import can_thumbnail, thumbnail_tag
from kernel.admin_kit import (
    ArtifactRowColumns,
    BaseAdmin,
    EstimatedCountPaginator,
    IndexedSearchMixin,
    ViewOnlyMixin,
    admin_url,
    changelist_url,
    short_id,
    uuid_or_none,
)

from . import selectors, services
from .models import AgentStep, Direction, Run, RunArtifactLink, StepStatus
from .pipeline.nodes import NODES


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


# Inputs listed in the pipeline's stage order, as the explain page lists nodes.
STAGE_ORDER = {node.name: index for index, node in enumerate(NODES)}
RUN_PAGE_THUMBNAIL = 48  # px: beside an input's or output's link, as in a list
DECISION_WORDS = {"make": "remade", "reuse": "reused", "refuse": "refused"}


def step_why(step: AgentStep) -> dict:
    """Why the step reused or remade its node, in words (the run page): the reasons its
    decision recorded, what it kept when another run made the version meanwhile, and the
    root causes that the reasons do not already name."""
    summary = step.input_summary or {}
    reasons = list(summary.get("reasons") or [])
    kept = (step.output_summary or {}).get("reason")
    if kept and kept not in reasons:
        reasons.append(kept)
    roots = [root for root in summary.get("roots") or [] if not any(root in reason for reason in reasons)]
    if step.status == StepStatus.SKIPPED:
        decision = "reused"
    elif step.status == StepStatus.SUCCEEDED and kept:
        decision = "reused"
    elif summary.get("decision") == "make" and reasons == ["nothing yet"]:
        decision = "made"  # the node's first version: nothing was remade
    else:
        decision = DECISION_WORDS.get(summary.get("decision"), "")
    return {"decision": decision, "reasons": reasons, "roots": roots}


def run_step_rows(run: Run) -> tuple[list[dict], list]:
    """The run page's steps, each with its decision, timing, reasons and the artifacts it
    consumed and produced; and the run's links that name no step. Two queries."""
    steps = list(
        selectors.run_steps(run.pk).only(
            "id",
            "sequence",
            "node",
            "status",
            "attempt",
            "input_summary",
            "output_summary",
            "error",
            "started_at",
            "finished_at",
            "run_id",
        )
    )
    links = (
        RunArtifactLink.objects.filter(run_id=run.pk)
        .select_related("artifact")
        .only(
            "id",
            "step_id",
            "direction",
            "stage",
            "artifact__id",
            "artifact__type",
            "artifact__version",
            "artifact__kind",
            "artifact__lifecycle_state",
            "artifact__pruned_at",
            "artifact__content_sha256",
            "artifact__mime_type",
        )
        .order_by("created_at", "id")
    )
    by_step, loose = {}, []
    for link in links:
        if can_thumbnail(link.artifact):
            # A few per page, at its foot: loaded at once, not when scrolled to.
            link.artifact.thumbnail = thumbnail_tag(link.artifact, size=RUN_PAGE_THUMBNAIL, lazy=False)
        if link.step_id is None:
            loose.append(link)
        else:
            by_step.setdefault(link.step_id, {Direction.CONSUMED: [], Direction.PRODUCED: []})[link.direction].append(
                link.artifact
            )
    rows = []
    for step in steps:
        found = by_step.get(step.pk, {Direction.CONSUMED: [], Direction.PRODUCED: []})
        found[Direction.CONSUMED].sort(key=lambda a: (STAGE_ORDER.get(a.type, len(STAGE_ORDER)), a.type, a.version))
        rows.append(
            {
                "step": step,
                "took": duration(step.started_at, step.finished_at),
                **step_why(step),
                "inputs": found[Direction.CONSUMED],
                "outputs": found[Direction.PRODUCED],
            }
        )
    return rows, loose


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
    # The steps, with what each consumed and produced, are the page's own table
    # (run/change_form.html): one row per step reads better than three lists to match up.
    inlines = ()

    class Media:
        css = {"all": ("runs/admin/pipeline.css",)}

    object_select_related = ("story", "scene__story", "triggered_by")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # A run whose process was lost is marked failed when someone looks at it (SPEC §10),
        # so the page never shows "running" for a run that nothing drives any more.
        run = Run.objects.filter(pk=uuid_or_none(object_id), status__in=selectors.UNFINISHED).only("pk").first()
        if run is not None:
            services.run_mark_lost(run_id=run.pk)
        context = dict(extra_context or {})
        shown = self.get_object(request, unquote(object_id))
        if shown is not None and self.has_view_permission(request, shown):
            context["step_rows"], context["loose_links"] = run_step_rows(shown)
            context["unfinished"] = shown.status in selectors.UNFINISHED
        return super().change_view(request, object_id, form_url, context)

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
