"""API clients for the four roles of the permission matrix, authenticated by real tokens."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from artifacts.services import ArtifactService
from tests.conftest import PNG_BYTES, SCENE_INTENT

# Everything a pipeline worker writes, but not the editors' planning-lock override.
WRITER_PERMS = [
    f"{app}.{action}_{model}"
    for app, models in {
        "artifacts": ["artifact", "artifactrelation"],
        "stories": ["story", "scene", "storyartifactlink"],
        "runs": ["run", "agentstep", "runartifactlink"],
    }.items()
    for model in models
    for action in ("add", "change")
]


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anon(db):
    return APIClient()


@pytest.fixture
def reader(make_user):
    return client_for(make_user("reader"))


@pytest.fixture
def writer(make_user):
    return client_for(make_user("writer", *WRITER_PERMS))


@pytest.fixture
def editor(make_user):
    user = make_user("editor")
    user.groups.add(Group.objects.get(name="editors"))
    return client_for(user)


@pytest.fixture
def clients(anon, reader, writer, editor):
    return {"anonymous": anon, "reader": reader, "writer": writer, "editor": editor}


@pytest.fixture
def intent(scene):
    return ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)


@pytest.fixture
def png():
    return PNG_BYTES


def assert_error(response, status: int, code: str, field: str | None = None):
    """The one error shape: JSON with code, message, request_id (and field when named)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response["X-Request-ID"]
    if field is not None:
        assert body.get("field") == field, body
    return body


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Each role is a real user with a password; the production hasher is slow by design."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
