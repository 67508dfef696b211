"""/v1 endpoints of artifacts: streams, versions, lineage, content, relations, types.

Views validate the shape of a request and hand it to ``ArtifactService``; every rule
(versions, planning lock, lifecycle, cycles) lives there. Artifacts are immutable, so
no route offers PUT, PATCH or DELETE (DRF answers 405).
"""

from datetime import datetime
from functools import cached_property

from django.conf import settings
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import ISO_8601, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings

from artifacts_project import input_limits
from artifacts_project.api import LimitedBodyMixin, created, validated
from artifacts_project.api_defaults import BoundedJSONParser, CursorPagination
from artifacts_project.errors import InvalidInput
from artifacts_project.lookups import ensure_exists
from stories.models import Scene, Story

from . import lineage as lineage_walk
from . import selectors
from .content import content_response
from .models import Artifact, ArtifactRelation, LifecycleState, RelationType
from .payloads import ARTIFACT_TYPES, KINDS, get_type
from .services import ArtifactService

JSON_OBJECT = {"type": "object", "additionalProperties": True}


# -- serializers -------------------------------------------------------------------


_TIME = serializers.DateTimeField()
KIND_VALUES = {str(kind): kind for kind in KINDS}
LIFECYCLE_VALUES = {str(state): state for state in LifecycleState.values}


def _text(value):
    return None if value is None else str(value)


def _choice(value, values):
    """A choice as DRF's ChoiceField writes it: the registered value, '' and None as they are."""
    return value if value in ("", None) else values.get(str(value), value)


class ArtifactSerializer(serializers.ModelSerializer):
    artifact_id = serializers.UUIDField(source="id", read_only=True)
    story_id = serializers.UUIDField(read_only=True)
    scene_id = serializers.UUIDField(read_only=True, allow_null=True)
    parent_id = serializers.UUIDField(read_only=True, allow_null=True)
    created_by_step_id = serializers.UUIDField(read_only=True, allow_null=True)
    created_by_id = serializers.IntegerField(read_only=True, allow_null=True)
    payload = serializers.SerializerMethodField()
    content_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = [
            "artifact_id",
            "story_id",
            "scene_id",
            "type",
            "version",
            "parent_id",
            "kind",
            "payload",
            "content_url",
            "content_sha256",
            "content_size",
            "mime_type",
            "lifecycle_state",
            "request_id",
            "created_by_step_id",
            "created_by_id",
            "created_at",
            "pruned_at",
        ]
        read_only_fields = fields

    def to_representation(self, artifact):
        """The fields above, in their order, written out, from a model instance or from a row of
        ``selectors.artifact_rows`` (lists): DRF's walk over eighteen fields cost a quarter of a
        millisecond per artifact, more than the query of a 50-artifact page (benchmarks/api.py).
        The fields stay declared, for the schema; the output is theirs, value for value."""
        row = artifact
        if not isinstance(row, dict):
            row = {name: getattr(artifact, name) for name in selectors.API_COLUMNS}
        time = self._time
        return {
            "artifact_id": str(row["id"]),
            "story_id": str(row["story_id"]),
            "scene_id": _text(row["scene_id"]),
            "type": str(row["type"]),
            "version": int(row["version"]),
            "parent_id": _text(row["parent_id"]),
            "kind": _choice(row["kind"], KIND_VALUES),
            "payload": None if row["pruned_at"] is not None else row["payload"],
            "content_url": self._content_url(row["id"]) if row["content_sha256"] else None,
            "content_sha256": str(row["content_sha256"]),
            "content_size": None if row["content_size"] is None else int(row["content_size"]),
            "mime_type": str(row["mime_type"]),
            "lifecycle_state": _choice(row["lifecycle_state"], LIFECYCLE_VALUES),
            "request_id": str(row["request_id"]),
            "created_by_step_id": _text(row["created_by_step_id"]),
            "created_by_id": None if row["created_by_id"] is None else int(row["created_by_id"]),
            "created_at": time(row["created_at"]),
            "pruned_at": None if row["pruned_at"] is None else time(row["pruned_at"]),
        }

    @cached_property
    def _time(self):
        """DRF's DateTimeField output, with the current time zone read once per answer instead
        of twice per artifact (a context-local lookup each time). An aware time in ISO 8601 is
        written out as DRF does (in that zone, "Z" for UTC); anything else goes through DRF."""
        zone = timezone.get_current_timezone() if settings.USE_TZ else None
        drf = serializers.DateTimeField(default_timezone=zone).to_representation
        output_format = api_settings.DATETIME_FORMAT
        if zone is None or not isinstance(output_format, str) or output_format.lower() != ISO_8601:
            return drf

        def iso(value):
            if not isinstance(value, datetime) or value.utcoffset() is None:
                return drf(value)
            try:
                text = value.astimezone(zone).isoformat()
            except OverflowError:
                return drf(value)  # DRF's "overflow" error
            return text[:-6] + "Z" if text.endswith("+00:00") else text

        return iso

    @extend_schema_field({**JSON_OBJECT, "nullable": True})
    def get_payload(self, artifact):
        return None if artifact.is_pruned else artifact.payload

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_content_url(self, artifact):
        return self._content_url(artifact.pk) if artifact.content_sha256 else None

    def _content_url(self, artifact_id):
        url = f"/v1/artifacts/{artifact_id}/content"
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url


