"""GET /v1/changes (SPEC §14): pages in commit order, cursors, filters, long-poll, retention,
and the proof that a reader never skips an event committed late (PostgreSQL, 16 writers)."""

import threading
import time

import pytest
from django.db import connection, connections
from django.test import override_settings

from artifacts import services as artifact_services
from changes import selectors, wakeup
from changes.models import Event
from stories import services as story_services
from tests.api.conftest import client_for
from tests.conftest import SCENE_INTENT
from tests.operations.conftest import run


@pytest.fixture(autouse=True)
def _no_listener_left():
    """The listener's connection would keep the test database from being dropped."""
    yield
    wakeup.stop_listening()


@pytest.fixture
def reader(make_user):
    return client_for(make_user("reader"))


def make(scene, n=1):
    return [
        artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=SCENE_INTENT)
        for _ in range(n)
    ]


def follow(client, since=None, **query):
    params = {**query, **({"since": since} if since is not None else {})}
    answer = client.get("/v1/changes", params)
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_pages_follow_each_other_in_commit_order_each_event_once(reader, scene):
    made = make(scene, 7)
    seen, since = [], None
    for _ in range(5):
        page = follow(reader, since, limit=3)
        seen += page["results"]
        since = page["next"]
    assert [e["data"]["artifact_id"] for e in seen] == [str(a.pk) for a in made]
    first = seen[0]
    assert set(first) == {"event_id", "type", "timestamp", "story_id", "scene_id", "data"}
    assert first["type"] == "artifact.created" and first["scene_id"] == str(scene.pk)
    assert "payload" not in first["data"]
    # At the end: nothing more, and next is since.
    assert follow(reader, since) == {"results": [], "next": since}


def test_since_now_starts_at_the_current_end(reader, scene):
    make(scene, 2)
    page = follow(reader, "now")
    assert page["results"] == []
    [new] = make(scene)
    assert [e["data"]["artifact_id"] for e in follow(reader, page["next"])["results"]] == [str(new.pk)]


def test_types_and_story_id_filter(reader, story, scene, make_user):
    make(scene)
    story_services.scene_lock_planning(scene_id=scene.pk)
    other = story_services.story_create(title="other")
    other_scene = story_services.scene_create(story_id=other.pk, title="s")
    make(other_scene)
    assert [e["type"] for e in follow(reader, types="scene.locked")["results"]] == ["scene.locked"]
    only = follow(reader, story_id=str(other.pk))["results"]
    assert [e["story_id"] for e in only] == [str(other.pk)]


@pytest.mark.parametrize(
    "query, field",
    [
        ({"since": "garbage"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"wait": "31"}, "wait"),
        ({"wait": "nan"}, "wait"),
        ({"types": "artifact.created,nope"}, "types"),
        ({"story_id": "x"}, "story_id"),
        ({"page": "1"}, "page"),
    ],
)
def test_bad_parameters_are_400_naming_them(reader, db, query, field):
    answer = reader.get("/v1/changes", query)
    assert answer.status_code == 400, answer.content
    assert answer.json()["field"] == field


