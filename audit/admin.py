"""The audit trail in the admin: append-only, so view-only here, as pghistory's admin does it;
and the trail panel that the artifact, story and scene pages show."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from kernel.admin_kit import (
    BaseAdmin,
    EstimatedCountPaginator,
    IndexedSearchMixin,
    ViewOnlyMixin,
    short_id,
    uuid_or_none,
)

from .models import AuditEvent


def describe_value(value) -> str:
    """An audit from/to value for people: ``role=cover, artifact_id=964ee36d``."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if item is None:
                continue
            text = str(item)
            parts.append(f"{key}={text[:8] if uuid_or_none(text) else text}")
        return ", ".join(parts) or "—"
    return str(value)


def trail_for_display(events) -> list[AuditEvent]:
    """Events for the trail panel (admin/audit/_audit_trail.html), their values described."""
    events = list(events)
    for event in events:
        event.from_display, event.to_display = describe_value(event.from_value), describe_value(event.to_value)
    return events


@admin.register(AuditEvent)
class AuditEventAdmin(IndexedSearchMixin, ViewOnlyMixin, BaseAdmin):
    """The audit trail: append-only, so view-only here, as pghistory's admin does it."""

    list_display = ("created_at", "action", "target_type", "target_column", "actor", "change", "note", "request_id")
    list_select_related = ("actor",)
    list_filter = ("action", "target_type")
    sortable_by = ("created_at",)
    search_fields = ("=target_id", "=story", "=request_id", "=id")
    search_help_text = "A target id, story id, request id or event id (exact)."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = (
        "id",
        "created_at",
        "action",
        "target_type",
        "target_column",
        "story",
        "actor",
        "from_value",
        "to_value",
        "note",
        "request_id",
    )
    readonly_fields = fields

    @admin.display(description="target")
    def target_column(self, obj):
        models_by_name = {"artifact": "artifacts_artifact", "scene": "stories_scene", "story": "stories_story"}
        name = models_by_name.get(obj.target_type)
        if name is None:
            return short_id(obj.target_id)
        return format_html('<a href="{}">{}</a>', reverse(f"admin:{name}_change", args=[obj.target_id]), obj.target_id)

    @admin.display(description="from → to")
    def change(self, obj):
        return format_audit_change(obj)

    object_select_related = ("actor", "story")


def format_audit_change(event) -> str:
    return format_html("{} → {}", describe_value(event.from_value), describe_value(event.to_value))
