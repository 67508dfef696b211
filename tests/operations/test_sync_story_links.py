"""sync_story_links: each drift between a story's references and its primary links is
reported, repaired (with an audit event) unless it is a dry run, and a second run finds none."""

from audit.models import AuditEvent
from stories import services as story_services
from stories.models import Story
from tests.conftest import make_image
from tests.operations.conftest import run, snapshot, summary


def drifted_story(story, published_cover):
    """A story whose cover reference was emptied and whose audio reference points at an
    artifact that is no primary: both behind curation's back (raw UPDATEs)."""
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
    stray = make_image(story, "not audio at all")
    Story.objects.filter(pk=story.pk).update(cover_artifact=None, canonical_audio=stray)
    return stray


def test_a_dry_run_reports_each_drift_and_repairs_nothing(story, published_cover):
    stray = drifted_story(story, published_cover)
    before = list(Story.objects.values_list("cover_artifact_id", "canonical_audio_id"))

    outcome = run("sync_story_links", dry_run=True)

    assert outcome.code == 1
    assert f"drift: story {story.pk}: cover_artifact is empty, the primary cover is {published_cover.pk}" in outcome.err
    assert f"canonical_audio is {stray.pk}, the primary final_audio is none" in outcome.err
    assert summary(outcome.out)["drifts found"] == "2"
    assert list(Story.objects.values_list("cover_artifact_id", "canonical_audio_id")) == before


def test_drifts_are_repaired_with_an_audit_event_and_a_second_run_finds_none(story, published_cover):
    drifted_story(story, published_cover)
    other = story_services.story_create(title="In step")

    first = run("sync_story_links", batch_size=1)
    artifacts_before = snapshot()
    second = run("sync_story_links")

    story.refresh_from_db()
    assert (first.code, second.code) == (0, 0)
    assert (story.cover_artifact_id, story.canonical_audio_id) == (published_cover.pk, None)
    assert (summary(first.out)["stories checked"], summary(first.out)["drifts repaired"]) == ("2", "2")
    assert first.err.count("repaired: ") == 2 and second.err == ""
    assert summary(second.out)["drifts found"] == "0"
    events = AuditEvent.objects.filter(action="sync_reference", target_id=story.pk)
    assert sorted(e.to_value["field"] for e in events) == ["canonical_audio", "cover_artifact"]
    assert not AuditEvent.objects.filter(action="sync_reference", target_id=other.pk).exists()
    assert snapshot() == artifacts_before


def test_nothing_to_do_is_quiet_at_verbosity_0(story, published_cover):
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
    outcome = run("sync_story_links", verbosity=0)
    assert outcome.code == 0 and outcome.err == ""
    assert outcome.out.startswith("request id: ") and len(outcome.out.splitlines()) == 1
