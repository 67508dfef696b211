"""Webhooks and their deliveries in the admin: listed, read-only, with "redeliver"."""

from django.contrib import admin, messages
from django.utils import timezone

from . import services
from .models import Delivery, Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("url", "types", "story_id", "created_by", "created_at")
    search_fields = ("url",)
    readonly_fields = ("id", "url", "types", "story_id", "created_by", "created_at")
    exclude = ("secret",)  # shown once, in the API's answer to its creation

    def has_add_permission(self, request):
        return False  # registered through the API, which checks the URL and shows the secret once

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "event_type", "webhook", "status", "attempts", "next_attempt")
    list_filter = ("status",)
    list_select_related = ("webhook", "event")
    readonly_fields = ("webhook", "event", "status", "attempts", "next_attempt_at", "created_at")
    search_fields = ("event__event_id", "webhook__url")
    actions = ["redeliver"]

    @admin.display(description="event")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        if obj.status != "pending":
            return "—"
        return timezone.localtime(obj.next_attempt_at).strftime("%Y-%m-%d %H:%M:%S")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_redeliver_permission(self, request):
        return request.user.has_perm("changes.add_webhook")

    @admin.action(description="Redeliver the selected deliveries", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        count = services.deliveries_redeliver(delivery_ids=list(queryset.values_list("pk", flat=True)))
        noun = "delivery" if count == 1 else "deliveries"
        self.message_user(request, f"{count} {noun} will be tried again now.", messages.SUCCESS)
