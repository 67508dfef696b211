"""The editors' boards read through indexes (PostgreSQL, sequential scans priced out): the
storyboard's heads of every scene and its candidates, the review queue's pages."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from artifacts import selectors
from artifacts.models import Artifact
from stories.models import Scene
from tests.artifacts.test_indexes import plan, populated  # noqa: F401  (populated is a fixture)

pytestmark = pytest.mark.postgres_only


def test_the_heads_of_every_scene_are_index_probes(story, populated):  # noqa: F811
    some = Artifact.objects.exclude(scene=None).first()
    text = plan(selectors.scene_heads_of_story(some.story_id, ["scene_intent", "render_result"]))
    assert "artifact_unique_scene_stream_version" in text, text
    assert "Seq Scan" not in text, text


def test_the_heads_of_many_scenes_for_explain_are_index_probes(story, populated):  # noqa: F811
    scene_ids = list(Artifact.objects.exclude(scene=None).values_list("scene_id", flat=True).distinct()[:40])
    text = plan(selectors._heads_of(Scene.objects.filter(pk__in=scene_ids), ["scene_intent", "render_result"]))
    assert "artifact_unique_scene_stream_version" in text, text
    assert "Seq Scan on artifacts_artifact" not in text, text


@pytest.fixture
def candidates(populated):  # noqa: F811
    """Two versions in fifteen of every stream are candidates (the trigger lets the state change)."""
    Artifact.objects.filter(version__in=(3, 7)).update(lifecycle_state="candidate")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE artifacts_artifact")


def test_a_storys_candidates_use_the_candidate_index(story, candidates):
    some = Artifact.objects.first()
    text = plan(
        Artifact.objects.filter(story_id=some.story_id, lifecycle_state="candidate")
        .only(*selectors.CARD_COLUMNS)
        .order_by("-created_at", "-id")[:400]
    )
    assert "artifact_candidate_story_idx" in text and "Seq Scan" not in text, text


def _queue_query(**filters):
    """The review queue's page query, as ``candidates_page`` builds it (its list, unevaluated)."""
    from artifacts.models import Artifact as A

    rows = A.objects.filter(lifecycle_state="candidate", **filters)
    return rows.only(*selectors.CARD_COLUMNS).order_by("-created_at", "-id")[:51]


@pytest.mark.parametrize(
    "make_filters, index",
    [
        (lambda a: {}, "artifact_candidate_idx"),
        (lambda a: {"story_id": a.story_id}, "artifact_candidate_story_idx"),
        (lambda a: {"type": "panel_plan"}, "artifact_candidate_type_idx"),
    ],
    ids=["newest", "by story", "by type"],
)
def test_the_review_queue_reads_a_candidate_index(story, candidates, make_filters, index):
    some = Artifact.objects.exclude(scene=None).first()
    text = plan(_queue_query(**make_filters(some)))
    assert index in text and "Seq Scan" not in text and "Sort" not in text.split("->")[0], text


def test_the_review_queue_query_is_what_candidates_page_runs(story, candidates):
    some = Artifact.objects.exclude(scene=None).first()
    with CaptureQueriesContext(connection) as ran:
        selectors.candidates_page(story_id=some.story_id, type="panel_plan", limit=51)
    (query,) = ran.captured_queries
    assert "lifecycle_state" in query["sql"] and "LIMIT 51" in query["sql"] and "COUNT(" not in query["sql"].upper()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + query["sql"])
        text = "\n".join(row[0] for row in cursor.fetchall())
    assert "artifact_candidate" in text and "Seq Scan on artifacts_artifact" not in text, text
