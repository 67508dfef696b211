"""Thumbnails (SPEC §13): a PNG whose longer side is at most ``size``, made once per content
and size and then read back from storage, ETag and 304, the errors of each kind, and an upload
whose header claims too many pixels refused before anything is stored."""

import io
import json
import struct
import zlib

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from artifacts import services as artifact_services
from artifacts.content import storage_name
from artifacts.services import ArtifactService, prune_rows
from artifacts.thumbnails import thumbnail_name
from tests.api.conftest import assert_error, client_for
from tests.conftest import SCENE_INTENT, SVG_BYTES, make_image


def png(width: int, height: int, color=(200, 80, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def claimed_png(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.fixture
def api(db):
    return client_for(User.objects.create_superuser("thumbs", "thumbs@example.com", "pw"))


@pytest.fixture
def wide(story):
    return make_image(story, "a wide sea", content=png(600, 300))


def url(artifact, **query) -> str:
    suffix = "&".join(f"{key}={value}" for key, value in query.items())
    return f"/v1/artifacts/{artifact.pk}/thumbnail" + (f"?{suffix}" if suffix else "")


def picture(response) -> Image.Image:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


@pytest.mark.parametrize("size, expected", [(16, (16, 8)), (100, (100, 50)), (None, (256, 128)), (1024, (600, 300))])
def test_the_longer_side_is_at_most_size_and_never_enlarged(api, wide, size, expected):
    response = api.get(url(wide) if size is None else url(wide, size=size))
    image = picture(response)
    assert image.size == expected
    assert max(image.size) <= (size or 256)
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_tall_image_is_bounded_by_its_height(api, story):
    tall = make_image(story, "a tower", content=png(90, 400))
    assert picture(api.get(url(tall, size=200))).size == (45, 200)


def test_made_once_then_read_back_from_storage(api, wide, media_root):
    first = api.get(url(wide, size=64))
    stored = media_root / thumbnail_name(wide.content_sha256, 64)
    assert stored.is_file() and stored.read_bytes() == first.content
    made_at = stored.stat().st_mtime_ns
    # With the original gone, only the stored thumbnail can answer: nothing is made again.
    (media_root / storage_name(wide.content_sha256)).unlink()
    second = api.get(url(wide, size=64))
    assert second.status_code == 200 and second.content == first.content
    assert stored.stat().st_mtime_ns == made_at
    assert sorted(p.name for p in (media_root / "thumbnails").rglob("*") if p.is_file()) == [stored.name]


def test_each_size_is_a_file_of_its_own_shared_by_identical_content(api, story, wide, media_root):
    twin = make_image(story, "the same sea", content=png(600, 300))
    api.get(url(wide, size=32))
    api.get(url(twin, size=32))
    api.get(url(twin, size=48))
    names = sorted(p.name for p in (media_root / "thumbnails").rglob("*") if p.is_file())
    assert names == [f"{wide.content_sha256}-32.png", f"{wide.content_sha256}-48.png"]


def test_etag_and_304(api, wide, media_root):
    first = api.get(url(wide, size=40))
    etag = first["ETag"]
    assert etag == f'"{wide.content_sha256}-40"'
    again = api.get(url(wide, size=40), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag and not again.content
    other_size = api.get(url(wide, size=41), HTTP_IF_NONE_MATCH=etag)
    assert other_size.status_code == 200


def test_a_304_touches_no_storage(api, wide, media_root):
    etag = f'"{wide.content_sha256}-50"'
    assert api.get(url(wide, size=50), HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert not (media_root / "thumbnails").exists()


@pytest.mark.parametrize("size", ["15", "1025", "abc", "+64", "64.0", "", "99999999999999999999"])
def test_a_size_outside_16_to_1024_is_invalid_parameter(api, wide, size):
    assert_error(api.get(f"/v1/artifacts/{wide.pk}/thumbnail?size={size}"), 400, "invalid_parameter", "size")


def test_an_unknown_parameter_is_refused(api, wide):
    assert_error(api.get(f"/v1/artifacts/{wide.pk}/thumbnail?width=64"), 400, "invalid_parameter", "width")


def test_json_audio_and_svg_are_not_images(api, story, scene):
    intent = ArtifactService().create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    assert_error(api.get(url(intent)), 409, "not_an_image")
    drawing = artifact_services.artifact_create(
        story_id=story.pk, type="cover_image", payload={"alt": "a drawing"}, content=SVG_BYTES, mime_type=None
    )
    assert_error(api.get(url(drawing)), 409, "not_an_image")


def test_pruned_content_is_gone(api, wide):
    prune_rows([wide.pk], at=timezone.now())
    assert_error(api.get(url(wide)), 410, "pruned")


def test_unknown_artifact_is_404(api, db):
    assert_error(api.get("/v1/artifacts/00000000-0000-0000-0000-000000000000/thumbnail"), 404, "not_found")
    assert_error(api.get("/v1/artifacts/not-a-uuid/thumbnail"), 404, "not_found")


def test_anonymous_is_401(wide):
    assert client_for(None).get(url(wide)).status_code == 401


def test_one_query_for_the_artifact_after_authentication(api, wide, django_assert_num_queries):
    api.get(url(wide, size=20))  # made and stored; the query count is the same either way
    with django_assert_num_queries(2):  # the token and its user, then the artifact
        assert api.get(url(wide, size=20)).status_code == 200
    with django_assert_num_queries(2):
        assert api.get(url(wide, size=21)).status_code == 200


# -- decompression bombs are refused at upload --------------------------------------------


def test_the_claimed_png_is_a_real_png_header():
    assert Image.open(io.BytesIO(claimed_png(70, 30))).size == (70, 30)


@pytest.mark.parametrize("width, height", [(8000, 8000), (100_000, 100_000), (2**31 - 1, 2**31 - 1)])
def test_an_image_claiming_too_many_pixels_is_refused_and_stores_nothing(api, story, media_root, width, height):
    response = api.post(
        f"/v1/stories/{story.pk}/artifacts",
        {
            "type": "cover_image",
            "payload": json.dumps({"alt": "a bomb"}),
            "content": SimpleUploadedFile("bomb.png", claimed_png(width, height), content_type="image/png"),
        },
        format="multipart",
    )
    body = assert_error(response, 400, "invalid_content", "content")
    assert "ARTIFACT_MAX_IMAGE_PIXELS" in body["message"]
    assert not [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else True
    assert not story.artifacts.exists()


def test_the_pixel_limit_is_a_setting(api, story, settings):
    settings.ARTIFACT_MAX_IMAGE_PIXELS = 600 * 300 - 1
    with pytest.raises(Exception) as refused:
        make_image(story, "one pixel too many", content=png(600, 300))
    assert getattr(refused.value, "code", None) == "invalid_content"
    settings.ARTIFACT_MAX_IMAGE_PIXELS = 600 * 300
    assert make_image(story, "just fits", content=png(600, 300)).pk


# -- the admin serves the same bytes behind its session login -----------------------------


def test_admin_thumbnail_is_the_api_thumbnail(api, wide, client, django_user_model):
    client.force_login(User.objects.get(username="thumbs"))
    admin = client.get(f"/admin/artifacts/artifact/{wide.pk}/thumbnail/?size=64")
    assert admin.status_code == 200 and admin.content == api.get(url(wide, size=64)).content
    bad = client.get(f"/admin/artifacts/artifact/{wide.pk}/thumbnail/?size=5")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter"


def test_admin_thumbnail_needs_the_admin_login(wide, client):
    response = client.get(f"/admin/artifacts/artifact/{wide.pk}/thumbnail/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_admin_artifact_list_shows_thumbnails(api, wide, client):
    client.force_login(User.objects.get(username="thumbs"))
    page = client.get("/admin/artifacts/artifact/").content.decode()
    assert f"/admin/artifacts/artifact/{wide.pk}/thumbnail/?size=48" in page


def test_story_page_primary_pickers_show_thumbnails(api, story, client):
    offered = make_image(story, "a candidate cover", state="candidate", content=png(90, 60))
    client.force_login(User.objects.get(username="thumbs"))
    page = client.get(f"/admin/stories/story/{story.pk}/change/").content.decode()
    assert f"/admin/artifacts/artifact/{offered.pk}/thumbnail/?size=64" in page
