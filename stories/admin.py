"""Admin for stories, scenes and their curated links (SPEC §8).

Story and scene saves go through ``stories.services`` (create/update), planning locks
through ``scene_lock_planning``/``scene_unlock_planning``, and the primary per role
through ``story_set_primary``; the derived story references are shown, never edited.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponseRedirect
from django.urls import path
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import TokenProxy

from artifacts import selectors as artifact_selectors
from artifacts.models import Artifact, LifecycleState
from artifacts.thumbnails import thumbnail_tag
from audit import admin as audit_admin
from audit import selectors as audit_selectors
from kernel.admin_kit import (
    BULK_ACTION_LIMIT,
    ArtifactRowColumns,
    BaseAdmin,
    IndexedSearchMixin,
    ViewOnlyInline,
    ViewOnlyMixin,
    admin_url,
    artifact_link,
    changelist_url,
    report_refusals,
    short_id,
    state_badge,
)
from kernel.errors import ArtifactError
from runs.pipeline.admin_views import PipelinePagesMixin

from . import selectors, services, storyboard
from .models import KIND_FOR_ROLE, ROLE_SCENE_IMAGE, STORY_REFERENCE_FOR_ROLE, Role, Scene, Story, StoryArtifactLink

PICKER_THUMBNAIL_SIZE = 64
PRIMARY_READY_STATES = (LifecycleState.PUBLISHED, LifecycleState.CANDIDATE)
# How many candidate artifacts the primary chooser offers per role (and per scene).
CANDIDATES_PER_ROLE = 8
CANDIDATES_FETCHED = 300
SCENES_IN_CHOOSER = 100
# Rows of the primary history panel (and of the "as of" answer); the API pages through all.
PRIMARY_HISTORY_SHOWN = 50
PRIMARY_PERMISSION = f"{StoryArtifactLink._meta.app_label}.change_{StoryArtifactLink._meta.model_name}"


def _adopt(form_instance, saved) -> None:
    """Make the admin's form instance the row the service saved, so the admin's
    redirect and log entry point at it."""
    for name, value in saved.__dict__.items():
        if name != "_state":
            form_instance.__dict__[name] = value
    form_instance._state.adding = False
    form_instance._state.db = saved._state.db


# -- story ---------------------------------------------------------------------------


class StoryLinkInline(ArtifactRowColumns, ViewOnlyInline):
    model = StoryArtifactLink
    fk_name = "story"
    verbose_name = "curated link"
    verbose_name_plural = "Curated links (primary per role is chosen above)"
    fields = ("role", "scene_label", "artifact_column", "artifact_state", "is_primary", "created_by", "created_at")
    readonly_fields = fields
    ordering = ("role", "scene__position", "-created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("artifact", "scene", "created_by")


@admin.register(Story)
class StoryAdmin(PipelinePagesMixin, IndexedSearchMixin, BaseAdmin):
    change_form_template = "admin/stories/story/change_form.html"
    list_display = ("title", "short_id", "scene_count", "has_cover", "current_run", "created_at", "updated_at")
    list_select_related = ("current_run",)
    list_filter = ("created_at",)
    search_fields = ("title", "=id")
    search_help_text = "Title (contains) or story id (exact)."
    sortable_by = ("title", "created_at")
    fieldsets = (
        (None, {"fields": ("title", "description")}),
        ("Curated references (derived from the primary links)", {"fields": ("cover", "audio", "video")}),
        ("Record", {"fields": ("story_id", "current_run", "artifacts_link", "created_at", "updated_at")}),
    )
    readonly_fields = (
        "cover",
        "audio",
        "video",
        "story_id",
        "current_run",
        "artifacts_link",
        "created_at",
        "updated_at",
    )
    inlines = (StoryLinkInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(scene_total=Count("scenes"))

    object_select_related = ("cover_artifact", "canonical_audio", "canonical_video", "current_run")

    @admin.display(description="id")
    def short_id(self, obj):
        return short_id(obj.pk)

    @admin.display(description="scenes")
    def scene_count(self, obj):
        return obj.scene_total

    @admin.display(description="cover", boolean=True)
    def has_cover(self, obj):
        return obj.cover_artifact_id is not None

    @admin.display(description="story id")
    def story_id(self, obj):
        return str(obj.pk)

    @admin.display(description="artifacts")
    def artifacts_link(self, obj):
        if obj.pk is None:
            return "—"
        changelist = changelist_url(Artifact)
        scenes = changelist_url(Scene)
        return format_html(
            '<a href="{}?story={}">all artifacts of this story</a> · <a href="{}?story={}">its scenes</a>',
            changelist,
            obj.pk,
            scenes,
            obj.pk,
        )

    def _reference(self, artifact, *, preview: bool = False):
        if artifact is None:
            return "— (no primary yet)"
        link = format_html("{} {}", artifact_link(artifact), state_badge(artifact))
        if preview and artifact.content_sha256 and not artifact.is_pruned:
            return format_html(
                '{}<br><img class="media-preview" style="max-height:160px" src="{}" alt="{}">',
                link,
                admin_url(artifact, "content"),
                (artifact.payload or {}).get("alt", ""),
            )
        return link

    @admin.display(description="cover")
    def cover(self, obj):
        return self._reference(obj.cover_artifact, preview=True)

    @admin.display(description="canonical audio")
    def audio(self, obj):
        return self._reference(obj.canonical_audio)

    @admin.display(description="canonical video")
    def video(self, obj):
        return self._reference(obj.canonical_video)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            _adopt(obj, services.story_create(title=data["title"], description=data.get("description", "")))
            return
        changes = {name: data[name] for name in form.changed_data if name in services.STORY_EDITABLE_FIELDS}
        if changes:
            _adopt(obj, services.story_update(story_id=obj.pk, **changes))

    # -- the primary chooser

    def change_view(self, request, object_id, form_url="", extra_context=None):
        story = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if story is not None and self.has_view_permission(request, story):
            context["audit_events"] = audit_admin.trail_for_display(audit_selectors.trail(story=story))
            context["can_choose_primary"] = self.may_choose_primary(request, story)
            context["primary_rows"] = self._primary_rows(story)
            context["pipeline"] = self.pipeline_tools(request, story)
            context.update(self._primary_history(request, story))
        return super().change_view(request, object_id, form_url, context)

    def _primary_history(self, request, story) -> dict:
        """The history panel: the newest intervals, and with ``?as_of=`` (the picker, a GET
        form) what was primary then. Two queries at most, whatever the history's length."""
        context = {"primary_history": list(selectors.primary_history(story.pk)[:PRIMARY_HISTORY_SHOWN])}
        text = request.GET.get("as_of", "").strip()
        if not text:
            return context
        context["as_of_text"] = text
        moment = parse_datetime(text)
        if moment is None:
            context["as_of_error"] = f"{text!r} is not a date and time (YYYY-MM-DDTHH:MM)."
            return context
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        context["as_of"] = moment
        context["primaries_as_of"] = list(selectors.primaries_as_of(story.pk, moment)[:PRIMARY_HISTORY_SHOWN])
        return context

    def _primary_rows(self, story) -> list[dict]:
        """One row per role (per scene for scene_image): the current primary and the
        newest artifacts that could take its place. Three queries, whatever the story size."""
        primaries = {(link.role, link.scene_id): link.artifact for link in selectors.story_primaries(story.pk)}
        candidates = list(
            artifact_selectors.story_media(story.pk).only(
                "id", "type", "version", "kind", "lifecycle_state", "scene_id", "pruned_at", "mime_type"
            )[:CANDIDATES_FETCHED]
        )
        rows = []
        for role in Role.values:
            if role == ROLE_SCENE_IMAGE:
                continue
            rows.append(
                self._primary_row(
                    role, None, primaries.get((role, None)), [a for a in candidates if a.kind == KIND_FOR_ROLE[role]]
                )
            )
        for scene in selectors.story_scenes(story.pk).only("id", "position", "title")[:SCENES_IN_CHOOSER]:
            rows.append(
                self._primary_row(
                    ROLE_SCENE_IMAGE,
                    scene,
                    primaries.get((ROLE_SCENE_IMAGE, scene.pk)),
                    [a for a in candidates if a.kind == KIND_FOR_ROLE[ROLE_SCENE_IMAGE] and a.scene_id == scene.pk],
                )
            )
        return rows

    @staticmethod
    def _primary_row(role, scene, primary, candidates) -> dict:
        # Only what can become primary: published, or a candidate published in the same step.
        offered = [
            a
            for a in candidates
            if (primary is None or a.pk != primary.pk) and a.lifecycle_state in PRIMARY_READY_STATES
        ][:CANDIDATES_PER_ROLE]
        return {
            "role": role,
            "role_label": Role(role).label,
            "scene": scene,
            "primary": primary,
            "primary_thumbnail": thumbnail_tag(primary, size=PICKER_THUMBNAIL_SIZE) if primary else "",
            "candidates": [
                {
                    "artifact": a,
                    "value": f"{role}|{a.pk}|{scene.pk if scene else ''}"
                    + ("|publish" if a.lifecycle_state == LifecycleState.CANDIDATE else ""),
                    "thumbnail": thumbnail_tag(a, size=PICKER_THUMBNAIL_SIZE),
                }
                for a in offered
            ],
        }

    @staticmethod
    def may_publish(request) -> bool:
        """Publishing is the API's transition: ``artifacts.change_artifact``."""
        return request.user.has_perm("artifacts.change_artifact")

    def may_choose_primary(self, request, story) -> bool:
        """The API's permission for a primary (``stories.change_storyartifactlink``: a primary
        is a link), on a story this user may see; changing the story itself is not it."""
        return self.has_view_permission(request, story) and request.user.has_perm(PRIMARY_PERMISSION)

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            # Before set-primary/, which would take "<id>/storyboard" for an object id.
            *self.storyboard_urls(prefix),
            path(
                "<path:object_id>/set-primary/",
                self.admin_site.admin_view(require_POST(self.set_primary_view)),
                name=f"{prefix}_set_primary",
            ),
            *self.pipeline_urls(),
            *super().get_urls(),
        ]

    def storyboard_urls(self, prefix: str) -> list:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/storyboard/",
                wrap(lambda request, object_id: storyboard.storyboard_view(self, request, object_id)),
                name=f"{prefix}_storyboard",
            ),
            path(
                "<path:object_id>/storyboard/set-primary/",
                wrap(
                    require_POST(
                        lambda request, object_id: storyboard.storyboard_set_primary_view(self, request, object_id)
                    )
                ),
                name=f"{prefix}_storyboard_set_primary",
            ),
        ]

    def set_primary_view(self, request, object_id):
        story = self.get_object(request, unquote(object_id))
        if story is None:
            raise Http404("no such story")
        if not self.may_choose_primary(request, story):
            raise PermissionDenied
        role, artifact_id, scene_id, publish = (request.POST.get("primary", "").split("|") + ["", "", "", ""])[:4]
        # "|publish": a candidate offered as "publish and make primary", one transaction.
        set_primary = services.story_publish_and_set_primary if publish == "publish" else services.story_set_primary
        if publish == "publish" and not self.may_publish(request):
            raise PermissionDenied
        try:
            set_primary(
                story_id=story.pk, role=role, artifact_id=artifact_id, scene_id=scene_id or None, actor=request.user
            )
        except ArtifactError as exc:
            messages.error(request, f"Primary {role or '?'} not changed ({exc.code}): {exc.message}")
        else:
            artifact = Artifact.objects.get(pk=artifact_id)
            where = f" of scene {scene_id[:8]}" if scene_id else ""
            reference = STORY_REFERENCE_FOR_ROLE.get(role)
            follow = f"; the story's {reference} now points at it" if reference else ""
            messages.success(request, f"Primary {role}{where} set to {artifact}{follow}.")
        return HttpResponseRedirect(admin_url(story))


