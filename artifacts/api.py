"""/v1 endpoints of artifacts: streams, versions, lineage, content, relations, types.

Views validate the shape of a request and hand it to the actions of ``services.py``; every rule
(versions, planning lock, lifecycle, cycles) lives there. Artifacts are immutable, so
no route offers PUT, PATCH or DELETE (DRF answers 405).
"""

from datetime import datetime
from functools import cached_property

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiRequest,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import ISO_8601, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings

from kernel import input_limits
from kernel.api import (
    LimitedBodyMixin,
    QueryIntegerField,
    StrictCharField,
    StrictChoiceField,
    StrictFilterSet,
    StrictModelSerializer,
    StrictUUIDField,
    TimeRangeFilter,
    created,
    validated,
)
from kernel.api_defaults import BoundedJSONParser, CursorPagination, RawJSON
from kernel.api_schema import error_codes
from kernel.errors import UnknownType
from kernel.lookups import ensure_exists
from stories.models import Scene, Story

from . import compare, selectors, services, thumbnails
from . import lineage as lineage_walk
from .content import content_response
from .models import Artifact, ArtifactRelation, LifecycleState, RelationType
from .payloads import ARTIFACT_TYPES, KINDS, MEDIA_KINDS, SCOPE_SCENE, SCOPE_STORY, get_type
from .provenance import provenance_document

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
        # The columns of selectors.API_COLUMNS (the one list), the key named ``artifact_id``
        # (SPEC §3), and the content's URL beside its payload.
        fields = [
            name
            for column in selectors.API_COLUMNS
            for name in {"id": ("artifact_id",), "payload": ("payload", "content_url")}.get(column, (column,))
        ]
        read_only_fields = fields

    def to_representation(self, artifact):
        """The fields above, in their order, written out, from a model instance or from a row of
        ``selectors.artifact_rows`` (lists): DRF's walk over eighteen fields cost a quarter of a
        millisecond per artifact, more than the query of a 50-artifact page (benchmarks/api.py).
        The fields stay declared, for the schema; the output is theirs, value for value
        (tests/api/test_artifact_representation.py holds it to DRF's own walk).
        A list asked for some ``fields`` only (``?fields=``) gets those, from rows of their columns."""
        row = artifact
        if not isinstance(row, dict):
            row = {name: getattr(artifact, name) for name in selectors.API_COLUMNS}
        chosen = self.context.get("fields")
        if chosen is not None:
            return {name: self._field_value(name, row) for name in self.Meta.fields if name in chosen}
        time = self._time
        return {
            "artifact_id": str(row["id"]),
            "story_id": str(row["story_id"]),
            "scene_id": _text(row["scene_id"]),
            "type": str(row["type"]),
            "version": int(row["version"]),
            "parent_id": _text(row["parent_id"]),
            "kind": _choice(row["kind"], KIND_VALUES),
            "payload": None if row["pruned_at"] is not None else _payload(row),
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

    def _field_value(self, name: str, row: dict):
        if name == "artifact_id":
            return str(row["id"])
        if name == "payload":
            return None if row["pruned_at"] is not None else row["payload"]
        if name == "content_url":
            return self._content_url(row["id"]) if row["content_sha256"] else None
        value = row[name]
        if value is None:
            return None
        if name in ("created_at", "pruned_at"):
            return self._time(value)
        if name in ("version", "content_size", "created_by_id"):
            return int(value)
        if name == "kind":
            return _choice(value, KIND_VALUES)
        if name == "lifecycle_state":
            return _choice(value, LIFECYCLE_VALUES)
        return str(value)

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


def _payload(row: dict):
    """A row's payload: as the database wrote it, when the row was read as text (lists)."""
    text = row.get("payload_text")
    if text is None:
        return row["payload"]
    return RawJSON(text)


# The columns each field of ArtifactSerializer is written from, for ``?fields=``.
FIELD_COLUMNS = {
    "artifact_id": ("id",),
    "payload": ("payload", "pruned_at"),
    "content_url": ("id", "content_sha256"),
}
ARTIFACT_FIELDS = tuple(ArtifactSerializer.Meta.fields)


def field_columns(fields) -> tuple[str, ...]:
    # The id, and the columns a cursor's position is read from (creation time, version).
    columns = {"id", "created_at", "version"}
    for name in fields:
        columns.update(FIELD_COLUMNS.get(name, (name,)))
    return tuple(column for column in selectors.API_COLUMNS if column in columns)


class FieldsQuerySerializer(serializers.Serializer):
    """``?fields=a,b``: only these fields of each artifact (``artifact_id`` always). A list of
    500 artifacts of 5 MB payloads would be gigabytes: leaving ``payload`` out keeps a page small,
    and the payloads are not even read."""

    fields = serializers.ListField(child=StrictCharField(), required=False)

    def validate_fields(self, value):
        # fields=a&fields=b (OpenAPI's form, what generated clients send) or fields=a,b.
        names = [name.strip() for item in value for name in item.split(",")]
        unknown = [name for name in names if name not in ARTIFACT_FIELDS]
        if unknown:
            raise serializers.ValidationError(
                f"unknown field {unknown[0]!r}; the fields are {', '.join(ARTIFACT_FIELDS)}", code="invalid"
            )
        return {"artifact_id", *names}


FIELDS_PARAMETER = OpenApiParameter(
    "fields",
    type={"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(ARTIFACT_FIELDS)}},
    style="form",
    explode=True,
    description=(
        "Only these fields of each artifact (`artifact_id` is always there): `fields=type&fields=version`, "
        "or comma-separated, `fields=type,version`. Leave `payload` out to keep a page "
        "small: a page of 500 artifacts with 5 MB payloads is gigabytes."
    ),
)


class ArtifactInListSerializer(ArtifactSerializer):
    """An artifact in a list: every field, or only those `fields` names (`artifact_id` is always there)."""

    class Meta(ArtifactSerializer.Meta):
        always_present = ("artifact_id",)


class PayloadField(serializers.JSONField):
    """A JSON object, or in a multipart request a JSON string, read through the same bounded
    loader as a JSON body (DRF's own field re-encodes it, which deep nesting turns into a 500)."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            return input_limits.loads(data, field="payload")
        return data


def _oas30(schema):
    """A payload's JSON Schema (2020-12) in OpenAPI 3.0's dialect: a numeric
    ``exclusiveMinimum``/``exclusiveMaximum`` is a boolean beside ``minimum``/``maximum`` there,
    and an array says its items."""
    if isinstance(schema, list):
        return [_oas30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _oas30(value) for key, value in schema.items()}
    if out.get("type") == "array":
        out.setdefault("items", {})  # any JSON value; a client generator wants items said
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[limit] = out.pop(bound)
            out[bound] = True
    return out


class JSONObjectField(serializers.JSONField):
    """A JSON object as it is; anything else is left to the service to refuse by name."""


def _with_schema(field_class, schema: dict, **kwargs):
    """A field whose schema is ``schema``: set on a class of its own, since DRF copies a
    serializer's fields by re-instantiating them, which would drop an instance's."""
    return extend_schema_field(schema)(type(field_class.__name__, (field_class,), {}))(**kwargs)


def _const(value: str):
    return _with_schema(StrictCharField, {"type": "string", "x-enum": [value]}, help_text=f"`{value}`.")


def _payload_field(artifact_type):
    schema = {**_oas30(artifact_type.schema), "description": artifact_type.description}
    schema["example"] = artifact_type.example  # a valid payload (checked by the registry)
    return _with_schema(JSONObjectField, schema, help_text=f"The {artifact_type.name} payload.")


def _json_kinds(artifact_type) -> list[str]:
    return [kind for kind in artifact_type.kinds if kind not in MEDIA_KINDS]


def _media_kinds(artifact_type) -> list[str]:
    return [kind for kind in artifact_type.kinds if kind in MEDIA_KINDS]


def _json_create_serializer(artifact_type):
    """The JSON body that creates one version of ``artifact_type``, for the schema."""
    fields = {
        "type": _const(artifact_type.name),
        "payload": _payload_field(artifact_type),
        "parent_id": StrictUUIDField(
            required=False, allow_null=True, help_text="An older version of the same stream to branch from."
        ),
    }
    kinds = _json_kinds(artifact_type)
    if len(kinds) > 1 or kinds != [artifact_type.default_kind]:
        fields["kind"] = StrictChoiceField(choices=kinds, required=False, help_text=f"Defaults to {kinds[0]}.")
    name = "".join(part.capitalize() for part in artifact_type.name.split("_")) + "Create"
    return type(name, (serializers.Serializer,), fields)


class ArtifactCreateSerializer(serializers.Serializer):
    """What a JSON create reads; the service checks the type, the payload and the parent."""

    type = StrictCharField()
    payload = JSONObjectField()
    parent_id = StrictUUIDField(required=False, allow_null=True)
    kind = StrictChoiceField(choices=KINDS, required=False)


class ArtifactUploadSerializer(serializers.Serializer):
    """What a multipart create reads: the bytes in ``content``, the payload as JSON text."""

    type = StrictCharField(help_text="A type with a media kind (image, audio or video).")
    payload = PayloadField(help_text="The type's payload, a JSON object (for media types: `alt`, a description).")
    parent_id = StrictUUIDField(
        required=False, allow_null=True, help_text="An older version of the same stream to branch from."
    )
    kind = StrictChoiceField(choices=MEDIA_KINDS, required=False, help_text="Defaults to the type's media kind.")
    # Empty bytes are no image either: the service refuses them as it refuses any (invalid_content).
    content = serializers.FileField(
        allow_empty_file=True, help_text="The bytes; their media type is sniffed and must match the kind."
    )


def _upload_serializer(scope: str):
    """The multipart form of a scope, for the schema: ``type`` an enum of its media types."""
    names = [name for name, t in ARTIFACT_TYPES.items() if scope in t.scopes and _media_kinds(t)]
    kinds = sorted({kind for name in names for kind in _media_kinds(ARTIFACT_TYPES[name])}, key=KINDS.index)
    fields = {
        "type": _with_schema(
            StrictChoiceField,
            {"type": "string", "x-enum": names},
            choices=names,
            help_text="A type with a media kind (image, audio or video).",
        ),
        "payload": _with_schema(
            PayloadField,
            {"type": "object", "additionalProperties": True},
            help_text="The type's payload, a JSON object sent as a JSON part (for media types: `alt`, a description).",
        ),
        "parent_id": StrictUUIDField(
            required=False, allow_null=True, help_text="An older version of the same stream to branch from."
        ),
        "kind": _with_schema(
            StrictChoiceField,
            {"type": "string", "x-enum": kinds},
            choices=kinds,
            required=False,
            help_text="Defaults to the type's media kind.",
        ),
        "content": serializers.FileField(
            allow_empty_file=True, help_text="The bytes; their media type is sniffed and must match the kind."
        ),
    }
    return type(f"{scope.capitalize()}ArtifactUpload", (serializers.Serializer,), fields)


JSON_CREATE_SERIALIZERS = {name: _json_create_serializer(t) for name, t in ARTIFACT_TYPES.items() if _json_kinds(t)}


def create_bodies(scope: str) -> dict:
    """The request bodies of a create in ``scope``, per media type: JSON for the types with a
    JSON kind (one schema per type, its payload's own), multipart for those with a media kind."""
    bodies = {}
    json_types = [t for t in ARTIFACT_TYPES.values() if scope in t.scopes and _json_kinds(t)]
    if json_types:
        bodies["application/json"] = PolymorphicProxySerializer(
            component_name=f"{scope.capitalize()}ArtifactCreate",
            serializers={t.name: JSON_CREATE_SERIALIZERS[t.name] for t in json_types},
            resource_type_field_name="type",
        )
    if any(scope in t.scopes and _media_kinds(t) for t in ARTIFACT_TYPES.values()):
        bodies["multipart/form-data"] = OpenApiRequest(
            _upload_serializer(scope), encoding={"payload": {"contentType": "application/json"}}
        )
    return bodies


def create_parsers(scope: str) -> list:
    """Exactly the media types ``create_bodies`` documents: any other is 415."""
    bodies = create_bodies(scope)
    return [
        parser
        for media_type, parser in (("application/json", BoundedJSONParser), ("multipart/form-data", MultiPartParser))
        if media_type in bodies
    ]


def _batch_item_body():
    json_types = [t for t in ARTIFACT_TYPES.values() if SCOPE_SCENE in t.scopes and t.default_kind not in MEDIA_KINDS]
    return PolymorphicProxySerializer(
        component_name="BatchItem",
        serializers={t.name: JSON_CREATE_SERIALIZERS[t.name] for t in json_types},
        resource_type_field_name="type",
    )


class BatchBodySerializer(serializers.Serializer):
    """Up to 1,000 artifacts of the scene, each as its type's JSON create."""

    artifacts = serializers.ListField(
        child=_batch_item_body(),
        min_length=1,
        max_length=1000,
        help_text="1 to 1,000 items; versions are assigned in this order (items of one type make consecutive ones).",
    )


class LineageQuerySerializer(serializers.Serializer):
    direction = StrictChoiceField(choices=lineage_walk.DIRECTIONS, default="ancestors")
    depth = QueryIntegerField(
        min_value=1,
        max_value=lineage_walk.MAX_DEPTH,
        default=lineage_walk.DEFAULT_DEPTH,
        help_text="Hops, 1 to 10,000.",
    )
    limit = QueryIntegerField(
        min_value=1,
        max_value=lineage_walk.MAX_LIMIT,
        default=lineage_walk.DEFAULT_LIMIT,
        help_text="The most nodes returned (the artifact asked about counts); `truncated` says when it cut the walk.",
    )


class ThumbnailQuerySerializer(serializers.Serializer):
    size = QueryIntegerField(
        min_value=thumbnails.MIN_SIZE,
        max_value=thumbnails.MAX_SIZE,
        default=thumbnails.DEFAULT_SIZE,
        help_text="The longest side, in pixels: 16 to 1,024.",
    )


class LatestQuerySerializer(FieldsQuerySerializer):
    type = StrictCharField(required=False)

    def validate_type(self, value):
        try:
            return get_type(value).name
        except UnknownType as exc:
            raise UnknownType(exc.message, field="type") from None


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
    depth = serializers.IntegerField(help_text="Hops from the artifact asked about (0: that artifact itself).")


class LineageEdgeSerializer(serializers.Serializer):
    from_artifact_id = serializers.UUIDField()
    to_artifact_id = serializers.UUIDField()
    relation_type = serializers.CharField(help_text="'parent' (from is the next version of to) or a relation type.")


# The shape of a lineage answer, for the schema. The view builds it directly: at ten
# thousand nodes a serializer per node would cost many times the walk itself.
class LineageSerializer(serializers.Serializer):
    """A lineage walk: the nodes reached (the artifact asked about first) and the edges between them."""

    artifact_id = serializers.UUIDField()
    direction = serializers.CharField()
    depth = serializers.IntegerField()
    limit = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text="The limit cut the walk: more nodes lie within the depth.")
    nodes = LineageNodeSerializer(
        many=True, help_text="The artifact asked about first (depth 0), then each one reached, nearest first."
    )
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


_PROV_RECORD = {"type": "object", "additionalProperties": True}
# PROV-JSON's top level: the prefixes, then one object per kind of record, keyed by identifier
# (the format writes the records that share an identifier as a list).
_PROV_RECORDS = {
    "type": "object",
    "additionalProperties": {"anyOf": [_PROV_RECORD, {"type": "array", "items": _PROV_RECORD}]},
}
PROV_JSON = {
    "type": "object",
    "properties": {
        "prefix": {"type": "object", "additionalProperties": {"type": "string"}},
        **{
            name: _PROV_RECORDS
            for name in (
                "entity",
                "activity",
                "agent",
                "wasGeneratedBy",
                "used",
                "wasDerivedFrom",
                "wasAssociatedWith",
                "wasAttributedTo",
            )
        },
    },
    "additionalProperties": True,
}


class TransitionSerializer(serializers.Serializer):
    to = StrictChoiceField(choices=LifecycleState.choices, help_text="The lifecycle state to move to.")
    note = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=services.NOTE_MAX_LENGTH,
        help_text="Why, in the editor's words; kept on the audit event of the transition.",
    )


class DiffQuerySerializer(serializers.Serializer):
    to = StrictUUIDField(
        help_text="The artifact to compare with: another version of the stream, or any artifact of the same type."
    )


_PATCH_OPERATION = {
    "type": "object",
    "required": ["op", "path"],
    "properties": {
        "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
        "path": {"type": "string", "description": "A JSON Pointer (RFC 6901) into the payload."},
        "from": {"type": "string", "description": "For move and copy: where the value comes from."},
        "value": {"description": "For add, replace and test: any JSON value."},
    },
}


class DiffSerializer(serializers.Serializer):
    """How the payload of one artifact becomes another's."""

    from_artifact_id = serializers.UUIDField()
    to_artifact_id = serializers.UUIDField()
    patch = _with_schema(
        serializers.JSONField,
        {"type": "array", "items": _PATCH_OPERATION},
        help_text="An RFC 6902 JSON Patch: applied to the payload of `from`, it gives the payload of `to` exactly.",
    )
    content_changed = serializers.BooleanField(help_text="The two artifacts' stored bytes differ (media kinds).")


class RelationSerializer(StrictModelSerializer):
    relation_id = serializers.UUIDField(source="id", read_only=True)
    from_artifact_id = serializers.UUIDField(read_only=True)
    to_artifact_id = StrictUUIDField(help_text="A derived_from B: A was made from B.")
    relation_type = StrictChoiceField(choices=RelationType.choices)
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


class ArtifactFilter(StrictFilterSet):
    type = filters.CharFilter(method="filter_type")
    lifecycle_state = filters.ChoiceFilter(choices=LifecycleState.choices)
    kind = filters.ChoiceFilter(choices=[(k, k) for k in KINDS])
    request_id = filters.CharFilter()
    created_at = TimeRangeFilter()

    class Meta:
        model = Artifact
        fields = ["type", "lifecycle_state", "kind", "request_id", "created_at"]

    # The same ``unknown_type`` answer as a POST, rather than a silently empty page.
    @extend_schema_field({"type": "string", "enum": list(ARTIFACT_TYPES)})
    def filter_type(self, queryset, name, value):
        try:
            get_type(value)
        except UnknownType as exc:
            raise UnknownType(exc.message, field="type") from None
        return queryset.filter(type=value)


# -- views ----------------------------------------------------------------------------

_CREATE_CODES = error_codes(
    "unknown_type",
    "invalid_payload",
    "invalid_scope",
    "invalid_kind",
    "invalid_content",
    "invalid_parent",
    "version_conflict",
    "storage_full",
)
_LIST_PAGE = {200: ArtifactInListSerializer(many=True)}


class ArtifactStreamViewSet(LimitedBodyMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The artifacts of one scene or one story; POST creates the next version of a stream."""

    serializer_class = ArtifactSerializer
    filterset_class = ArtifactFilter
    pagination_class = CursorPagination
    query_serializers = {"list": FieldsQuerySerializer, "latest": LatestQuerySerializer}
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
        if set(self.request.query_params) <= {paginator.cursor_query_param, paginator.page_size_query_param, "fields"}:
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
        fields = self.validated_query().get("fields")
        plain = set(request.query_params) <= {self.paginator.page_size_query_param, "fields"}
        if not plain:
            self.ensure_owner()
        rows = self.filter_queryset(self.get_queryset())
        rows = selectors.artifact_rows(rows) if fields is None else rows.values(*field_columns(fields))
        page = self.paginate_queryset(rows)
        if plain and not page:
            self.ensure_owner()
        context = {**self.get_serializer_context(), "fields": fields}
        return self.get_paginated_response(ArtifactSerializer(page, many=True, context=context).data)

    def create(self, request, *args, **kwargs):
        multipart = (request.content_type or "").startswith("multipart/")
        data = validated(ArtifactUploadSerializer if multipart else ArtifactCreateSerializer, request.data)
        artifact = services.artifact_create(
            **{self.owner_kwarg: self.kwargs[self.owner_kwarg]},
            type=data["type"],
            payload=data["payload"],
            parent_id=data.get("parent_id"),
            kind=data.get("kind"),
            content=data.get("content"),
            actor=request.user,
        )
        body = ArtifactSerializer(artifact, context=self.get_serializer_context()).data
        return created(request, body, viewname="artifact-detail", kwargs={"artifact_id": artifact.pk})


@extend_schema_view(
    list=extend_schema(
        summary="List a scene's artifacts, newest first",
        description=(
            "Every version of every type in the scene, newest first, a page at a time (`next` follows). "
            "Filter by `type`, `lifecycle_state`, `kind`, `request_id` or creation time; `fields` leaves "
            "out what a page does not need (the payloads, say)."
        ),
        parameters=[FIELDS_PARAMETER],
        responses=_LIST_PAGE,
    ),
    create=extend_schema(
        summary="Create the next version of a scene's stream",
        description=(
            "Makes version N+1 of the (scene, type) stream, its parent the stream's latest unless `parent_id` "
            "names an older version to branch from; the new artifact is `intermediate`. A JSON body for the "
            "JSON types (the payload is checked against the type's schema, shown per type); a multipart form "
            "for images, audio and video, with the bytes in `content` and the payload as a JSON part. "
            "A planning type (scene_intent, panel_plan, ...) on a scene whose planning is locked is 409 "
            "`planning_locked`, unless the user has `artifacts.override_planning_lock`. 201 with `Location`."
        ),
        request=create_bodies(SCOPE_SCENE),
        responses={201: OpenApiResponse(ArtifactSerializer, description="Created; `Location` is its address.")},
        extensions=error_codes(*_CREATE_CODES["x-error-codes"], "planning_locked"),
    ),
)
@extend_schema(tags=["artifacts"])
class SceneArtifactViewSet(ArtifactStreamViewSet):
    owner_model = Scene
    owner_kwarg = "scene_id"
    # Exactly the bodies the schema documents for the create: any other media type is 415.
    parser_classes = create_parsers(SCOPE_SCENE)

    def stream_queryset(self, scene_id):
        return selectors.scene_artifacts(scene_id)

    @extend_schema(
        summary="The latest version of each type in the scene",
        description="One artifact per type that the scene has, the newest version of each, by type name.",
        parameters=[
            OpenApiParameter(
                "type",
                enum=[name for name, t in ARTIFACT_TYPES.items() if SCOPE_SCENE in t.scopes],
                description="Only this type (an unregistered one is 400 `unknown_type`).",
            ),
            FIELDS_PARAMETER,
        ],
        responses={200: ArtifactInListSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], url_path="latest", pagination_class=None, filter_backends=[])
    def latest(self, request, scene_id):
        query = self.validated_query()
        self.ensure_owner()
        fields = query.get("fields")
        latest = selectors.scene_latest_per_type(scene_id, type=query.get("type"))
        rows = selectors.artifact_rows(latest) if fields is None else latest.values(*field_columns(fields))
        context = {**self.get_serializer_context(), "fields": fields}
        return Response(ArtifactSerializer(rows, many=True, context=context).data)

    @extend_schema(
        summary="Create many versions at once: all or nothing, versions in list order",
        description=(
            "Up to 1,000 JSON artifacts of the scene in one transaction: all are made or none. Versions are "
            "assigned in list order, so several items of one type make consecutive versions, each the parent "
            "of the next. An item's `parent_id` may name an older version of its stream. A bad item refuses "
            "the batch, its index in `field` (`artifacts[3].payload.mood`). 201 with the artifacts in order."
        ),
        request={"application/json": BatchBodySerializer},
        responses={201: ArtifactSerializer(many=True)},
        extensions=error_codes(
            "unknown_type", "invalid_payload", "invalid_scope", "invalid_parent", "planning_locked", "version_conflict"
        ),
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="batch",
        pagination_class=None,
        filter_backends=[],
        parser_classes=[BoundedJSONParser],
    )
    def batch(self, request, scene_id):
        # Shape only: the service checks every item (types, payloads, parents) and names it.
        body = request.data if isinstance(request.data, dict) else {}
        if not isinstance(body.get("artifacts"), list):
            raise serializers.ValidationError(
                {"artifacts": ["artifacts must be a list of {type, payload, parent_id?}"]}
            )
        created = services.artifacts_create_batch(scene_id=scene_id, items=body["artifacts"], actor=request.user)
        return Response(ArtifactSerializer(created, many=True, context=self.get_serializer_context()).data, status=201)


@extend_schema_view(
    list=extend_schema(
        summary="List a story's own artifacts, newest first",
        description=(
            "The story-level artifacts (those of no scene: covers, audio, video), newest first, a page at a "
            "time. Filters and `fields` as for a scene's list."
        ),
        parameters=[FIELDS_PARAMETER],
        responses=_LIST_PAGE,
    ),
    create=extend_schema(
        summary="Create the next version of a story-level stream",
        description=(
            "Makes version N+1 of the (story, type) stream: a cover, an audio track or a video, posted as a "
            "multipart form with the bytes in `content` (their media type is sniffed and must match the "
            "kind) and the payload (`alt`, a description) as a JSON part. 201 with `Location`."
        ),
        request=create_bodies(SCOPE_STORY),
        responses={201: OpenApiResponse(ArtifactSerializer, description="Created; `Location` is its address.")},
        extensions=_CREATE_CODES,
    ),
)
@extend_schema(tags=["artifacts"])
class StoryArtifactViewSet(ArtifactStreamViewSet):
    owner_model = Story
    owner_kwarg = "story_id"
    parser_classes = create_parsers(SCOPE_STORY)

    def stream_queryset(self, story_id):
        return selectors.story_level_artifacts(story_id)


class PassThroughNegotiation(BaseContentNegotiation):
    """The content endpoint answers its bytes whatever the client accepts."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


_BYTES = {"type": "string", "format": "binary"}
# The stored bytes: Content-Type is their own media type (sniffed at upload), image, audio or
# video. application/octet-stream is listed first for client generators that read only it.
_CONTENT_TYPES = ("application/octet-stream", "image/*", "audio/*", "video/*")


def _content_response(status: int, description: str) -> dict:
    return {(status, media): OpenApiResponse(_BYTES, description=description) for media in _CONTENT_TYPES}


@extend_schema_view(
    retrieve=extend_schema(
        summary="One artifact, with its payload",
        description="A pruned artifact (SPEC §9) shows `pruned_at` and `payload: null`.",
    ),
)
@extend_schema(tags=["artifacts"])
class ArtifactViewSet(LimitedBodyMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Artifact.objects.all()
    serializer_class = ArtifactSerializer
    lookup_url_kwarg = "artifact_id"
    lookup_value_converter = "uuid"
    pagination_class = CursorPagination
    paged_actions = ("versions", "relations")
    query_serializers = {
        "lineage": LineageQuerySerializer,
        "provenance": LineageQuerySerializer,
        "versions": FieldsQuerySerializer,
        "diff": DiffQuerySerializer,
        "thumbnail": ThumbnailQuerySerializer,
    }
    # Set per action through @action(...): the ordering of a paginated action and the
    # permission a POST action needs.
    cursor_ordering = None
    required_permissions = None

    def retrieve(self, request, artifact_id):
        artifact = selectors.artifact_get(artifact_id)
        return Response(self.get_serializer(artifact).data)

    @extend_schema(
        summary="Every version of the artifact's stream, oldest first",
        description="The artifact's whole stream (its scene or story, its type), version 1 first; `fields` as in lists",
        parameters=[FIELDS_PARAMETER],
        responses=_LIST_PAGE,
    )
    @action(detail=True, methods=["get"], cursor_ordering=("version",))
    def versions(self, request, artifact_id):
        fields = self.validated_query().get("fields")
        versions = selectors.stream_versions(selectors.artifact_get(artifact_id))
        rows = selectors.artifact_rows(versions) if fields is None else versions.values(*field_columns(fields))
        context = {**self.get_serializer_context(), "fields": fields}
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ArtifactSerializer(page, many=True, context=context).data)

    @extend_schema(
        summary="Ancestors or descendants across parents and relations",
        description=(
            "A breadth-first walk from the artifact over parents and every relation: `ancestors` (what it was "
            "made from) or `descendants` (what was made from it), each artifact once, at its least depth. "
            "`nodes` starts with the artifact itself at depth 0; `edges` are every parent and relation edge "
            "between the nodes; `truncated` is true when `limit` cut the walk."
        ),
        parameters=[LineageQuerySerializer],
        responses=LineageSerializer,
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def lineage(self, request, artifact_id):
        return Response(lineage_body(lineage_walk.walk(artifact_id, **self.validated_query())))

    @extend_schema(
        summary="The lineage walk as a W3C PROV-JSON document",
        description=(
            "The walk of `/lineage` (same `direction`, `depth` and `limit`) as PROV-JSON "
            "(https://www.w3.org/submissions/prov-json/): each artifact an entity `artifact:<id>` (`store:type`, "
            "`store:version`, `store:lifecycle_state`, `store:content_sha256`), each agent step that made one an "
            "activity `step:<id>` (`store:node`, `store:run`, `prov:startTime`, `prov:endTime`), each generator and "
            "user an agent; `wasGeneratedBy` (an artifact, its step), `used` (a step, what it consumed), "
            "`wasDerivedFrom` (each parent as `prov:Revision`, each relation with `store:relation_type`), "
            "`wasAssociatedWith` (a step, its generator and the user who started its run), `wasAttributedTo` (an "
            "artifact made outside the pipeline, its user). The header `X-Lineage-Truncated` is `true` when "
            "`limit` cut the walk."
        ),
        parameters=[
            LineageQuerySerializer,
            OpenApiParameter(
                "X-Lineage-Truncated",
                location=OpenApiParameter.HEADER,
                response=[200],
                type=str,
                enum=["true", "false"],
                description="`true` when `limit` cut the walk.",
            ),
        ],
        responses={200: OpenApiResponse(PROV_JSON, description="A PROV-JSON document.")},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def provenance(self, request, artifact_id):
        lineage = lineage_walk.walk(artifact_id, **self.validated_query())
        text = provenance_document(lineage).serialize(format="json")
        response = HttpResponse(text, content_type="application/json")
        response["X-Lineage-Truncated"] = "true" if lineage.truncated else "false"
        return response

    @extend_schema(
        summary="Compare two artifacts of one type: a JSON Patch from this payload to the other's",
        description=(
            "`patch` is an RFC 6902 JSON Patch that turns this artifact's payload into the payload of `to` "
            "(applying it gives that payload exactly; empty when they are equal); `content_changed` says "
            "whether their stored bytes differ. `to` must be an artifact of the same type: another type is "
            "400 `invalid_parameter` (`field`: `to`), an id that names nothing 400 `not_found` (`field`: "
            "`to`), as an id in a body. A pruned side has no payload left: 409 `pruned`."
        ),
        parameters=[DiffQuerySerializer],
        responses={200: DiffSerializer},
        extensions=error_codes((400, "not_found"), (409, "pruned")),
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def diff(self, request, artifact_id):
        query = self.validated_query()
        return Response(compare.artifact_diff(artifact_id=artifact_id, to_id=query["to"]))

    @extend_schema(
        summary="Restore this version: the next version of its stream, with its payload and content",
        description=(
            "Makes version N+1 of the artifact's stream with this artifact's payload and content (the same "
            "stored bytes, not a copy), its parent the stream's latest version, `intermediate`; the audit "
            "trail records a `revert` naming the version restored. The pipeline then keeps it, as an edit, "
            "and remakes what lies downstream. No body. 409 `already_latest` when this is the latest version "
            "(a restore would repeat it), `pruned` when its payload was pruned, `planning_locked` for a "
            "planning type on a locked scene unless the user has `artifacts.override_planning_lock`. "
            "201 with `Location`."
        ),
        request=None,
        responses={201: OpenApiResponse(ArtifactSerializer, description="Created; `Location` is its address.")},
        extensions=error_codes("planning_locked", "already_latest", (409, "pruned"), "version_conflict"),
    )
    @action(detail=True, methods=["post"], required_permissions=["artifacts.add_artifact"])
    def revert(self, request, artifact_id):
        restored = services.artifact_revert(artifact_id=artifact_id, actor=request.user)
        body = ArtifactSerializer(restored, context=self.get_serializer_context()).data
        return created(request, body, viewname="artifact-detail", kwargs={"artifact_id": restored.pk})

    @extend_schema(
        summary="The artifact's bytes",
        description=(
            "The content of an image, audio or video artifact, with its own media type in `Content-Type`, an "
            "`ETag` of its sha256 (`If-None-Match` gives 304) and one byte range on request (`Range: bytes=`, "
            "206; 416 when it lies beyond the end). Only png, jpeg, gif, webp, mp3, ogg, wav, mp4 and webm are "
            "`inline`; anything else is an `attachment`. A JSON artifact has no content (404); a pruned one's "
            "is gone (410)."
        ),
        responses={
            **_content_response(200, "The content, with `ETag` (its sha256) and `Content-Length`."),
            **_content_response(206, "One byte range (`Range: bytes=...`), with `Content-Range`."),
            304: OpenApiResponse(description="Not modified (`If-None-Match` matched the `ETag`)."),
            416: OpenApiResponse(description="The range lies beyond the content; `Content-Range: bytes */size`."),
        },
        extensions=error_codes((410, "pruned"), "content_missing"),
    )
    @action(detail=True, methods=["get"], pagination_class=None, content_negotiation_class=PassThroughNegotiation)
    def content(self, request, artifact_id):
        return content_response(request, selectors.artifact_get(artifact_id))

    @extend_schema(
        summary="A thumbnail of an image artifact",
        description=(
            "A PNG of the image whose longer side is at most `size` pixels (never enlarged), made once per "
            "content and size and then served from storage, with an `ETag` (`If-None-Match` gives 304). "
            "409 `not_an_image` for an artifact that is not a raster image (JSON, audio, video, SVG); a "
            "pruned one's content is gone (410)."
        ),
        parameters=[ThumbnailQuerySerializer],
        responses={
            (200, thumbnails.MIME_TYPE): OpenApiResponse(_BYTES, description="The thumbnail, with `ETag`."),
            304: OpenApiResponse(description="Not modified (`If-None-Match` matched the `ETag`)."),
        },
        extensions=error_codes("not_an_image", (410, "pruned"), "content_missing"),
    )
    @action(detail=True, methods=["get"], pagination_class=None, content_negotiation_class=PassThroughNegotiation)
    def thumbnail(self, request, artifact_id):
        size = self.validated_query()["size"]
        return thumbnails.thumbnail_response(request, selectors.artifact_get(artifact_id), size=size)

    @extend_schema(
        summary="Move the artifact along its lifecycle",
        description=(
            "`intermediate -> candidate -> published -> archived`, also intermediate -> archived, "
            "candidate -> archived and archived -> candidate (restore). 409 `invalid_transition` for any "
            "other move; `still_primary` when archiving an artifact that is a primary link (choose another "
            "primary first); `pruned` for a pruned artifact."
        ),
        request={"application/json": TransitionSerializer},
        responses={200: ArtifactSerializer},
        extensions=error_codes("invalid_transition", "still_primary", (409, "pruned")),
    )
    @action(
        detail=True,
        methods=["post"],
        required_permissions=["artifacts.change_artifact"],
        parser_classes=[BoundedJSONParser],
    )
    def transition(self, request, artifact_id):
        data = validated(TransitionSerializer, request.data)
        artifact = services.artifact_transition(
            artifact_id=artifact_id, to=data["to"], note=data.get("note"), actor=request.user
        )
        return Response(self.get_serializer(artifact).data)

    @extend_schema(
        methods=["get"],
        summary="Relations from or to the artifact",
        description="Every relation whose `from` or `to` is the artifact, oldest first.",
        responses=RelationSerializer(many=True),
    )
    @extend_schema(
        methods=["post"],
        summary="Relate the artifact to another: {this} <relation_type> {to_artifact_id}",
        description=(
            "Records that this artifact `derived_from`, `variant_of` or `transcoded_from` another "
            "(A derived_from B: A was made from B). 400 `invalid_relation` for an artifact related to itself; "
            "409 `cycle` when derived_from or transcoded_from would close a cycle, `duplicate_relation` when "
            "the same relation exists."
        ),
        request={"application/json": RelationSerializer},
        responses={201: RelationSerializer},
        extensions=error_codes("invalid_relation", "cycle", "duplicate_relation"),
    )
    @action(
        detail=True,
        methods=["get", "post"],
        serializer_class=RelationSerializer,
        cursor_ordering=("created_at", "id"),
        required_permissions=["artifacts.add_artifactrelation"],
        parser_classes=[BoundedJSONParser],
    )
    def relations(self, request, artifact_id):
        artifact = selectors.artifact_get(artifact_id)
        if request.method == "POST":
            incoming = validated(RelationSerializer, request.data)
            relation = services.relation_create(
                from_artifact_id=artifact.pk,
                to_artifact_id=incoming["to_artifact_id"],
                relation_type=incoming["relation_type"],
            )
            return Response(RelationSerializer(relation).data, status=201)
        relations = selectors.artifact_relations(artifact.pk)
        page = self.paginate_queryset(relations)
        return self.get_paginated_response(RelationSerializer(page, many=True).data)


@extend_schema(
    tags=["artifacts"],
    summary="The registered artifact types",
    description="Each type with its kinds, where its streams live, whether a planning lock freezes it, its payload's "
    "JSON Schema and an example payload.",
    responses=ArtifactTypeSerializer(many=True),
)
class ArtifactTypeViewSet(LimitedBodyMixin, viewsets.ViewSet):
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
