"""Primary history (SPEC §13): the curation service writes each primary's validity interval
with the change; the database refuses overlaps, deletes and rewrites on both backends; the
data migration rebuilds the history from the audit trail."""

import datetime
import importlib
import threading
import uuid

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, models, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts import services as artifact_services
from audit.models import AuditEvent
from stories import selectors
from stories import services as story_services
from stories.models import PrimaryInterval, Scene, Story, StoryArtifactLink
from tests.conftest import PNG_BYTES, make_image

MIGRATION = importlib.import_module("stories.migrations.0004_primary_history")
TICK = datetime.timedelta(microseconds=1)


def published_image(owner, n: int):
    image = make_image(owner, f"image {n}", content=PNG_BYTES + n.to_bytes(4, "big"))
    artifact_services.artifact_transition(artifact_id=image.pk, to="candidate")
    return artifact_services.artifact_transition(artifact_id=image.pk, to="published")


def intervals(story, role="cover", scene=None):
    return list(PrimaryInterval.objects.filter(story=story, role=role, scene=scene).order_by("since"))


def as_of(story, moment) -> dict:
    return {(i.role, i.scene_id): i.artifact_id for i in selectors.primaries_as_of(story.pk, moment)}


@pytest.mark.django_db
class TestTheServiceWritesTheHistory:
    def test_each_change_closes_the_old_interval_where_the_new_one_opens(self, story, make_user):
        editor = make_user("curator")
        first, second = published_image(story, 1), published_image(story, 2)
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=first.pk, actor=editor)
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=second.pk)
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=second.pk)  # no change

        old, new = intervals(story)
        assert (old.artifact_id, old.set_by, old.until) == (first.pk, editor, new.since)
        assert (new.artifact_id, new.set_by_id, new.until) == (second.pk, None, None)
        assert old.since < old.until

    def test_scene_images_have_a_history_per_scene(self, story, scene):
        other = story_services.scene_create(story_id=story.pk, title="Calm")
        here, there = published_image(scene, 1), published_image(other, 2)
        story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=here.pk)
        story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=there.pk)
        assert [i.until for i in intervals(story, "scene_image", scene)] == [None]
        assert [i.until for i in intervals(story, "scene_image", other)] == [None]

    def test_a_refused_change_writes_no_interval(self, story):
        draft = make_image(story, "draft")
        with pytest.raises(Exception, match="published"):
            story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=draft.pk)
        assert not PrimaryInterval.objects.exists()


@pytest.mark.django_db
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    choices=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=8),
    fractions=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=8, max_size=8),
)
def test_as_of_any_instant_gives_what_was_primary_then(choices, fractions):
    """Any instant (drawn as a fraction of the interval it falls in) answers the last change
    made at or before it, and nothing before the first."""
    story = story_services.story_create(title="Property")
    images = [published_image(story, n) for n in range(4)]
    changes = []  # (instant the artifact became primary, artifact), from the service's own intervals
    for choice in choices:
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=images[choice].pk)
        opened = PrimaryInterval.objects.filter(story=story, role="cover", until__isnull=True).get()
        if not changes or changes[-1][1] != opened.artifact_id:
            changes.append((opened.since, opened.artifact_id))
    assert all(a[1] != b[1] for a, b in zip(changes, changes[1:], strict=False))

    start = changes[0][0]
    instants = [start - TICK, *(s for s, _ in changes), *(s - TICK for s, _ in changes[1:])]
    for index in range(len(changes)):
        end = changes[index + 1][0] if index + 1 < len(changes) else changes[index][0] + datetime.timedelta(days=1)
        span = int((end - changes[index][0]) / TICK)
        instants.append(changes[index][0] + TICK * int(fractions[index] * span))
    for instant in instants:
        expected = None
        for since, artifact_id in changes:
            if since <= instant:
                expected = artifact_id
        assert as_of(story, instant).get(("cover", None)) == expected, instant


# -- what the database refuses, whatever the client -----------------------------------------


def _db(value, field):
    return field.get_db_prep_value(value, connection, prepared=False)


