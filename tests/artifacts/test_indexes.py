"""Every read the service makes at scale is backed by an index the planner can use
(PostgreSQL; sequential scans priced out, so the plan shows whether an index can serve)."""

import uuid

import pytest
from django.db import connection

from artifacts import selectors
from artifacts import services as artifact_services
from artifacts.models import Artifact, ArtifactRelation
from runs import selectors as run_selectors
from runs.models import AgentStep, Run, RunArtifactLink
from stories.models import Scene, Story, StoryArtifactLink
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def populated(story):
    """Tables shaped like real ones (many stories, scenes, types, versions, some media) with
    fresh statistics: on a near-empty table every index costs the same, and the plan would
    say nothing about a million rows."""
    stories = [Story(title=f"t{n}") for n in range(20)]
    Story.objects.bulk_create(stories)
    scenes = [Scene(story=s, position=p, title=f"{s.title}/{p}") for s in stories for p in (1, 2)]
    Scene.objects.bulk_create(scenes)
    rows = []
    for scene in scenes:
        for type_name in ("scene_intent", "panel_plan", "render_spec", "qc_report", "render_result"):
            parent = None
            for version in range(1, 16):
                media = type_name == "render_result" and version % 5 == 0
                artifact = Artifact(
                    id=uuid.uuid4(),
                    story_id=scene.story_id,
                    scene_id=scene.pk,
                    type=type_name,
                    version=version,
                    parent_id=parent,
                    payload={},
                    kind="image" if media else "json",
                    content_sha256=uuid.uuid4().hex * 2 if media else "",
                )
                rows.append(artifact)
                parent = artifact.id
    Artifact.objects.bulk_create(rows, batch_size=1000)
    ArtifactRelation.objects.bulk_create(
        ArtifactRelation(from_artifact_id=rows[i].id, to_artifact_id=rows[i - 15].id, relation_type="derived_from")
        for i in range(15, len(rows), 3)
    )
    statuses = ["pending", "running", "succeeded", "failed", "cancelled"]
    runs = [Run(story=scenes[n % len(scenes)].story, workflow="w", status=statuses[n % 5]) for n in range(500)]
    Run.objects.bulk_create(runs)
    AgentStep.objects.bulk_create(
        AgentStep(run=run, sequence=k, node="n", started_at=run.created_at) for run in runs for k in (1, 2)
    )
    RunArtifactLink.objects.bulk_create(
        RunArtifactLink(run=runs[n % 500], artifact=a, stage="s", direction="produced")
        for n, a in enumerate(rows[:2000])
    )
    with connection.cursor() as cursor:
        for model in (Artifact, ArtifactRelation, Scene, Story, Run, AgentStep, RunArtifactLink):
            cursor.execute(f"ANALYZE {model._meta.db_table}")  # counts this transaction's own rows


def plan(queryset) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


READS = [
    (
        "latest of a scene stream",
        lambda a: Artifact.objects.filter(scene_id=a.scene_id, type=a.type).order_by("-version")[:1],
        "artifact_unique_scene_stream_version",
    ),
    (
        "latest of a story-level stream",
        lambda a: Artifact.objects.filter(story_id=a.story_id, scene__isnull=True, type="cover_image").order_by(
            "-version"
        )[:1],
        "artifact_unique_story_stream_version",
    ),
    (
        "a scene's list, newest first",
        lambda a: selectors.scene_artifacts(a.scene_id).order_by("-created_at", "-id")[:50],
        "artifact_scene_created_idx",
    ),
    (
        "a story's artifacts, newest first (admin ?story=)",
        lambda a: Artifact.objects.filter(story_id=a.story_id).order_by("-created_at", "-id")[:100],
        "artifact_story_created_idx",
    ),
    (
        "a story's media (primary chooser)",
        lambda a: selectors.story_media(a.story_id)[:300],
        "artifact_story_media_idx",
    ),
    (
        "who else uses a stored file",
        lambda a: Artifact.objects.filter(content_sha256=a.content_sha256 or "x"),
        "artifact_content_sha256_idx",
    ),
    (
        "the admin list's default order",
        lambda a: Artifact.objects.order_by("-created_at", "-id")[:100],
        "artifact_created_idx",
    ),
    ("children by parent", lambda a: Artifact.objects.filter(parent_id=a.pk).order_by(), "parent_id"),
    (
        "relations by their from end",
        lambda a: ArtifactRelation.objects.filter(from_artifact_id=a.pk).order_by(),
        "relation_unique_edge",
    ),
    (
        "relations by their to end",
        lambda a: ArtifactRelation.objects.filter(to_artifact_id=a.pk).order_by(),
        "relation_to_idx",
    ),
    (
        "a story's scenes by creation (the API's cursor)",
        lambda a: Scene.objects.filter(story_id=a.story_id).order_by("created_at", "id")[:50],
        ("scene_story_created_idx", "scene_unique_position_per_story"),  # a story's few scenes, sorted
    ),
    (
        "the primaries of a story",
        lambda a: StoryArtifactLink.objects.filter(story_id=a.story_id, is_primary=True),
        "link_",
    ),
    (
        "the run list by status",
        lambda a: Run.objects.filter(status="running").order_by("-created_at")[:100],
        # On this test's 500 runs the planner may as well take the (scene, status) index of
        # the pipeline's lookups and sort 100 rows: either is an index, never a scan.
        ("run_status_created_idx", "run_scene_status_idx"),
    ),
    (
        "a scene's unfinished runs (a new run looks for lost ones)",
        lambda a: run_selectors.unfinished_runs(scene_id=a.scene_id),
        "run_scene_status_idx",
    ),
    ("the step list", lambda a: AgentStep.objects.order_by("-started_at", "-id")[:100], "step_started_idx"),
    (
        "the run-link list",
        lambda a: RunArtifactLink.objects.order_by("-created_at", "-id")[:100],
        "runlink_created_idx",
    ),
]


@pytest.mark.parametrize("name, make_query, index", READS, ids=[r[0] for r in READS])
def test_read_uses_its_index(service, story, scene, populated, name, make_query, index):
    artifact = service.create_artifact(scene.pk, "scene_intent", {"mood": "m", "pacing": "p", "key_beats": ["b"]})
    queryset = make_query(artifact)
    text = plan(queryset)
    names = index if isinstance(index, tuple) else (index,)
    assert "Index" in text and any(n in text for n in names), f"{name}: {text}"
    assert "Seq Scan" not in text, f"{name}: {text}"
    if queryset.query.where:  # a lookup, not only an order: the index finds the rows
        assert "Index Cond" in text, f"{name}: {text}"


def test_latest_per_type_is_one_index_probe_per_type(service, story, scene, populated):
    service.create_artifact(scene.pk, "scene_intent", {"mood": "m", "pacing": "p", "key_beats": ["b"]})
    text = plan(selectors.scene_latest_per_type(scene.pk))
    assert "Seq Scan" not in text, text
    assert text.count("artifact_unique_scene_stream_version") >= 11, text


def test_detail_reads_one_row_without_joins(service, story):
    cover = artifact_services.artifact_create(
        story_id=story.pk, type="cover_image", payload={"alt": "a"}, content=PNG_BYTES, mime_type="image/png"
    )
    sql, _ = Artifact.objects.filter(pk=cover.pk).query.sql_with_params()
    text = plan(Artifact.objects.filter(pk=cover.pk))
    assert "JOIN" not in sql.upper() and "artifacts_artifact_pkey" in text
    assert selectors.artifact_get(cover.pk) == cover
