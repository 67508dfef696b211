"""Importing artifacts from JSON Lines (``import_artifacts``, SPEC §9).

One line is one row of the seed's artifacts table: ``artifact_id``, ``scene_id``, ``type``,
``version``, ``parent_id``, ``payload``, ``request_id``, ``created_at``; optionally
``story_id`` (a story-level artifact has no scene) and the other columns of SPEC §3:
``kind``, ``lifecycle_state``, ``content_sha256``, ``content_size``, ``mime_type``,
``fingerprint``, ``pruned_at``, ``created_by_step_id``, ``created_by_id``.

Ids, versions, parents, request ids and times are kept. A line is imported whole or
refused whole, with its number and the reason: bad JSON, a field of the wrong type, a
payload its type's schema refuses, a version that is not the next of its stream (counting
what the store holds and the lines accepted before it), a parent that is unknown or of
another stream, an id that exists with other content. A line already imported (same id,
same content) is skipped, so running an import again, or after it was killed, finishes the
job without doubling anything. A file is read in order: a parent must come before its
children, and a stream's versions in ascending order.

Speed: lines are parsed and validated in Python (the next batch in a thread while this
one is written), then each batch is one transaction that reads what it needs in a handful
of queries (the ids already there, the streams' latest versions, the parents, the scenes)
and inserts its rows in one COPY on PostgreSQL (multi-row INSERTs on SQLite). The batch
locks the streams it writes (``locks.lock_streams``) before reading them, so it cannot
race a concurrent create on PostgreSQL, and the digests of the files its lines name, so a
prune cannot delete one between the check that it is stored and the commit; SQLite's
IMMEDIATE transactions serialize it anyway.
"""

from __future__ import annotations

import datetime
import itertools
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from artifacts import selectors
from artifacts import services as artifact_services
from artifacts.content import parse_mime_type, storage_name
from artifacts.models import Artifact, LifecycleState
from artifacts.payloads import ARTIFACT_TYPES, MEDIA_KINDS, SCOPE_SCENE, SCOPE_STORY, check_payload
from kernel import locks
from kernel.errors import ArtifactError
from kernel.input_limits import INT_MAX, check_text, loads
from kernel.request_id import get_request_id
from kernel.transactions import atomic_write
from runs.models import AgentStep
from stories import services as story_services
from stories.models import Scene, Story