def raw_insert(story, *, since, until=None, artifact, role="cover", scene=None):
    uuid_field, time_field = models.UUIDField(), models.DateTimeField()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO stories_primaryinterval (id, story_id, role, scene_id, artifact_id, since, until)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                _db(uuid.uuid4(), uuid_field),
                _db(story.pk, uuid_field),
                role,
                _db(scene.pk, uuid_field) if scene else None,
                _db(artifact.pk, uuid_field),
                _db(since, time_field),
                _db(until, time_field) if until else None,
            ],
        )


def refused():
    return pytest.raises(IntegrityError)


@pytest.mark.django_db
class TestTheDatabaseKeepsTheHistoryWhole:
    @pytest.fixture
    def history(self, story):
        first, second = published_image(story, 1), published_image(story, 2)
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=first.pk)
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=second.pk)
        return intervals(story), first

    def test_raw_sql_cannot_insert_an_overlap(self, story, history):
        (closed, open_), artifact = history
        with refused(), transaction.atomic():  # inside the closed interval (a NULL scene is one value)
            raw_insert(story, since=closed.since + TICK, until=closed.until - TICK, artifact=artifact)
        with refused(), transaction.atomic():  # across the change
            raw_insert(story, since=closed.until - TICK, until=closed.until + TICK, artifact=artifact)
        with refused(), transaction.atomic():  # after the open one began
            raw_insert(story, since=open_.since + datetime.timedelta(days=1), artifact=artifact)
        with refused(), transaction.atomic():  # an interval that ends before it starts
            raw_insert(story, since=closed.since - TICK, until=closed.since - 2 * TICK, artifact=artifact)
        # Just before the first, touching it: allowed (intervals are [since, until)).
        raw_insert(story, since=closed.since - datetime.timedelta(hours=1), until=closed.since, artifact=artifact)
        assert len(intervals(story)) == 3

    def test_scene_image_overlaps_are_per_scene(self, story, scene):
        other = story_services.scene_create(story_id=story.pk, title="Other")
        image = published_image(scene, 1)
        start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
        raw_insert(story, since=start, artifact=image, role="scene_image", scene=scene)
        raw_insert(story, since=start, artifact=image, role="scene_image", scene=other)
        with refused(), transaction.atomic():
            raw_insert(
                story, since=start + TICK, until=start + 2 * TICK, artifact=image, role="scene_image", scene=scene
            )

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE stories_primaryinterval SET artifact_id = (SELECT artifact_id FROM stories_primaryinterval"
            " WHERE until IS NULL)",
            "UPDATE stories_primaryinterval SET since = until WHERE until IS NOT NULL",
            "UPDATE stories_primaryinterval SET until = NULL",
            "UPDATE stories_primaryinterval SET role = 'final_video'",
            "DELETE FROM stories_primaryinterval",
        ],
    )
    def test_raw_sql_cannot_rewrite_or_delete_history(self, history, statement):
        before = list(PrimaryInterval.objects.order_by("since").values())
        with refused(), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
        assert list(PrimaryInterval.objects.order_by("since").values()) == before

    def test_closing_the_open_interval_is_the_one_update_allowed(self, story, history):
        (closed, open_), _ = history
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE stories_primaryinterval SET until = %s WHERE until IS NULL",
                [_db(open_.since + TICK, models.DateTimeField())],
            )
        assert PrimaryInterval.objects.get(pk=open_.pk).until == open_.since + TICK


# -- the data migration --------------------------------------------------------------------


