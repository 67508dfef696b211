"""The one write path for artifacts (SPEC §6), and the reads that go with it.

``ArtifactService`` keeps the seed's five methods under their names and meaning, plus
story-level create, edit-as-new-version, lifecycle transitions, relations and lineage.

Versioning never loses a write: every create serializes on its stream (a PostgreSQL
transaction-scoped advisory lock keyed by the stream; on SQLite the IMMEDIATE
transaction already holds the database's single write lock), then reads the stream's
max version and inserts max + 1 while still holding the lock. The seed's three retries
on IntegrityError remain only as a safety net, logged when exhausted.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import uuid
from dataclasses import dataclass

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import Max

from artifacts_project.request_id import get_request_id

from .errors import (
    Cycle,
    DuplicateRelation,
    InvalidContent,
    InvalidInput,
    InvalidKind,
    InvalidParent,
    InvalidRelation,
    InvalidScope,
    InvalidTransition,
    NotFound,
    PlanningLocked,
    Pruned,
    StillPrimary,
    VersionConflict,
)
from .models import (
    ACYCLIC_RELATIONS,
    ALLOWED_TRANSITIONS,
    Artifact,
    ArtifactRelation,
    AuditEvent,
    LifecycleState,
    RelationType,
)
from .payloads import MEDIA_KINDS, SCOPE_SCENE, SCOPE_STORY, get_type, validate_payload

logger = logging.getLogger(__name__)

MAX_CREATE_ATTEMPTS = 3
MAX_LINEAGE_DEPTH = 100
# Namespace for advisory locks, so ours never collide with another application's.
_LOCK_NAMESPACE_STREAM = 0x5354  # "ST"
_LOCK_NAMESPACE_RELATIONS = 0x5245  # "RE"


def parse_uuid(value, *, what: str) -> uuid.UUID:
    """A malformed id names nothing, so it is reported as not found."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise NotFound(f"{what} {value!r} does not exist", field=f"{what}_id") from None


def get_or_not_found(model, pk, *, what: str, lock: bool = False):
    """The row named ``pk`` (row-locked with ``lock``), or NotFound naming ``<what>_id``."""
    queryset = model.objects.select_for_update() if lock else model.objects
    obj = queryset.filter(pk=parse_uuid(pk, what=what)).first()
    if obj is None:
        raise NotFound(f"{what} {pk} does not exist", field=f"{what}_id")
    return obj


def acting_user(user):
    """The user to record as actor: anonymous or missing users are recorded as nobody."""
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def audit_record(
    *,
    action: str,
    target,
    actor=None,
    story_id=None,
    from_value=None,
    to_value=None,
    request_id: str | None = None,
) -> AuditEvent:
    """Append one audit event: who did what to which object, from what to what."""
    return AuditEvent.objects.create(
        action=action,
        target_type=target._meta.model_name,
        target_id=target.pk,
        story_id=story_id,
        actor=acting_user(actor),
        from_value=from_value,
        to_value=to_value,
        request_id=request_id if request_id is not None else get_request_id(),
    )


def _advisory_lock(namespace: int, key: str) -> None:
    """Serialize on ``key`` until the transaction ends (PostgreSQL only).

    SQLite needs nothing: transactions there are IMMEDIATE (see settings), so the
    whole database is already serialized for writers.
    """
    if connection.vendor != "postgresql":
        return
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, digest])


def _is_version_conflict(exc: IntegrityError) -> bool:
    message = str(exc)
    return "stream_version" in message or "artifacts_artifact.version" in message


@dataclass(frozen=True)
class StoredContent:
    name: str
    sha256: str
    size: int
    mime_type: str


def store_content(content, *, mime_type: str | None, kind: str) -> StoredContent:
    """Save bytes once per sha256 through Django's storage API."""
    if isinstance(content, (bytes, bytearray)):
        content = ContentFile(bytes(content))
    elif not isinstance(content, File):
        content = File(content)
    hasher = hashlib.sha256()
    size = 0
    content.seek(0)
    for chunk in content.chunks():
        hasher.update(chunk)
        size += len(chunk)
    if size == 0:
        raise InvalidContent("content is empty", field="content")
    mime = (mime_type or getattr(content, "content_type", None) or "").split(";")[0].strip().lower()
    if not mime or mime == "application/octet-stream":
        mime = mimetypes.guess_type(getattr(content, "name", "") or "")[0] or mime
    if not mime.startswith(f"{kind}/"):
        raise InvalidContent(f"a {kind} artifact needs a {kind}/* mime type, got {mime or 'none'!r}", field="content")
    sha = hasher.hexdigest()
    name = f"content/{sha[:2]}/{sha}"
    if not default_storage.exists(name):
        content.seek(0)
        saved = default_storage.save(name, content)
        if saved != name:  # a concurrent writer stored the same bytes first
            default_storage.delete(saved)
    return StoredContent(name=name, sha256=sha, size=size, mime_type=mime)


