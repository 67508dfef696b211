"""/v1 endpoints of stories, scenes, story links and curation; every write calls stories.services."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from artifacts_project.api import LimitedBodyMixin, created, validated
from artifacts_project.api_defaults import CursorPagination
from artifacts_project.input_limits import INT_MAX
from artifacts_project.lookups import ensure_exists

from . import services
from .models import Role, Scene, Story, StoryArtifactLink


class StorySerializer(serializers.ModelSerializer):
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


class SceneSerializer(serializers.ModelSerializer):
    scene_id = serializers.UUIDField(source="id", read_only=True)
    story_id = serializers.UUIDField(read_only=True)
    position = serializers.IntegerField(
        min_value=1, max_value=INT_MAX, required=False, help_text="Defaults to after the story's last scene."
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


class LinkSerializer(serializers.ModelSerializer):
    link_id = serializers.UUIDField(source="id", read_only=True)
    story_id = serializers.UUIDField(read_only=True)
    artifact_id = serializers.UUIDField()
    role = serializers.ChoiceField(choices=Role.choices)
    scene_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="For scene_image: the scene (defaults to the artifact's)."
    )
    created_by_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = StoryArtifactLink
        fields = ["link_id", "story_id", "artifact_id", "role", "scene_id", "is_primary", "created_by_id", "created_at"]
        read_only_fields = ["is_primary", "created_at"]


class PrimarySerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
    artifact_id = serializers.UUIDField()
    scene_id = serializers.UUIDField(required=False, allow_null=True)


class LinkFilter(filters.FilterSet):
    role = filters.ChoiceFilter(choices=Role.choices)
    scene_id = filters.UUIDFilter()
    is_primary = filters.BooleanFilter()

    class Meta:
        model = StoryArtifactLink
        fields = ["role", "scene_id", "is_primary"]


@extend_schema(tags=["stories"])
class StoryViewSet(
    LimitedBodyMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    queryset = Story.objects.all()
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
        request=PrimarySerializer,
        responses=LinkSerializer,
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
        return Scene.objects.filter(story_id=self.kwargs["story_id"])

    def list(self, request, *args, **kwargs):
        ensure_exists(Story, self.kwargs["story_id"], what="story")
        return super().list(request, *args, **kwargs)

    def create(self, request, story_id):
        scene = services.scene_create(story_id=story_id, **validated(SceneSerializer, request.data))
        return created(request, self.get_serializer(scene).data, viewname="scene-detail", kwargs={"scene_id": scene.pk})


@extend_schema(tags=["stories"])
class SceneViewSet(LimitedBodyMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Scene.objects.all()
    serializer_class = SceneSerializer
    lookup_url_kwarg = "scene_id"
    lookup_value_converter = "uuid"
    required_permissions = None

    def partial_update(self, request, scene_id):
        changes = validated(SceneSerializer, request.data, partial=True)
        return Response(self.get_serializer(services.scene_update(scene_id=scene_id, **changes)).data)

    @extend_schema(summary="Lock planning: planning artifacts are frozen", request=None)
    @action(detail=True, methods=["post"], required_permissions=["stories.change_scene"])
    def lock(self, request, scene_id):
        return Response(self.get_serializer(services.scene_lock_planning(scene_id=scene_id, actor=request.user)).data)

    @extend_schema(summary="Unlock planning", request=None)
    @action(detail=True, methods=["post"], required_permissions=["stories.change_scene"])
    def unlock(self, request, scene_id):
        return Response(self.get_serializer(services.scene_unlock_planning(scene_id=scene_id, actor=request.user)).data)


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
        return StoryArtifactLink.objects.filter(story_id=self.kwargs["story_id"])

    def list(self, request, *args, **kwargs):
        ensure_exists(Story, self.kwargs["story_id"], what="story")
        return super().list(request, *args, **kwargs)

    def create(self, request, story_id):
        link = services.link_create(story_id=story_id, actor=request.user, **validated(LinkSerializer, request.data))
        return Response(self.get_serializer(link).data, status=201)
