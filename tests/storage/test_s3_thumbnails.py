"""Thumbnails on S3 (SPEC §13): made once per content and size, kept in the bucket under
thumbnails/, and read back from it afterwards (the original's object deleted, the thumbnail
still answers)."""

import hashlib
import io

from PIL import Image

from artifacts.content import storage_name
from artifacts.thumbnails import thumbnail_name
from tests.artifacts.test_thumbnails import png
from tests.storage.test_s3 import api, upload  # noqa: F401  (api is a fixture)


def test_a_thumbnail_is_stored_in_the_bucket_and_served_from_it(s3, api, story):  # noqa: F811
    image = png(300, 120)
    created = upload(api, f"/v1/stories/{story.pk}/artifacts", "cover_image", image, "image/png")
    digest = hashlib.sha256(image).hexdigest()
    url = f"/v1/artifacts/{created['artifact_id']}/thumbnail?size=100"

    first = api.get(url)
    assert first.status_code == 200 and Image.open(io.BytesIO(first.content)).size == (100, 40)
    key = thumbnail_name(digest, 100)
    assert sorted(s3.keys()) == sorted([storage_name(digest), key]) and s3.read(key) == first.content

    s3.delete(storage_name(digest))
    second = api.get(url)
    assert second.status_code == 200 and second.content == first.content
    assert api.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
