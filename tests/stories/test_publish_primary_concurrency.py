""" "Approve and make primary" under concurrency (PostgreSQL, real threads): editors approving
different candidates of one scene at once, and an archive racing an approval, leave one
primary per (story, role, scene), every approved candidate published, and nothing half done."""

import pytest

from artifacts import services as artifact_services
from artifacts.models import Artifact
from kernel.errors import ArtifactError
from stories import services as story_services
from stories.models import StoryArtifactLink
from tests.artifacts.test_concurrency import in_threads
from tests.conftest import PNG_BYTES

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def candidate(scene, n: int):
    made = artifact_services.artifact_create(
        scene_id=scene.pk,
        type="render_result",
        kind="image",
        payload={"image_url": f"render://{n}.png", "metadata": {}, "generation_params": {"seed": n}},
        content=PNG_BYTES + bytes([n]),
        mime_type="image/png",
    )
    return artifact_services.artifact_transition(artifact_id=made.pk, to="candidate")


def test_eight_editors_approving_different_candidates_leave_one_primary(story, scene):
    candidates = [candidate(scene, n) for n in range(8)]

    def approve(artifact):
        return lambda: story_services.story_publish_and_set_primary(
            story_id=story.pk, role="scene_image", artifact_id=artifact.pk, scene_id=scene.pk
        )

    results, errors = in_threads([approve(a) for a in candidates], workers=8)
    assert errors == [] and len(results) == 8
    primaries = StoryArtifactLink.objects.filter(story=story, role="scene_image", scene=scene, is_primary=True)
    assert primaries.count() == 1
    states = Artifact.objects.filter(pk__in=[a.pk for a in candidates]).values_list("lifecycle_state", flat=True)
    assert set(states) == {"published"}


def test_an_archive_racing_an_approval_never_leaves_an_archived_primary(story, scene):
    for round_ in range(6):
        artifact = candidate(scene, 100 + round_)

        def approve(artifact=artifact):
            return story_services.story_publish_and_set_primary(
                story_id=story.pk, role="scene_image", artifact_id=artifact.pk, scene_id=scene.pk
            )

        def archive(artifact=artifact):
            return artifact_services.artifact_transition(artifact_id=artifact.pk, to="archived")

        results, errors = in_threads([approve, archive], workers=2)
        assert all(isinstance(e, ArtifactError) for e in errors), errors
        artifact.refresh_from_db()
        linked = StoryArtifactLink.objects.filter(artifact=artifact, is_primary=True).exists()
        # Either the approval won (published and primary; the archive refused: still_primary)
        # or the archive did (archived, no link; the approval refused: invalid_transition).
        assert (artifact.lifecycle_state, linked) in {("published", True), ("archived", False)}
