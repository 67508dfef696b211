"""/v1 endpoints of runs, their steps and their consumed/produced artifacts; writes call runs.services."""

from django.urls import reverse
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from kernel.api import (
    LimitedBodyMixin,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictFilterSet,
    StrictIntegerField,
    StrictModelSerializer,
    StrictUUIDField,
    TimeRangeFilter,
    created,
    validated,
)
from kernel.api_defaults import CursorPagination
from kernel.api_schema import error_codes
from kernel.input_limits import INT_MAX
from kernel.lookups import ensure_exists
from stories import selectors as story_selectors
from stories.models import Scene

from . import services
from .models import AgentStep, Direction, Run, RunArtifactLink, RunStatus, StepStatus
from .pipeline import driver
from .pipeline.nodes import NODES
from .services import FINISHED_STEP_STATUSES


class RunSerializer(StrictModelSerializer):
    run_id = serializers.UUIDField(source="id", read_only=True)
    story_id = StrictUUIDField()
    scene_id = StrictUUIDField(required=False, allow_null=True, help_text="A scene of the story, or none.")
    params = serializers.DictField(required=False, help_text="A JSON object of workflow parameters.")
    start = StrictBooleanField(
        write_only=True,
        required=False,
        default=False,
        help_text="false (the default): the run is created `pending`; true: created `running`, started now.",
    )
    triggered_by_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Run
        fields = [
            "run_id",
            "story_id",
            "scene_id",
            "workflow",
            "status",
            "params",
            "error",
            "request_id",
            "triggered_by_id",
            "created_at",
            "started_at",
            "finished_at",
            "start",
        ]
        read_only_fields = ["status", "error", "request_id", "created_at", "started_at", "finished_at"]


class RunStatusSerializer(serializers.Serializer):
    """A run's new status (required) and, for a failure, why."""

    status = StrictChoiceField(
        choices=RunStatus.choices,
        help_text="pending -> running -> succeeded, failed or cancelled; pending -> cancelled.",
    )
    error = StrictCharField(required=False, allow_blank=True, help_text="Why it failed.")

    class Meta:
        whole_in_patch = True


