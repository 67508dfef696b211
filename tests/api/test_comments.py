"""Comments (SPEC §13): the API, the services' rules, and what the database refuses whatever
the client (a comment is never edited or deleted, only resolved once)."""

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from comments import selectors, services
from comments.models import Comment
from tests.api.conftest import assert_error, client_for
from tests.conftest import SCENE_INTENT

pytestmark = pytest.mark.django_db


@pytest.fixture
def commenter(make_user):
    user = make_user("ada")
    user.groups.add(Group.objects.get(name="editors"))
    return user


@pytest.fixture
def comment(intent, commenter):
    return services.comment_create(artifact_id=intent.pk, body="Too dark in panel 2.", actor=commenter)


def url(artifact) -> str:
    return f"/v1/artifacts/{artifact.pk}/comments"


class TestTheApi:
    def test_create_list_and_resolve(self, editor, intent):
        made = editor.post(url(intent), {"body": "Warmer light, please."}, format="json")
        assert made.status_code == 201, made.content
        body = made.json()
        assert set(body) == {
            "comment_id",
            "artifact_id",
            "author",
            "body",
            "created_at",
            "resolved_at",
            "resolved_by",
        }
        assert (body["artifact_id"], body["author"], body["body"]) == (
            str(intent.pk),
            "editor",
            "Warmer light, please.",
        )
        assert (body["resolved_at"], body["resolved_by"]) == (None, None)
        editor.post(url(intent), {"body": "Second thought."}, format="json")

        listed = editor.get(url(intent)).json()["results"]
        assert [c["body"] for c in listed] == ["Warmer light, please.", "Second thought."]  # oldest first

        resolved = editor.post(f"/v1/comments/{body['comment_id']}/resolve")
        assert resolved.status_code == 200
        assert resolved.json()["resolved_by"] == "editor" and resolved.json()["resolved_at"]
        again = editor.post(f"/v1/comments/{body['comment_id']}/resolve/")  # a retry: as it is
        assert again.status_code == 200 and again.json() == resolved.json()

    def test_a_reader_reads_but_cannot_comment_or_resolve(self, reader, writer, intent, comment):
        assert reader.get(url(intent)).status_code == 200
        assert_error(reader.post(url(intent), {"body": "hi"}, format="json"), 403, "permission_denied")
        assert_error(writer.post(url(intent), {"body": "hi"}, format="json"), 403, "permission_denied")
        assert_error(reader.post(f"/v1/comments/{comment.pk}/resolve"), 403, "permission_denied")
        assert Comment.objects.count() == 1 and Comment.objects.get().resolved_at is None

    def test_unknown_artifact_or_comment_is_404(self, editor, anon, db):
        missing = "00000000-0000-0000-0000-000000000042"
        assert_error(editor.get(f"/v1/artifacts/{missing}/comments"), 404, "not_found")
        assert_error(editor.post(f"/v1/artifacts/{missing}/comments", {"body": "x"}, format="json"), 404, "not_found")
        assert_error(editor.post(f"/v1/comments/{missing}/resolve"), 404, "not_found")
        assert anon.get(f"/v1/artifacts/{missing}/comments").status_code == 401

    @pytest.mark.parametrize(
        "payload",
        [{}, {"body": ""}, {"body": "   \n "}, {"body": 7}, {"body": None}, {"body": "x" * 10_001}, {"body": "a\x00b"}],
    )
    def test_a_bad_body_is_400_naming_it(self, editor, intent, payload):
        answer = editor.post(url(intent), payload, format="json")
        assert answer.status_code == 400, answer.content
        assert answer.json()["field"] == "body"
        assert not Comment.objects.exists()

    def test_the_longest_body_is_taken(self, editor, intent):
        assert editor.post(url(intent), {"body": "é" * 10_000}, format="json").status_code == 201

    def test_the_thread_costs_the_same_whatever_its_length(self, editor, intent, commenter, make_user):
        services.comment_create(artifact_id=intent.pk, body="one", actor=commenter)
        editor.get(url(intent))
        with CaptureQueriesContext(connection) as few:
            assert len(editor.get(url(intent)).json()["results"]) == 1
        for n in range(6):
            made = services.comment_create(artifact_id=intent.pk, body=f"c{n}", actor=make_user(f"u{n}"))
            services.comment_resolve(comment_id=made.pk, actor=make_user(f"r{n}"))
        with CaptureQueriesContext(connection) as many:
            assert len(editor.get(url(intent)).json()["results"]) == 7
        assert len(many) == len(few)

    def test_pages_follow_the_thread(self, editor, intent, commenter):
        for n in range(3):
            services.comment_create(artifact_id=intent.pk, body=f"c{n}", actor=commenter)
        first = editor.get(url(intent), {"page_size": 2}).json()
        second = editor.get(first["next"]).json()
        assert [c["body"] for c in first["results"] + second["results"]] == ["c0", "c1", "c2"]
        assert_error(editor.get(url(intent), {"order": "new"}), 400, "invalid_parameter", "order")