@dataclass(frozen=True)
class LineageEdge:
    from_id: uuid.UUID
    to_id: uuid.UUID
    kind: str  # "parent" (from is the child) or a relation type


@dataclass(frozen=True)
class Lineage:
    root: Artifact
    direction: str
    depth: int
    nodes: list[tuple[Artifact, int]]  # (artifact, distance from root), root excluded
    edges: list[LineageEdge]


def _db_uuid(value: uuid.UUID):
    return Artifact._meta.pk.get_db_prep_value(value, connection)


class ArtifactService:
    """Create and read artifacts; every write of an artifact goes through here.

    ``user`` and ``request_id`` describe who asks and under which request; they are
    stored on every row written. ``request_id`` defaults to the id in force (set by the
    HTTP middleware or a management command).
    """

    def __init__(self, *, user=None, request_id: str | None = None):
        self.user = acting_user(user)
        self.request_id = request_id if request_id is not None else get_request_id()

    # -- the seed's five methods -------------------------------------------------

    def create_artifact(self, scene_id, type, payload, parent_id=None, **options) -> Artifact:
        """Create the next version of the scene's ``type`` stream."""
        from stories.models import Scene

        scene = get_or_not_found(Scene, scene_id, what="scene")
        return self._create(
            story_id=scene.story_id, scene=scene, type=type, payload=payload, parent_id=parent_id, **options
        )

    def get_artifact(self, artifact_id) -> Artifact:
        artifact = (
            Artifact.objects.select_related("story", "scene", "parent", "created_by", "created_by_step")
            .filter(pk=parse_uuid(artifact_id, what="artifact"))
            .first()
        )
        if artifact is None:
            raise NotFound(f"artifact {artifact_id} does not exist", field="artifact_id")
        return artifact

    def get_latest_artifact(self, scene_id, type) -> Artifact | None:
        get_type(type)
        return (
            Artifact.objects.filter(scene_id=parse_uuid(scene_id, what="scene"), type=type).order_by("-version").first()
        )

    def list_artifacts(self, scene_id, type=None):
        artifacts = Artifact.objects.filter(scene_id=parse_uuid(scene_id, what="scene"))
        if type is not None:
            get_type(type)
            artifacts = artifacts.filter(type=type)
        return artifacts.order_by("type", "version")

    def get_next_version(self, scene_id, type) -> int:
        """The version the next create would get (informational: creates lock the stream)."""
        get_type(type)
        current = Artifact.objects.filter(scene_id=parse_uuid(scene_id, what="scene"), type=type).aggregate(
            v=Max("version")
        )["v"]
        return (current or 0) + 1

    # -- more writes ---------------------------------------------------------------

    def create_story_artifact(self, story_id, type, payload, parent_id=None, **options) -> Artifact:
        """Create the next version of a story-level stream (no scene)."""
        from stories.models import Story

        story = get_or_not_found(Story, story_id, what="story")
        return self._create(story_id=story.pk, scene=None, type=type, payload=payload, parent_id=parent_id, **options)

    def edit_artifact(self, artifact_id, payload) -> Artifact:
        """An edit is the next version of the edited artifact's stream, with it as parent.

        Returns the edited artifact itself, and writes nothing, when the payload is unchanged.
        Media content is carried over: an edit changes the metadata, not the bytes.
        """
        original = self.get_artifact(artifact_id)
        if original.payload == payload:
            return original
        options = {}
        if original.content_sha256:
            options = {
                "stored": StoredContent(
                    original.content.name, original.content_sha256, original.content_size, original.mime_type
                )
            }
        edited = self._create(
            story_id=original.story_id,
            scene=original.scene,
            type=original.type,
            payload=payload,
            parent_id=original.pk,
            kind=original.kind,
            **options,
        )
        audit_record(
            action="edit",
            target=edited,
            actor=self.user,
            story_id=edited.story_id,
            from_value={"artifact_id": str(original.pk), "version": original.version},
            to_value={"artifact_id": str(edited.pk), "version": edited.version},
            request_id=self.request_id,
        )
        return edited

    @transaction.atomic
    def transition(self, artifact_id, to: str) -> Artifact:
        """Move an artifact along its lifecycle (SPEC §5), refusing anything else."""
        from stories.models import StoryArtifactLink

        if to not in LifecycleState.values:
            raise InvalidInput(f"unknown lifecycle state {to!r}; one of {', '.join(LifecycleState.values)}", field="to")
        # The row lock serializes against a concurrent transition or primary change.
        artifact = Artifact.objects.select_for_update().filter(pk=parse_uuid(artifact_id, what="artifact")).first()
        if artifact is None:
            raise NotFound(f"artifact {artifact_id} does not exist", field="artifact_id")
        current = artifact.lifecycle_state
        if artifact.is_pruned:
            raise Pruned(f"artifact {artifact.pk} was pruned and can no longer change state")
        if to not in ALLOWED_TRANSITIONS[current]:
            raise InvalidTransition(f"cannot go from {current} to {to}")
        if (
            to == LifecycleState.ARCHIVED
            and StoryArtifactLink.objects.filter(artifact=artifact, is_primary=True).exists()
        ):
            raise StillPrimary(f"artifact {artifact.pk} is a primary link; choose another primary before archiving")
        Artifact.objects.filter(pk=artifact.pk, lifecycle_state=current).update(lifecycle_state=to)
        artifact.lifecycle_state = to
        audit_record(
            action="transition",
            target=artifact,
            actor=self.user,
            story_id=artifact.story_id,
            from_value=current,
            to_value=to,
            request_id=self.request_id,
        )
        return artifact

    @transaction.atomic
    def relate(self, from_artifact_id, to_artifact_id, relation_type: str, *, created_by_step=None) -> ArtifactRelation:
        """Record ``from`` <relation_type> ``to``; derived_from/transcoded_from never cycle."""
        if relation_type not in RelationType.values:
            raise InvalidRelation(
                f"unknown relation type {relation_type!r}; one of {', '.join(RelationType.values)}",
                field="relation_type",
            )
        source = self._existing(from_artifact_id, field="from_artifact_id")
        target = self._existing(to_artifact_id, field="to_artifact_id")
        if source.pk == target.pk:
            raise InvalidRelation("an artifact cannot relate to itself", field="to_artifact_id")
        if relation_type in ACYCLIC_RELATIONS:
            # One writer at a time checks-and-inserts, or two edges could close a cycle together.
            _advisory_lock(_LOCK_NAMESPACE_RELATIONS, "acyclic")
            if self._reaches(start=target.pk, goal=source.pk):
                raise Cycle(f"{source.pk} {relation_type} {target.pk} would close a cycle")
        try:
            with transaction.atomic():
                return ArtifactRelation.objects.create(
                    from_artifact=source,
                    to_artifact=target,
                    relation_type=relation_type,
                    created_by_step=created_by_step,
                    request_id=self.request_id,
                )
        except IntegrityError:
            if ArtifactRelation.objects.filter(
                from_artifact=source, to_artifact=target, relation_type=relation_type
            ).exists():
                raise DuplicateRelation(f"{source.pk} {relation_type} {target.pk} already exists") from None
            raise

    # -- reads -------------------------------------------------------------------

    def versions(self, artifact_id):
        """Every version of the artifact's stream, oldest first."""
        artifact = self.get_artifact(artifact_id)
        return Artifact.objects.for_stream(
            story_id=artifact.story_id, scene_id=artifact.scene_id, type=artifact.type
        ).order_by("version")

    def lineage(self, artifact_id, *, direction: str = "ancestors", depth: int = 10) -> Lineage:
        """Ancestors or descendants to ``depth`` hops, across parents and relations.

        One recursive query walks the graph; edges are read "child -> parent" and
        "from -> to" (A derived_from B: B is A's ancestor).
        """
        if direction not in ("ancestors", "descendants"):
            raise InvalidInput("direction must be 'ancestors' or 'descendants'", field="direction")
        if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_LINEAGE_DEPTH:
            raise InvalidInput(f"depth must be an integer from 1 to {MAX_LINEAGE_DEPTH}", field="depth")
        root = self.get_artifact(artifact_id)
        art, rel = Artifact._meta.db_table, ArtifactRelation._meta.db_table
        if direction == "ancestors":
            step = (
                f"SELECT id AS src, parent_id AS dst FROM {art} WHERE parent_id IS NOT NULL "
                f"UNION ALL SELECT from_artifact_id, to_artifact_id FROM {rel}"
            )
        else:
            step = (
                f"SELECT parent_id AS src, id AS dst FROM {art} WHERE parent_id IS NOT NULL "
                f"UNION ALL SELECT to_artifact_id, from_artifact_id FROM {rel}"
            )
        sql = (
            "WITH RECURSIVE walk(id, depth) AS ("
            " SELECT %s, 0"
            f" UNION SELECT e.dst, w.depth + 1 FROM walk w JOIN ({step}) e ON e.src = w.id WHERE w.depth < %s"
            ") SELECT id, MIN(depth) FROM walk GROUP BY id"
        )
        root_param = _db_uuid(root.pk)
        if connection.vendor == "postgresql":
            sql = sql.replace("SELECT %s, 0", "SELECT %s::uuid, 0")
        with connection.cursor() as cursor:
            cursor.execute(sql, [root_param, depth])
            distances = {uuid.UUID(str(row[0])): row[1] for row in cursor.fetchall()}
        distances.pop(root.pk, None)
        found = Artifact.objects.select_related("scene").in_bulk(list(distances))
        nodes = sorted(
            ((found[pk], d) for pk, d in distances.items() if pk in found),
            key=lambda pair: (pair[1], pair[0].type, pair[0].version),
        )
        ids = set(distances) | {root.pk}
        edges = [LineageEdge(a.pk, a.parent_id, "parent") for a in [root, *found.values()] if a.parent_id in ids]
        edges += [
            LineageEdge(r.from_artifact_id, r.to_artifact_id, r.relation_type)
            for r in ArtifactRelation.objects.filter(from_artifact_id__in=ids, to_artifact_id__in=ids)
        ]
        return Lineage(root=root, direction=direction, depth=depth, nodes=nodes, edges=edges)

    # -- internals -----------------------------------------------------------------

    def _existing(self, artifact_id, *, field: str) -> Artifact:
        artifact = Artifact.objects.filter(pk=parse_uuid(artifact_id, what="artifact")).first()
        if artifact is None:
            raise NotFound(f"artifact {artifact_id} does not exist", field=field)
        return artifact

    def _reaches(self, *, start: uuid.UUID, goal: uuid.UUID) -> bool:
        """Whether ``goal`` is reachable from ``start`` over derived_from/transcoded_from."""
        rel = ArtifactRelation._meta.db_table
        cast = "::uuid" if connection.vendor == "postgresql" else ""
        sql = (
            f"WITH RECURSIVE reach(id) AS (SELECT %s{cast} UNION "
            f"SELECT r.to_artifact_id FROM {rel} r JOIN reach ON r.from_artifact_id = reach.id "
            f"WHERE r.relation_type IN (%s, %s)) SELECT 1 FROM reach WHERE id = %s{cast}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [_db_uuid(start), *[str(t) for t in ACYCLIC_RELATIONS], _db_uuid(goal)])
            return cursor.fetchone() is not None

    def _next_version(self, latest: Artifact | None) -> int:
        """The stream's latest version + 1; only meaningful while the stream lock is held.

        The safety-net retry in ``_create`` re-enters here after a unique-version conflict.
        """
        return latest.version + 1 if latest is not None else 1

    def _create(
        self,
        *,
        story_id,
        scene,
        type,
        payload,
        parent_id=None,
        kind: str | None = None,
        content=None,
        mime_type: str | None = None,
        lifecycle_state: str = LifecycleState.INTERMEDIATE,
        created_by_step=None,
        stored: StoredContent | None = None,
    ) -> Artifact:
        artifact_type = get_type(type)
        scope = SCOPE_SCENE if scene is not None else SCOPE_STORY
        if scope not in artifact_type.scopes:
            raise InvalidScope(
                f"{type} artifacts belong to a {' or '.join(artifact_type.scopes)}, not a {scope}", field="type"
            )
        kind = kind or artifact_type.default_kind
        if kind not in artifact_type.kinds:
            raise InvalidKind(
                f"{type} artifacts have kind {' or '.join(artifact_type.kinds)}, not {kind!r}", field="kind"
            )
        if lifecycle_state not in LifecycleState.values:
            raise InvalidInput(f"unknown lifecycle state {lifecycle_state!r}", field="lifecycle_state")
        validate_payload(type, payload)
        if kind in MEDIA_KINDS:
            if stored is None:
                if content is None:
                    raise InvalidContent(f"a {kind} artifact needs its bytes in 'content'", field="content")
                stored = store_content(content, mime_type=mime_type, kind=kind)
        elif content is not None:
            raise InvalidContent(f"a {kind} artifact carries no content; put it in the payload", field="content")
        try:
            parent_uuid = parse_uuid(parent_id, what="parent") if parent_id is not None else None
        except NotFound:  # a malformed parent names no version of this stream: bad input, not a missing resource
            raise InvalidParent(f"parent_id {parent_id!r} is not a valid id", field="parent_id") from None

        for attempt in range(1, MAX_CREATE_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    if artifact_type.planning and scene is not None:
                        self._check_planning_lock(scene.pk, type)
                    _advisory_lock(_LOCK_NAMESPACE_STREAM, f"{scene.pk if scene else story_id}:{type}")
                    stream = Artifact.objects.for_stream(
                        story_id=story_id, scene_id=scene.pk if scene else None, type=type
                    )
                    latest = stream.order_by("-version").first()
                    artifact = Artifact(
                        story_id=story_id,
                        scene=scene,
                        type=type,
                        version=self._next_version(latest),
                        parent=self._resolve_parent(parent_uuid, stream=stream, latest=latest, type=type),
                        kind=kind,
                        payload=payload,
                        lifecycle_state=lifecycle_state,
                        request_id=self.request_id,
                        created_by=self.user,
                        created_by_step=created_by_step,
                    )
                    if stored is not None:
                        artifact.content.name = stored.name
                        artifact.content_sha256 = stored.sha256
                        artifact.content_size = stored.size
                        artifact.mime_type = stored.mime_type
                    artifact.save()
                    return artifact
            except IntegrityError as exc:
                if not _is_version_conflict(exc):
                    raise
                logger.warning(
                    "version conflict on %s/%s (attempt %d of %d)",
                    scene.pk if scene else story_id,
                    type,
                    attempt,
                    MAX_CREATE_ATTEMPTS,
                )
        logger.error(
            "version assignment exhausted %d attempts on stream %s/%s",
            MAX_CREATE_ATTEMPTS,
            scene.pk if scene else story_id,
            type,
        )
        raise VersionConflict(f"could not assign a version on {type} after {MAX_CREATE_ATTEMPTS} attempts")

    def planning_blocks(self, *, type: str, scene) -> bool:
        """Whether the planning lock refuses this user a new ``type`` version on ``scene``
        (a friendly early check for forms; creates check again under a row lock)."""
        return (
            scene is not None
            and get_type(type).planning
            and scene.planning_locked
            and not (self.user is not None and self.user.has_perm("artifacts.override_planning_lock"))
        )

    def _check_planning_lock(self, scene_id, type: str) -> None:
        from stories.models import Scene

        # Lock the scene row so a concurrent "lock planning" waits for this create (or
        # this create sees the lock): no planning artifact slips in after the lock.
        scene = Scene.objects.select_for_update().only("id", "planning_locked").filter(pk=scene_id).first()
        if self.planning_blocks(type=type, scene=scene):
            raise PlanningLocked(f"planning is locked on scene {scene_id}")

    def _resolve_parent(self, parent_uuid, *, stream, latest, type) -> Artifact | None:
        """A new version's parent is the stream's latest unless an editor branches from
        an older version of the same stream."""
        if parent_uuid is None:
            return latest
        parent = latest if latest is not None and latest.pk == parent_uuid else stream.filter(pk=parent_uuid).first()
        if parent is None:
            raise InvalidParent(f"parent {parent_uuid} is not a version of this {type} stream", field="parent_id")
        return parent
