"""The database itself refuses what would break an invariant: raw SQL, no ORM help."""

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from artifacts import services as artifact_services
from artifacts.models import Artifact
from audit.models import AuditEvent
from audit.services import audit_record
from kernel.errors import ImmutableRow
from stories import services as story_services
from stories.models import StoryArtifactLink
from tests.conftest import PNG_BYTES, SCENE_INTENT, make_image

# Every column of the table, read from the model: a column added later is covered here too.
COLUMNS = [field.column for field in Artifact._meta.concrete_fields]


def db_id(value: uuid.UUID):
    return Artifact._meta.pk.get_db_prep_value(value, connection)


def execute(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def refused(sql, params=()):
    """True when the database rejects the statement (and nothing of it stays)."""
    try:
        with transaction.atomic():
            execute(sql, params)
    except IntegrityError:
        return True
    return False


def copy_row(artifact, **overrides):
    """INSERT a copy of ``artifact`` with a new id and the given column overrides."""
    overrides = {"id": db_id(uuid.uuid4()), **overrides}
    select = ", ".join("%s" if c in overrides else c for c in COLUMNS)
    params = [overrides[c] for c in COLUMNS if c in overrides]
    return (
        f"INSERT INTO artifacts_artifact ({', '.join(COLUMNS)}) SELECT {select} FROM artifacts_artifact WHERE id = %s",
        [
            *params,
            db_id(artifact.pk),
        ],
    )


@pytest.fixture
def artifact(service, scene):
    return service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)


class TestArtifactImmutability:
    @pytest.mark.parametrize(
        ("column", "value"),
        [
            ("payload", '{"mood": "changed"}'),
            ("version", 7),
            ("type", "panel_plan"),
            ("request_id", "forged"),
            ("content_sha256", "0" * 64),
            ("pruned_at", "2020-01-01 00:00:00"),
            ("fingerprint", "f" * 64),
        ],
    )
    def test_update_of_any_column_but_lifecycle_is_refused(self, artifact, column, value):
        assert refused(f"UPDATE artifacts_artifact SET {column} = %s WHERE id = %s", [value, db_id(artifact.pk)])
        assert Artifact.objects.get(pk=artifact.pk).payload == SCENE_INTENT

    def test_the_sqlite_guard_names_every_column(self, artifact):
        """SQLite's UPDATE guard lists the columns it compares (PostgreSQL's compares whole
        rows): a migration that adds a column must re-create it with the new list."""
        if connection.vendor != "sqlite":
            pytest.skip("PostgreSQL's guard compares whole rows")
        [sql] = [
            row[0]
            for row in connection.cursor().execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'artifacts_artifact_immutable'"
            )
        ]
        missing = [c for c in COLUMNS if c != "lifecycle_state" and f"NEW.{c} IS OLD.{c}" not in sql]
        assert missing == []

    def test_lifecycle_change_alone_is_allowed(self, artifact):
        assert (
            execute("UPDATE artifacts_artifact SET lifecycle_state = 'candidate' WHERE id = %s", [db_id(artifact.pk)])
            == 1
        )

    def test_lifecycle_change_with_another_column_is_refused(self, artifact):
        assert refused(
            "UPDATE artifacts_artifact SET lifecycle_state = 'candidate', request_id = 'x' WHERE id = %s",
            [db_id(artifact.pk)],
        )

    def test_delete_is_refused(self, artifact):
        assert refused("DELETE FROM artifacts_artifact WHERE id = %s", [db_id(artifact.pk)])
        assert Artifact.objects.filter(pk=artifact.pk).exists()

    def test_the_prune_path_exactly_is_allowed_once(self, artifact):
        now = timezone.now()
        sql = "UPDATE artifacts_artifact SET payload = NULL, content = '', pruned_at = %s WHERE id = %s"
        assert refused(
            "UPDATE artifacts_artifact SET payload = NULL, content = '', pruned_at = %s, version = 9 WHERE id = %s",
            [now, db_id(artifact.pk)],
        )
        assert refused("UPDATE artifacts_artifact SET payload = NULL WHERE id = %s", [db_id(artifact.pk)])
        assert execute(sql, [now, db_id(artifact.pk)]) == 1
        tombstone = Artifact.objects.get(pk=artifact.pk)
        assert (tombstone.payload, tombstone.version, tombstone.pruned_at is not None) == (None, 1, True)
        assert refused(sql, [timezone.now(), db_id(artifact.pk)]), "a tombstone cannot be pruned again"

    def test_orm_paths_refuse_too(self, artifact):
        artifact.payload = {"mood": "x"}
        with pytest.raises(ImmutableRow):
            artifact.save()
        with pytest.raises(ImmutableRow):
            artifact.delete()
        with pytest.raises(ImmutableRow):
            Artifact.objects.filter(pk=artifact.pk).update(payload={})
        with pytest.raises(ImmutableRow):
            Artifact.objects.all().delete()


class TestVersionUniqueness:
    def test_duplicate_scene_stream_version_is_refused(self, artifact):
        assert refused(*copy_row(artifact))
        assert not refused(*copy_row(artifact, version=2))

    def test_duplicate_story_level_version_with_null_scene_is_refused(self, service, story):
        cover = make_image(story, "a")
        assert cover.scene_id is None
        assert refused(*copy_row(cover))
        assert not refused(*copy_row(cover, version=2))

    def test_version_zero_and_unknown_kind_are_refused(self, artifact):
        assert refused(*copy_row(artifact, version=0))
        assert refused(*copy_row(artifact, version=5, kind="hologram"))


