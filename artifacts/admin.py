"""Admin for artifacts, relations and the audit trail (SPEC §8).

Declarative where Django allows it. The hooks that are overridden carry real behaviour
and route every write through the actions of ``services.py``: a payload save creates the next
version (the edited row is never touched), lifecycle buttons and actions call
``transition``. Nothing here is deletable, and artifacts, relations and audit rows
cannot be added by hand.

The artifact list must stay fast with millions of rows, so it never counts the whole
table (``show_full_result_count = False`` and ``EstimatedCountPaginator``), searches
only by exact, indexed values, and offers only filters and orderings an index serves.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from artifacts import services as artifact_services
from audit import admin as audit_admin
from audit import selectors as audit_selectors
from comments import admin as comments_admin
from kernel.admin_kit import (
    BULK_ACTION_LIMIT,
    BaseAdmin,
    EstimatedCountPaginator,
    IndexedSearchMixin,
    ViewOnlyMixin,
    admin_url,
    artifact_link,
    report_refusals,
    short_id,
    state_badge,
)
from kernel.api import domain_error_response
from kernel.errors import ArtifactError, InvalidPayload
from stories.models import Scene

from . import compare, review, selectors, thumbnails
from . import lineage as lineage_walk
from .content import content_response
from .lineage_graph import build_graph
from .models import ALLOWED_TRANSITIONS, Artifact, ArtifactRelation, LifecycleState
from .payloads import ARTIFACT_TYPES, MEDIA_KINDS, validate_payload
from .thumbnails import thumbnail_tag
from .widgets import PrettyJSONField

VERSIONS_SHOWN = 50
CHANGE_PAGE_LINEAGE_DEPTH = 3
CHANGE_PAGE_LINEAGE_NODES = 60  # per direction
LINEAGE_PAGE_NODES = 200  # per direction
LINEAGE_DEPTH_CHOICES = (1, 2, 3, 5, 10, 25, 100)

TRANSITION_LABELS = {
    LifecycleState.CANDIDATE: "Move to candidate",
    LifecycleState.PUBLISHED: "Publish",
    LifecycleState.ARCHIVED: "Archive",
}


# -- artifacts -------------------------------------------------------------------------

LIST_THUMBNAIL_SIZE = 48


class ArtifactTypeFilter(admin.SimpleListFilter):
    """Choices from the type registry, not ``SELECT DISTINCT type`` over every row."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(name, name) for name in ARTIFACT_TYPES]

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


class ArtifactPayloadForm(forms.ModelForm):
    """The only editable thing on an artifact: its payload, checked against the type's schema.

    Checking here gives the editor the error on the form before anything is written; the
    service checks again when it creates the version (the guarantee).
    """

    payload = PrettyJSONField(help_text="Saving a changed payload creates the next version; this one stays as it is.")
    editor = None  # the requesting user, bound by ArtifactAdmin.get_form

    class Meta:
        model = Artifact
        fields = ["payload"]

    def clean_payload(self):
        payload = self.cleaned_data.get("payload")
        if not isinstance(payload, dict):
            raise ValidationError("The payload must be a JSON object.", code="invalid_payload")
        try:
            validate_payload(self.instance.type, payload)
        except InvalidPayload as exc:
            raise ValidationError(exc.message, code=exc.code) from None
        if payload != self.instance.payload and artifact_services.planning_blocks(
            actor=self.editor, type=self.instance.type, scene=self.instance.scene
        ):
            raise ValidationError(
                "Planning is locked on this scene: unlock it before creating a new version.", code="planning_locked"
            )
        return payload