def test_a_tampered_cursor_is_400_invalid_cursor(reader, scene):
    make(scene, 2)
    cursor = follow(reader, limit=1)["next"]
    forged = selectors.Position.decode(cursor)
    tampered = selectors.base64.urlsafe_b64encode(f"{forged.xid}.{forged.seq - 1}.{forged.at}:abc".encode()).decode()
    for bad in (tampered, cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")):
        answer = reader.get("/v1/changes", {"since": bad})
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_cursor", answer.content


def test_a_cursor_older_than_the_retention_is_410_and_prune_changes_removes_old_events(reader, scene):
    make(scene, 3)
    cursor = follow(reader, limit=1)["next"]
    with override_settings(CHANGES_RETENTION_DAYS=0):
        answer = reader.get("/v1/changes", {"since": cursor})
        assert answer.status_code == 410 and answer.json()["code"] == "cursor_expired"
        dry = run("prune_changes")
        assert dry.code == 0 and "events to delete  3" in dry.out and Event.objects.count() == 3
        done = run("prune_changes", "--yes", "--batch-size", "2")
        assert done.code == 0 and "events deleted  3" in done.out
    assert Event.objects.count() == 0
    assert run("prune_changes", "--yes").out.count("events deleted  0") == 1


def test_anonymous_is_401(client, db):
    assert client.get("/v1/changes").status_code == 401


# -- long-poll ----------------------------------------------------------------------------------


def _get_in_thread(client, query, box):
    def go():
        try:
            started = time.monotonic()
            box["answer"] = client.get("/v1/changes", query)
            box["seconds"] = time.monotonic() - started
        finally:
            connections.close_all()

    thread = threading.Thread(target=go)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_wakes_at_a_commit_and_holds_no_connection(make_user, story, scene):
    reader = client_for(make_user("reader"))
    since = follow(reader, "now")["next"]
    box = {}
    thread = _get_in_thread(reader, {"since": since, "wait": "20"}, box)
    time.sleep(0.5)  # the request is waiting by now (a later start only makes it find the event at once)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend' AND query NOT LIKE 'LISTEN%%'"
                " AND state = 'active'"
            )
            assert cursor.fetchone()[0] == 0  # the waiting request runs no query
    [made] = make(scene)
    thread.join(30)
    assert box["answer"].status_code == 200
    assert [e["data"]["artifact_id"] for e in box["answer"].json()["results"]] == [str(made.pk)]
    # Woken by the commit, far before the 20 s wait would have ended.
    assert box["seconds"] < 10


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_with_nothing_new_ends_empty_with_next_as_since(make_user, story, scene):
    reader = client_for(make_user("reader"))
    since = follow(reader, "now")["next"]
    page = follow(reader, since, wait="0.3")
    assert page == {"results": [], "next": since}


# -- no event is ever skipped -------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_sixteen_writers_and_a_reader_with_small_pages_see_every_committed_event_exactly_once(story):
    scenes = [story_services.scene_create(story_id=story.pk, title=f"s{i}") for i in range(16)]
    per_writer = 25
    done = threading.Event()
    errors = []

    def write(scene_id):
        try:
            for i in range(per_writer):
                artifact_services.artifact_create(scene_id=scene_id, type="scene_intent", payload=SCENE_INTENT)
                if i % 5 == 0:
                    time.sleep(0.001)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    seen: list[str] = []

    def read():
        after = selectors.start_position()
        expected = 16 * per_writer
        deadline = time.monotonic() + 120
        try:
            while len(seen) < expected and time.monotonic() < deadline:
                page = selectors.feed_page(after=after, limit=7)
                seen.extend(str(e.body["event_id"]) for e in page)
                if page:
                    after = page[-1].position
                elif done.is_set():
                    time.sleep(0.01)
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(s.pk,)) for s in scenes]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert not errors
    committed = [str(e) for e in Event.objects.values_list("event_id", flat=True)]
    assert len(committed) == 16 * per_writer
    assert len(seen) == len(set(seen)), "an event was served twice"
    assert set(seen) == set(committed), f"{len(set(committed) - set(seen))} committed events were skipped"


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_event_committed_late_is_served_after_the_reader_passed_its_sequence_number(story, scene):
    """The race itself, made certain: transaction A takes the lower sequence number and
    commits last; a reader that read B's event meanwhile still gets A's after."""
    from django.db import transaction

    from changes import services as change_services

    a_inserted, b_committed = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                change_services.event_record(type="scene.locked", story_id=story.pk, scene_id=scene.pk, data={"n": "a"})
                a_inserted.set()
                b_committed.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    a_inserted.wait(10)
    with transaction.atomic():
        change_services.event_record(type="scene.locked", story_id=story.pk, scene_id=scene.pk, data={"n": "b"})
    first = selectors.feed_page(after=selectors.start_position(), limit=10)
    b_committed.set()
    thread.join()
    after = first[-1].position if first else selectors.start_position()
    rest = selectors.feed_page(after=after, limit=10)
    served = [e.body["event_id"] for e in first + rest]
    assert sorted(served) == sorted(str(e) for e in Event.objects.values_list("event_id", flat=True))
    assert len(served) == 2


@pytest.mark.postgres_only
def test_a_feed_page_reads_the_position_index(scene):
    from changes.selectors import _PG_HORIZON

    make(scene, 3)
    with connection.cursor() as cursor:
        # A small table: ask the planner what it would use on a large one.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(
            "EXPLAIN SELECT xid, seq FROM changes_event WHERE (xid, seq) > (0, 0)"
            f" AND xid < {_PG_HORIZON} ORDER BY xid, seq LIMIT 100"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # Read in the index's order: no sort of the events (the horizon is computed once, an InitPlan).
    assert "Scan using changes_event_position_idx" in plan and "Sort Key" not in plan, plan