class StepSerializer(StrictModelSerializer):
    step_id = serializers.UUIDField(source="id", read_only=True)
    run_id = serializers.UUIDField(read_only=True)
    input_summary = serializers.DictField(required=False)
    output_summary = serializers.DictField(required=False)
    attempt = StrictIntegerField(min_value=1, max_value=INT_MAX, required=False, default=1)
    status = StrictChoiceField(
        choices=[StepStatus.RUNNING, *FINISHED_STEP_STATUSES],
        required=False,
        default=StepStatus.RUNNING,
        help_text="running (finish it later with PATCH), or a final status to record a finished step.",
    )
    error = StrictCharField(required=False, allow_blank=True, default="")

    class Meta:
        model = AgentStep
        fields = [
            "step_id",
            "run_id",
            "sequence",
            "node",
            "agent",
            "status",
            "attempt",
            "input_summary",
            "output_summary",
            "error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = ["sequence", "started_at", "finished_at"]


class StepFinishSerializer(serializers.Serializer):
    """How a running step ended (a final status, required), with its output or error."""

    status = StrictChoiceField(choices=FINISHED_STEP_STATUSES, help_text="How the step ended.")
    output_summary = serializers.DictField(required=False)
    error = StrictCharField(required=False, allow_blank=True, default="")

    class Meta:
        whole_in_patch = True


class RunArtifactSerializer(StrictModelSerializer):
    link_id = serializers.UUIDField(source="id", read_only=True)
    run_id = serializers.UUIDField(read_only=True)
    step_id = StrictUUIDField(required=False, allow_null=True, help_text="A step of this run, or none.")
    artifact_id = StrictUUIDField()
    direction = StrictChoiceField(choices=Direction.choices)

    class Meta:
        model = RunArtifactLink
        fields = ["link_id", "run_id", "step_id", "artifact_id", "stage", "direction", "created_at"]
        read_only_fields = ["created_at"]


class RunFilter(StrictFilterSet):
    story_id = filters.UUIDFilter()
    scene_id = filters.UUIDFilter()
    status = filters.ChoiceFilter(choices=RunStatus.choices)
    workflow = filters.CharFilter()
    request_id = filters.CharFilter()
    created_at = TimeRangeFilter()

    class Meta:
        model = Run
        fields = ["story_id", "scene_id", "status", "workflow", "request_id", "created_at"]


class RunArtifactFilter(StrictFilterSet):
    direction = filters.ChoiceFilter(choices=Direction.choices)
    stage = filters.CharFilter()

    class Meta:
        model = RunArtifactLink
        fields = ["direction", "stage"]


@extend_schema_view(
    list=extend_schema(
        summary="List runs, newest first",
        description="Filter by `story_id`, `scene_id`, `status`, `workflow`, `request_id` or creation time.",
    ),
    retrieve=extend_schema(summary="One run"),
    create=extend_schema(
        summary="Record a run",
        description=(
            "A run of `workflow` on the story (or one of its scenes), created `pending` unless `start` is true "
            "(then `running`, with `started_at`). It only records: to have this service run the pipeline, "
            "POST to a scene's or a story's `pipeline`. 201 with `Location`."
        ),
        responses={201: OpenApiResponse(RunSerializer, description="Created; `Location` is its address.")},
    ),
)
@extend_schema(tags=["runs"])
class RunViewSet(
    LimitedBodyMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    queryset = Run.objects.all()
    serializer_class = RunSerializer
    filterset_class = RunFilter
    lookup_url_kwarg = "run_id"
    lookup_value_converter = "uuid"
    pagination_class = CursorPagination
    cursor_ordering = ("-created_at", "-id")

    def create(self, request, *args, **kwargs):
        data = validated(RunSerializer, request.data)
        run = services.run_create(actor=request.user, **data)
        return created(request, self.get_serializer(run).data, viewname="run-detail", kwargs={"run_id": run.pk})

    @extend_schema(
        summary="Change the run's status",
        description=(
            "`status` is required: pending -> running -> succeeded, failed or cancelled, and pending -> "
            "cancelled; 409 `invalid_transition` for any other move. `error` says why a run failed."
        ),
        request={"application/json": RunStatusSerializer},
        extensions=error_codes("invalid_transition"),
    )
    def partial_update(self, request, run_id):
        data = validated(RunStatusSerializer, request.data)
        return Response(self.get_serializer(services.run_set_status(run_id=run_id, **data)).data)


@extend_schema_view(
    list=extend_schema(summary="List a run's steps in sequence"),
    retrieve=extend_schema(summary="One step of a run"),
    create=extend_schema(
        summary="Append the next step",
        description=(
            "The step takes the next `sequence`. Posted `running` (finish it later with PATCH), or already "
            "finished with a final `status` and its `output_summary` or `error`; a running step carries no "
            "output or error yet (400 `invalid`)."
        ),
        request={"application/json": StepSerializer},
        responses={201: StepSerializer},
        extensions=error_codes("invalid_transition"),
    ),
)
@extend_schema(tags=["runs"])
class RunStepViewSet(LimitedBodyMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The run's agent steps in sequence; POST appends the next one, PATCH finishes one."""

    serializer_class = StepSerializer
    pagination_class = CursorPagination
    cursor_ordering = ("sequence",)
    lookup_url_kwarg = "step_id"
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AgentStep.objects.none()
        return AgentStep.objects.filter(run_id=self.kwargs["run_id"])

    def list(self, request, *args, **kwargs):
        ensure_exists(Run, self.kwargs["run_id"], what="run")
        return super().list(request, *args, **kwargs)

    def create(self, request, run_id):
        step = services.step_record(run_id=run_id, **validated(StepSerializer, request.data))
        return Response(self.get_serializer(step).data, status=201)

    @extend_schema(
        summary="Finish a running step",
        description="`status` (a final one) is required; a step that already finished is 409 `invalid_transition`.",
        request={"application/json": StepFinishSerializer},
        extensions=error_codes("invalid_transition"),
    )
    def partial_update(self, request, run_id, step_id):
        step = self.get_object()  # 404 unless the step belongs to this run
        data = validated(StepFinishSerializer, request.data)
        return Response(self.get_serializer(services.step_finish(step_id=step.pk, **data)).data)


@extend_schema_view(
    list=extend_schema(summary="What a run's stages consumed and produced"),
)
@extend_schema(tags=["runs"])
class RunArtifactViewSet(LimitedBodyMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """What the run's stages consumed and produced. Recording the same fact twice is
    idempotent: 201 the first time, 200 with the existing link after."""

    serializer_class = RunArtifactSerializer
    filterset_class = RunArtifactFilter
    pagination_class = CursorPagination
    cursor_ordering = ("created_at", "id")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return RunArtifactLink.objects.none()
        return RunArtifactLink.objects.filter(run_id=self.kwargs["run_id"])

    def list(self, request, *args, **kwargs):
        ensure_exists(Run, self.kwargs["run_id"], what="run")
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Record that a stage consumed or produced an artifact",
        description="Idempotent: 201 the first time, 200 with the same link when it is recorded again.",
        request={"application/json": RunArtifactSerializer},
        responses={
            201: OpenApiResponse(RunArtifactSerializer, description="Recorded."),
            200: OpenApiResponse(RunArtifactSerializer, description="Already recorded: the existing link."),
        },
    )
    def create(self, request, run_id):
        link, was_created = services.run_link_artifact(run_id=run_id, **validated(RunArtifactSerializer, request.data))
        return Response(self.get_serializer(link).data, status=201 if was_created else 200)


class PipelineRequestSerializer(serializers.Serializer):
    force = StrictBooleanField(required=False, default=False, help_text="Remake every node but locked planning types.")
    only = serializers.ListField(
        child=StrictChoiceField(choices=[node.name for node in NODES]),
        required=False,
        allow_empty=False,
        help_text="Run only these nodes.",
    )


_PIPELINE_TEXT = (
    "Makes what is missing or stale of the scene's artifacts, node by node (SPEC §10): `force` remakes every "
    "node but the planning types a lock freezes, `only` runs just the nodes named. Answers 202 with {what} and "
    "`Location` ({where}) before any generator runs: the runs are pending, then taken up by the workers or, "
    "without a broker, by the serving process. Follow a run there until its status is succeeded, failed or "
    "cancelled; `PATCH /v1/runs/{{run_id}}` with status cancelled stops it. Needs `runs.add_run`. "
    "503 `broker_unavailable` when the workers' broker cannot be reached."
)
_PIPELINE_CODES = error_codes("broker_unavailable")


class PipelineView(LimitedBodyMixin, APIView):
    """Run the pipeline (SPEC §10) on a scene, or on every scene of a story: 202 with the run
    (or the runs, one per scene, in position order) and a Location, before any generator
    runs. The runs come back pending: with a broker the workers take them; without one a
    thread of this process does, once the answer is on its way. Follow a run at its
    Location; cancel it with PATCH {"status": "cancelled"}."""

    required_permissions = ["runs.add_run"]
    queryset = Run.objects.all()  # the model whose permissions apply (OPTIONS and the like)

    def start(self, request, scene_ids, **options) -> list[Run]:
        return driver.start(scene_ids, actor=request.user, **options)


@extend_schema(
    summary="Run the pipeline on a scene",
    description=_PIPELINE_TEXT.format(what="the run", where="the run's address"),
    extensions=_PIPELINE_CODES,
)
@extend_schema(tags=["runs"], request=PipelineRequestSerializer, responses={202: RunSerializer})
class ScenePipelineView(PipelineView):
    def post(self, request, scene_id):
        options = validated(PipelineRequestSerializer, request.data)
        ensure_exists(Scene, scene_id, what="scene")
        [run] = self.start(request, [scene_id], **options)
        location = request.build_absolute_uri(reverse("run-detail", kwargs={"run_id": run.pk}))
        return Response(RunSerializer(run).data, status=202, headers={"Location": location})


@extend_schema(
    summary="Run the pipeline on every scene of a story",
    description=_PIPELINE_TEXT.format(what="the runs, one per scene in position order,", where="the story's runs"),
    extensions=_PIPELINE_CODES,
)
@extend_schema(tags=["runs"], request=PipelineRequestSerializer, responses={202: RunSerializer(many=True)})
class StoryPipelineView(PipelineView):
    def post(self, request, story_id):
        options = validated(PipelineRequestSerializer, request.data)
        runs = self.start(request, story_selectors.story_scene_ids(story_id), **options)
        location = request.build_absolute_uri(f"{reverse('run-list')}?story_id={story_id}")
        return Response(RunSerializer(runs, many=True).data, status=202, headers={"Location": location})
