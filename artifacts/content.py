"""Artifact content: bytes in Django's storage API, addressed by their sha256, and the one
place that serves them, for the API and the admin alike (SPEC §7).

Identical bytes are stored once, at ``content/<sha[:2]>/<sha256>``, so a file never needs
overwriting and an edit of a media artifact's metadata shares its parent's file.

Serving treats every stored file as hostile: ``X-Content-Type-Options: nosniff`` and
``Content-Security-Policy: sandbox`` on every answer, and only the media types a browser
plays without running anything are shown inline; everything else (an SVG, an HTML page)
is an attachment, so no upload ever runs script in the service's origin.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import logging
import mimetypes
import re
import warnings
from dataclasses import dataclass

import filetype
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.cache import get_conditional_response
from django.utils.http import quote_etag
from PIL import Image, UnidentifiedImageError

from kernel import locks
from kernel.api import error_body
from kernel.errors import ContentMissing, ContentPruned, InvalidContent, NotFound, StorageFull
from kernel.transactions import on_rollback

from .models import Artifact

logger = logging.getLogger(__name__)

# Shown inline (SPEC §7): png, jpeg, gif, webp, mpeg/mp3, ogg, wav, mp4 and webm.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/mp3",
        "audio/ogg",
        "audio/wav",
        "audio/x-wav",
        "audio/webm",
        "video/mp4",
        "video/ogg",
        "video/webm",
    }
)
# Exactly SPEC §7's value: a sandboxed document runs no script, submits no form and is
# not of this origin, whatever the file turns out to be.
SANDBOX = "sandbox"
_CHUNK = 64 * 1024
# filetype reads the first 8 KiB at most; an SVG's root element comes early too.
_SNIFF_BYTES = 8192
# RFC 6838 restricted names, short enough for the mime_type column (100 characters).
_MIME_TOKEN = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,48}/[a-z0-9][a-z0-9!#$&^_.+-]{0,48}")
# One run of whitespace; a single class under a star, matched from a fixed position, has
# nothing to backtrack into.
_SPACE = re.compile(r"\s*")
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "audio/mp3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/wav": "audio/x-wav",
    "audio/wave": "audio/x-wav",
    "audio/vnd.wave": "audio/x-wav",
    "audio/flac": "audio/x-flac",
}
_CONTAINERS = frozenset({"webm", "ogg", "mp4"})
_SINGLE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# A write refused for want of space (SPEC §7's 507 storage_full): a full disk or a quota.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class StoredContent:
    name: str
    sha256: str
    size: int
    mime_type: str


@dataclass(frozen=True)
class PreparedContent:
    """Bytes read, hashed and recognized, not yet written anywhere."""

    file: File
    sha256: str
    size: int
    mime_type: str


def storage_name(sha256: str) -> str:
    return f"content/{sha256[:2]}/{sha256}"


def prepare_content(content, *, mime_type: str | None, kind: str) -> PreparedContent:
    """Hash the bytes and check they are what they claim (SPEC §12). Nothing is stored:
    a create stores them only once every other check has passed (``store_content``)."""
    if isinstance(content, bytes | bytearray):
        content = ContentFile(bytes(content))
    elif not isinstance(content, File):
        content = File(content)
    hasher = hashlib.sha256()
    size = 0
    head = b""
    content.seek(0)
    for chunk in content.chunks():
        hasher.update(chunk)
        size += len(chunk)
        if len(head) < _SNIFF_BYTES:
            head += chunk[: _SNIFF_BYTES - len(head)]
    if size == 0:
        raise InvalidContent("content is empty", field="content")
    declared = parse_mime_type(mime_type or getattr(content, "content_type", None))
    recognized = _recognized(head, declared=declared, kind=kind)
    if kind == "image":
        check_image_pixels(content)
    return PreparedContent(content, hasher.hexdigest(), size, recognized)


class TooManyPixels(Exception):
    """Pillow's own bomb check fired: the header claims over twice its ``MAX_IMAGE_PIXELS``."""