def test_the_editors_group_has_the_comment_permissions(commenter, make_user):
    assert commenter.has_perms(["comments.add_comment", "comments.change_comment", "comments.view_comment"])
    assert not make_user("plain").has_perm("comments.add_comment")


# -- the database's word, by raw SQL -------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE comments_comment SET body = 'rewritten'",
        "UPDATE comments_comment SET created_at = resolved_at",
        "UPDATE comments_comment SET resolved_at = NULL, resolved_by_id = NULL",
        "UPDATE comments_comment SET resolved_at = created_at",  # resolved by nobody
        "DELETE FROM comments_comment",
    ],
)
def test_raw_sql_cannot_edit_unresolve_or_delete(comment, commenter, statement):
    services.comment_resolve(comment_id=comment.pk, actor=commenter)
    before = list(Comment.objects.values())
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert list(Comment.objects.values()) == before


def test_raw_sql_may_resolve_an_open_comment_once(comment, commenter):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE comments_comment SET resolved_at = created_at, resolved_by_id = %s WHERE id = %s",
            [commenter.pk, comment.pk.hex if connection.vendor == "sqlite" else comment.pk],
        )
    assert Comment.objects.get().resolved_by == commenter
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE comments_comment SET resolved_by_id = NULL WHERE resolved_by_id IS NOT NULL")


def test_the_models_refuse_too(comment):
    comment.body = "changed"
    with pytest.raises(Exception, match="never edited"):
        comment.save()
    with pytest.raises(Exception, match="never deleted"):
        comment.delete()


def test_resolving_is_one_conditional_update(comment, commenter, make_user):
    first = services.comment_resolve(comment_id=comment.pk, actor=commenter)
    second = services.comment_resolve(comment_id=comment.pk, actor=make_user("late"))
    assert (second.resolved_by, second.resolved_at) == (commenter, first.resolved_at)


# -- PostgreSQL: the thread's index, and two editors resolving at once -----------------------


@pytest.mark.postgres_only
def test_the_thread_is_read_on_its_index(intent, commenter, service):
    """Threads of many artifacts (on one, every index costs the same)."""
    artifacts = [intent] + [
        service.create_artifact(intent.scene_id, "scene_intent", {**SCENE_INTENT, "n": n}) for n in range(15)
    ]
    Comment.objects.bulk_create(
        Comment(artifact=artifact, author=commenter, body=f"c{n}") for artifact in artifacts for n in range(100)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE comments_comment")
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = selectors.artifact_thread(intent.pk)[:50].query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Scan using comment_thread_idx" in plan, plan


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_editors_resolving_at_once_both_see_it_resolved_once(intent, make_user):
    # The permissions themselves: a transactional test's flush empties the editors group
    # that a migration filled.
    perms = ("comments.add_comment", "comments.change_comment")
    first, second = make_user("first", *perms), make_user("second", *perms)
    comment = services.comment_create(artifact_id=intent.pk, body="Race me.", actor=first)
    barrier = threading.Barrier(2)
    answers, errors = [None, None], []

    def resolve(index, user):
        try:
            client = client_for(user)
            barrier.wait(10)
            answers[index] = client.post(f"/v1/comments/{comment.pk}/resolve")
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=resolve, args=(i, u)) for i, u in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()  # one resolution, both told the same
    assert answers[0].json()["resolved_by"] in ("first", "second")
