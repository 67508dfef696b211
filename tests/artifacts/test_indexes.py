"""Every lookup the SPEC names is backed by an index the planner can use (PostgreSQL)."""

import pytest
from django.db import connection

from artifacts.models import Artifact, ArtifactRelation

pytestmark = pytest.mark.postgres_only


def plan(queryset) -> str:
    with connection.cursor() as cursor:
        # With sequential scans priced out, the plan shows whether an index can serve the query.
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize(
    ("name", "make_query", "index"),
    [
        (
            "latest of a scene stream",
            lambda s: Artifact.objects.filter(scene_id=s.scene_id, type=s.type).order_by("-version")[:1],
            "artifact_unique_scene_stream_version",
        ),
        (
            "latest of a story-level stream",
            lambda s: Artifact.objects.filter(story_id=s.story_id, scene__isnull=True, type=s.type).order_by(
                "-version"
            )[:1],
            "artifact_unique_story_stream_version",
        ),
        ("children by parent", lambda s: Artifact.objects.filter(parent_id=s.pk), "parent_id"),
        (
            "relations by their from end",
            lambda s: ArtifactRelation.objects.filter(from_artifact_id=s.pk),
            "from_artifact",
        ),
        ("relations by their to end", lambda s: ArtifactRelation.objects.filter(to_artifact_id=s.pk), "to_artifact"),
    ],
)
def test_lookup_uses_an_index(service, scene, name, make_query, index):
    artifact = service.create_artifact(scene.pk, "scene_intent", {"mood": "m", "pacing": "p", "key_beats": ["b"]})
    text = plan(make_query(artifact))
    assert "Index" in text and index in text, f"{name}: {text}"
