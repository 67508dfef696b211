"""Content served from one place for the API and the admin (SPEC §7, §12): a stored file
never acts as a page of the service, whatever it is; byte ranges; a missing file is a
JSON error naming it."""

import json
import uuid
from hashlib import sha256

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from artifacts import services as artifact_services
from artifacts.content import storage_name
from artifacts.models import Artifact
from tests.conftest import PNG_BYTES, SVG_BYTES, WAV_BYTES

from .conftest import assert_error

HTML_BYTES = b"<!doctype html><html><body><script>fetch('/admin/auth/user/add/')</script></body></html>"


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user("boss", superuser=True))
    return client


def upload(writer, story, data, content_type, name="upload"):
    return writer.post(
        f"/v1/stories/{story.pk}/artifacts",
        {
            "type": "cover_image",
            "payload": json.dumps({"alt": "x"}),
            "content": SimpleUploadedFile(name, data, content_type=content_type),
        },
        format="multipart",
    )


def imported(story, data: bytes, mime_type: str) -> Artifact:
    """A row as an import from elsewhere could bring it: any stored type, no upload check."""
    digest = sha256(data).hexdigest()
    default_storage.save(storage_name(digest), ContentFile(data))
    artifact = Artifact(
        story_id=story.pk,
        type="cover_image",
        version=Artifact.objects.filter(story=story, scene=None, type="cover_image").count() + 1,
        kind="image",
        payload={"alt": "imported"},
        content_sha256=digest,
        content_size=len(data),
        mime_type=mime_type,
    )
    artifact.content.name = storage_name(digest)
    artifact.save()
    return artifact


def both(writer, admin_client, artifact, **headers):
    """The same content through the API and through the admin's preview URL."""
    return (
        writer.get(f"/v1/artifacts/{artifact.pk}/content", **headers),
        admin_client.get(f"/admin/artifacts/artifact/{artifact.pk}/content/", **headers),
    )


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def assert_sandboxed(response):
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox"


def test_a_png_is_shown_inline_sandboxed(writer, admin_client, story):
    created = upload(writer, story, PNG_BYTES, "image/png")
    artifact = Artifact.objects.get(pk=created.json()["artifact_id"])
    for response in both(writer, admin_client, artifact):
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert response["Content-Disposition"].startswith("inline")
        assert response["Accept-Ranges"] == "bytes"
        assert_sandboxed(response)
        assert body_of(response) == PNG_BYTES


def test_an_svg_with_a_script_is_stored_but_only_ever_an_attachment(writer, admin_client, story):
    """The stored-script attack: an editor uploads an SVG cover; an admin opening its link
    must download it, in a sandbox, never run it in the admin's origin."""
    created = upload(writer, story, SVG_BYTES, "image/svg+xml", name="cover.svg")
    assert created.status_code == 201, created.content
    artifact = Artifact.objects.get(pk=created.json()["artifact_id"])
    assert artifact.mime_type == "image/svg+xml"
    for response in both(writer, admin_client, artifact):
        assert response.status_code == 200
        assert response["Content-Disposition"].startswith("attachment")
        assert_sandboxed(response)


def test_html_is_never_accepted_as_an_image(writer, story, media_root):
    for data, content_type in (
        (HTML_BYTES, "text/html"),
        (HTML_BYTES, "image/png"),  # the declared type lies about the bytes
        (HTML_BYTES, "image/svg+xml"),
        (HTML_BYTES, "application/octet-stream"),  # nothing declared: the bytes decide
        (PNG_BYTES, "image/jpeg"),  # a real image, declared as another
        (WAV_BYTES, "image/png"),
    ):
        assert_error(upload(writer, story, data, content_type), 400, "invalid_content", "content")
    assert not Artifact.objects.exists()
    assert not media_root.exists() or not any(p.is_file() for p in media_root.rglob("*"))


def test_html_that_got_in_some_other_way_is_an_attachment_too(writer, admin_client, story):
    artifact = imported(story, HTML_BYTES, "text/html")
    for response in both(writer, admin_client, artifact):
        assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
        assert_sandboxed(response)


@pytest.mark.parametrize(
    "header, status, expected",
    [
        ("bytes=0-3", 206, (0, 3)),
        ("bytes=4-", 206, (4, None)),
        ("bytes=-5", 206, ("-5", None)),
        ("bytes=2-100000", 206, (2, None)),
        ("bytes=100000-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=0-1,4-5", 200, None),  # several ranges: the whole file
        ("bytes=5-2", 200, None),  # malformed: the whole file
        ("items=0-3", 200, None),
    ],
)
def test_byte_ranges(writer, admin_client, story, header, status, expected):
    artifact = imported(story, PNG_BYTES, "image/png")
    size = len(PNG_BYTES)
    for response in both(writer, admin_client, artifact, HTTP_RANGE=header):
        assert response.status_code == status, header
        assert_sandboxed(response)
        if status == 206:
            first, last = expected
            if first == "-5":
                first, last = size - 5, size - 1
            last = size - 1 if last is None else last
            assert response["Content-Range"] == f"bytes {first}-{last}/{size}"
            assert response["Content-Length"] == str(last - first + 1)
            assert body_of(response) == PNG_BYTES[first : last + 1]
        elif status == 416:
            assert response["Content-Range"] == f"bytes */{size}"
        else:
            assert body_of(response) == PNG_BYTES


def test_a_range_under_a_stale_if_range_sends_it_all(writer, story):
    artifact = imported(story, PNG_BYTES, "image/png")
    url = f"/v1/artifacts/{artifact.pk}/content"
    etag = writer.get(url)["ETag"]
    assert writer.get(url, HTTP_RANGE="bytes=0-3", HTTP_IF_RANGE=etag).status_code == 206
    stale = writer.get(url, HTTP_RANGE="bytes=0-3", HTTP_IF_RANGE='"something-else"')
    assert stale.status_code == 200 and body_of(stale) == PNG_BYTES


def test_not_modified_keeps_the_headers(writer, admin_client, story):
    artifact = imported(story, PNG_BYTES, "image/png")
    for response in both(writer, admin_client, artifact, HTTP_IF_NONE_MATCH=f'"{artifact.content_sha256}"'):
        assert response.status_code == 304
        assert response["ETag"] == f'"{artifact.content_sha256}"'
        assert_sandboxed(response)


def test_a_missing_file_is_a_json_error_naming_it(writer, admin_client, story):
    artifact = artifact_services.artifact_create(
        story_id=story.pk, type="cover_image", payload={"alt": "x"}, content=PNG_BYTES, mime_type="image/png"
    )
    default_storage.delete(artifact.content.name)
    for response in both(writer, admin_client, artifact):
        body = assert_error(response, 500, "content_missing")
        assert artifact.content.name in body["message"] and str(artifact.pk) in body["message"]


def test_unknown_artifacts_have_no_content(writer, admin_client):
    assert_error(writer.get(f"/v1/artifacts/{uuid.uuid4()}/content"), 404, "not_found")
    assert admin_client.get(f"/admin/artifacts/artifact/{uuid.uuid4()}/content/").status_code == 404
