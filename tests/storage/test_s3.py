"""Artifact content on S3 (``ARTIFACT_S3_BUCKET``), against moto's S3 server in its own
process: uploads over the API land in the bucket under their digest's name; ``/content``
serves them with ETag, 304 and byte ranges; ``prune_artifacts`` deletes a pruned version's
object and sweeps orphans; ``verify_artifacts`` passes, and names an object gone missing."""

import hashlib
import json

import pytest
from django.contrib.auth.models import User

from artifacts.content import storage_name
from artifacts.models import Artifact
from tests.api.conftest import client_for
from tests.conftest import PNG_BYTES, WAV_BYTES
from tests.operations.conftest import run


@pytest.fixture
def api(db):
    return client_for(User.objects.create_superuser("s3-editor", "s3@example.com", "pw"))


def upload(api, path: str, type_: str, content: bytes, mime_type: str, alt: str = "on s3"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.post(
        path,
        {
            "type": type_,
            "payload": json.dumps({"alt": alt}),
            "content": SimpleUploadedFile("upload.bin", content, content_type=mime_type),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()


def key_of(content: bytes) -> str:
    return storage_name(hashlib.sha256(content).hexdigest())


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_an_upload_lands_in_the_bucket_and_is_served_with_etag_304_and_ranges(s3, api, story):
    image = PNG_BYTES + b"s3 cover" * 10
    created = upload(api, f"/v1/stories/{story.pk}/artifacts", "cover_image", image, "image/png")
    key = key_of(image)
    assert s3.keys() == [key] and s3.read(key) == image
    assert Artifact.objects.get(pk=created["artifact_id"]).content.name == key

    url = f"/v1/artifacts/{created['artifact_id']}/content"
    whole = api.get(url)
    assert whole.status_code == 200 and body(whole) == image
    assert whole["Content-Type"] == "image/png" and whole["Content-Length"] == str(len(image))
    etag = whole["ETag"]
    assert etag == f'"{hashlib.sha256(image).hexdigest()}"'
    assert api.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304

    part = api.get(url, HTTP_RANGE="bytes=8-23")
    assert part.status_code == 206 and body(part) == image[8:24]
    assert part["Content-Range"] == f"bytes 8-23/{len(image)}"
    tail = api.get(url, HTTP_RANGE="bytes=-5")
    assert tail.status_code == 206 and body(tail) == image[-5:]
    beyond = api.get(url, HTTP_RANGE=f"bytes={len(image)}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(image)}"

    # The same bytes again are stored once; an edit of the metadata shares the object.
    again = upload(api, f"/v1/stories/{story.pk}/artifacts", "cover_image", image, "image/png", alt="same bytes")
    assert again["version"] == 2 and s3.keys() == [key]


def test_prune_deletes_a_pruned_versions_object_and_keeps_the_latests(s3, api, scene):
    old, new = WAV_BYTES + b"\x00\x01" * 8, WAV_BYTES + b"\x02\x03" * 8
    first = upload(api, f"/v1/scenes/{scene.pk}/artifacts", "audio_track", old, "audio/wav")
    second = upload(api, f"/v1/scenes/{scene.pk}/artifacts", "audio_track", new, "audio/wav")
    assert sorted(s3.keys()) == sorted([key_of(old), key_of(new)])

    dry = run("prune_artifacts", "--older-than", "0")
    assert dry.code == 0 and sorted(s3.keys()) == sorted([key_of(old), key_of(new)])  # a dry run deletes nothing

    pruned = run("prune_artifacts", "--older-than", "0", "--yes")
    assert pruned.code == 0, pruned.err
    assert s3.keys() == [key_of(new)]
    assert Artifact.objects.get(pk=first["artifact_id"]).is_pruned
    gone = api.get(f"/v1/artifacts/{first['artifact_id']}/content")
    assert gone.status_code == 410 and gone.json()["code"] == "pruned"
    kept = api.get(f"/v1/artifacts/{second['artifact_id']}/content")
    assert kept.status_code == 200 and body(kept) == new
    assert run("verify_artifacts").code == 0


def test_prune_sweeps_an_orphan_object_and_verify_reports_it_before(s3, api, story):
    """A file no artifact names (an upload whose row never committed) is found on S3 too:
    the storage has no folders, only keys under the ``content/`` prefix."""
    kept = PNG_BYTES + b"kept"
    upload(api, f"/v1/stories/{story.pk}/artifacts", "cover_image", kept, "image/png")
    orphan = PNG_BYTES + b"orphan"
    s3.put(key_of(orphan), orphan)

    found = run("verify_artifacts", "--grace-hours", "0")
    assert found.code == 1
    assert f"no artifact uses the stored file {key_of(orphan)}" in found.out + found.err

    swept = run("prune_artifacts", "--older-than", "0", "--yes", "--grace-hours", "0")
    assert swept.code == 0, swept.err
    assert s3.keys() == [key_of(kept)]
    assert run("verify_artifacts", "--grace-hours", "0").code == 0


def test_verify_passes_then_names_an_object_gone_from_the_bucket(s3, api, story):
    image = PNG_BYTES + b"to be lost"
    created = upload(api, f"/v1/stories/{story.pk}/artifacts", "cover_image", image, "image/png")
    clean = run("verify_artifacts")
    assert clean.code == 0, clean.out + clean.err

    s3.delete(key_of(image))
    broken = run("verify_artifacts", "--check", "content")
    assert broken.code == 1
    report = broken.out + broken.err
    assert "content_missing" in report and key_of(image) in report and created["artifact_id"] in report

    missing = api.get(f"/v1/artifacts/{created['artifact_id']}/content")
    assert missing.status_code == 500
    assert missing.json()["code"] == "content_missing" and key_of(image) in missing.json()["message"]
