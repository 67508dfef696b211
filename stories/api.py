"""/v1 endpoints of stories, scenes, story links and curation; every write calls stories.services."""

import datetime

from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from kernel.api import (
    LimitedBodyMixin,
    StrictChoiceField,
    StrictFilterSet,
    StrictIntegerField,
    StrictModelSerializer,
    StrictUUIDField,
    created,
    validated,
)
from kernel.api_defaults import CursorPagination
from kernel.api_schema import error_codes
from kernel.errors import AlreadyLocked, NotLocked
from kernel.input_limits import INT_MAX
from kernel.lookups import ensure_exists, get_or_not_found

from . import selectors, services
from .models import PrimaryInterval, Role, Scene, Story, StoryArtifactLink


class StorySerializer(StrictModelSerializer):
    story_id = serializers.UUIDField(source="id", read_only=True)
    cover_artifact_id = serializers.UUIDField(read_only=True, allow_null=True)
    canonical_audio_id = serializers.UUIDField(read_only=True, allow_null=True)
    canonical_video_id = serializers.UUIDField(read_only=True, allow_null=True)
    current_run_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Story
        fields = [
            "story_id",
            "title",
            "description",
            "cover_artifact_id",
            "canonical_audio_id",
            "canonical_video_id",
            "current_run_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class SceneSerializer(StrictModelSerializer):
    scene_id = serializers.UUIDField(source="id", read_only=True)
    story_id = serializers.UUIDField(read_only=True)
    position = StrictIntegerField(
        min_value=1,
        max_value=INT_MAX,
        required=False,
        help_text="Unique in the story (another scene's is 400); defaults to after the story's last scene.",
    )
    planning_locked_by_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Scene
        fields = [
            "scene_id",
            "story_id",
            "position",
            "title",
            "source_text",
            "planning_locked",
            "planning_locked_by_id",
            "planning_locked_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["planning_locked", "planning_locked_at", "created_at", "updated_at"]


class LinkSerializer(StrictModelSerializer):
    link_id = serializers.UUIDField(source="id", read_only=True)
    story_id = serializers.UUIDField(read_only=True)
    artifact_id = StrictUUIDField(help_text="An artifact of this story, of the kind the role takes.")
    role = StrictChoiceField(choices=Role.choices)
    scene_id = StrictUUIDField(
        required=False, allow_null=True, help_text="For scene_image: the scene (defaults to the artifact's)."
    )
    created_by_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = StoryArtifactLink
        fields = ["link_id", "story_id", "artifact_id", "role", "scene_id", "is_primary", "created_by_id", "created_at"]
        read_only_fields = ["is_primary", "created_at"]


class PrimarySerializer(serializers.Serializer):
    role = StrictChoiceField(choices=Role.choices)
    artifact_id = StrictUUIDField(help_text="A published artifact of this story, of the kind the role takes.")
    scene_id = StrictUUIDField(required=False, allow_null=True, help_text="For scene_image: the scene.")


class LinkFilter(StrictFilterSet):
    role = filters.ChoiceFilter(choices=Role.choices)
    scene_id = filters.UUIDFilter()
    is_primary = filters.BooleanFilter(help_text="`true` or `false`.")

    class Meta:
        model = StoryArtifactLink
        fields = ["role", "scene_id", "is_primary"]


@extend_schema_view(
    list=extend_schema(summary="List the stories, newest first"),
    retrieve=extend_schema(
        summary="One story",
        description="With its curated references: cover, canonical audio and video (the primary links of "
        "roles cover, final_audio and final_video) and the current run.",
    ),
    create=extend_schema(summary="Create a story", description="201 with `Location`."),
    partial_update=extend_schema(
        summary="Change a story's title or description",
        description="Send only the fields to change; the curated references change through `primary`.",
    ),
)
@extend_schema(tags=["stories"])
class StoryViewSet(
    LimitedBodyMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    queryset = selectors.stories()
    serializer_class = StorySerializer
    lookup_url_kwarg = "story_id"
    lookup_value_converter = "uuid"
    pagination_class = CursorPagination
    cursor_ordering = ("-created_at", "-id")
    required_permissions = None

    def create(self, request, *args, **kwargs):
        story = services.story_create(**validated(StorySerializer, request.data))
        return created(request, self.get_serializer(story).data, viewname="story-detail", kwargs={"story_id": story.pk})

    def partial_update(self, request, story_id):
        changes = validated(StorySerializer, request.data, partial=True)
        return Response(self.get_serializer(services.story_update(story_id=story_id, **changes)).data)

    @extend_schema(
        summary="Make an artifact the primary of a role (the old primary is demoted)",
        description=(
            "In one transaction: the artifact's link for the role is made (if it has none) and made primary, "
            "the old primary is demoted, and for cover, final_audio and final_video the story's reference "
            "follows. The artifact must be published (409 `not_published`) and not pruned (409 `pruned`); "
            "409 `duplicate_link` when it is linked to the role for another scene. 400 `invalid_link` for an "
            "artifact of another story or of a kind the role does not take."
        ),
        request={"application/json": PrimarySerializer},
        responses=LinkSerializer,
        extensions=error_codes("invalid_link", "not_published", "duplicate_link", (409, "pruned")),
    )
    @action(
        detail=True,
        methods=["post"],
        required_permissions=["stories.change_storyartifactlink"],
    )
    def primary(self, request, story_id):
        data = validated(PrimarySerializer, request.data)
        link = services.story_set_primary(story_id=story_id, actor=request.user, **data)
        return Response(LinkSerializer(link).data)


@extend_schema_view(
    list=extend_schema(summary="List a story's scenes, oldest first"),
    create=extend_schema(
        summary="Add a scene to a story",
        description="At `position` (unique in the story; a taken one is 400 `invalid`), or after the last scene. "
        "201 with `Location`.",
    ),
)
@extend_schema(tags=["stories"])
class StorySceneViewSet(LimitedBodyMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The scenes of one story, oldest first; each carries its ``position``.

    The cursor follows creation, not position: a cursor needs an immutable column, and a
    position can change between two pages (a scene moved would be skipped or repeated)."""

    serializer_class = SceneSerializer
    pagination_class = CursorPagination
    cursor_ordering = ("created_at", "id")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Scene.objects.none()
        return selectors.story_scenes(self.kwargs["story_id"])

    def list(self, request, *args, **kwargs):
        ensure_exists(Story, self.kwargs["story_id"], what="story")
        return super().list(request, *args, **kwargs)

    def create(self, request, story_id):
        scene = services.scene_create(story_id=story_id, **validated(SceneSerializer, request.data))
        return created(request, self.get_serializer(scene).data, viewname="scene-detail", kwargs={"scene_id": scene.pk})


_SCENE = OpenApiResponse(SceneSerializer, description="The scene as it now is.")


@extend_schema_view(
    retrieve=extend_schema(summary="One scene", description="With its planning lock: who locked it and when."),
    partial_update=extend_schema(
        summary="Change a scene's title, source text or position",
        description="Send only the fields to change; a position another scene of the story holds is 400 `invalid`.",
    ),
)
@extend_schema(tags=["stories"])
class SceneViewSet(LimitedBodyMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = selectors.scenes()
    serializer_class = SceneSerializer
    lookup_url_kwarg = "scene_id"
    lookup_value_converter = "uuid"
    required_permissions = None

    def partial_update(self, request, scene_id):
        changes = validated(SceneSerializer, request.data, partial=True)
        return Response(self.get_serializer(services.scene_update(scene_id=scene_id, **changes)).data)

    @extend_schema(
        summary="Lock planning: planning artifacts are frozen",
        description=(
            "While planning is locked, creating a planning-type artifact (scene_intent, panel_plan, "
            "panel_plan_normalized, layout_template, panel_semantics, dialogue_suggestions, visual_plan) on "
            "the scene is 409 `planning_locked` unless the user has `artifacts.override_planning_lock`. "
            "Safe to retry: a scene already locked answers 200 as it is (its lock unchanged)."
        ),
        request=None,
        responses={200: _SCENE},
    )
    @action(detail=True, methods=["post"], required_permissions=["stories.change_scene"])
    def lock(self, request, scene_id):
        try:
            scene = services.scene_lock_planning(scene_id=scene_id, actor=request.user)
        except AlreadyLocked:
            scene = get_or_not_found(Scene, scene_id, what="scene")  # a retry: the lock is already there
        return Response(self.get_serializer(scene).data)

    @extend_schema(
        summary="Unlock planning",
        description="Safe to retry: a scene that is not locked answers 200 as it is.",
        request=None,
        responses={200: _SCENE},
    )
    @action(detail=True, methods=["post"], required_permissions=["stories.change_scene"])
    def unlock(self, request, scene_id):
        try:
            scene = services.scene_unlock_planning(scene_id=scene_id, actor=request.user)
        except NotLocked:
            scene = get_or_not_found(Scene, scene_id, what="scene")  # a retry: nothing to unlock
        return Response(self.get_serializer(scene).data)


@extend_schema_view(
    list=extend_schema(summary="List a story's artifact links, oldest first"),
    create=extend_schema(
        summary="Link an artifact to a role, without making it primary",
        description=(
            "400 `invalid_link` for an artifact of another story, of a kind the role does not take, or a "
            "scene that does not fit the role; 409 `duplicate_link` when the artifact is linked to the role."
        ),
        request={"application/json": LinkSerializer},
        responses={201: LinkSerializer},
        extensions=error_codes("invalid_link", "duplicate_link"),
    ),
)
@extend_schema(tags=["stories"])
class StoryLinkViewSet(LimitedBodyMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The story's artifact links per role; POST links without making primary."""

    serializer_class = LinkSerializer
    filterset_class = LinkFilter
    pagination_class = CursorPagination
    cursor_ordering = ("created_at", "id")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return StoryArtifactLink.objects.none()
        return selectors.story_links(self.kwargs["story_id"])

    def list(self, request, *args, **kwargs):
        ensure_exists(Story, self.kwargs["story_id"], what="story")
        return super().list(request, *args, **kwargs)

    def create(self, request, story_id):
        link = services.link_create(story_id=story_id, actor=request.user, **validated(LinkSerializer, request.data))
        return Response(self.get_serializer(link).data, status=201)


# -- primary history (SPEC §13) -----------------------------------------------------------


class PrimaryIntervalSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
    scene_id = serializers.UUIDField(allow_null=True, help_text="The scene, for scene_image; null otherwise.")
    artifact_id = serializers.UUIDField()
    since = serializers.DateTimeField(help_text="When the artifact became the primary.")
    until = serializers.DateTimeField(allow_null=True, help_text="When another took its place; null while in force.")
    set_by = serializers.CharField(
        source="set_by.username", allow_null=True, default=None, help_text="The user who made it primary (username)."
    )


class AsOfQuerySerializer(serializers.Serializer):
    as_of = serializers.DateTimeField(
        required=False,
        help_text="An ISO 8601 time (without an offset: the server's time zone); default now.",
    )

    def validate_as_of(self, value):
        try:
            return value.astimezone(datetime.UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is a valid time before year 1 in UTC
            raise serializers.ValidationError("the time lies beyond the years 1 to 9999 in UTC") from None


class HistoryQuerySerializer(serializers.Serializer):
    role = StrictChoiceField(choices=Role.choices, required=False)
    scene_id = StrictUUIDField(
        required=False,
        help_text="One scene's history: its scene_image intervals (with another role, none: only scene_image "
        "has a scene).",
    )


@extend_schema(tags=["stories"])
class StoryPrimaryViewSet(LimitedBodyMixin, viewsets.GenericViewSet):
    """What was primary when: each primary link's validity interval, written by the curation
    service with every change."""

    serializer_class = PrimaryIntervalSerializer
    pagination_class = CursorPagination
    cursor_ordering = ("-since", "-id")
    paged_actions = ("list", "history")
    query_serializers = {"list": AsOfQuerySerializer, "history": HistoryQuerySerializer}

    def get_queryset(self):
        return PrimaryInterval.objects.none()  # each action reads through its selector

    def _page(self, intervals):
        ensure_exists(Story, self.kwargs["story_id"], what="story")
        page = self.paginate_queryset(intervals)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="What was primary at a time (default now), per role and scene",
        description=(
            "The intervals in force at `as_of`: one per role, and per scene for scene_image, newest first. "
            "`until` is null for what is still primary."
        ),
        parameters=[AsOfQuerySerializer],
        responses={200: PrimaryIntervalSerializer(many=True)},
    )
    def list(self, request, story_id):
        as_of = self.validated_query().get("as_of") or timezone.now()
        return self._page(selectors.primaries_as_of(story_id, as_of))

    @extend_schema(
        summary="Every primary interval of the story, newest first",
        description="Of one role (`role`), or of one scene's scene_image (`scene_id`), when given.",
        parameters=[HistoryQuerySerializer],
        responses={200: PrimaryIntervalSerializer(many=True)},
    )
    @action(detail=False, methods=["get"])
    def history(self, request, story_id):
        return self._page(selectors.primary_history(story_id, **self.validated_query()))
