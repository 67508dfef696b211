"""The artifact page's comment thread: its form and "resolve" buttons are POSTs with CSRF,
through comments.services, with the API's permissions (SPEC §13)."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from comments import services
from comments.models import Comment

from .conftest import change_url, messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def intent(scene, service):
    from tests.conftest import SCENE_INTENT

    return service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)


def add_url(artifact) -> str:
    return reverse("admin:comments_comment_add_to", args=[artifact.pk])


def resolve_url(comment) -> str:
    return reverse("admin:comments_comment_resolve", args=[comment.pk])


def test_an_editor_comments_and_resolves_from_the_artifact_page(client, make_user, intent):
    editor = make_user("ed", superuser=False)
    editor.is_staff = True
    editor.save()
    editor.groups.add(Group.objects.get(name="editors"))
    client.force_login(editor)

    page = client.get(change_url(intent)).content.decode()
    assert "No comments yet." in page and 'id="comment-add-form"' in page

    answer = client.post(add_url(intent), {"body": "Panel 2 is too dark."})
    assert answer.status_code == 302 and answer["Location"].endswith(change_url(intent) + "#comments")
    assert messages_of(answer) == ["Comment added."]
    comment = Comment.objects.get()
    assert (comment.author, comment.body) == (editor, "Panel 2 is too dark.")

    refused = client.post(add_url(intent), {"body": "   "})
    assert "Comment not added (invalid)" in messages_of(refused)[-1]

    client.post(resolve_url(comment))
    client.post(resolve_url(comment))  # a second click: as it is
    comment.refresh_from_db()
    assert comment.resolved_by == editor
    page = client.get(change_url(intent)).content.decode()
    assert "✓ by ed" in page


def test_a_viewer_sees_the_thread_but_cannot_post(client, make_user, intent):
    author = make_user("author")
    comment = services.comment_create(artifact_id=intent.pk, body="Looks right.", actor=author)
    viewer = make_user("viewer", "artifacts.view_artifact")
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    page = client.get(change_url(intent)).content.decode()
    assert "Looks right." in page and "comment-add-form" not in page and "resolve-comment" not in page
    assert client.post(add_url(intent), {"body": "x"}).status_code == 403
    assert client.post(resolve_url(comment)).status_code == 403
    assert Comment.objects.count() == 1 and Comment.objects.get().resolved_at is None


def test_posts_need_csrf_and_get_is_refused(make_user, intent):
    user = make_user("boss2", superuser=True)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(add_url(intent), {"body": "x"}).status_code == 403
    assert strict.get(add_url(intent)).status_code == 405
    assert not Comment.objects.exists()


def test_the_thread_costs_the_same_whatever_its_length(editor_client, make_user, intent):
    services.comment_create(artifact_id=intent.pk, body="one", actor=make_user("a0"))
    editor_client.get(change_url(intent))
    with CaptureQueriesContext(connection) as few:
        editor_client.get(change_url(intent))
    for n in range(1, 6):
        made = services.comment_create(artifact_id=intent.pk, body=f"c{n}", actor=make_user(f"a{n}"))
        services.comment_resolve(comment_id=made.pk, actor=make_user(f"r{n}"))
    with CaptureQueriesContext(connection) as many:
        editor_client.get(change_url(intent))
    assert len(many) == len(few)


def test_unknown_ids_are_404(editor_client, db):
    missing = "00000000-0000-0000-0000-000000000077"
    assert (
        editor_client.post(reverse("admin:comments_comment_add_to", args=[missing]), {"body": "x"}).status_code == 404
    )
    assert editor_client.post(reverse("admin:comments_comment_resolve", args=[missing])).status_code == 404
    assert editor_client.post(reverse("admin:comments_comment_resolve", args=["nope"])).status_code == 404