@admin.register(Artifact)
class ArtifactAdmin(IndexedSearchMixin, BaseAdmin):
    form = ArtifactPayloadForm
    change_form_template = "admin/artifacts/artifact/change_form.html"

    class Media:
        css = {"all": ("artifacts/admin/compare.css",)}  # the workbench's notices and links

    list_display = (
        "short_id",
        "thumbnail_column",
        "type",
        "version",
        "kind",
        "state",
        "story_column",
        "scene_column",
        "created_at",
        "request_id",
    )
    list_display_links = ("short_id",)
    list_select_related = ("story", "scene")
    # Each filter is served by an index: (type|lifecycle_state|kind, -created_at), created_at.
    list_filter = (ArtifactTypeFilter, "lifecycle_state", "kind", "created_at")
    link_lookups = ("story", "scene")  # the story and scene columns' links, the story and scene pages'
    sortable_by = ("created_at",)
    search_fields = ("=id", "=story", "=scene", "=parent", "=request_id", "=type")
    search_help_text = "An artifact, story, scene or parent id, a request id, or a type name (exact)."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ("make_candidate", "publish", "archive")

    identity_fields = ("artifact_id", "type", "version", "kind", "state", "story", "scene", "parent")
    media_fields = ("media_preview", "content_info")
    provenance_fields = ("request_id", "created_by", "created_by_step", "created_at", "pruned_at")

    # -- list columns

    @admin.display(description="artifact", ordering="id")
    def short_id(self, obj):
        return short_id(obj.pk)

    @admin.display(description="preview")
    def thumbnail_column(self, obj):
        return thumbnail_tag(obj, size=LIST_THUMBNAIL_SIZE)

    @admin.display(description="lifecycle state")
    def state(self, obj):
        return state_badge(obj)

    @admin.display(description="story")
    def story_column(self, obj):
        # A filter link: the artifacts of this story, newest first.
        return format_html('<a href="?story={}" title="artifacts of this story">{}</a>', obj.story_id, obj.story.title)

    @admin.display(description="scene")
    def scene_column(self, obj):
        if obj.scene is None:
            return "—"
        return format_html(
            '<a href="?scene={}" title="artifacts of this scene">#{} {}</a>',
            obj.scene_id,
            obj.scene.position,
            obj.scene.title,
        )

    # -- change page fields

    @admin.display(description="artifact id")
    def artifact_id(self, obj):
        return str(obj.pk)

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        if obj.payload is None:
            return format_html("<em>pruned {}: payload and content were reclaimed</em>", obj.pruned_at)
        field = PrettyJSONField()
        return format_html('<pre class="payload-pretty">{}</pre>', field.prepare_value(obj.payload))

    @admin.display(description="preview")
    def media_preview(self, obj):
        if not obj.content_sha256 or obj.is_pruned:
            return "—"
        url = admin_url(obj, "content")
        if obj.kind == "image":
            alt = (obj.payload or {}).get("alt", "")
            return format_html('<a href="{}"><img class="media-preview" src="{}" alt="{}"></a>', url, url, alt)
        if obj.kind == "audio":
            return format_html('<audio class="media-preview" controls preload="metadata" src="{}"></audio>', url)
        if obj.kind == "video":
            return format_html('<video class="media-preview" controls preload="metadata" src="{}"></video>', url)
        return "—"

    @admin.display(description="content")
    def content_info(self, obj):
        if not obj.content_sha256:
            return "—"
        return format_html(
            '<a href="{}">{}</a> · {} bytes · sha256 <code>{}</code>',
            admin_url(obj, "content"),
            obj.mime_type,
            obj.content_size,
            obj.content_sha256,
        )

    def get_fieldsets(self, request, obj=None):
        editable = self._payload_editable(request, obj)
        fieldsets = [(None, {"fields": self.identity_fields})]
        if obj is not None and obj.kind in MEDIA_KINDS:
            fieldsets.append(("Media", {"fields": self.media_fields}))
        fieldsets.append(("Payload", {"fields": ("payload" if editable else "payload_pretty",)}))
        fieldsets.append(("Provenance", {"fields": self.provenance_fields}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return (*self.identity_fields, *self.media_fields, "payload_pretty", *self.provenance_fields)

    def _payload_editable(self, request, obj) -> bool:
        return obj is not None and self.has_change_permission(request, obj)

    # The change page shows every reference: one joined query instead of one each, without
    # the big columns of the rows it only names (a parent's payload, a scene's text, a run's
    # parameters).
    object_select_related = ("story", "scene__story", "parent", "created_by", "created_by_step__run")
    object_defer = (
        "parent__payload",
        "scene__source_text",
        "story__description",
        "scene__story__description",
        "created_by_step__input_summary",
        "created_by_step__output_summary",
        "created_by_step__run__params",
    )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"editor": request.user})

    def has_add_permission(self, request):
        return False  # artifacts come from the pipeline and the API, through the service

    def has_change_permission(self, request, obj=None):
        # A pruned tombstone has no payload left to edit and no state left to change.
        if obj is not None and obj.is_pruned:
            return False
        return super().has_change_permission(request, obj)

    # -- edit as a new version

    def save_model(self, request, obj, form, change):
        """Never saves ``obj``: the service creates the next version, parent = ``obj``."""
        try:
            edited = artifact_services.artifact_edit(
                artifact_id=obj.pk,
                payload=form.cleaned_data["payload"],
                actor=request.user,
                request_id=request.request_id,
            )
        except ArtifactError as exc:
            # A rule the form could not foresee (say the scene was locked meanwhile).
            # The service wrote nothing; response_change reports it.
            obj._edit_refused = exc
            return
        obj._new_version = edited if edited.pk != obj.pk else None

    def log_change(self, request, obj, message):
        new = getattr(obj, "_new_version", None)
        if new is None:
            return None  # nothing was written, so there is nothing to log
        return super().log_change(request, new, f"Created as version {new.version} from version {obj.version}.")

    def response_change(self, request, obj):
        refused = getattr(obj, "_edit_refused", None)
        if refused is not None:
            messages.error(request, f"Not saved ({refused.code}): {refused.message}")
            return HttpResponseRedirect(admin_url(obj))
        new = getattr(obj, "_new_version", None)
        if new is None:
            messages.info(request, "The payload is unchanged: no new version was created.")
            return HttpResponseRedirect(admin_url(obj))
        messages.success(
            request,
            format_html(
                "Saved as {} v{} ({}), a new version with parent v{}; v{} is unchanged.",
                new.type,
                new.version,
                new.pk,
                obj.version,
                obj.version,
            ),
        )
        return HttpResponseRedirect(admin_url(new))

    # -- change page panels: versions, lineage, audit trail, transitions

    def change_view(self, request, object_id, form_url="", extra_context=None):
        artifact = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if artifact is not None and self.has_view_permission(request, artifact):
            context.update(self._panels(request, artifact))
            context.update(self._workbench_panels(request, artifact, context["versions"]))
        return super().change_view(request, object_id, form_url, context)

    def _panels(self, request, artifact) -> dict:
        versions = list(
            selectors.stream_of(artifact).only(*selectors.VERSION_COLUMNS).order_by("-version")[: VERSIONS_SHOWN + 1]
        )
        can_change = self.has_change_permission(request, artifact)
        return {
            "versions": versions[:VERSIONS_SHOWN],
            "versions_truncated": len(versions) > VERSIONS_SHOWN,
            "graph": build_graph(
                artifact,
                *self._walks(artifact, depth=CHANGE_PAGE_LINEAGE_DEPTH, limit=CHANGE_PAGE_LINEAGE_NODES),
            ),
            "graph_depth": CHANGE_PAGE_LINEAGE_DEPTH,
            "audit_events": audit_admin.trail_for_display(audit_selectors.trail_of(artifact)),
            "transitions": [
                (state, TRANSITION_LABELS[state])
                for state in LifecycleState.values
                if state in ALLOWED_TRANSITIONS[artifact.lifecycle_state]
            ]
            if can_change
            else [],
            "can_edit_payload": self._payload_editable(request, artifact),
            **comments_admin.thread_context(request, artifact),
        }

    @staticmethod
    def _walks(artifact, *, depth: int, limit: int):
        """Ancestors and descendants: the same walk as the API's, payloads left unread."""
        return (
            lineage_walk.walk(artifact.pk, direction="ancestors", depth=depth, limit=limit),
            lineage_walk.walk(artifact.pk, direction="descendants", depth=depth, limit=limit),
        )

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/compare/<str:other_id>/", wrap(self.compare_view), name=f"{prefix}_compare"),
            path("<path:object_id>/revert/", wrap(self.revert_view), name=f"{prefix}_revert"),
            # Before the object paths, which would read "review" as an object id.
            path("review/", wrap(lambda request: review.review_view(self, request)), name=f"{prefix}_review"),
            path("<path:object_id>/content/", wrap(self.content_view), name=f"{prefix}_content"),
            path("<path:object_id>/thumbnail/", wrap(self.thumbnail_view), name=f"{prefix}_thumbnail"),
            path("<path:object_id>/lineage/", wrap(self.lineage_view), name=f"{prefix}_lineage"),
            path("<path:object_id>/transition/", wrap(self.transition_view), name=f"{prefix}_transition"),
            *super().get_urls(),
        ]

    def _get_viewable(self, request, object_id) -> Artifact:
        artifact = self.get_object(request, unquote(object_id))
        if artifact is None:
            raise Http404("no such artifact")
        if not self.has_view_permission(request, artifact):
            raise PermissionDenied
        return artifact

    def content_view(self, request, object_id):
        """The artifact's bytes for the preview tags, behind the admin's session login,
        served by the same code as the API's content endpoint (sandboxed, nosniff)."""
        artifact = self._get_viewable(request, object_id)
        try:
            return content_response(request, artifact)
        except ArtifactError as exc:
            return domain_error_response(exc)

    def thumbnail_view(self, request, object_id):
        """The API's thumbnail behind the admin's session login, from the same code."""
        artifact = self._get_viewable(request, object_id)
        try:
            return thumbnails.thumbnail_response(request, artifact, size=thumbnails.parse_size(request.GET.get("size")))
        except ArtifactError as exc:
            return domain_error_response(exc)

    def lineage_view(self, request, object_id):
        artifact = self._get_viewable(request, object_id)
        try:
            depth = int(request.GET.get("depth", 10))
        except ValueError:
            depth = 10
        depth = max(1, min(lineage_walk.MAX_DEPTH, depth))
        ancestors, descendants = self._walks(artifact, depth=depth, limit=LINEAGE_PAGE_NODES)
        graph = build_graph(artifact, ancestors, descendants)
        scene_ids = {node.scene_id for node in (*ancestors.nodes, *descendants.nodes) if node.scene_id}
        scenes = {
            pk: f"#{position} {title}".strip()
            for pk, position, title in Scene.objects.filter(pk__in=scene_ids).values_list("id", "position", "title")
        }

        def rows(nodes):
            # A walk's nodes start with the artifact itself (depth 0), shown above the tables.
            return [(node, scenes.get(node.scene_id, "story level")) for node in nodes if node.depth]

        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": artifact,
            "title": f"Lineage of {artifact.type} v{artifact.version}",
            "subtitle": str(artifact.pk),
            "graph": graph,
            "depth": depth,
            "depth_choices": sorted({*LINEAGE_DEPTH_CHOICES, depth}),
            "ancestors": rows(ancestors.nodes),
            "descendants": rows(descendants.nodes),
            "edges": len(graph.edges),
        }
        return TemplateResponse(request, "admin/artifacts/artifact/lineage.html", context)

    def transition_view(self, request, object_id):
        return require_POST(self._transition)(request, object_id)

    def _transition(self, request, object_id):
        artifact = self._get_viewable(request, object_id)
        if not self.has_change_permission(request, artifact):
            raise PermissionDenied
        target = request.POST.get("to", "")
        try:
            artifact_services.artifact_transition(
                artifact_id=artifact.pk, to=target, actor=request.user, request_id=request.request_id
            )
        except ArtifactError as exc:
            messages.error(request, f"Transition of {artifact} refused ({exc.code}): {exc.message}")
        else:
            messages.success(request, f"Lifecycle: {artifact} is now {target}.")
        return HttpResponseRedirect(admin_url(artifact))

    # -- the editors' workbench: compare two versions (SPEC §13)

    def _workbench_panels(self, request, artifact, versions) -> dict:
        """Each listed version's previous one (the next row, or the stream's version below the
        list's last row) for "compare with previous", and the primary of the artifact's role."""
        ids = [version.pk for version in versions]
        if versions and versions[-1].version > 1:
            # The version below the list's last row, unlisted when the stream is long.
            oldest = versions[-1].version
            ids.append(selectors.stream_of(artifact).filter(version=oldest - 1).values_list("pk", flat=True).first())
        previous = dict(zip(ids, ids[1:], strict=False))
        latest = versions[0] if versions else artifact
        return {
            "compare_previous": [(version, previous.get(version.pk)) for version in versions],
            "compare_primary_id": compare.primary_of_role(artifact),
            "latest_version": latest,
            "branch_notice": latest.pk != artifact.pk and not artifact.is_pruned,
            "can_restore": self._can_restore(request, artifact, latest),
            "planning_lock": self._planning_lock(request, artifact),
        }

    @staticmethod
    def _planning_lock(request, artifact) -> dict | None:
        """What the page of a planning artifact says of its scene's lock (SPEC §13): who took it,
        since when, and whether this editor may edit through it."""
        scene = artifact.scene
        if scene is None or not scene.planning_locked or not ARTIFACT_TYPES[artifact.type].planning:
            return None
        return {
            "scene": scene,
            "by": scene.planning_locked_by,  # read only for a locked scene's planning artifact
            "since": scene.planning_locked_at,
            "may_override": request.user.has_perm("artifacts.override_planning_lock"),
        }

    def _can_restore(self, request, artifact, latest) -> bool:
        # The API's restore needs the add permission (a restore creates a version).
        return (
            latest.pk != artifact.pk
            and not artifact.is_pruned
            and request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}")
        )

    def _restorable(self, request, artifact) -> bool:
        latest = selectors.stream_latest(
            story_id=artifact.story_id, scene_id=artifact.scene_id, type=artifact.type, fields=("id",)
        )
        return self._can_restore(request, artifact, latest)

    def revert_view(self, request, object_id):
        return require_POST(self._revert)(request, object_id)

    def _revert(self, request, object_id):
        """The button "Restore this version": the next version of the stream with this one's
        payload and content, through the service; lands on the new version."""
        artifact = self._get_viewable(request, object_id)
        if not request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}"):
            raise PermissionDenied
        try:
            restored = artifact_services.artifact_revert(
                artifact_id=artifact.pk, actor=request.user, request_id=request.request_id
            )
        except ArtifactError as exc:
            messages.error(request, f"Not restored ({exc.code}): {exc.message}")
            return HttpResponseRedirect(admin_url(artifact))
        messages.success(
            request,
            f"Restored v{artifact.version} as {restored.type} v{restored.version} "
            f"(parent v{restored.version - 1}, the latest until now); v{artifact.version} is unchanged.",
        )
        return HttpResponseRedirect(admin_url(restored))

    def compare_view(self, request, object_id, other_id):
        """Two artifacts of one type side by side: the payloads' changed fields, the media."""
        artifact = self._get_viewable(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": artifact,
            "title": f"Compare {artifact.type} v{artifact.version}",
        }
        try:
            first, second = compare.artifact_pair(artifact.pk, other_id)
        except ArtifactError as exc:
            context["refusal"] = exc
            return TemplateResponse(request, "admin/artifacts/artifact/compare.html", context, status=400)
        comparison = compare.payload_rows(first.payload, second.payload)
        context.update(
            {
                "title": f"Compare {first.type} v{first.version} with v{second.version}",
                "subtitle": f"{first.pk} → {second.pk}",
                "first": first,
                "second": second,
                "comparison": comparison,
                "first_media": compare.media_side(first),
                "second_media": compare.media_side(second),
                "content_changed": first.content_sha256 != second.content_sha256,
                "restorable": [side for side in (first, second) if self._restorable(request, side)],
            }
        )
        return TemplateResponse(request, "admin/artifacts/artifact/compare.html", context)

    # -- bulk lifecycle actions

    def _bulk_transition(self, request, queryset, target: str) -> None:
        rows = list(queryset.order_by().values_list("pk", "type", "version")[: BULK_ACTION_LIMIT + 1])
        if len(rows) > BULK_ACTION_LIMIT:
            messages.error(request, f"Select at most {BULK_ACTION_LIMIT} artifacts per action; nothing was changed.")
            return
        done, refused = 0, []
        for pk, type_name, version in rows:
            try:
                artifact_services.artifact_transition(
                    artifact_id=pk, to=target, actor=request.user, request_id=request.request_id
                )
                done += 1
            except ArtifactError as exc:
                refused.append((f"{type_name} v{version} ({short_id(pk)})", exc))
        if done:
            messages.success(request, f"{done} artifact{'s' if done != 1 else ''} moved to {target}.")
        report_refusals(request, refused, verb=f"move to {target}")

    @admin.action(description="Move selected artifacts to candidate", permissions=["change"])
    def make_candidate(self, request, queryset):
        self._bulk_transition(request, queryset, LifecycleState.CANDIDATE)

    @admin.action(description="Publish selected artifacts (intermediates through candidate)", permissions=["change"])
    def publish(self, request, queryset):
        """One pass: candidates are published, intermediates walk the lifecycle's own path
        (candidate, then published); published ones stay, archived ones are refused."""
        rows = list(queryset.order_by().values_list("pk", "type", "version")[: BULK_ACTION_LIMIT + 1])
        if len(rows) > BULK_ACTION_LIMIT:
            messages.error(request, f"Select at most {BULK_ACTION_LIMIT} artifacts per action; nothing was changed.")
            return
        done, refused = 0, []
        for pk, type_name, version in rows:
            try:
                artifact_services.artifact_publish(artifact_id=pk, actor=request.user, request_id=request.request_id)
                done += 1
            except ArtifactError as exc:
                refused.append((f"{type_name} v{version} ({short_id(pk)})", exc))
        if done:
            messages.success(request, f"{done} artifact{'s' if done != 1 else ''} published.")
        report_refusals(request, refused, verb="publish")

    @admin.action(description="Archive selected artifacts", permissions=["change"])
    def archive(self, request, queryset):
        self._bulk_transition(request, queryset, LifecycleState.ARCHIVED)


# -- relations and audit events: read-only records -------------------------------------


@admin.register(ArtifactRelation)
class ArtifactRelationAdmin(IndexedSearchMixin, ViewOnlyMixin, BaseAdmin):
    list_display = ("from_column", "relation_type", "to_column", "created_by_step", "created_at", "request_id")
    list_select_related = ("from_artifact", "to_artifact", "created_by_step")
    list_filter = ("relation_type",)
    sortable_by = ("created_at",)
    search_fields = ("=id", "=from_artifact", "=to_artifact", "=request_id")
    search_help_text = "A relation id, either artifact's id, or a request id (exact)."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = ("id", "from_artifact", "relation_type", "to_artifact", "created_by_step", "request_id", "created_at")
    readonly_fields = fields

    @admin.display(description="from")
    def from_column(self, obj):
        return artifact_link(obj.from_artifact)

    @admin.display(description="to")
    def to_column(self, obj):
        return artifact_link(obj.to_artifact)

    object_select_related = ("from_artifact", "to_artifact", "created_by_step")