REQUIRED_FIELDS = ("artifact_id", "type", "version")
OPTIONAL_FIELDS = (
    "scene_id",
    "story_id",
    "parent_id",
    "payload",
    "request_id",
    "created_at",
    "kind",
    "lifecycle_state",
    "content_sha256",
    "content_size",
    "mime_type",
    "fingerprint",
    "pruned_at",
    "created_by_step_id",
    "created_by_id",
)
KNOWN_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
# What "the same content" means for a line whose id is already stored: every one of these
# the line gives equals the stored row. lifecycle_state is not content: it is the one column
# that may change after insert, and a rerun must not refuse a row an editor published since.
COMPARED_FIELDS = (
    "story_id",
    "scene_id",
    "type",
    "version",
    "parent_id",
    "kind",
    "payload",
    "request_id",
    "created_at",
    "content_sha256",
    "content_size",
    "mime_type",
    "fingerprint",
    "pruned_at",
    "created_by_step_id",
    "created_by_id",
)
# A row pruned since it was imported lost these; the line still has them.
PRUNED_AWAY = frozenset({"payload", "pruned_at"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_STORY_TITLE = "Imported story {id}"
# The namespace of the ids of the stories made for an import (``Importer.home_story``).
_IMPORT_STORY = uuid.UUID("0d6c1f0e-3a51-4f7e-9b1a-5c2e8d4f7a10")
_TITLE_MAX = Story._meta.get_field("title").max_length
_EARLIEST = datetime.datetime.min.replace(tzinfo=datetime.UTC) + datetime.timedelta(days=1)
_LATEST = datetime.datetime.max.replace(tzinfo=datetime.UTC) - datetime.timedelta(days=1)


class Refused(Exception):
    """A line that cannot be imported; ``reason`` says why, for the operator."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Line:
    """One parsed, self-consistent line; what the store says about it is checked per batch."""

    number: int
    id: uuid.UUID
    type: str
    version: int
    scene_id: uuid.UUID | None
    story_id: uuid.UUID | None
    parent_id: uuid.UUID | None
    payload: dict | None
    request_id: str
    created_at: datetime.datetime | None
    kind: str
    lifecycle_state: str
    content_sha256: str
    content_size: int | None
    mime_type: str
    fingerprint: str
    pruned_at: datetime.datetime | None
    created_by_step_id: uuid.UUID | None
    created_by_id: int | None
    given: frozenset

    @property
    def stream(self) -> tuple:
        return ("scene", self.scene_id, self.type) if self.scene_id else ("story", self.story_id, self.type)

    @property
    def has_file(self) -> bool:
        return self.kind in MEDIA_KINDS and self.pruned_at is None


@dataclass
class BatchResult:
    lines: int = 0
    bytes: int = 0
    imported: int = 0
    skipped: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    stories_created: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (id, title)
    scenes_created: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)  # (id, story id)


# -- one line ----------------------------------------------------------------------------


def _uuid(value, name: str, *, required: bool = False) -> uuid.UUID | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise Refused(f"{name} must be a UUID string, not {_json_type(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Refused(f"{name} {value[:80]!r} is not a UUID") from None


def _time(value, name: str) -> datetime.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Refused(f"{name} must be an ISO 8601 time string, not {_json_type(value)}")
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise Refused(f"{name} {value[:80]!r} is not an ISO 8601 time")
    # A time without an offset is read as UTC, the database's own zone.
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, datetime.UTC)
    # Python's datetime holds the years 1 to 9999 and no more; PostgreSQL holds far more,
    # and SQLite stores text, so a time PostgreSQL kept beyond 9999 (or before year 1) in UTC
    # could never be read back. A day to spare on each side: the time can be shown in any
    # time zone (offsets reach 14 hours).
    try:
        parsed = parsed.astimezone(datetime.UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is in year 10000 in UTC
        parsed = None
    if parsed is None or not _EARLIEST <= parsed <= _LATEST:
        raise Refused(
            f"{name} {value[:80]!r} is outside {_EARLIEST.date()} to {_LATEST.date()} (UTC), the times both"
            " databases and Python hold"
        )
    return parsed


def _text(value, name: str, *, max_length: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(f"{name} must be a string, not {_json_type(value)}")
    try:
        check_text(value, field=name, max_length=max_length)
    except ArtifactError as exc:
        raise Refused(exc.message) from None
    return value


def _integer(value, name: str, *, minimum: int, maximum: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"{name} must be an integer, not {_json_type(value)}")
    if not minimum <= value <= maximum:
        raise Refused(f"{name} must be from {minimum} to {maximum:,}, got {value}")
    return value


def _json_type(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def parse_line(number: int, text: str) -> Line:
    """Everything a line can be checked for on its own; raises ``Refused``."""
    try:
        row = loads(text.rstrip("\r\n"), field="line")
    except ArtifactError as exc:
        raise Refused(exc.message.removeprefix("line: ")) from None
    if not isinstance(row, dict):
        raise Refused(f"a line must be a JSON object, not {_json_type(row)}")
    unknown = sorted(set(row) - KNOWN_FIELDS)
    if unknown:
        raise Refused(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_FIELDS))}")
    missing = [name for name in REQUIRED_FIELDS if name not in row]
    if missing:
        raise Refused(f"missing field(s) {', '.join(missing)}")

    artifact_id = _uuid(row["artifact_id"], "artifact_id", required=True)
    type_name = row["type"]
    if not isinstance(type_name, str) or type_name not in ARTIFACT_TYPES:
        raise Refused(f"unknown artifact type {str(type_name)[:80]!r}")
    artifact_type = ARTIFACT_TYPES[type_name]
    version = _integer(row["version"], "version", minimum=1)
    scene_id = _uuid(row.get("scene_id"), "scene_id")
    story_id = _uuid(row.get("story_id"), "story_id")
    if scene_id is None and story_id is None:
        raise Refused("scene_id or story_id is needed (a story-level artifact has story_id and no scene_id)")
    scope = SCOPE_SCENE if scene_id else SCOPE_STORY
    if scope not in artifact_type.scopes:
        raise Refused(f"{type_name} artifacts belong to a {' or '.join(artifact_type.scopes)}, not a {scope}")
    parent_id = _uuid(row.get("parent_id"), "parent_id")
    if parent_id == artifact_id:
        raise Refused("an artifact cannot be its own parent")

    kind = row.get("kind") or artifact_type.default_kind
    if kind not in artifact_type.kinds:
        raise Refused(f"{type_name} artifacts have kind {' or '.join(artifact_type.kinds)}, not {str(kind)[:40]!r}")
    state = row.get("lifecycle_state") or LifecycleState.INTERMEDIATE
    if state not in LifecycleState.values:
        raise Refused(f"unknown lifecycle_state {str(state)[:40]!r}; one of {', '.join(LifecycleState.values)}")
    pruned_at = _time(row.get("pruned_at"), "pruned_at")
    payload = row.get("payload")
    if pruned_at is not None:
        if payload is not None:
            raise Refused("a pruned artifact (pruned_at set) has no payload: payload must be null")
    else:
        try:
            check_payload(artifact_type, payload)
        except ArtifactError as exc:
            raise Refused(exc.message) from None

    sha = _text(row.get("content_sha256"), "content_sha256", max_length=64)
    size = row.get("content_size")
    mime_type = _text(row.get("mime_type"), "mime_type", max_length=100)
    if kind in MEDIA_KINDS:
        if not _SHA256.fullmatch(sha):
            raise Refused(f"a {kind} artifact needs content_sha256, 64 lowercase hexadecimal digits")
        size = _integer(size, "content_size", minimum=1, maximum=2**63 - 1)
        try:
            mime_type = parse_mime_type(mime_type) or ""
        except ArtifactError as exc:
            raise Refused(f"mime_type: {exc.message}") from None
        if mime_type.split("/")[0] != kind:
            raise Refused(f"a {kind} artifact needs a {kind}/* mime_type, not {mime_type or 'none'!r}")
    elif sha or size is not None or mime_type:
        raise Refused(f"a {kind} artifact carries no content: content_sha256, content_size and mime_type stay empty")

    created_by_id = row.get("created_by_id")
    if created_by_id is not None:
        created_by_id = _integer(created_by_id, "created_by_id", minimum=1, maximum=2**63 - 1)
    return Line(
        number=number,
        id=artifact_id,
        type=type_name,
        version=version,
        scene_id=scene_id,
        story_id=story_id,
        parent_id=parent_id,
        payload=payload,
        request_id=_text(row.get("request_id"), "request_id", max_length=64),
        created_at=_time(row.get("created_at"), "created_at"),
        kind=kind,
        lifecycle_state=state,
        content_sha256=sha,
        content_size=size,
        mime_type=mime_type,
        fingerprint=_text(row.get("fingerprint"), "fingerprint", max_length=64),
        pruned_at=pruned_at,
        created_by_step_id=_uuid(row.get("created_by_step_id"), "created_by_step_id"),
        created_by_id=created_by_id,
        given=frozenset(row),
    )


def differences(line: Line, stored: dict) -> list[str]:
    """The fields the line gives whose value differs from the stored row's."""
    ignored = PRUNED_AWAY if stored.get("pruned_at") is not None else frozenset()
    return [
        name
        for name in COMPARED_FIELDS
        if name in line.given and name not in ignored and getattr(line, name) != stored[name]
    ]


# -- a whole file ------------------------------------------------------------------------


def parse_lines(numbered: list[tuple[int, bytes | str]]) -> list[tuple[int, int, Line | Refused | None]]:
    """(line number, bytes read, the parsed line or why it is refused) for a chunk of
    numbered raw lines; None for a blank line. Pure Python, no database: it runs in the
    parsing thread."""
    parsed = []
    for number, raw in numbered:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        try:
            # utf-8-sig on line 1: a byte order mark there (as some editors and spreadsheet
            # exports write) is no part of the JSON.
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            parsed.append((number, len(raw), Refused(f"not UTF-8 ({exc.reason} at byte {exc.start})")))
            continue
        if not text.strip():
            parsed.append((number, len(raw), None))
            continue
        try:
            parsed.append((number, len(raw), parse_line(number, text)))
        except Refused as refused:
            parsed.append((number, len(raw), refused))
    return parsed


class Importer:
    """Imports batches of lines; keeps, across batches, only what a dry run did not write.

    ``import_stream`` yields one ``BatchResult`` per batch after that batch committed (or,
    in a dry run, was checked), so a caller can show progress and stop at any point.

    With ``create_missing``, a line whose scene does not exist is given one: in the story
    the line names, else in ``story_id`` (``--story``), else in one story made for this
    import (the seed's own table names no story). That story is titled after ``source``
    and the date, and its id is derived from them, so a rerun of the same file on the
    same day (after an interruption, say) finds it rather than making a second one.
    """

    def __init__(
        self,
        *,
        create_missing: bool = False,
        dry_run: bool = False,
        request_id: str | None = None,
        story_id: uuid.UUID | None = None,
        source: str = "-",
    ):
        self.create_missing = create_missing
        self.dry_run = dry_run
        self.request_id = request_id if request_id is not None else get_request_id()
        today = timezone.localdate()
        name = "standard input" if source == "-" else os.path.basename(source)
        title = f"Imported from {name} on {today.isoformat()}"
        # Where scenes no line places go, and its title should it be made.
        self.home_story = story_id or uuid.uuid5(_IMPORT_STORY, f"{os.path.abspath(source)}\n{today.isoformat()}")
        self.home_title = title if len(title) <= _TITLE_MAX else title[: _TITLE_MAX - 1] + "…"
        # A dry run writes nothing, so later batches see what earlier ones would have
        # written through these (a real run reads it back from the database).
        self._pending: dict[uuid.UUID, Line] = {}
        self._pending_heads: dict[tuple, int] = {}
        self._pending_scenes: dict[uuid.UUID, uuid.UUID] = {}
        self._pending_stories: set[uuid.UUID] = set()

    def import_stream(self, stream, *, batch_size: int) -> Iterator[BatchResult]:
        """Import batch after batch. The next batch is read and parsed in a thread while this
        one is written: parsing is pure Python, and the database's work releases the GIL."""
        numbered = enumerate(stream, start=1)
        chunks = iter(lambda: list(itertools.islice(numbered, batch_size)), [])
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-parse") as parser:
            ahead = parser.submit(parse_lines, next(chunks, []))
            while parsed := ahead.result():
                ahead = parser.submit(parse_lines, next(chunks, []))
                yield self.import_batch(parsed)

    def import_batch(self, chunk: Iterable[tuple[int, int, Line | Refused | None]]) -> BatchResult:
        result = BatchResult()
        lines: list[Line] = []
        for number, size, entry in chunk:
            result.lines += 1
            result.bytes += size
            if isinstance(entry, Refused):
                result.refused.append((number, entry.reason))
            elif entry is not None:
                lines.append(entry)
        if lines:
            plan = self._plan(lines) if self.dry_run else self._write(lines)
            result.imported = len(plan.accepted)
            result.skipped = plan.skipped
            result.refused.extend(plan.refused)
            result.stories_created = [(pk, self._story_title(pk)) for pk in sorted(plan.new_stories)]
            result.scenes_created = list(plan.new_scenes.items())
            if self.dry_run:
                self._pending.update((line.id, line) for line in plan.accepted)
                self._pending_heads.update(plan.heads)
                self._pending_scenes.update(plan.new_scenes)
                self._pending_stories.update(plan.new_stories)
        result.refused.sort()
        return result

    @atomic_write
    def _write(self, lines: list[Line]) -> _Plan:
        """One batch, one transaction: lock, read, decide, insert. Retried whole on a deadlock."""
        if self.create_missing:
            # Stories that may receive new scenes are locked first (the lock order), so the
            # positions handed out below cannot collide with a concurrent scene_create.
            scene_ids = {line.scene_id for line in lines if line.scene_id}
            known = set(Scene.objects.filter(pk__in=scene_ids).values_list("pk", flat=True))
            locks.lock_stories(
                {line.story_id or self.home_story for line in lines if line.scene_id and line.scene_id not in known}
            )
        # The files the lines name: under their digests' locks, a prune's or a sweep's
        # deletion of one either happened before the check below (the line is refused) or
        # waits for this batch to commit and then finds the file named (it stays).
        for sha in sorted({line.content_sha256 for line in lines if line.has_file}):
            locks.lock_content(sha)
        locks.lock_streams((line.story_id, line.scene_id, line.type) for line in lines)
        plan = self._plan(lines)
        self._insert(plan)
        return plan

    def _plan(self, lines: list[Line]) -> _Plan:
        return _Plan(self, lines)

    def _insert(self, plan: _Plan) -> None:
        if plan.new_stories:
            story_services.stories_import({pk: self._story_title(pk) for pk in plan.new_stories})
        if plan.new_scenes:
            story_services.scenes_import(plan.new_scenes)
        artifact_services.artifacts_insert_as_given([self._row(line) for line in plan.accepted])

    def _story_title(self, story_id: uuid.UUID) -> str:
        return self.home_title if story_id == self.home_story else DEFAULT_STORY_TITLE.format(id=story_id)

    def _row(self, line: Line) -> dict:
        """The row of a line: each column's attribute name and value."""
        return dict(
            id=line.id,
            story_id=line.story_id,
            scene_id=line.scene_id,
            type=line.type,
            version=line.version,
            parent_id=line.parent_id,
            kind=line.kind,
            payload=line.payload,
            content=storage_name(line.content_sha256) if line.has_file else "",
            content_sha256=line.content_sha256,
            content_size=line.content_size,
            mime_type=line.mime_type,
            lifecycle_state=line.lifecycle_state,
            request_id=line.request_id if "request_id" in line.given else self.request_id,
            created_by_step_id=line.created_by_step_id,
            created_by_id=line.created_by_id,
            created_at=line.created_at or timezone.now(),
            pruned_at=line.pruned_at,
            fingerprint=line.fingerprint,
        )


class _Plan:
    """What one batch does with each of its lines, decided in file order against the store
    and the lines accepted before it. Reads the store in a fixed number of queries."""

    def __init__(self, importer: Importer, lines: list[Line]):
        self.importer = importer
        self.accepted: list[Line] = []
        self.skipped = 0
        self.refused: list[tuple[int, str]] = []
        self.heads: dict[tuple, int] = {}
        self.new_scenes: dict[uuid.UUID, uuid.UUID] = {}
        self.new_stories: set[uuid.UUID] = set()
        self._accepted_by_id: dict[uuid.UUID, Line] = {}
        self._files: dict[str, int | None] = {}
        self._read(lines)
        for line in lines:
            try:
                self._decide(line)
            except Refused as refused:
                self.refused.append((line.number, refused.reason))

    def _read(self, lines: list[Line]) -> None:
        importer = self.importer
        ids = {line.id for line in lines}
        # Usually none are there yet: probe first, read the rows to compare only if some are.
        found = selectors.existing_artifacts(ids)
        self._stored = (
            {row["id"]: row for row in Artifact.objects.filter(pk__in=found).order_by().values("id", *COMPARED_FIELDS)}
            if found
            else {}
        )
        parents = {line.parent_id for line in lines if line.parent_id} - ids - set(importer._pending)
        self._parents = selectors.artifact_streams(parents) if parents else {}
        scene_ids = {line.scene_id for line in lines if line.scene_id}
        self._scenes = dict(Scene.objects.filter(pk__in=scene_ids).values_list("pk", "story_id"))
        self._scenes.update({k: v for k, v in importer._pending_scenes.items() if k in scene_ids})
        story_ids = {line.story_id for line in lines if line.story_id} | set(self._scenes.values())
        if importer.create_missing:
            story_ids.add(importer.home_story)
        self._stories = set(Story.objects.filter(pk__in=story_ids).values_list("pk", flat=True))
        self._stories |= importer._pending_stories & story_ids
        self._db_heads = selectors.stream_heads(
            scene_streams={(line.scene_id, line.type) for line in lines if line.scene_id},
            story_streams={(line.story_id, line.type) for line in lines if not line.scene_id},
        )
        steps = {line.created_by_step_id for line in lines if line.created_by_step_id}
        self._steps = set(AgentStep.objects.filter(pk__in=steps).values_list("pk", flat=True)) if steps else set()
        users = {line.created_by_id for line in lines if line.created_by_id}
        self._users = (
            set(get_user_model().objects.filter(pk__in=users).values_list("pk", flat=True)) if users else set()
        )

    def _known(self, artifact_id) -> Line | dict | None:
        return (
            self._accepted_by_id.get(artifact_id)
            or self.importer._pending.get(artifact_id)
            or self._stored.get(artifact_id)
        )

    def _decide(self, line: Line) -> None:
        known = self._known(line.id)
        if known is not None:
            stored = known if isinstance(known, dict) else {name: getattr(known, name) for name in COMPARED_FIELDS}
            changed = differences(line, stored)
            if changed:
                raise Refused(f"artifact {line.id} already exists with other content ({', '.join(changed)} differ)")
            self.skipped += 1
            return

        new_scene, new_story = self._place(line)
        stream = line.stream
        head = self.heads.get(stream) or max(self.importer._pending_heads.get(stream, 0), self._db_heads.get(stream, 0))
        where = f"scene {line.scene_id}" if line.scene_id else f"story {line.story_id}"
        if line.version <= head:
            raise Refused(f"version {line.version} of {line.type} on {where} exists already (the stream is at {head})")
        if line.version > head + 1:
            expected = f"v{head + 1}" + (f" after v{head}" if head else "")
            raise Refused(
                f"version gap: {line.type} on {where} expects {expected}, this line is v{line.version} "
                "(import the missing versions first, in order)"
            )
        if line.parent_id is not None:
            self._check_parent(line)
        if line.has_file:
            self._check_file(line)
        if line.created_by_step_id and line.created_by_step_id not in self._steps:
            raise Refused(f"created_by_step_id {line.created_by_step_id} names no step")
        if line.created_by_id and line.created_by_id not in self._users:
            raise Refused(f"created_by_id {line.created_by_id} names no user")

        self.heads[stream] = line.version
        self.accepted.append(line)
        self._accepted_by_id[line.id] = line
        if new_story:
            self.new_stories.add(line.story_id)
            self._stories.add(line.story_id)
        if new_scene:
            self.new_scenes[line.scene_id] = line.story_id
            self._scenes[line.scene_id] = line.story_id

    def _place(self, line: Line) -> tuple[bool, bool]:
        """Resolve the line's story (and check its scene), or say what --create-missing makes."""
        new_scene = False
        if line.scene_id:
            story_id = self._scenes.get(line.scene_id)
            if story_id is None:
                if not self.importer.create_missing:
                    raise Refused(f"scene {line.scene_id} does not exist (--create-missing creates it)")
                if line.story_id is None:
                    line.story_id = self.importer.home_story
                new_scene = True
            elif line.story_id is not None and line.story_id != story_id:
                raise Refused(f"scene {line.scene_id} belongs to story {story_id}, not {line.story_id}")
            else:
                line.story_id = story_id
        new_story = False
        if line.story_id not in self._stories:
            if not self.importer.create_missing:
                raise Refused(f"story {line.story_id} does not exist (--create-missing creates it)")
            new_story = True
        return new_scene, new_story

    def _check_parent(self, line: Line) -> None:
        parent = self._accepted_by_id.get(line.parent_id) or self.importer._pending.get(line.parent_id)
        if parent is not None:
            parent_stream = parent.stream
        elif line.parent_id in self._parents:
            story_id, scene_id, type_name = self._parents[line.parent_id]
            parent_stream = ("scene", scene_id, type_name) if scene_id else ("story", story_id, type_name)
        elif line.parent_id in self._stored:
            row = self._stored[line.parent_id]
            parent_stream = (
                ("scene", row["scene_id"], row["type"]) if row["scene_id"] else ("story", row["story_id"], row["type"])
            )
        else:
            raise Refused(f"unknown parent {line.parent_id}: not in the store, nor imported earlier in the file")
        if parent_stream != line.stream:
            kind, owner, type_name = parent_stream
            raise Refused(f"parent {line.parent_id} is a {type_name} of {kind} {owner}, not a version of this stream")

    def _check_file(self, line: Line) -> None:
        """The bytes come separately (copy the source's ``content/`` folder first): a row
        that names a file storage does not have would answer 500 when served."""
        sha = line.content_sha256
        if sha not in self._files:
            name = storage_name(sha)
            self._files[sha] = default_storage.size(name) if default_storage.exists(name) else None
        size = self._files[sha]
        if size is None:
            raise Refused(f"content {storage_name(sha)} is not in storage (copy the content files first)")
        if size != line.content_size:
            raise Refused(f"content {storage_name(sha)} has {size:,} bytes, the line says {line.content_size:,}")