class PayloadField(serializers.JSONField):
    """A JSON object, or in a multipart request a JSON string, read through the same bounded
    loader as a JSON body (DRF's own field re-encodes it, which deep nesting turns into a 500)."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            return input_limits.loads(data, field="payload")
        return data


class ArtifactCreateSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="A registered artifact type (see /v1/artifact-types).")
    payload = PayloadField(help_text="A JSON object; in a multipart request, a JSON string.")
    parent_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="An older version of the same stream to branch from."
    )
    kind = serializers.ChoiceField(choices=KINDS, required=False, help_text="Defaults to the type's first kind.")
    content = serializers.FileField(
        required=False, help_text="The bytes of an image, audio or video artifact (multipart only)."
    )


class BatchItemSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="A registered scene type of kind json.")
    payload = serializers.JSONField()
    parent_id = serializers.UUIDField(required=False, allow_null=True)


class BatchSerializer(serializers.Serializer):
    artifacts = BatchItemSerializer(many=True, help_text="Up to 1,000; versions are assigned in this order.")


class LineageQuerySerializer(serializers.Serializer):
    direction = serializers.ChoiceField(choices=lineage_walk.DIRECTIONS, default="ancestors")
    depth = serializers.IntegerField(min_value=1, max_value=lineage_walk.MAX_DEPTH, default=lineage_walk.DEFAULT_DEPTH)
    limit = serializers.IntegerField(
        min_value=1,
        max_value=lineage_walk.MAX_LIMIT,
        default=lineage_walk.DEFAULT_LIMIT,
        help_text="The most nodes returned; `truncated` says when it cut the walk.",
    )


class LineageNodeSerializer(serializers.Serializer):
    artifact_id = serializers.UUIDField()
    type = serializers.CharField()
    version = serializers.IntegerField()
    kind = serializers.CharField()
    lifecycle_state = serializers.CharField()
    story_id = serializers.UUIDField()
    scene_id = serializers.UUIDField(allow_null=True)
    parent_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    pruned_at = serializers.DateTimeField(allow_null=True)
    depth = serializers.IntegerField(help_text="Hops from the artifact asked about.")


class LineageEdgeSerializer(serializers.Serializer):
    from_artifact_id = serializers.UUIDField()
    to_artifact_id = serializers.UUIDField()
    relation_type = serializers.CharField(help_text="'parent' (from is the next version of to) or a relation type.")


class LineageSerializer(serializers.Serializer):
    """The shape of a lineage answer, for the schema. The view builds it directly: at ten
    thousand nodes a serializer per node would cost many times the walk itself."""

    artifact_id = serializers.UUIDField()
    direction = serializers.CharField()
    depth = serializers.IntegerField()
    limit = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text="The limit cut the walk: more nodes lie within the depth.")
    nodes = LineageNodeSerializer(many=True)
    edges = LineageEdgeSerializer(many=True)


def lineage_body(lineage: lineage_walk.Lineage) -> dict:
    time = _TIME.to_representation
    return {
        "artifact_id": str(lineage.root.id),
        "direction": lineage.direction,
        "depth": lineage.depth,
        "limit": lineage.limit,
        "truncated": lineage.truncated,
        "nodes": [
            {
                "artifact_id": str(node.id),
                "type": node.type,
                "version": node.version,
                "kind": node.kind,
                "lifecycle_state": node.lifecycle_state,
                "story_id": str(node.story_id),
                "scene_id": _text(node.scene_id),
                "parent_id": _text(node.parent_id),
                "created_at": time(node.created_at),
                "pruned_at": None if node.pruned_at is None else time(node.pruned_at),
                "depth": node.depth,
            }
            for node in lineage.nodes
        ],
        "edges": [
            {"from_artifact_id": str(e.from_id), "to_artifact_id": str(e.to_id), "relation_type": e.kind}
            for e in lineage.edges
        ],
    }


class TransitionSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=LifecycleState.choices)


class RelationSerializer(serializers.ModelSerializer):
    relation_id = serializers.UUIDField(source="id", read_only=True)
    from_artifact_id = serializers.UUIDField(read_only=True)
    to_artifact_id = serializers.UUIDField(help_text="A derived_from B: A was made from B.")
    relation_type = serializers.ChoiceField(choices=RelationType.choices)
    created_by_step_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = ArtifactRelation
        fields = [
            "relation_id",
            "from_artifact_id",
            "to_artifact_id",
            "relation_type",
            "created_by_step_id",
            "request_id",
            "created_at",
        ]
        read_only_fields = ["request_id", "created_at"]


class ArtifactTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    kinds = serializers.ListField(child=serializers.CharField())
    scopes = serializers.ListField(child=serializers.CharField())
    planning = serializers.BooleanField()
    schema = serializers.JSONField()
    example = serializers.JSONField()


# -- filters ------------------------------------------------------------------------


class ArtifactFilter(filters.FilterSet):
    type = filters.CharFilter(method="filter_type")
    lifecycle_state = filters.ChoiceFilter(choices=LifecycleState.choices)
    kind = filters.ChoiceFilter(choices=[(k, k) for k in KINDS])
    request_id = filters.CharFilter()
    created_at = filters.IsoDateTimeFromToRangeFilter()

    class Meta:
        model = Artifact
        fields = ["type", "lifecycle_state", "kind", "request_id", "created_at"]

    # The same ``unknown_type`` answer as a POST, rather than a silently empty page.
    @extend_schema_field({"type": "string", "enum": list(ARTIFACT_TYPES)})
    def filter_type(self, queryset, name, value):
        get_type(value)
        return queryset.filter(type=value)


# -- views ----------------------------------------------------------------------------


class ArtifactStreamViewSet(LimitedBodyMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The artifacts of one scene or one story; POST creates the next version of a stream."""

    serializer_class = ArtifactSerializer
    filterset_class = ArtifactFilter
    parser_classes = [BoundedJSONParser, MultiPartParser]
    pagination_class = CursorPagination
    owner_model: type = Scene
    owner_kwarg = "scene_id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Artifact.objects.none()
        return self.stream_queryset(self.kwargs[self.owner_kwarg])

    def stream_queryset(self, owner_id):
        raise NotImplementedError

    def filter_queryset(self, queryset):
        # django-filter builds a form for every request, deep copies of its fields included;
        # a query string with nothing but the page's parameters filters nothing.
        paginator = self.paginator
        if set(self.request.query_params) <= {paginator.cursor_query_param, paginator.page_size_query_param}:
            return queryset
        return super().filter_queryset(queryset)

    def ensure_owner(self):
        ensure_exists(self.owner_model, self.kwargs[self.owner_kwarg], what=self.owner_model._meta.model_name)

    def list(self, request, *args, **kwargs):
        # Every row of a page names its owner (a foreign key). So a plain first page, where
        # nothing of the client's reaches the query but the owner's id, looks the owner up only
        # when it comes back empty, to tell an empty list from an unknown owner (404): one
        # query fewer. With a filter or a cursor the owner is checked first, as before, so an
        # unknown owner is a 404 before any complaint about the query string.
        plain = set(request.query_params) <= {self.paginator.page_size_query_param}
        if not plain:
            self.ensure_owner()
        page = self.paginate_queryset(selectors.artifact_rows(self.filter_queryset(self.get_queryset())))
        if plain and not page:
            self.ensure_owner()
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def create(self, request, *args, **kwargs):
        data = validated(ArtifactCreateSerializer, request.data)
        artifact = self.create_in_stream(
            ArtifactService(user=request.user),
            self.kwargs[self.owner_kwarg],
            data["type"],
            data["payload"],
            parent_id=data.get("parent_id"),
            kind=data.get("kind"),
            content=data.get("content"),
        )
        body = ArtifactSerializer(artifact, context=self.get_serializer_context()).data
        return created(request, body, viewname="artifact-detail", kwargs={"artifact_id": artifact.pk})


