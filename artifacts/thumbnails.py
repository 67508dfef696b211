"""Thumbnails of image artifacts (SPEC §13), for the API, the admin's lists, the primary
pickers and the storyboard alike.

A thumbnail depends only on the content's digest and the size asked for, so it is made once
per (digest, size) with Pillow and kept through Django's storage API under
``thumbnails/<sha[:2]>/<sha>-<size>.png`` (on S3 as on disk); every later request reads it
back. Its ETag is the digest and size, so a browser's copy answers 304 before storage is
touched. The pixels decoded are bounded at upload (``content.check_image_pixels``) and again
here, for files stored before that check existed.
"""

from __future__ import annotations

import io
import logging
import warnings

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import HttpResponse
from django.utils.cache import get_conditional_response
from django.utils.html import format_html
from django.utils.http import quote_etag
from PIL import Image, ImageOps, UnidentifiedImageError

from kernel.admin_kit import admin_url
from kernel.errors import ContentMissing, ContentPruned, InvalidParameter, NotAnImage

from .content import SANDBOX, TooManyPixels, image_size

logger = logging.getLogger(__name__)

MIN_SIZE = 16
MAX_SIZE = 1024
DEFAULT_SIZE = 256
MIME_TYPE = "image/png"
# The last chunk of every PNG: a stored thumbnail without it is one still being written.
_PNG_END = b"IEND\xaeB`\x82"


def thumbnail_name(sha256: str, size: int) -> str:
    return f"thumbnails/{sha256[:2]}/{sha256}-{size}.png"


def parse_size(value: str | None) -> int:
    """``?size=`` as the API reads it: digits from 16 to 1,024, the default when absent."""
    if value is None:
        return DEFAULT_SIZE
    if not (value.isascii() and value.isdigit()) or not MIN_SIZE <= int(value[:5]) <= MAX_SIZE:
        raise InvalidParameter(f"size must be an integer from {MIN_SIZE} to {MAX_SIZE}", field="size")
    return int(value)


def can_thumbnail(artifact) -> bool:
    """Whether a thumbnail of ``artifact`` is worth an img tag (lists show a dash otherwise)."""
    return artifact.kind == "image" and artifact.pruned_at is None and artifact.mime_type not in ("", "image/svg+xml")


def thumbnail_tag(artifact, *, size: int, shown: int | None = None, url: str | None = None, lazy: bool = True) -> str:
    """An img of the artifact's thumbnail (the admin's session-authenticated URL, or ``url``
    when the caller built it), or a dash for what has none; lazy, so a long list loads only
    what is on screen. Needs only the artifact's id, type, version, kind, mime_type and
    pruned_at."""
    if not can_thumbnail(artifact):
        return format_html('<span class="thumbnail-none" title="{}">—</span>', artifact.kind)
    url = f"{url or admin_url(artifact, 'thumbnail')}?size={size}"
    shown = shown or size
    return format_html(
        '<img class="artifact-thumbnail" src="{}" alt="{} v{}" loading="{}" style="max-width:{}px;max-height:{}px">',
        url,
        artifact.type,
        artifact.version,
        "lazy" if lazy else "eager",
        shown,
        shown,
    )


def thumbnail_response(request, artifact, *, size: int) -> HttpResponse:
    """The thumbnail's bytes, with the content endpoint's headers. Raises ``ContentPruned``
    (410), ``NotAnImage`` (409) or ``ContentMissing`` (the original is gone from storage)."""
    if artifact.is_pruned:
        raise ContentPruned(f"artifact {artifact.pk} was pruned; its content is gone")
    if artifact.kind != "image" or not artifact.content_sha256:
        raise NotAnImage(f"artifact {artifact.pk} is {artifact.kind}: only images have thumbnails")
    if artifact.mime_type == "image/svg+xml":
        raise NotAnImage(f"artifact {artifact.pk} is an SVG drawing: only raster images have thumbnails")
    etag = quote_etag(f"{artifact.content_sha256}-{size}")
    conditional = get_conditional_response(request, etag=etag)
    if conditional is None:
        conditional = HttpResponse(thumbnail_bytes(artifact, size=size), content_type=MIME_TYPE)
    conditional["ETag"] = etag
    conditional["Cache-Control"] = "private, max-age=31536000, immutable"
    conditional["X-Content-Type-Options"] = "nosniff"
    conditional["Content-Security-Policy"] = SANDBOX
    conditional["Content-Disposition"] = f'inline; filename="{artifact.type}-v{artifact.version}-{size}.png"'
    return conditional


def thumbnail_bytes(artifact, *, size: int) -> bytes:
    """The stored thumbnail, made and stored first if this digest and size have none."""
    name = thumbnail_name(artifact.content_sha256, size)
    if default_storage.exists(name):
        with default_storage.open(name, "rb") as handle:
            stored = handle.read()
        if stored.endswith(_PNG_END):
            return stored
        # Another request is writing it right now: answer from memory, store nothing.
        return _make(artifact, size=size)
    made = _make(artifact, size=size)
    saved = default_storage.save(name, ContentFile(made))
    if saved != name:  # another request stored the same bytes first
        default_storage.delete(saved)
    return made


def _make(artifact, *, size: int) -> bytes:
    try:
        handle = default_storage.open(artifact.content.name, "rb")
    except OSError:
        raise ContentMissing(
            f"the stored file {artifact.content.name!r} of artifact {artifact.pk} is missing"
        ) from None
    with handle:
        source = io.BytesIO(handle.read())
    try:
        dimensions = image_size(source)
    except TooManyPixels:
        dimensions = None
    if dimensions is None or dimensions[0] * dimensions[1] > settings.ARTIFACT_MAX_IMAGE_PIXELS:
        raise NotAnImage(f"the content of artifact {artifact.pk} is no image this service can draw a thumbnail of")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.draft("RGB", (size, size))  # JPEG decodes at a reduced scale directly
                picture = ImageOps.exif_transpose(image)
                picture = picture.convert("RGBA" if _has_alpha(picture) else "RGB")
                picture.thumbnail((size, size), Image.Resampling.LANCZOS)
                out = io.BytesIO()
                picture.save(out, format="PNG", optimize=True)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        logger.warning("no thumbnail for artifact %s: %s", artifact.pk, exc)
        raise NotAnImage(f"the content of artifact {artifact.pk} cannot be decoded as an image") from None
    return out.getvalue()


def _has_alpha(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