class TestPrimaryLinks:
    def insert_link(self, *, story, artifact, role, scene=None, primary=True):
        sql = (
            "INSERT INTO stories_storyartifactlink (id, story_id, artifact_id, role, scene_id, is_primary, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)"
        )
        return sql, [
            db_id(uuid.uuid4()),
            db_id(story.pk),
            db_id(artifact.pk),
            role,
            db_id(scene.pk) if scene else None,
            primary,
            timezone.now(),
        ]

    def test_second_primary_per_story_role_is_refused(self, service, story, published_cover):
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
        other = make_image(story, "b", state="published")  # a primary may be published: the index refuses
        assert refused(*self.insert_link(story=story, artifact=other, role="cover"))
        assert not refused(*self.insert_link(story=story, artifact=other, role="cover", primary=False))

    def test_one_primary_scene_image_per_scene(self, service, story, scene):
        second_scene = story_services.scene_create(story_id=story.pk, title="Calm")
        images = [make_image(scene, str(n), state="published") for n in range(2)]
        elsewhere = service.create_artifact(
            second_scene.pk,
            "cover_image",
            {"alt": "z"},
            content=PNG_BYTES,
            mime_type="image/png",
            lifecycle_state="published",
        )
        assert not refused(*self.insert_link(story=story, artifact=images[0], role="scene_image", scene=scene))
        assert refused(*self.insert_link(story=story, artifact=images[1], role="scene_image", scene=scene))
        assert not refused(*self.insert_link(story=story, artifact=elsewhere, role="scene_image", scene=second_scene))

    def test_scene_image_needs_a_scene_and_other_roles_refuse_one(self, story, scene, published_cover):
        assert refused(*self.insert_link(story=story, artifact=published_cover, role="scene_image"))
        assert refused(*self.insert_link(story=story, artifact=published_cover, role="cover", scene=scene))

    def test_an_artifact_is_linked_to_a_role_once(self, story, published_cover):
        assert not refused(*self.insert_link(story=story, artifact=published_cover, role="cover", primary=False))
        assert refused(*self.insert_link(story=story, artifact=published_cover, role="cover", primary=False))
        assert StoryArtifactLink.objects.count() == 1

    def test_a_primary_needs_a_published_unpruned_artifact(self, service, story):
        """SPEC §5, also for raw SQL: inserting a primary, or promoting a link, of an artifact
        that is not published (or is pruned) is refused."""
        draft = make_image(story, "draft")
        assert refused(*self.insert_link(story=story, artifact=draft, role="cover"))
        assert not refused(*self.insert_link(story=story, artifact=draft, role="cover", primary=False))
        promote = "UPDATE stories_storyartifactlink SET is_primary = %s WHERE artifact_id = %s"
        assert refused(promote, [True, db_id(draft.pk)])
        artifact_services.artifact_transition(artifact_id=draft.pk, to="candidate")
        artifact_services.artifact_transition(artifact_id=draft.pk, to="published")
        assert not refused(promote, [True, db_id(draft.pk)])


class TestLifecycle:
    """SPEC §5 in the database: lifecycle_state moves only along the transitions, never on a
    pruned artifact, and a primary stays published (raw SQL, as the service role may)."""

    def move(self, artifact, to):
        return refused("UPDATE artifacts_artifact SET lifecycle_state = %s WHERE id = %s", [to, db_id(artifact.pk)])

    def test_only_the_transitions_of_spec_5_are_allowed(self, artifact):
        assert self.move(artifact, "published")  # intermediate -> published skips candidate
        assert self.move(artifact, "golden")
        assert not self.move(artifact, "candidate")
        assert self.move(artifact, "intermediate")
        assert not self.move(artifact, "published")
        assert self.move(artifact, "candidate")
        assert not self.move(artifact, "archived")
        assert not self.move(artifact, "candidate")  # restore
        assert not self.move(artifact, "archived")
        assert Artifact.objects.get(pk=artifact.pk).lifecycle_state == "archived"

    def test_a_pruned_artifact_keeps_its_state(self, artifact):
        execute(
            "UPDATE artifacts_artifact SET payload = NULL, content = '', pruned_at = %s WHERE id = %s",
            [timezone.now(), db_id(artifact.pk)],
        )
        assert self.move(artifact, "archived")
        assert Artifact.objects.get(pk=artifact.pk).lifecycle_state == "intermediate"

    def test_a_primary_is_not_archived(self, story, published_cover):
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
        assert self.move(published_cover, "archived")
        StoryArtifactLink.objects.filter(artifact_id=published_cover.pk).update(is_primary=False)
        assert not self.move(published_cover, "archived")


class TestRelations:
    def insert_relation(self, a, b, relation_type="derived_from"):
        sql = (
            "INSERT INTO artifacts_artifactrelation (id, from_artifact_id, to_artifact_id, relation_type, request_id, "
            "created_at) VALUES (%s, %s, %s, %s, '', %s)"
        )
        return sql, [db_id(uuid.uuid4()), db_id(a.pk), db_id(b.pk), relation_type, timezone.now()]

    def test_self_edge_duplicate_and_unknown_type_are_refused(self, service, scene, artifact):
        other = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
        assert refused(*self.insert_relation(artifact, artifact))
        assert not refused(*self.insert_relation(other, artifact))
        assert refused(*self.insert_relation(other, artifact))
        assert refused(*self.insert_relation(artifact, other, "copied_from"))


class TestAuditTrail:
    def test_audit_rows_are_append_only(self, artifact):
        event = audit_record(action="transition", target=artifact, from_value="a", to_value="b")
        assert refused("UPDATE artifacts_auditevent SET action = 'forged' WHERE id = %s", [db_id(event.pk)])
        assert refused("DELETE FROM artifacts_auditevent WHERE id = %s", [db_id(event.pk)])
        assert AuditEvent.objects.get(pk=event.pk).action == "transition"
        with pytest.raises(ImmutableRow):
            event.save()
