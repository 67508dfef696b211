"""Two versions side by side (SPEC §13, "Compare"): the API's JSON Patch and the admin's rows.

Read only. The API answers ``artifact_diff``: an RFC 6902 patch that turns the payload of one
artifact into the other's. The admin's compare page shows ``payload_rows``: every leaf of both
payloads (nested objects and lists flattened to paths), the changed ones first-class, long
strings with their changed words marked, and ``media_side`` for the content of each side.

A big payload must not make a big page: the rows are made for every path (linear in the
payloads' size), but only ``MAX_ROWS`` of them are rendered, and inline word marks are made
only for strings under ``INLINE_DIFF_MAX_WORDS`` (difflib is quadratic at worst).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field

import jsonpatch
from django.core.files.storage import default_storage
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from kernel.errors import InvalidParameter, NotFound, Pruned
from kernel.lookups import parse_uuid
from stories.models import StoryArtifactLink, role_of

from .models import Artifact

# What the page renders at most; it says how many more changes there are.
MAX_ROWS = 200
# A string is shown with inline marks when both sides are "long" and not too long to diff.
LONG_TEXT = 60
INLINE_DIFF_MAX_WORDS = 4000
# Above this much JSON (both payloads), the patch is the strict walk's (see payload_patch).
JSONPATCH_MAX_CHARS = 256 * 1024
# A value shown in a cell is cut here (the rest is in the payload of each version).
VALUE_SHOWN = 2000
# Pillow reads the header only, but a broken file must not cost more than this.
IMAGE_HEADER_BYTES = 1 << 20


def artifact_pair(artifact_id, to_id) -> tuple[Artifact, Artifact]:
    """Both artifacts in one query: ``artifact_id`` from the path (unknown: 404), ``to_id``
    from the query (malformed: 400 ``invalid_parameter``; naming nothing: 400 ``not_found``, as
    an id in a body, SPEC §7), of one type (else 400 ``invalid_parameter``), neither pruned
    (409 ``pruned``)."""
    from_pk = parse_uuid(artifact_id, what="artifact")
    try:
        to_pk = parse_uuid(to_id, what="artifact")
    except NotFound:
        raise InvalidParameter(f"to: {to_id!r} is not an artifact id", field="to") from None
    rows = {row.pk: row for row in Artifact.objects.filter(pk__in={from_pk, to_pk})}
    if from_pk not in rows:
        raise NotFound(f"artifact {artifact_id} does not exist", field="artifact_id")
    if to_pk not in rows:
        # Not a path id, so the API answers 400, as for an id in a body.
        raise NotFound(f"artifact {to_id} does not exist", field="to")
    first, second = rows[from_pk], rows[to_pk]
    if first.type != second.type:
        raise InvalidParameter(
            f"to: artifact {second.pk} is a {second.type}, artifact {first.pk} a {first.type}: "
            "only two artifacts of one type compare",
            field="to",
        )
    for side in (first, second):
        if side.is_pruned:
            raise Pruned(f"artifact {side.pk} (v{side.version}) was pruned: its payload is gone")
    return first, second


def payload_patch(source, target) -> list[dict]:
    """The RFC 6902 patch from ``source`` to ``target``.

    Up to ``JSONPATCH_MAX_CHARS`` of JSON, ``jsonpatch`` makes it (it finds moves: an item put
    at the head of a list is one ``add``, not a ``replace`` per index) and it is checked: its
    diff compares with ``==``, which takes ``1`` for ``true`` and ``1`` for ``1.0``, so a patch
    that does not give ``target`` exactly, type for type, is made again by the strict walk.
    Beyond that size, jsonpatch's pointer objects cost about a second per megabyte, made and
    applied: the strict walk alone answers, linear in the payloads (two 1 MB payloads in a
    tenth of a second), exact by construction, and index by index in lists."""
    if _json_size(source) + _json_size(target) <= JSONPATCH_MAX_CHARS:
        patch = jsonpatch.make_patch(source, target)
        if same_json(patch.apply(source), target):
            return patch.patch
    return _strict_patch(source, target, "")


def _json_size(value) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def same_json(a, b) -> bool:
    """Equal as JSON documents: ``true`` is not ``1``, ``1`` is not ``1.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _pointer(base: str, key) -> str:
    return f"{base}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _strict_patch(source, target, path: str) -> list[dict]:
    if same_json(source, target):
        return []
    if isinstance(source, dict) and isinstance(target, dict):
        ops = [{"op": "remove", "path": _pointer(path, key)} for key in source if key not in target]
        for key, value in target.items():
            if key not in source:
                ops.append({"op": "add", "path": _pointer(path, key), "value": value})
            else:
                ops.extend(_strict_patch(source[key], value, _pointer(path, key)))
        return ops
    if isinstance(source, list) and isinstance(target, list):
        ops = []
        common = min(len(source), len(target))
        for index in range(common):
            ops.extend(_strict_patch(source[index], target[index], _pointer(path, index)))
        # Removed from the end backwards, so each index is still there when removed.
        ops.extend({"op": "remove", "path": _pointer(path, index)} for index in range(len(source) - 1, common - 1, -1))
        ops.extend({"op": "add", "path": _pointer(path, "-"), "value": value} for value in target[common:])
        return ops
    return [{"op": "replace", "path": path, "value": target}]


