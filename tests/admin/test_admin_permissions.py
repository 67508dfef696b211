"""The admin asks what the API asks: a primary needs ``stories.change_storyartifactlink``
(changing the story is not enough), and no admin page shows an API key."""

from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

from audit.models import AuditEvent
from stories.models import StoryArtifactLink

from .conftest import change_url
from .test_story_admin import choose


def staff(make_user, *perms):
    user = make_user("curator", *perms)
    user.is_staff = True
    user.save()
    return user


def test_changing_the_story_is_not_enough_to_set_a_primary(client, story, published_cover, make_user):
    client.force_login(staff(make_user, "stories.view_story", "stories.change_story"))
    page = client.get(change_url(story))
    assert page.status_code == 200 and page.context["can_choose_primary"] is False
    assert b"choose-primary" not in page.content

    assert choose(client, story, "cover", published_cover).status_code == 403
    story.refresh_from_db()
    assert story.cover_artifact_id is None
    assert not StoryArtifactLink.objects.exists() and not AuditEvent.objects.filter(action="set_primary").exists()


def test_the_apis_permission_sets_a_primary(client, story, published_cover, make_user):
    client.force_login(staff(make_user, "stories.view_story", "stories.change_storyartifactlink"))
    assert client.get(change_url(story)).context["can_choose_primary"] is True
    assert choose(client, story, "cover", published_cover).status_code == 302
    story.refresh_from_db()
    assert story.cover_artifact_id == published_cover.pk


def test_no_admin_page_shows_an_api_key(client, superuser, make_user):
    key = Token.objects.create(user=make_user("worker")).key
    viewer = staff(make_user, "authtoken.view_tokenproxy", "authtoken.view_token")
    assert Permission.objects.filter(codename="view_tokenproxy").exists()  # the permission is real
    for user in (viewer, superuser):
        client.force_login(user)
        index = client.get("/admin/")
        assert index.status_code == 200 and key.encode() not in index.content
        assert b"/admin/authtoken/" not in index.content
        assert client.get("/admin/authtoken/tokenproxy/").status_code == 404