def image_size(handle) -> tuple[int, int] | None:
    """(width, height) from an image's header, never decoding a pixel; None when Pillow does
    not read the format (an SVG) or the header is broken."""
    handle.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(handle) as image:
                return image.size
        except Image.DecompressionBombError as exc:
            raise TooManyPixels(str(exc)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return None
        finally:
            handle.seek(0)


def check_image_pixels(handle) -> None:
    """Refuse an image whose header claims more pixels than ``ARTIFACT_MAX_IMAGE_PIXELS``
    (Pillow's ``MAX_IMAGE_PIXELS`` meaning: width x height), before anything is stored, so a
    few bytes of PNG cannot make a later thumbnail decode gigapixels."""
    limit = settings.ARTIFACT_MAX_IMAGE_PIXELS
    try:
        size = image_size(handle)
    except TooManyPixels:
        claimed = "more than twice Pillow's MAX_IMAGE_PIXELS"
    else:
        if size is None or size[0] * size[1] <= limit:
            return
        claimed = f"{size[0]}x{size[1]} pixels"
    raise InvalidContent(
        f"the image claims {claimed}, over the limit of {limit:,} pixels (ARTIFACT_MAX_IMAGE_PIXELS)",
        field="content",
    )


def store_content(prepared: PreparedContent) -> StoredContent:
    """Write the bytes once per digest, inside the create's transaction and under the
    digest's lock (the sweep of unreferenced files takes the same lock). If that
    transaction rolls back, the file is removed again, unless an artifact uses it."""
    locks.lock_content(prepared.sha256)
    name = storage_name(prepared.sha256)
    if not default_storage.exists(name):
        prepared.file.seek(0)
        try:
            saved = default_storage.save(name, prepared.file)
        except Exception as exc:
            _discard_partial(name)
            if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
                raise StorageFull(
                    f"storage has no room for {prepared.size} bytes ({exc.strerror or exc}); nothing was stored"
                ) from exc
            raise
        if saved != name:  # storage renamed it: the digest's name was taken after all
            default_storage.delete(saved)
        on_rollback(lambda: remove_if_unreferenced(prepared.sha256))
    return StoredContent(name, prepared.sha256, prepared.size, prepared.mime_type)


def _discard_partial(name: str) -> None:
    """Remove what a failed write left under ``name``. FileSystemStorage writes in-memory
    content straight to the final name, so a full disk leaves the first bytes there, and a
    later upload of the same bytes would find the name taken and keep the truncated file.
    The name did not exist before this write and the digest's lock is held: it is ours."""
    try:
        default_storage.delete(name)
    except Exception:  # the error that made the write fail is the one to report
        logger.exception("could not remove the partial file %s after a failed write", name)


def remove_if_unreferenced(sha256: str) -> bool:
    """Delete the stored file of ``sha256`` unless an artifact row names it.

    Under the digest's lock, in a transaction of its own: a create of the same bytes either
    committed its row before (the file stays) or waits and then writes the file again.
    """
    with transaction.atomic():
        locks.lock_content(sha256)
        if Artifact.objects.filter(content_sha256=sha256).exists():
            return False
        default_storage.delete(storage_name(sha256))
        return True


def stored_content_of(artifact) -> StoredContent:
    """The content an artifact already has, to carry over to a new version (an edit)."""
    return StoredContent(artifact.content.name, artifact.content_sha256, artifact.content_size, artifact.mime_type)


def parse_mime_type(value) -> str | None:
    """One ``type/subtype`` token, lower case, parameters dropped; None when not given.
    Anything else (a list of types, spaces, a 101-character name) is refused."""
    if value is None:
        return None
    token = str(value).split(";", 1)[0].strip().lower()
    if token in ("", "application/octet-stream"):
        return None
    if not _MIME_TOKEN.fullmatch(token) or "," in str(value):
        raise InvalidContent(f"{str(value)[:120]!r} is not one media type (type/subtype)", field="content")
    return token


def is_svg(text: str) -> bool:
    """Whether ``text`` opens with an SVG root element, after an optional byte-order mark, XML
    declaration, comments and doctypes (filetype does not read text formats).

    A scan that only moves forward: each step finds the end of one construct with
    ``str.find`` and continues after it, so the work is linear in the length of the text
    (SPEC §12). The regular expression it replaces repeated a group holding ``<!--.*?-->``,
    which can end at any later ``-->``: on comments not followed by ``<svg`` it tried every
    way of cutting them into groups, 2**n for n comments.
    """
    pos = _SPACE.match(text, 1 if text.startswith("\ufeff") else 0).end()
    if text[pos : pos + 5].lower() == "<?xml":
        end = text.find(">", pos + 5)
        if end < 0 or text[end - 1] != "?":
            return False
        pos = _SPACE.match(text, end + 1).end()
    while True:
        if text.startswith("<!--", pos):
            end = text.find("-->", pos + 4)
            if end < 0:
                return False
            pos = end + 3
        elif text[pos : pos + 9].upper() == "<!DOCTYPE":
            end = text.find(">", pos + 9)
            if end < 0:
                return False
            pos = end + 1
        else:
            break
        pos = _SPACE.match(text, pos).end()
    after = text[pos + 4 : pos + 5]
    return text[pos : pos + 4].lower() == "<svg" and (after == ">" or after.isspace())


def _recognized(head: bytes, *, declared: str | None, kind: str) -> str:
    """The media type the bytes are, which must agree with the declared one and the kind."""
    sniffed = filetype.guess_mime(head)
    if sniffed is None and is_svg(head.decode("utf-8", "replace")):
        sniffed = "image/svg+xml"
    if sniffed is None:
        raise InvalidContent(
            f"the bytes are no {kind} format this service recognizes" + (f" (declared {declared})" if declared else ""),
            field="content",
        )
    sniffed = _ALIASES.get(sniffed, sniffed)
    if declared is not None:
        declared = _ALIASES.get(declared, declared)
        same = declared == sniffed or (
            # Containers that hold sound or pictures: the declared kind says which.
            declared.split("/")[1] == sniffed.split("/")[1] and sniffed.split("/")[1] in _CONTAINERS
        )
        if not same:
            raise InvalidContent(f"declared {declared}, but the bytes are {sniffed}", field="content")
        sniffed = declared
    elif sniffed.split("/")[1] in _CONTAINERS:
        sniffed = f"{kind}/{sniffed.split('/')[1]}"
    if sniffed.split("/")[0] != kind:
        raise InvalidContent(f"a {kind} artifact needs {kind} bytes, got {sniffed}", field="content")
    return sniffed


def content_response(request, artifact) -> HttpResponse:
    """The artifact's bytes: ETag and 304, one byte range (206, or 416 when unsatisfiable),
    and the headers that keep a stored file from acting as a page of this site.

    Raises ``ContentPruned`` (410), ``NotFound`` (no content) or ``ContentMissing`` (the row
    names a file storage no longer has); the caller maps them to its error page.
    """
    if artifact.is_pruned:
        raise ContentPruned(f"artifact {artifact.pk} was pruned; its content is gone")
    if not artifact.content_sha256:
        raise NotFound(f"artifact {artifact.pk} is {artifact.kind} and has no content")
    etag = quote_etag(artifact.content_sha256)
    conditional = get_conditional_response(_without_date_precondition(request), etag=etag)
    if conditional is not None:
        return _secured(conditional, artifact, etag)
    try:
        handle = default_storage.open(artifact.content.name, "rb")
    except OSError:
        raise ContentMissing(
            f"the stored file {artifact.content.name!r} of artifact {artifact.pk} is missing"
        ) from None
    size = artifact.content_size
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    byte_range = _byte_range(wanted, size) if wanted and (if_range is None or if_range == etag) else None
    if byte_range == "unsatisfiable":
        handle.close()
        return _range_not_satisfiable(size)
    if byte_range is None:
        response = FileResponse(handle, content_type=artifact.mime_type)
        response["Content-Length"] = str(size)
    else:
        start, end = byte_range
        response = StreamingHttpResponse(_read(handle, start, end), status=206, content_type=artifact.mime_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    return _secured(response, artifact, etag)


def _without_date_precondition(request):
    """The request as the conditional check should see it: without If-Unmodified-Since.

    Content has no modification date (its ETag, the digest, is what identifies it), and
    RFC 9110 §13.1.4 says to ignore If-Unmodified-Since then; Django instead answers 412
    to it whenever it has no date to compare."""
    if "HTTP_IF_UNMODIFIED_SINCE" not in request.META:
        return request
    shown = copy.copy(request)
    shown.META = {key: value for key, value in request.META.items() if key != "HTTP_IF_UNMODIFIED_SINCE"}
    return shown


def _range_not_satisfiable(size: int) -> HttpResponse:
    """416 with the error shape (the API's and the admin preview's errors are JSON) and
    the content's length, as RFC 9110 §15.5.17 asks; none of the content's own headers,
    so neither its year-long caching nor its file name."""
    response = JsonResponse(
        error_body("range_not_satisfiable", f"the range starts beyond the content's {size} bytes"), status=416
    )
    response["Content-Range"] = f"bytes */{size}"
    response["Accept-Ranges"] = "bytes"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = SANDBOX
    return response


def _secured(response: HttpResponse, artifact, etag: str) -> HttpResponse:
    response["ETag"] = etag
    response["Accept-Ranges"] = "bytes"
    # Content is addressed by digest and never changes under this artifact id.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = SANDBOX
    disposition = "inline" if artifact.mime_type in INLINE_TYPES else "attachment"
    extension = mimetypes.guess_extension(artifact.mime_type) or ".bin"
    response["Content-Disposition"] = f'{disposition}; filename="{artifact.type}-v{artifact.version}{extension}"'
    return response


def _position(digits: str, size: int) -> int:
    """A position of a Range header, read without converting thousands of digits: any
    number longer (in digits) than the content's size is past its end, so the size stands
    in for it (Python refuses to convert a string of over 4,300 digits: a 500 before)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= len(str(size)) else size


def _byte_range(header: str, size: int):
    """(first, last) of one ``bytes=`` range, "unsatisfiable", or None to send it all
    (several ranges or a malformed header may be ignored, RFC 9110 §14.2)."""
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        length = _position(last, size)
        if length == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = _position(first, size)
    end = _position(last, size) if last else size - 1
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


def _read(handle, start: int, end: int):
    try:
        handle.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            chunk = handle.read(min(_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()