# -- scene ---------------------------------------------------------------------------


class SceneForm(forms.ModelForm):
    """A position the service would refuse is an error on the form, not a 500: from 1 (the
    service's minimum; the column would take 0: ``SceneAdmin.formfield_for_dbfield``), and
    free in the story. On a change the story is read-only, so Django's own check of the
    (story, position) constraint leaves it out; this one does not. The service checks both
    again under the story's lock."""

    class Meta:
        model = Scene
        fields = ["story", "position", "title", "source_text"]  # the admin narrows them per page

    def clean(self):
        cleaned = super().clean()
        position = cleaned.get("position")
        if "story" not in self.fields and self.instance.story_id and position is not None:
            others = selectors.story_scenes(self.instance.story_id).exclude(pk=self.instance.pk)
            if others.filter(position=position).exists():
                self.add_error("position", f"The story already has a scene at position {position}.")
        return cleaned


@admin.register(Scene)
class SceneAdmin(PipelinePagesMixin, IndexedSearchMixin, BaseAdmin):
    form = SceneForm
    change_form_template = "admin/stories/scene/change_form.html"
    list_display = (
        "scene_label",
        "story",
        "position",
        "planning",
        "planning_locked_by",
        "planning_locked_at",
        "updated_at",
    )
    list_display_links = ("scene_label",)
    list_select_related = ("story", "planning_locked_by")
    list_filter = ("planning_locked",)
    link_lookups = ("story",)  # the story page's link to its scenes
    search_fields = ("title", "story__title", "=id", "=story")
    search_help_text = "Scene or story title (contains), or a scene or story id (exact)."
    sortable_by = ("position",)
    autocomplete_fields = ("story",)
    actions = ("lock_planning", "unlock_planning")
    fieldsets = (
        (None, {"fields": ("story", "position", "title", "source_text")}),
        ("Planning lock", {"fields": ("planning", "planning_locked_by", "planning_locked_at")}),
        ("Record", {"fields": ("scene_id", "artifacts_link", "created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        fields = (
            "planning",
            "planning_locked_by",
            "planning_locked_at",
            "scene_id",
            "artifacts_link",
            "created_at",
            "updated_at",
        )
        # A scene never moves to another story.
        return ("story", *fields) if obj is not None else fields

    object_select_related = ("story", "planning_locked_by")

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "position":
            kwargs["min_value"] = 1
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and "position" in form.base_fields:
            form.base_fields["position"].required = False
            form.base_fields["position"].help_text = "Leave blank for the next free position."
        return form

    @admin.display(description="scene")
    def scene_label(self, obj):
        return f"#{obj.position} {obj.title}".strip()

    @admin.display(description="planning")
    def planning(self, obj):
        if obj.planning_locked:
            return mark_safe('<span class="lock-state-locked">locked</span>')
        return mark_safe('<span class="lock-state-open">open</span>')

    @admin.display(description="scene id")
    def scene_id(self, obj):
        return str(obj.pk) if obj.pk else "—"

    @admin.display(description="artifacts")
    def artifacts_link(self, obj):
        if obj.pk is None:
            return "—"
        return format_html('<a href="{}?scene={}">all artifacts of this scene</a>', changelist_url(Artifact), obj.pk)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            _adopt(
                obj,
                services.scene_create(
                    story_id=data["story"].pk,
                    title=data.get("title", ""),
                    source_text=data.get("source_text", ""),
                    position=data.get("position"),
                ),
            )
            return
        changes = {name: data[name] for name in form.changed_data if name in services.SCENE_EDITABLE_FIELDS}
        if changes:
            _adopt(obj, services.scene_update(scene_id=obj.pk, **changes))

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The form checks what the service checks, but a concurrent save can still take the
        # position in between: the service's refusal then comes back as a message, not a 500.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ArtifactError as exc:
            messages.error(request, f"Not saved ({exc.code}): {exc.message}")
            return HttpResponseRedirect(request.get_full_path())

    def change_view(self, request, object_id, form_url="", extra_context=None):
        scene = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if scene is not None and self.has_view_permission(request, scene):
            context["audit_events"] = audit_admin.trail_for_display(audit_selectors.trail_of(scene))
            context["can_lock"] = self.has_change_permission(request, scene)
            context["latest_artifacts"] = artifact_selectors.scene_latest_per_type(scene.pk).only(
                "id", "type", "version", "kind", "lifecycle_state", "created_at", "request_id", "pruned_at"
            )
            context["pipeline"] = self.pipeline_tools(request, scene)
        return super().change_view(request, object_id, form_url, context)

    # -- planning lock: buttons on the page and bulk actions

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/lock/", wrap(require_POST(self.lock_view)), name=f"{prefix}_lock"),
            path("<path:object_id>/unlock/", wrap(require_POST(self.unlock_view)), name=f"{prefix}_unlock"),
            *self.pipeline_urls(),
            *super().get_urls(),
        ]

    def _lock_toggle(self, request, object_id, *, lock: bool):
        scene = self.get_object(request, unquote(object_id))
        if scene is None:
            raise Http404("no such scene")
        if not self.has_change_permission(request, scene):
            raise PermissionDenied
        action = services.scene_lock_planning if lock else services.scene_unlock_planning
        try:
            action(scene_id=scene.pk, actor=request.user)
        except ArtifactError as exc:
            messages.error(request, f"Refused on {scene} ({exc.code}): {exc.message}")
        else:
            messages.success(request, f"Planning {'locked' if lock else 'unlocked'} on {scene}.")
        return HttpResponseRedirect(admin_url(scene))

    def lock_view(self, request, object_id):
        return self._lock_toggle(request, object_id, lock=True)

    def unlock_view(self, request, object_id):
        return self._lock_toggle(request, object_id, lock=False)

    def _bulk_lock(self, request, queryset, *, lock: bool) -> None:
        scenes = list(queryset.select_related("story")[: BULK_ACTION_LIMIT + 1])
        if len(scenes) > BULK_ACTION_LIMIT:
            messages.error(request, f"Select at most {BULK_ACTION_LIMIT} scenes per action; nothing was changed.")
            return
        action = services.scene_lock_planning if lock else services.scene_unlock_planning
        done, refused = 0, []
        for scene in scenes:
            try:
                action(scene_id=scene.pk, actor=request.user)
                done += 1
            except ArtifactError as exc:
                refused.append((str(scene), exc))
        verb = "locked" if lock else "unlocked"
        if done:
            messages.success(request, f"Planning {verb} on {done} scene{'s' if done != 1 else ''}.")
        report_refusals(request, refused, verb="lock" if lock else "unlock")

    @admin.action(description="Lock planning on selected scenes", permissions=["change"])
    def lock_planning(self, request, queryset):
        self._bulk_lock(request, queryset, lock=True)

    @admin.action(description="Unlock planning on selected scenes", permissions=["change"])
    def unlock_planning(self, request, queryset):
        self._bulk_lock(request, queryset, lock=False)


# -- links ---------------------------------------------------------------------------


@admin.register(StoryArtifactLink)
class StoryArtifactLinkAdmin(ArtifactRowColumns, IndexedSearchMixin, ViewOnlyMixin, BaseAdmin):
    """Links are made by choosing a primary on the story page; here they are listed."""

    list_display = (
        "short_id",
        "story",
        "role",
        "scene_label",
        "artifact_column",
        "artifact_state",
        "is_primary",
        "created_at",
    )
    list_select_related = ("story", "scene", "artifact")
    list_filter = ("role", "is_primary")
    search_fields = ("=id", "=story", "=artifact", "=scene", "story__title")
    search_help_text = "A link, story, artifact or scene id (exact), or a story title (contains)."
    fields = ("id", "story", "role", "scene", "artifact", "is_primary", "created_by", "created_at")
    readonly_fields = fields

    object_select_related = ("story", "scene__story", "artifact", "created_by")

    @admin.display(description="link")
    def short_id(self, obj):
        return short_id(obj.pk)


# -- API keys ----------------------------------------------------------------------------------

# DRF's token admin lists every API key in clear to any staff user who may view tokens, and
# the key is the credential itself (DRF stores it as it is); its change and delete pages and
# the admin log name a token by its key too, so a prefix-only list would still leak it.
# Unregistered: keys are issued and rotated with ``manage.py drf_create_token USER`` (``-r``
# makes a new one, which revokes the old), and a deactivated user's key no longer works.
admin.site.unregister(TokenProxy)
