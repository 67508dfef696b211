"""Real concurrency on PostgreSQL: threads, each with its own database connection."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from artifacts import services as artifact_services
from artifacts.models import Artifact
from artifacts.payloads import ARTIFACT_TYPES
from artifacts.services import ArtifactService
from kernel.errors import AlreadyLocked
from stories import services as story_services
from stories.models import StoryArtifactLink
from tests.conftest import PNG_BYTES

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def in_threads(jobs, *, workers):
    """Run callables concurrently, all released at once; return (results, errors)."""
    barrier = threading.Barrier(min(workers, len(jobs)))

    def run(job):
        try:
            if len(jobs) <= workers:
                barrier.wait(timeout=30)
            return job(), None
        except Exception as exc:  # collected and asserted on by the caller
            return None, exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run, jobs))
    return [r for r, e in outcomes if e is None], [e for _, e in outcomes if e is not None]


def assert_gapless_chain(artifacts):
    ordered = sorted(artifacts, key=lambda a: a.version)
    assert [a.version for a in ordered] == list(range(1, len(ordered) + 1))
    assert [a.parent_id for a in ordered] == [None, *[a.pk for a in ordered[:-1]]]


@pytest.mark.parametrize("type_name", ["render_spec", "scene_intent"])
def test_32_writers_on_one_stream_get_versions_1_to_32(scene, type_name):
    # render_spec serializes on the stream lock alone; scene_intent (a planning type)
    # also takes the scene row lock for the planning check.
    payload = ARTIFACT_TYPES[type_name].example

    def write(n):
        return lambda: ArtifactService().create_artifact(scene.pk, type_name, {**payload, "writer": n})

    results, errors = in_threads([write(n) for n in range(32)], workers=32)
    assert errors == []
    assert len(results) == 32
    assert_gapless_chain(list(Artifact.objects.filter(scene=scene)))
    assert sorted(a.payload["writer"] for a in Artifact.objects.filter(scene=scene)) == list(range(32))


def test_200_streams_written_concurrently_stay_gapless(story):
    scenes = [story_services.scene_create(story_id=story.pk, title=f"s{n}") for n in range(100)]
    jobs = [
        (lambda s=s, t=t: ArtifactService().create_artifact(s.pk, t, ARTIFACT_TYPES[t].example))
        for s in scenes
        for t in ("render_spec", "qc_report")
        for _ in range(3)
    ]
    random.Random(7).shuffle(jobs)
    results, errors = in_threads(jobs, workers=32)
    assert errors == [] and len(results) == 600
    for s in scenes:
        for t in ("render_spec", "qc_report"):
            assert_gapless_chain(list(Artifact.objects.filter(scene=s, type=t)))


def test_story_level_stream_under_concurrency(story):
    def write():
        return artifact_services.artifact_create(
            story_id=story.pk, type="cover_image", payload={"alt": "x"}, content=PNG_BYTES, mime_type="image/png"
        )

    results, errors = in_threads([write] * 16, workers=16)
    assert errors == []
    assert_gapless_chain(list(Artifact.objects.filter(story=story, scene__isnull=True)))


def test_two_editors_locking_at_once_one_wins(scene):
    results, errors = in_threads([lambda: story_services.scene_lock_planning(scene_id=scene.pk)] * 8, workers=8)
    assert len(results) == 1
    assert len(errors) == 7 and all(isinstance(e, AlreadyLocked) for e in errors)


def test_concurrent_primary_changes_leave_exactly_one_primary_matching_the_story(story):
    covers = [
        artifact_services.artifact_create(
            story_id=story.pk,
            type="cover_image",
            payload={"alt": str(n)},
            content=PNG_BYTES,
            mime_type="image/png",
            lifecycle_state="published",
        )
        for n in range(8)
    ]
    jobs = [
        (lambda c=c: story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=c.pk))
        for c in covers
    ]
    results, errors = in_threads(jobs, workers=8)
    assert errors == []
    primaries = list(StoryArtifactLink.objects.filter(story=story, role="cover", is_primary=True))
    assert len(primaries) == 1
    story.refresh_from_db()
    assert story.cover_artifact_id == primaries[0].artifact_id


def test_batches_beside_single_creates_on_one_stream_stay_gapless(scene):
    spec = ARTIFACT_TYPES["render_spec"].example
    items = [{"type": "render_spec", "payload": spec} for _ in range(5)]

    def batch():
        return artifact_services.artifacts_create_batch(scene_id=scene.pk, items=items)

    def single():
        return ArtifactService().create_artifact(scene.pk, "render_spec", spec)

    results, errors = in_threads([batch, single] * 8, workers=16)
    assert errors == [] and len(results) == 16
    assert_gapless_chain(list(Artifact.objects.filter(scene=scene, type="render_spec")))
    for made in (r for r in results if isinstance(r, list)):  # each batch's versions are consecutive
        versions = [a.version for a in made]
        assert versions == list(range(versions[0], versions[0] + 5))
