import pytest

from artifacts.services import ArtifactService
from audit.models import AuditEvent
from kernel.errors import (
    AlreadyLocked,
    DuplicateLink,
    InvalidInput,
    InvalidLink,
    NotFound,
    NotLocked,
    NotPublished,
)
from stories import services as story_services
from stories.models import StoryArtifactLink
from tests.conftest import SCENE_INTENT, make_image


class TestStoriesAndScenes:
    def test_scene_positions_count_up_and_collisions_are_refused(self, story):
        first = story_services.scene_create(story_id=story.pk, title="a")
        second = story_services.scene_create(story_id=story.pk, title="b")
        assert (first.position, second.position) == (1, 2)
        with pytest.raises(InvalidInput):
            story_services.scene_create(story_id=story.pk, title="c", position=1)
        with pytest.raises(InvalidInput):
            story_services.scene_update(scene_id=second.pk, position=1)

    def test_updates_take_only_editable_fields(self, story):
        assert story_services.story_update(story_id=story.pk, title="New").title == "New"
        with pytest.raises(InvalidInput):
            story_services.story_update(story_id=story.pk, cover_artifact=None)
        with pytest.raises(InvalidInput):
            story_services.story_update(story_id=story.pk, title="  ")
        with pytest.raises(NotFound):
            story_services.story_update(story_id="nope", title="x")


class TestPlanningLock:
    def test_lock_and_unlock_record_who_when_and_audit(self, scene, make_user):
        editor = make_user("editor")
        locked = story_services.scene_lock_planning(scene_id=scene.pk, actor=editor)
        assert (locked.planning_locked, locked.planning_locked_by, locked.planning_locked_at is not None) == (
            True,
            editor,
            True,
        )
        with pytest.raises(AlreadyLocked):
            story_services.scene_lock_planning(scene_id=scene.pk, actor=editor)
        unlocked = story_services.scene_unlock_planning(scene_id=scene.pk, actor=editor)
        assert (unlocked.planning_locked, unlocked.planning_locked_by, unlocked.planning_locked_at) == (
            False,
            None,
            None,
        )
        with pytest.raises(NotLocked):
            story_services.scene_unlock_planning(scene_id=scene.pk)
        assert list(AuditEvent.objects.order_by("created_at").values_list("action", "actor")) == [
            ("lock_planning", editor.pk),
            ("unlock_planning", editor.pk),
        ]


class TestPrimaryLinks:
    def test_set_primary_demotes_the_old_and_updates_the_story_reference(self, story, published_cover, make_user):
        editor = make_user("editor")
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk, actor=editor)
        story.refresh_from_db()
        assert story.cover_artifact_id == published_cover.pk
        newer = make_image(story, "newer", state="published")
        link = story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=newer.pk, actor=editor)
        story.refresh_from_db()
        assert (link.is_primary, story.cover_artifact_id) == (True, newer.pk)
        assert set(StoryArtifactLink.objects.filter(role="cover").values_list("artifact_id", "is_primary")) == {
            (newer.pk, True),
            (published_cover.pk, False),
        }
        events = AuditEvent.objects.filter(action="set_primary").order_by("created_at")
        assert [e.to_value["artifact_id"] for e in events] == [str(published_cover.pk), str(newer.pk)]
        assert events[1].from_value["artifact_id"] == str(published_cover.pk)

    def test_setting_the_same_primary_twice_changes_nothing(self, story, published_cover):
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
        assert StoryArtifactLink.objects.count() == 1
        assert AuditEvent.objects.filter(action="set_primary").count() == 1

    def test_only_published_artifacts_of_the_right_kind_and_story_can_be_primary(self, story, scene):
        draft = make_image(story, "draft")
        with pytest.raises(NotPublished):
            story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=draft.pk)
        other_story = story_services.story_create(title="Other")
        foreign = make_image(other_story, "foreign", state="published")
        with pytest.raises(InvalidLink):
            story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=foreign.pk)
        with pytest.raises(InvalidLink):
            story_services.story_set_primary(story_id=story.pk, role="final_audio", artifact_id=draft.pk)
        with pytest.raises(InvalidLink):
            story_services.story_set_primary(story_id=story.pk, role="poster", artifact_id=draft.pk)
        intent = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
        with pytest.raises(InvalidLink):
            story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=intent.pk)
        assert not StoryArtifactLink.objects.exists()
        story.refresh_from_db()
        assert story.cover_artifact_id is None

    def test_scene_image_primaries_are_per_scene(self, story, scene):
        other_scene = story_services.scene_create(story_id=story.pk, title="Calm")
        first = make_image(scene, "one", state="published")
        second = make_image(other_scene, "two", state="published")
        story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=first.pk)
        story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=second.pk)
        assert StoryArtifactLink.objects.filter(role="scene_image", is_primary=True).count() == 2
        with pytest.raises(InvalidLink):
            story_services.story_set_primary(
                story_id=story.pk, role="scene_image", artifact_id=first.pk, scene_id=other_scene.pk
            )

    def test_a_primary_for_one_scene_never_moves_another_scenes_link(self, story, scene):
        """A story-level image linked as scene X's image, made primary for scene Y: refused
        (one artifact, one link per role), and scene X's link and primary stay as they were."""
        scene_y = story_services.scene_create(story_id=story.pk, title="Y")
        image = make_image(story, "story-level", state="published")
        link = story_services.link_create(
            story_id=story.pk, artifact_id=image.pk, role="scene_image", scene_id=scene.pk
        )
        x_primary = make_image(scene, "x", state="published")
        story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=x_primary.pk)
        with pytest.raises(DuplicateLink):
            story_services.story_set_primary(
                story_id=story.pk, role="scene_image", artifact_id=image.pk, scene_id=scene_y.pk
            )
        link.refresh_from_db()
        assert (link.scene_id, link.is_primary) == (scene.pk, False)
        assert StoryArtifactLink.objects.get(role="scene_image", is_primary=True).artifact_id == x_primary.pk
        assert not StoryArtifactLink.objects.filter(scene=scene_y).exists()
        # For its own scene it can still become primary.
        story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=image.pk, scene_id=scene.pk)
        assert StoryArtifactLink.objects.get(role="scene_image", is_primary=True).artifact_id == image.pk

    def test_plain_links_are_once_per_role(self, story, published_cover):
        link = story_services.link_create(story_id=story.pk, artifact_id=published_cover.pk, role="cover")
        assert link.is_primary is False
        with pytest.raises(DuplicateLink):
            story_services.link_create(story_id=story.pk, artifact_id=published_cover.pk, role="cover")
        # Promoting an existing link reuses it.
        promoted = story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
        assert promoted.pk == link.pk and StoryArtifactLink.objects.get(pk=link.pk).is_primary
