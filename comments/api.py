"""/v1 endpoints of comments: an artifact's thread (oldest first) and resolving a comment;
every write calls comments.services."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from artifacts.models import Artifact
from kernel.api import LimitedBodyMixin, StrictCharField, validated
from kernel.api_defaults import CursorPagination
from kernel.lookups import ensure_exists

from . import selectors, services
from .models import BODY_MAX_LENGTH, Comment


class CommentSerializer(serializers.ModelSerializer):
    comment_id = serializers.UUIDField(source="id", read_only=True)
    artifact_id = serializers.UUIDField(read_only=True)
    author = serializers.CharField(source="author.username", read_only=True, help_text="The author's username.")
    body = StrictCharField(
        min_length=1,
        max_length=BODY_MAX_LENGTH,
        trim_whitespace=False,
        help_text=f"The comment, 1 to {BODY_MAX_LENGTH:,} characters, not only whitespace.",
    )
    resolved_by = serializers.CharField(
        source="resolved_by.username",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="Who resolved it (username); null while open.",
    )

    class Meta:
        model = Comment
        fields = ["comment_id", "artifact_id", "author", "body", "created_at", "resolved_at", "resolved_by"]
        read_only_fields = ["created_at", "resolved_at"]


@extend_schema_view(
    list=extend_schema(
        summary="An artifact's comments, oldest first (a thread reads in order)",
        description="Every comment on this artifact (this version only), resolved ones included.",
    ),
    create=extend_schema(
        summary="Comment on an artifact",
        description="201 with the comment. A comment is never edited or deleted, only resolved.",
        request={"application/json": CommentSerializer},
        responses={201: CommentSerializer},
    ),
)
@extend_schema(tags=["comments"])
class ArtifactCommentViewSet(LimitedBodyMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The comments of one artifact; POST adds one (``comments.add_comment``, the editors')."""

    serializer_class = CommentSerializer
    pagination_class = CursorPagination
    cursor_ordering = ("created_at", "id")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Comment.objects.none()
        return selectors.artifact_thread(self.kwargs["artifact_id"])

    def list(self, request, *args, **kwargs):
        ensure_exists(Artifact, self.kwargs["artifact_id"], what="artifact")
        return super().list(request, *args, **kwargs)

    def create(self, request, artifact_id):
        data = validated(CommentSerializer, request.data)
        comment = services.comment_create(artifact_id=artifact_id, actor=request.user, **data)
        return Response(self.get_serializer(comment).data, status=201)


@extend_schema(tags=["comments"])
class CommentViewSet(LimitedBodyMixin, viewsets.GenericViewSet):
    queryset = Comment.objects.all()
    serializer_class = CommentSerializer
    lookup_url_kwarg = "comment_id"
    lookup_value_converter = "uuid"
    required_permissions = None

    @extend_schema(
        summary="Resolve a comment",
        description=(
            "Answers the comment, resolved. Safe to retry: a comment already resolved answers 200 as it is "
            "(who resolved it first, and when)."
        ),
        request=None,
        responses={200: OpenApiResponse(CommentSerializer, description="The comment, resolved.")},
    )
    @action(detail=True, methods=["post"], required_permissions=["comments.change_comment"])
    def resolve(self, request, comment_id):
        return Response(self.get_serializer(services.comment_resolve(comment_id=comment_id, actor=request.user)).data)
