"""The change feed and the webhooks over REST (SPEC §14)."""

from __future__ import annotations

import math
import re
import time

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from kernel import errors
from kernel.api import LimitedBodyMixin, QueryIntegerField, StrictCharField, StrictUUIDField, validated
from kernel.api_defaults import CursorPagination
from kernel.api_schema import error_codes

from . import delivery, selectors, services, wakeup
from .models import DeliveryAttempt, EventType, Webhook


@extend_schema_field({"type": "number", "minimum": 0, "maximum": 30})
class WaitField(serializers.Field):
    """Seconds, 0 to 30, a decimal number (``2``, ``0.5``)."""

    def to_internal_value(self, data):
        try:
            value = float(data) if isinstance(data, str) and data.strip() == data else None
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not 0 <= value <= 30:
            raise serializers.ValidationError("wait must be a number of seconds from 0 to 30")
        return value


# ``types``: one event type or more, comma-separated, exactly (the schema's pattern and the
# check below accept the same strings).
_EVENT_TYPE = "|".join(re.escape(name) for name in EventType.values)
TYPES_PATTERN = f"^(?:{_EVENT_TYPE})(?:,(?:{_EVENT_TYPE}))*$"


@extend_schema_field({"type": "string", "pattern": TYPES_PATTERN})
class EventTypesField(StrictCharField):
    pass


class FeedQuerySerializer(serializers.Serializer):
    since = StrictCharField(
        required=False,
        help_text="Where to start: a `next` of an earlier answer, or `now` for the current end "
        "(absent: the oldest event kept).",
    )
    limit = QueryIntegerField(required=False, min_value=1, max_value=1000, help_text="Events per answer (default 100).")
    types = EventTypesField(required=False, help_text="Only these event types, comma-separated (no spaces).")
    story_id = StrictUUIDField(required=False, help_text="Only the events of this story.")
    wait = WaitField(required=False, help_text="Seconds (0 to 30) to hold the request until an event comes.")

    def validate_types(self, value):
        names = value.split(",")
        unknown = [name for name in names if name not in EventType.values]
        if unknown:
            raise serializers.ValidationError(
                f"unknown event type {unknown[0]!r}; one of {', '.join(EventType.values)}"
            )
        return sorted(set(names))


class EventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=EventType.choices)
    timestamp = serializers.DateTimeField()
    story_id = serializers.UUIDField(allow_null=True)
    scene_id = serializers.UUIDField(allow_null=True)
    data = serializers.DictField(help_text="The ids concerned and the from and to of the change; never a payload.")


class FeedSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    next = serializers.CharField(help_text="The cursor to pass as `since` to follow on (`since` itself when empty).")


_FEED_TEXT = (
    "The events after `since`, in the order their transactions committed, each once: no event is ever "
    "skipped, also when writers commit in another order than they began. With `wait`, an answer with no "
    "event waits up to that many seconds for one (then `results` is empty and `next` is `since`). Events "
    "are kept `CHANGES_RETENTION_DAYS` (default 30): an older cursor is 410 `cursor_expired` (list again, "
    "then follow from `since=now`)."
)


@extend_schema(
    tags=["changes"],
    summary="Follow every change: the feed",
    description=_FEED_TEXT,
    parameters=[FeedQuerySerializer],
    responses={200: FeedSerializer},
    extensions=error_codes("invalid_cursor", "cursor_expired"),
)
class ChangesView(LimitedBodyMixin, APIView):
    permission_classes = [permissions.IsAuthenticated]
    action = "feed"
    query_serializers = {"feed": FeedQuerySerializer}

    def get(self, request):
        query = self.validated_query()
        since = query.get("since")
        if since is None:
            after = selectors.start_position()
        elif since == "now":
            after = selectors.end_position()
        else:
            after = selectors.Position.decode(since)
            after.check_retention()
        limit = query.get("limit", 100)
        wait = min(query.get("wait", 0.0), settings.CHANGES_MAX_WAIT_SECONDS)
        deadline = time.monotonic() + wait
        if wait > 0:
            wakeup.ensure_listening()
        while True:
            seen = wakeup.generation()
            events = selectors.feed_page(
                after=after, limit=limit, types=query.get("types"), story_id=query.get("story_id")
            )
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                break
            # The wait holds no database connection: another request may use it meanwhile.
            if not connection.in_atomic_block:
                connection.close()
            wakeup.wait_for_change(seen, min(remaining, wakeup.poll_interval()))
        if events:
            next_cursor = events[-1].position.encode()
        else:
            next_cursor = since if since not in (None, "now") else after.encode()
        return Response({"results": [event.body for event in events], "next": next_cursor})