def artifact_diff(*, artifact_id, to_id) -> dict:
    """The API's answer: ``{from_artifact_id, to_artifact_id, patch, content_changed}``."""
    first, second = artifact_pair(artifact_id, to_id)
    return {
        "from_artifact_id": str(first.pk),
        "to_artifact_id": str(second.pk),
        "patch": payload_patch(first.payload, second.payload),
        "content_changed": first.content_sha256 != second.content_sha256,
    }


# -- the admin's rows --------------------------------------------------------------------


def flatten(value, path: str = "") -> dict[str, object]:
    """Every leaf of a JSON value by its path (``panels[0].grammar_id``); an empty object or
    list is a leaf of its own, so adding one shows."""
    leaves: dict[str, object] = {}
    stack = [(path, value)]
    while stack:  # iterative: a payload may be nested 64 levels deep
        where, node = stack.pop()
        if isinstance(node, dict) and node:
            stack.extend((f"{where}.{key}" if where else str(key), child) for key, child in reversed(node.items()))
        elif isinstance(node, list) and node:
            stack.extend((f"{where}[{index}]", child) for index, child in reversed(list(enumerate(node))))
        else:
            leaves[where or "(payload)"] = node
    return leaves


@dataclass
class Row:
    path: str
    status: str  # added, removed, changed
    old: object = None
    new: object = None
    inline: SafeString | None = None  # the words of a long string, changes marked

    @property
    def old_text(self) -> str:
        return _shown(self.old)

    @property
    def new_text(self) -> str:
        return _shown(self.new)


@dataclass
class PayloadComparison:
    rows: list[Row] = field(default_factory=list)  # what the page renders, at most MAX_ROWS
    changed: int = 0  # every changed path, rendered or not
    added: int = 0
    removed: int = 0
    modified: int = 0
    unchanged: int = 0

    @property
    def hidden(self) -> int:
        return self.changed - len(self.rows)


def payload_rows(old: dict, new: dict, *, limit: int = MAX_ROWS) -> PayloadComparison:
    """The changed leaves of two payloads, in the order of the newer one (removed ones after
    their neighbours), at most ``limit`` rendered; counts of every kind for the summary."""
    before, after = flatten(old), flatten(new)
    result = PayloadComparison()
    order = list(after)
    order += [path for path in before if path not in after]
    for path in order:
        if path not in before:
            status = "added"
        elif path not in after:
            status = "removed"
        elif same_json(before[path], after[path]):
            result.unchanged += 1
            continue
        else:
            status = "changed"
        result.changed += 1
        if len(result.rows) < limit:
            row = Row(path, status, before.get(path), after.get(path))
            if status == "changed" and _long_texts(row.old, row.new):
                row.inline = inline_word_diff(row.old, row.new)
            result.rows.append(row)
    result.added = sum(1 for path in after if path not in before)
    result.removed = sum(1 for path in before if path not in after)
    result.modified = result.changed - result.added - result.removed
    return result


def _long_texts(a, b) -> bool:
    return isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) >= LONG_TEXT


_WORDS = re.compile(r"\s+|[^\s]+")


def inline_word_diff(old: str, new: str) -> SafeString | None:
    """The newer text with removed words struck through and added ones marked, or None when
    the texts are too long to diff word by word here."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    if len(a) + len(b) > INLINE_DIFF_MAX_WORDS:
        return None
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(escape("".join(a[i1:i2])))
            continue
        if op in ("delete", "replace"):
            parts.append(f'<del class="diff-del">{escape("".join(a[i1:i2]))}</del>')
        if op in ("insert", "replace"):
            parts.append(f'<ins class="diff-ins">{escape("".join(b[j1:j2]))}</ins>')
    return mark_safe("".join(parts))  # noqa: S308 - every piece of text above is escaped


def _shown(value) -> str:
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= VALUE_SHOWN else f"{text[:VALUE_SHOWN]}… ({len(text):,} characters)"


# -- media ---------------------------------------------------------------------------------


@dataclass
class MediaSide:
    kind: str
    mime_type: str
    size: int | None
    sha256: str
    width: int | None = None
    height: int | None = None

    @property
    def dimensions(self) -> str:
        return f"{self.width} × {self.height} px" if self.width else "—"


def media_side(artifact: Artifact) -> MediaSide | None:
    """What the page says of one side's content: type, size and, for an image, its dimensions
    read by Pillow from the stored bytes (the header only)."""
    if not artifact.content_sha256:
        return None
    side = MediaSide(artifact.kind, artifact.mime_type, artifact.content_size, artifact.content_sha256)
    if artifact.kind == "image" and artifact.content.name:
        side.width, side.height = _image_size(artifact.content.name)
    return side


def _image_size(name: str) -> tuple[int | None, int | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with default_storage.open(name, "rb") as handle, Image.open(handle) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None, None  # a missing or unreadable file: the page still compares the payloads


# -- "compare with the primary" ------------------------------------------------------------


def primary_of_role(artifact: Artifact):
    """The id of the primary of ``artifact``'s role when it is another artifact of its type
    (what compares with it), else None: one probe of link_story_role_idx."""
    role = role_of(artifact)
    if role is None:
        return None
    found = (
        StoryArtifactLink.objects.filter(
            story_id=artifact.story_id, role=role, scene_id=artifact.scene_id, is_primary=True
        )
        .values_list("artifact_id", "artifact__type")
        .first()
    )
    if found is None or found[0] == artifact.pk or found[1] != artifact.type:
        return None
    return found[0]
