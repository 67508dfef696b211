"""/v1 endpoints of runs, their steps and their consumed/produced artifacts; writes call runs.services."""

from django.urls import reverse
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from artifacts_project.api import LimitedBodyMixin, created, validated
from artifacts_project.api_defaults import CursorPagination
from artifacts_project.input_limits import INT_MAX
from artifacts_project.lookups import ensure_exists
from stories.models import Scene

from . import services
from .models import AgentStep, Direction, Run, RunArtifactLink, RunStatus, StepStatus
from .pipeline import driver, engine
from .pipeline.nodes import NODES
from .services import FINISHED_STEP_STATUSES


class RunSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(source="id", read_only=True)
    story_id = serializers.UUIDField()
    scene_id = serializers.UUIDField(required=False, allow_null=True)
    params = serializers.DictField(required=False, help_text="A JSON object of workflow parameters.")
    start = serializers.BooleanField(
        write_only=True, required=False, default=False, help_text="Create the run already running."
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
    status = serializers.ChoiceField(choices=RunStatus.choices)
    error = serializers.CharField(required=False, allow_blank=True)


class StepSerializer(serializers.ModelSerializer):
    step_id = serializers.UUIDField(source="id", read_only=True)
    run_id = serializers.UUIDField(read_only=True)
    input_summary = serializers.DictField(required=False)
    output_summary = serializers.DictField(required=False)
    attempt = serializers.IntegerField(min_value=1, max_value=INT_MAX, required=False, default=1)
    status = serializers.ChoiceField(
        choices=[StepStatus.RUNNING, *FINISHED_STEP_STATUSES],
        required=False,
        default=StepStatus.RUNNING,
        help_text="running (finish it later with PATCH), or a final status to record a finished step.",
    )
    error = serializers.CharField(required=False, allow_blank=True, default="")

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
    status = serializers.ChoiceField(choices=FINISHED_STEP_STATUSES)
    output_summary = serializers.DictField(required=False)
    error = serializers.CharField(required=False, allow_blank=True, default="")


class RunArtifactSerializer(serializers.ModelSerializer):
    link_id = serializers.UUIDField(source="id", read_only=True)
    run_id = serializers.UUIDField(read_only=True)
    step_id = serializers.UUIDField(required=False, allow_null=True)
    artifact_id = serializers.UUIDField()
    direction = serializers.ChoiceField(choices=Direction.choices)

    class Meta:
        model = RunArtifactLink
        fields = ["link_id", "run_id", "step_id", "artifact_id", "stage", "direction", "created_at"]
        read_only_fields = ["created_at"]


class RunFilter(filters.FilterSet):
    story_id = filters.UUIDFilter()
    scene_id = filters.UUIDFilter()
    status = filters.ChoiceFilter(choices=RunStatus.choices)
    workflow = filters.CharFilter()
    request_id = filters.CharFilter()
    created_at = filters.IsoDateTimeFromToRangeFilter()

    class Meta:
        model = Run
        fields = ["story_id", "scene_id", "status", "workflow", "request_id", "created_at"]


class RunArtifactFilter(filters.FilterSet):
    direction = filters.ChoiceFilter(choices=Direction.choices)
    stage = filters.CharFilter()

    class Meta:
        model = RunArtifactLink
        fields = ["direction", "stage"]


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

    @extend_schema(summary="Change the run's status", request=RunStatusSerializer)
    def partial_update(self, request, run_id):
        data = validated(RunStatusSerializer, request.data)
        return Response(self.get_serializer(services.run_set_status(run_id=run_id, **data)).data)


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

    @extend_schema(summary="Finish a running step", request=StepFinishSerializer)
    def partial_update(self, request, run_id, step_id):
        step = self.get_object()  # 404 unless the step belongs to this run
        data = validated(StepFinishSerializer, request.data)
        return Response(self.get_serializer(services.step_finish(step_id=step.pk, **data)).data)


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

    @extend_schema(responses={201: RunArtifactSerializer, 200: RunArtifactSerializer})
    def create(self, request, run_id):
        link, was_created = services.run_link_artifact(run_id=run_id, **validated(RunArtifactSerializer, request.data))
        return Response(self.get_serializer(link).data, status=201 if was_created else 200)


class PipelineRequestSerializer(serializers.Serializer):
    force = serializers.BooleanField(
        required=False, default=False, help_text="Remake every node but locked planning types."
    )
    only = serializers.ListField(
        child=serializers.ChoiceField(choices=[node.name for node in NODES]),
        required=False,
        allow_empty=False,
        help_text="Run only these nodes.",
    )


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


@extend_schema(tags=["runs"], request=PipelineRequestSerializer, responses={202: RunSerializer})
class ScenePipelineView(PipelineView):
    def post(self, request, scene_id):
        options = validated(PipelineRequestSerializer, request.data)
        ensure_exists(Scene, scene_id, what="scene")
        [run] = self.start(request, [scene_id], **options)
        location = request.build_absolute_uri(reverse("run-detail", kwargs={"run_id": run.pk}))
        return Response(RunSerializer(run).data, status=202, headers={"Location": location})


@extend_schema(tags=["runs"], request=PipelineRequestSerializer, responses={202: RunSerializer(many=True)})
class StoryPipelineView(PipelineView):
    def post(self, request, story_id):
        options = validated(PipelineRequestSerializer, request.data)
        runs = self.start(request, [scene.pk for scene in engine.story_scenes(story_id)], **options)
        location = request.build_absolute_uri(f"{reverse('run-list')}?story_id={story_id}")
        return Response(RunSerializer(runs, many=True).data, status=202, headers={"Location": location})