# -- webhooks -------------------------------------------------------------------------------


class CanManageWebhooks(permissions.BasePermission):
    """Reading a webhook shows where events go: every method needs ``changes.add_webhook``."""

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not hasattr(view, request.method.lower()):
            return True  # a 405, not a 403
        return user.has_perm("changes.add_webhook")


class WebhookSerializer(serializers.ModelSerializer):
    webhook_id = serializers.UUIDField(source="id", read_only=True)
    types = serializers.ListField(child=serializers.CharField(), source="type_list", read_only=True)

    class Meta:
        model = Webhook
        fields = ["webhook_id", "url", "types", "story_id", "created_at"]


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.SerializerMethodField(help_text="`whsec_` + base64: shown in this answer only.")

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]

    def get_secret(self, obj) -> str:
        return self.context["secret"]


class WebhookCreateSerializer(serializers.Serializer):
    url = StrictCharField(max_length=2000)
    types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices), required=False, allow_empty=True
    )
    story_id = StrictUUIDField(required=False, allow_null=True)


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["event_id", "attempt", "status_code", "error", "duration_ms", "at"]


@extend_schema_view(
    list=extend_schema(summary="The webhooks", extensions=error_codes("permission_denied")),
    create=extend_schema(
        summary="Register a webhook",
        description="Each matching event is POSTed to `url` with Standard Webhooks signatures. "
        "The `secret` is in this answer only.",
        request=WebhookCreateSerializer,
        responses={201: WebhookCreatedSerializer},
        extensions=error_codes("invalid_url", (400, "not_found")),
    ),
    destroy=extend_schema(
        summary="Delete a webhook (and its deliveries)",
        responses={204: OpenApiResponse()},
        extensions=error_codes("permission_denied"),
    ),
)
@extend_schema(tags=["changes"])
class WebhookViewSet(
    LimitedBodyMixin, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    serializer_class = WebhookSerializer
    pagination_class = CursorPagination
    permission_classes = [CanManageWebhooks]
    required_permissions = ["changes.add_webhook"]
    paged_actions = ("list", "deliveries")
    lookup_url_kwarg = "webhook_id"
    lookup_value_converter = "uuid"
    filter_backends: list = []

    def get_queryset(self):
        return Webhook.objects.all()

    def create(self, request):
        body = validated(WebhookCreateSerializer, request.data)
        url = delivery.check_url(body["url"])
        webhook, secret = services.webhook_create(
            url=url, types=body.get("types"), story_id=body.get("story_id"), actor=request.user
        )
        return Response(WebhookCreatedSerializer(webhook, context={"secret": secret}).data, status=201)

    def destroy(self, request, webhook_id):
        services.webhook_delete(webhook_id=webhook_id)
        return Response(status=204)

    @extend_schema(
        summary="A webhook's delivery attempts, newest first",
        responses={200: AttemptSerializer(many=True)},
        extensions=error_codes("permission_denied"),
    )
    @action(detail=True, methods=["get"], url_path="deliveries")
    def deliveries(self, request, webhook_id):
        if not Webhook.objects.filter(pk=webhook_id).exists():
            raise errors.NotFound(f"webhook {webhook_id} does not exist")
        self.cursor_ordering = ("-at", "-id")
        page = self.paginate_queryset(selectors.webhook_attempts(webhook_id))
        return self.get_paginated_response(AttemptSerializer(page, many=True).data)