@extend_schema(tags=["artifacts"])
class SceneArtifactViewSet(ArtifactStreamViewSet):
    owner_model = Scene
    owner_kwarg = "scene_id"

    def stream_queryset(self, scene_id):
        return selectors.scene_artifacts(scene_id)

    def create_in_stream(self, service, scene_id, *args, **options):
        return service.create_artifact(scene_id, *args, **options)

    @extend_schema(
        summary="The latest version of each type in the scene",
        parameters=[OpenApiParameter("type", enum=list(ARTIFACT_TYPES), description="Only this type.")],
        responses=ArtifactSerializer(many=True),
    )
    @action(detail=False, methods=["get"], url_path="latest", pagination_class=None, filter_backends=[])
    def latest(self, request, scene_id):
        self.ensure_owner()
        latest = selectors.scene_latest_per_type(scene_id, type=request.query_params.get("type"))
        return Response(ArtifactSerializer(latest, many=True, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Create many versions at once: all or nothing, versions in list order",
        request=BatchSerializer,
        responses={201: ArtifactSerializer(many=True)},
    )
    @action(detail=False, methods=["post"], url_path="batch", pagination_class=None, filter_backends=[])
    def batch(self, request, scene_id):
        # Shape only: the service checks every item (types, payloads, parents) and names it.
        body = request.data if isinstance(request.data, dict) else {}
        if not isinstance(body.get("artifacts"), list):
            raise InvalidInput("artifacts must be a list of {type, payload, parent_id?}", field="artifacts")
        created = ArtifactService(user=request.user).create_artifacts(scene_id, body["artifacts"])
        return Response(ArtifactSerializer(created, many=True, context=self.get_serializer_context()).data, status=201)


@extend_schema(tags=["artifacts"])
class StoryArtifactViewSet(ArtifactStreamViewSet):
    """The story-level artifacts of a story (those without a scene)."""

    owner_model = Story
    owner_kwarg = "story_id"

    def stream_queryset(self, story_id):
        return selectors.story_level_artifacts(story_id)

    def create_in_stream(self, service, story_id, *args, **options):
        return service.create_story_artifact(story_id, *args, **options)


class PassThroughNegotiation(BaseContentNegotiation):
    """The content endpoint answers its bytes whatever the client accepts."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@extend_schema(tags=["artifacts"])
class ArtifactViewSet(LimitedBodyMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Artifact.objects.all()
    serializer_class = ArtifactSerializer
    lookup_url_kwarg = "artifact_id"
    lookup_value_converter = "uuid"
    pagination_class = CursorPagination
    # Set per action through @action(...): the ordering of a paginated action and the
    # permission a POST action needs.
    cursor_ordering = None
    required_permissions = None

    def service(self) -> ArtifactService:
        return ArtifactService(user=self.request.user)

    def retrieve(self, request, artifact_id):
        artifact = selectors.artifact_get(artifact_id)
        return Response(self.get_serializer(artifact).data)

    @extend_schema(
        summary="Every version of the artifact's stream, oldest first", responses=ArtifactSerializer(many=True)
    )
    @action(detail=True, methods=["get"], cursor_ordering=("version",))
    def versions(self, request, artifact_id):
        page = self.paginate_queryset(selectors.stream_versions(selectors.artifact_get(artifact_id)))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="Ancestors or descendants across parents and relations",
        parameters=[LineageQuerySerializer],
        responses=LineageSerializer,
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def lineage(self, request, artifact_id):
        query = validated(LineageQuerySerializer, request.query_params)
        return Response(lineage_body(lineage_walk.walk(artifact_id, **query)))

    @extend_schema(
        summary="The artifact's bytes",
        responses={
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The content, with ETag of its sha256."),
            (206, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="One byte range (Range: bytes=...)."),
            304: OpenApiResponse(description="Not modified (If-None-Match)."),
            410: OpenApiResponse(description="Pruned: the content is gone."),
            416: OpenApiResponse(description="The range lies beyond the content."),
        },
    )
    @action(detail=True, methods=["get"], pagination_class=None, content_negotiation_class=PassThroughNegotiation)
    def content(self, request, artifact_id):
        return content_response(request, selectors.artifact_get(artifact_id))

    @extend_schema(summary="Move the artifact along its lifecycle", request=TransitionSerializer)
    @action(detail=True, methods=["post"], required_permissions=["artifacts.change_artifact"])
    def transition(self, request, artifact_id):
        artifact = self.service().transition(artifact_id, validated(TransitionSerializer, request.data)["to"])
        return Response(self.get_serializer(artifact).data)

    @extend_schema(
        methods=["get"],
        summary="Relations from or to the artifact",
        responses=RelationSerializer(many=True),
    )
    @extend_schema(
        methods=["post"],
        summary="Relate the artifact to another: {this} <relation_type> {to_artifact_id}",
        request=RelationSerializer,
        responses={201: RelationSerializer},
    )
    @action(
        detail=True,
        methods=["get", "post"],
        serializer_class=RelationSerializer,
        cursor_ordering=("created_at", "id"),
        required_permissions=["artifacts.add_artifactrelation"],
    )
    def relations(self, request, artifact_id):
        artifact = selectors.artifact_get(artifact_id)
        if request.method == "POST":
            incoming = validated(RelationSerializer, request.data)
            relation = self.service().relate(artifact.pk, incoming["to_artifact_id"], incoming["relation_type"])
            return Response(RelationSerializer(relation).data, status=201)
        relations = selectors.artifact_relations(artifact.pk)
        page = self.paginate_queryset(relations)
        return self.get_paginated_response(RelationSerializer(page, many=True).data)


@extend_schema(tags=["artifacts"], responses=ArtifactTypeSerializer(many=True))
class ArtifactTypeViewSet(viewsets.ViewSet):
    """The registered artifact types with their payload schemas."""

    permission_classes = [IsAuthenticated]

    def list(self, request):
        types = [
            {
                "name": t.name,
                "description": t.description,
                "kinds": list(t.kinds),
                "scopes": list(t.scopes),
                "planning": t.planning,
                "schema": t.schema,
                "example": t.example,
            }
            for t in ARTIFACT_TYPES.values()
        ]
        return Response(ArtifactTypeSerializer(types, many=True).data)