@pytest.mark.django_db
def test_the_data_migration_builds_the_history_from_the_audit_trail(story, scene, make_user):
    """Rows made the old way (links and audit events, no intervals), then the migration's function."""
    editor = make_user("old-curator")
    covers = [published_image(story, n) for n in range(3)]
    image = published_image(scene, 9)
    untracked = story_services.story_create(title="Linked without events")
    lone = published_image(untracked, 10)

    def old_set_primary(target_story, role, artifact, scene_id=None):
        StoryArtifactLink.objects.filter(story=target_story, role=role, scene_id=scene_id).update(is_primary=False)
        StoryArtifactLink.objects.create(
            story=target_story, artifact=artifact, role=role, scene_id=scene_id, is_primary=True
        )
        return AuditEvent.objects.create(
            action="set_primary",
            target_type="story",
            target_id=target_story.pk,
            story=target_story,
            actor=editor,
            to_value={"role": role, "scene_id": str(scene_id) if scene_id else None, "artifact_id": str(artifact.pk)},
        )

    events = [old_set_primary(story, "cover", cover) for cover in covers]
    scene_event = old_set_primary(story, "scene_image", image, scene.pk)
    lone_link = StoryArtifactLink.objects.create(story=untracked, artifact=lone, role="cover", is_primary=True)
    assert not PrimaryInterval.objects.exists()

    MIGRATION.build_history(apps, None)

    history = intervals(story)
    assert [(i.artifact_id, i.since, i.set_by) for i in history] == [
        (c.pk, e.created_at, editor) for c, e in zip(covers, events, strict=True)
    ]
    assert [i.until for i in history] == [events[1].created_at, events[2].created_at, None]
    (scene_interval,) = intervals(story, "scene_image", scene)
    assert (scene_interval.artifact_id, scene_interval.since, scene_interval.until) == (
        image.pk,
        scene_event.created_at,
        None,
    )
    (opened,) = intervals(untracked)
    assert (opened.artifact_id, opened.since, opened.until) == (lone.pk, lone_link.created_at, None)
    assert as_of(story, events[1].created_at) == {("cover", None): covers[1].pk}


# -- races and indexes (PostgreSQL) ---------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_primary_changes_never_overlap(story):
    covers = [published_image(story, n) for n in range(8)]
    barrier = threading.Barrier(len(covers))
    errors = []

    def change(cover):
        try:
            barrier.wait(10)
            for _ in range(3):
                story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=cover.pk)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(cover,)) for cover in covers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []

    history = intervals(story)
    assert [i.until for i in history[:-1]] == [i.since for i in history[1:]]  # end to end, no overlap
    assert history[-1].until is None
    assert all(a.artifact_id != b.artifact_id for a, b in zip(history, history[1:], strict=False))
    assert Story.objects.get(pk=story.pk).cover_artifact_id == history[-1].artifact_id
    assert AuditEvent.objects.filter(action="set_primary", story=story).count() == len(history)


def _plan(queryset) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_each_history_read_is_answered_by_its_index(story, scene):
    image = published_image(scene, 1)
    stories = [Story(title=f"s{n}") for n in range(200)]
    Story.objects.bulk_create(stories)
    scenes = {other.pk: Scene(story=other, position=1) for other in stories}
    Scene.objects.bulk_create(scenes.values())
    scenes[story.pk] = scene
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    rows = []
    for other in [*stories, story]:
        changes = 300 if other is story else 10  # a long history: a page of it is a LIMIT over the index
        for role in ("cover", "final_audio", "final_video", "scene_image"):
            for n in range(changes):
                since = start + datetime.timedelta(hours=n)
                until = None if n == changes - 1 else since + datetime.timedelta(hours=1)
                scene_of_role = scenes[other.pk] if role == "scene_image" else None
                rows.append(
                    PrimaryInterval(
                        story=other, role=role, scene=scene_of_role, artifact=image, since=since, until=until
                    )
                )
    PrimaryInterval.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE stories_primaryinterval")

    moment = start + datetime.timedelta(hours=4, minutes=30)
    assert len(as_of(story, moment)) == 4
    for queryset, index in [
        (selectors.primaries_as_of(story.pk, moment), "primary_interval_story_idx"),
        (selectors.primary_history(story.pk), "primary_interval_story_idx"),
        (selectors.primary_history(story.pk, role="cover"), "primary_interval_role_idx"),
        (selectors.primary_history(story.pk, role="scene_image", scene_id=scene.pk), "primary_interval_scene_idx"),
    ]:
        plan = _plan(queryset[:50])
        assert f"Index Scan using {index}" in plan or f"Index Only Scan using {index}" in plan, plan
