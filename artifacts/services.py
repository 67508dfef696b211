"""The one write path for artifacts (SPEC §6).

Actions as keyword-only ``<entity>_<action>`` functions: ``artifact_create``,
``artifacts_create_batch``, ``artifact_edit`` (edit as a new version), ``artifact_transition``,
``relation_create``/``relations_create``; the batch primitives of the operations and the
pipeline (``insert_next_version``, ``relations_insert``, ``relations_of_new_version``,
``prune_rows``, ``artifacts_insert_as_given``); and ``ArtifactService``, the seed's class
with its five methods under their names and meaning, a facade over them.
Reads it shares with the API and the admin live in ``selectors.py`` and ``lineage.py``;
the bytes of media artifacts in ``content.py``; every lock in ``kernel.locks``.

Versioning never loses a write: a create serializes on its stream (``lock_stream``),
reads the stream's latest version and inserts the next one while holding that lock. The
seed's three retries on a version conflict remain only as a safety net, logged when
exhausted: the INSERT does nothing (ON CONFLICT on the stream's unique index) instead of
raising IntegrityError, so a retry needs no savepoint.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef

from audit.services import acting_user, audit_record
from changes import services as change_services
from kernel import locks
from kernel.errors import (
    AlreadyLatest,
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
from kernel.lookups import get_or_not_found, parse_uuid
from kernel.request_id import get_request_id
from kernel.transactions import atomic_write
from stories.models import Scene, Story, StoryArtifactLink

from . import lineage as lineage_walk
from . import selectors
from .content import PreparedContent, StoredContent, prepare_content, store_content, stored_content_of
from .models import (
    ACYCLIC_RELATIONS,
    ALLOWED_TRANSITIONS,
    Artifact,
    ArtifactRelation,
    LifecycleState,
    RelationType,
)
from .payloads import MEDIA_KINDS, SCOPE_SCENE, SCOPE_STORY, check_payload, get_type

logger = logging.getLogger(__name__)

MAX_CREATE_ATTEMPTS = 3
MAX_BATCH = 1000
# A transition's note is a sentence or a paragraph for the next editor, not a document.
NOTE_MAX_LENGTH = 2000


def _scene_and_story(scene_id) -> tuple:
    """The scene's key and its story's, or NotFound: one read by primary key, written in SQL
    because compiling it through the ORM cost more than the read itself on every create."""
    pk = parse_uuid(scene_id, what="scene")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT story_id FROM {Scene._meta.db_table} WHERE id = %s",
            [Scene._meta.pk.get_db_prep_value(pk, connection)],
        )
        row = cursor.fetchone()
    if row is None:
        raise NotFound(f"scene {scene_id} does not exist", field="scene_id")
    return pk, Story._meta.pk.to_python(row[0])


_INSERT_COLUMNS: dict[str, tuple[tuple, str]] = {}


def _insert_columns(db) -> tuple[tuple, str]:
    """The artifact table's fields and its quoted column list, worked out once per vendor."""
    found = _INSERT_COLUMNS.get(db.vendor)
    if found is None:
        fields = tuple(Artifact._meta.concrete_fields)
        found = _INSERT_COLUMNS[db.vendor] = (fields, ", ".join(db.ops.quote_name(f.column) for f in fields))
    return found


# -- the actions: keyword-only ``<entity>_<action>`` functions -----------------------------
#
# ``actor`` (a user, or None) and ``request_id`` (default: the id in force, set by the HTTP
# middleware or a command) are stored on what an action writes and on its audit event.


def _request_id(request_id: str | None) -> str:
    return request_id if request_id is not None else get_request_id()


@atomic_write
def artifact_create(
    *,
    type: str,
    payload,
    scene_id=None,
    story_id=None,
    parent_id=None,
    kind: str | None = None,
    content=None,
    mime_type: str | None = None,
    lifecycle_state: str = LifecycleState.INTERMEDIATE,
    created_by_step=None,
    fingerprint: str | None = None,
    artifact_id=None,
    actor=None,
    request_id: str | None = None,
) -> Artifact:
    """The next version of a stream: the scene's ``type`` stream, or with ``story_id`` alone
    the story's own (story-level media). Media kinds come with their bytes (``content``).
    ``created_by_step``: the agent step that made it; ``fingerprint``: what a pipeline node made
    it from (None: its parent's); ``artifact_id``: a pre-assigned id."""
    if scene_id is not None:
        scene_pk, story_pk = _scene_and_story(scene_id)
    else:
        scene_pk, story_pk = None, get_or_not_found(Story.objects.only("id"), story_id, what="story").pk
    return _create(
        story_id=story_pk,
        scene_id=scene_pk,
        type=type,
        payload=payload,
        parent_id=parent_id,
        kind=kind,
        content=content,
        mime_type=mime_type,
        lifecycle_state=lifecycle_state,
        created_by_step=created_by_step,
        fingerprint=fingerprint,
        artifact_id=artifact_id,
        actor=acting_user(actor),
        request_id=_request_id(request_id),
    )


@atomic_write
def artifacts_create_batch(*, scene_id, items: list[dict], actor=None, request_id: str | None = None) -> list[Artifact]:
    """Create many versions on one scene at once (SPEC §7): all or nothing, at most 1,000,
    versions assigned in list order (several items of one type make consecutive ones).

    Each item is ``{"type", "payload", "parent_id"?}``; JSON kinds only (media travel one
    by one with their bytes). Everything is checked before any lock is taken; then the
    streams are locked in a fixed order and every row goes in with one INSERT.
    """
    actor, request_id = acting_user(actor), _request_id(request_id)
    if not isinstance(items, list) or not items:
        raise InvalidInput("artifacts must be a non-empty list", field="artifacts")
    if len(items) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} artifacts per batch, got {len(items)}", field="artifacts")
    scene = get_or_not_found(Scene.objects.only("id", "story_id"), scene_id, what="scene")
    checked = [_checked_item(index, item) for index, item in enumerate(items)]
    types = sorted({type_name for type_name, _, _ in checked})
    if any(get_type(t).planning for t in types):
        _check_planning_lock(scene.pk, next(t for t in types if get_type(t).planning), actor=actor)
    for type_name in types:  # sorted: two batches never wait on each other in a circle
        locks.lock_stream(story_id=scene.story_id, scene_id=scene.pk, type=type_name)
    heads = {
        t: selectors.stream_latest(
            story_id=scene.story_id, scene_id=scene.pk, type=t, fields=("id", "version", "fingerprint")
        )
        for t in types
    }
    made: dict = {}  # id -> the new row, for parents within the batch
    rows = []
    for index, (type_name, payload, parent_uuid) in enumerate(checked):
        head = heads[type_name]
        if parent_uuid is None:
            parent_pk, parent_fingerprint = (head.pk, head.fingerprint) if head is not None else (None, "")
        elif parent_uuid in made and made[parent_uuid].type == type_name:
            parent_pk, parent_fingerprint = parent_uuid, made[parent_uuid].fingerprint
        elif head is not None and head.pk == parent_uuid:
            parent_pk, parent_fingerprint = parent_uuid, head.fingerprint
        else:  # an editor branching from an older version of the stream
            try:
                parent_fingerprint = _stream_version_fingerprint(
                    parent_uuid, story_id=scene.story_id, scene_id=scene.pk, type=type_name
                )
            except (InvalidParent, NotFound) as exc:
                raise type(exc)(exc.message, field=f"artifacts[{index}].parent_id") from None
            parent_pk = parent_uuid
        row = Artifact(
            story_id=scene.story_id,
            scene_id=scene.pk,
            type=type_name,
            version=(head.version if head is not None else 0) + 1,
            parent_id=parent_pk,
            payload=payload,
            fingerprint=parent_fingerprint,
            request_id=request_id,
            created_by=actor,
        )
        heads[type_name] = made[row.pk] = row
        rows.append(row)
    created = Artifact.objects.bulk_create(rows)
    change_services.artifacts_created(created)
    return created


def _checked_item(index: int, item) -> tuple[str, dict, object]:
    where = f"artifacts[{index}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be an object with type and payload", field=where)
    type_name = item.get("type")
    artifact_type = get_type(type_name)
    if SCOPE_SCENE not in artifact_type.scopes or artifact_type.default_kind in MEDIA_KINDS:
        raise InvalidScope(f"{where}: {type_name} cannot be created in a batch on a scene", field=f"{where}.type")
    try:
        check_payload(artifact_type, item.get("payload"))
    except InvalidInput as exc:
        raise type(exc)(f"{where}.{exc.message}", field=f"{where}.{exc.field}") from None
    parent_id = item.get("parent_id")
    try:
        parent_uuid = parse_uuid(parent_id, what="parent") if parent_id is not None else None
    except NotFound:
        raise InvalidParent(f"{where}.parent_id {parent_id!r} is not a valid id", field=f"{where}.parent_id") from None
    return type_name, item["payload"], parent_uuid


@atomic_write
def artifact_edit(*, artifact_id, payload, actor=None, request_id: str | None = None) -> Artifact:
    """An edit is the next version of the edited artifact's stream, with it as parent,
    written in one transaction with its audit event.

    Returns the edited artifact itself, and writes nothing, when the payload is unchanged.
    Media content is carried over: an edit changes the metadata, not the bytes.
    """
    actor, request_id = acting_user(actor), _request_id(request_id)
    original = _source_of_new_version(artifact_id)
    if original.is_pruned:
        raise Pruned(f"artifact {original.pk} was pruned; edit a version that still has its payload")
    if original.payload == payload:
        return original
    return _next_version_of(
        original, payload=payload, parent_id=original.pk, action="edit", actor=actor, request_id=request_id
    )


def _source_of_new_version(artifact_id) -> Artifact:
    """The artifact an edit or a restore makes a new version from, read under its content's
    lock when it has content.

    The new version names the original's file, which a prune deletes once no live artifact
    names it: the digest's lock (before the stream's, the lock order) holds that deletion off
    until this version is committed and names the file, or else this action waits for it and,
    reading again, finds the original pruned. Row locks would not do: the prune's file deletion
    runs after its batch commits."""
    original = selectors.artifact_get(artifact_id)
    if original.content_sha256 and not original.is_pruned:
        locks.lock_content(original.content_sha256)
        original = selectors.artifact_get(original.pk)
    return original


def _next_version_of(original: Artifact, *, payload, parent_id, action: str, actor, request_id) -> Artifact:
    """The next version of ``original``'s stream with ``payload`` and ``original``'s content (the
    same stored file, no copy), parent ``parent_id`` (None: the stream's latest), and its audit
    event ``action`` naming the version it came from and the one it follows."""
    made = _create(
        story_id=original.story_id,
        scene_id=original.scene_id,
        type=original.type,
        payload=payload,
        parent_id=parent_id,
        kind=original.kind,
        stored=stored_content_of(original) if original.content_sha256 else None,
        actor=actor,
        request_id=request_id,
    )
    audit_record(
        action=action,
        target=made,
        actor=actor,
        story_id=made.story_id,
        from_value={"artifact_id": str(original.pk), "version": original.version},
        to_value={
            "artifact_id": str(made.pk),
            "version": made.version,
            # Its parent: the edited version (a branch when older than the latest), or the latest.
            "parent_version": original.version if parent_id == original.pk else made.version - 1,
        },
        request_id=request_id,
    )
    return made


@atomic_write
def artifact_revert(*, artifact_id, actor=None, request_id: str | None = None) -> Artifact:
    """Restore an older version (SPEC §13): the next version of its stream, with its payload
    and its content (the same stored file, no copy), parent the stream's latest, and an audit
    event ``revert`` naming the version restored. The planning lock refuses it as any create.

    Restoring the latest is refused (``already_latest``): the new version would repeat it.
    Like an edit, the new version counts as made from the inputs of its parent (the latest it
    replaces), so the pipeline keeps it and remakes what lies downstream (SPEC §10).
    """
    actor, request_id = acting_user(actor), _request_id(request_id)
    original = _source_of_new_version(artifact_id)
    if original.is_pruned:
        raise Pruned(f"artifact {original.pk} (v{original.version}) was pruned: it has nothing left to restore")
    latest = selectors.stream_latest(
        story_id=original.story_id, scene_id=original.scene_id, type=original.type, fields=("id", "version")
    )
    if latest.pk == original.pk:
        raise AlreadyLatest(f"{original.type} v{original.version} is the latest version of its stream already")
    # parent_id=None: _create makes the stream's latest the parent.
    return _next_version_of(
        original, payload=original.payload, parent_id=None, action="revert", actor=actor, request_id=request_id
    )


# Nestable: publishing is also a part of "publish and make primary" (stories.services).
@atomic_write(nestable=True)
def artifact_transition(
    *, artifact_id, to: str, actor=None, note: str | None = None, request_id: str | None = None
) -> Artifact:
    """Move an artifact along its lifecycle (SPEC §5), refusing anything else; ``note`` (why,
    in the editor's words) is kept on the audit event."""
    if note is not None and len(note) > NOTE_MAX_LENGTH:
        raise InvalidInput(f"a note is at most {NOTE_MAX_LENGTH} characters", field="note")
    if to not in LifecycleState.values:
        raise InvalidInput(f"unknown lifecycle state {to!r}; one of {', '.join(LifecycleState.values)}", field="to")
    # The row lock serializes against a concurrent transition or primary change.
    artifact = locks.lock_artifact(artifact_id)
    current = artifact.lifecycle_state
    if artifact.is_pruned:
        raise Pruned(f"artifact {artifact.pk} was pruned and can no longer change state")
    if to not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(f"cannot go from {current} to {to}")
    if (
        to == LifecycleState.ARCHIVED
        and StoryArtifactLink.objects.filter(artifact_id=artifact.pk, is_primary=True).exists()
    ):
        raise StillPrimary(f"artifact {artifact.pk} is a primary link; choose another primary before archiving")
    # Filtered on the state read under the lock: a count of 0 would mean the lock failed.
    changed = Artifact.objects.filter(pk=artifact.pk, lifecycle_state=current).update(lifecycle_state=to)
    if changed != 1:
        raise InvalidTransition(f"artifact {artifact.pk} changed state meanwhile; reload it")
    artifact.lifecycle_state = to
    change_services.artifact_transitioned(artifact, from_state=current, to_state=to)
    audit_record(
        action="transition",
        target=artifact,
        actor=acting_user(actor),
        story_id=artifact.story_id,
        from_value=current,
        to_value=to,
        request_id=_request_id(request_id),
        note=note,
    )
    return artifact


@atomic_write
def artifact_publish(*, artifact_id, actor=None, note: str | None = None, request_id: str | None = None) -> Artifact:
    """Publish along the lifecycle's own path, in one transaction: a candidate is published,
    an intermediate moves to candidate and then to published (two transitions SPEC §5
    allows, each on the audit trail), a published one stays as it is. An archived artifact
    is refused: restoring it is an editor's decision of its own."""
    artifact = locks.lock_artifact(artifact_id)
    if artifact.lifecycle_state == LifecycleState.INTERMEDIATE:
        artifact_transition(
            artifact_id=artifact.pk, to=LifecycleState.CANDIDATE, actor=actor, note=note, request_id=request_id
        )
    if artifact.lifecycle_state == LifecycleState.PUBLISHED:
        return artifact
    return artifact_transition(
        artifact_id=artifact.pk, to=LifecycleState.PUBLISHED, actor=actor, note=note, request_id=request_id
    )


def relation_create(
    *, from_artifact_id, to_artifact_id, relation_type: str, created_by_step=None, request_id: str | None = None
) -> ArtifactRelation:
    """Record ``from`` <relation_type> ``to``; derived_from/transcoded_from never cycle."""
    (relation,) = relations_create(
        from_artifact_id=from_artifact_id,
        targets=[(to_artifact_id, relation_type)],
        created_by_step=created_by_step,
        request_id=request_id,
    )
    return relation


@atomic_write
def relations_create(
    *, from_artifact_id, targets, created_by_step=None, request_id: str | None = None
) -> list[ArtifactRelation]:
    """The one writer of relations a client or an editor asks for (SPEC §3): ``from``
    <relation_type> ``to`` for each ``(to_artifact_id, relation_type)`` of ``targets``, all
    or none. Unique per edge, no self-edge, derived_from and transcoded_from never close a
    cycle, no reference to a pruned artifact (409 ``pruned``). One ``IN`` query checks that
    the artifacts exist (and reads what the checks below need), one INSERT writes the
    relations, whatever their number.

    A new acyclic edge ``from -> to`` closes a cycle only along a path back to ``from``,
    whose last edge points at ``from``. When none does, the walk is skipped, but the
    relation graph's lock is still held, since another transaction could add such an edge
    meanwhile. (The batch writers of checked relations are ``relations_insert``: a backfill,
    and ``relations_of_new_version``: the pipeline.)
    """
    request_id = _request_id(request_id)
    source = parse_uuid(from_artifact_id, what="artifact")
    edges = _checked_edges(source, targets)
    if not edges:
        return []
    acyclic = [target for target, relation_type in edges if relation_type in ACYCLIC_RELATIONS]
    if acyclic:
        locks.lock_relation_graph()  # before the read below, so that it sees every committed edge
    # The rows held before the read below, which then sees any prune committed meanwhile
    # (see hold_unpruned: a prune is refused here or keeps the targets).
    locks.share_artifacts({source, *(target for target, _ in edges)})
    rows = (
        Artifact.objects.filter(pk__in={source, *(target for target, _ in edges)})
        .order_by()
        .annotate(
            # Whether an acyclic relation points at ``source`` (the same for every row).
            points_at_source=Exists(
                ArtifactRelation.objects.filter(to_artifact_id=source, relation_type__in=ACYCLIC_RELATIONS)
            ),
            # Whether ``source`` relates to this row already, by any type.
            related=Exists(ArtifactRelation.objects.filter(from_artifact_id=source, to_artifact_id=OuterRef("pk"))),
        )
        .values_list("pk", "points_at_source", "related", "pruned_at")
    )
    found = {pk: (pointed, related) for pk, pointed, related, _ in rows}
    pruned = {pk for pk, _, _, pruned_at in rows if pruned_at is not None}
    if source not in found:
        raise NotFound(f"artifact {from_artifact_id} does not exist", field="from_artifact_id")
    for target, _ in edges:
        if target not in found:
            raise NotFound(f"artifact {target} does not exist", field="to_artifact_id")
    if source in pruned:
        raise _pruned(source, field="from_artifact_id")
    for target, _ in edges:
        if target in pruned:
            raise _pruned(target, field="to_artifact_id")
    related = [target for target in found if target != source and found[target][1]]
    if related:
        existing = ArtifactRelation.objects.filter(from_artifact_id=source, to_artifact_id__in=related)
        for target, relation_type in existing.values_list("to_artifact_id", "relation_type"):
            if (target, relation_type) in edges:
                raise DuplicateRelation(f"{source} {relation_type} {target} already exists")
    if acyclic and found[source][0]:
        for target in acyclic:
            if lineage_walk.reaches(start=target, goal=source, over=ACYCLIC_RELATIONS):
                relation_type = next(t for to, t in edges if to == target and t in ACYCLIC_RELATIONS)
                raise Cycle(f"{source} {relation_type} {target} would close a cycle")
    relations = [
        ArtifactRelation(
            from_artifact_id=source,
            to_artifact_id=target,
            relation_type=relation_type,
            created_by_step=created_by_step,
            request_id=request_id,
        )
        for target, relation_type in edges
    ]
    try:
        return ArtifactRelation.objects.bulk_create(relations)
    except IntegrityError:
        # Checked above: a concurrent writer recorded one of them meanwhile. This action's
        # transaction (or savepoint) is rolled back as the error leaves it.
        raise DuplicateRelation(f"a relation from {source} was recorded meanwhile; nothing was written") from None


def _checked_edges(source, targets) -> dict[tuple, None]:
    """``(to_artifact_id, relation_type)`` pairs, checked and parsed, in the order given."""
    shape = "targets must be a list of (to_artifact_id, relation_type) pairs"
    if isinstance(targets, str | bytes | dict) or not hasattr(targets, "__iter__"):
        raise InvalidRelation(shape, field="targets")
    edges = {}
    for item in targets:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise InvalidRelation(shape, field="targets")
        to_artifact_id, relation_type = item
        if relation_type not in RelationType.values:
            raise InvalidRelation(
                f"unknown relation type {relation_type!r}; one of {', '.join(RelationType.values)}",
                field="relation_type",
            )
        target = parse_uuid(to_artifact_id, what="artifact")
        if target == source:
            raise InvalidRelation("an artifact cannot relate to itself", field="to_artifact_id")
        if (target, relation_type) in edges:
            raise DuplicateRelation(f"{source} {relation_type} {target} is given twice")
        edges[(target, relation_type)] = None
        if len(edges) > MAX_BATCH:
            raise InvalidRelation(f"at most {MAX_BATCH} relations at once", field="targets")
    return edges


def planning_blocks(*, actor, type: str, scene) -> bool:
    """Whether the planning lock refuses ``actor`` a new ``type`` version on ``scene`` (a
    friendly early check for forms; creates check again under the scene's lock)."""
    return (
        scene is not None
        and get_type(type).planning
        and scene.planning_locked
        and not (actor is not None and actor.has_perm("artifacts.override_planning_lock"))
    )


def _create(
    *,
    story_id,
    scene_id,
    type,
    payload,
    parent_id=None,
    kind: str | None = None,
    content=None,
    mime_type: str | None = None,
    lifecycle_state: str = LifecycleState.INTERMEDIATE,
    created_by_step=None,
    stored: StoredContent | None = None,
    fingerprint: str | None = None,
    artifact_id=None,
    actor=None,
    request_id: str,
) -> Artifact:
    """``fingerprint``: what a pipeline node made this from; None inherits the parent's
    (an edit or a client's new version counts as made from its parent's inputs, SPEC §10).
    ``artifact_id``: a pre-assigned id, for content that names its own URL."""
    # Everything that needs no lock is checked first, so the stream lock is held briefly.
    artifact_type = get_type(type)
    scope = SCOPE_SCENE if scene_id is not None else SCOPE_STORY
    if scope not in artifact_type.scopes:
        raise InvalidScope(
            f"{type} artifacts belong to a {' or '.join(artifact_type.scopes)}, not a {scope}", field="type"
        )
    kind = kind or artifact_type.default_kind
    if kind not in artifact_type.kinds:
        raise InvalidKind(f"{type} artifacts have kind {' or '.join(artifact_type.kinds)}, not {kind!r}", field="kind")
    if lifecycle_state not in LifecycleState.values:
        raise InvalidInput(f"unknown lifecycle state {lifecycle_state!r}", field="lifecycle_state")
    check_payload(artifact_type, payload)
    prepared: PreparedContent | None = None
    if kind in MEDIA_KINDS:
        if stored is None:
            if content is None:
                raise InvalidContent(f"a {kind} artifact needs its bytes in 'content'", field="content")
            prepared = prepare_content(content, mime_type=mime_type, kind=kind)
    elif content is not None:
        raise InvalidContent(f"a {kind} artifact carries no content; put it in the payload", field="content")
    try:
        parent_uuid = parse_uuid(parent_id, what="parent") if parent_id is not None else None
    except NotFound:  # a malformed parent names no version of this stream: bad input, not a missing resource
        raise InvalidParent(f"parent_id {parent_id!r} is not a valid id", field="parent_id") from None
    parent_fingerprint = None
    if parent_uuid is not None:
        # A version never changes stream: the explicit parent is checked before any lock.
        parent_fingerprint = _stream_version_fingerprint(parent_uuid, story_id=story_id, scene_id=scene_id, type=type)
    artifact = Artifact(
        story_id=story_id,
        scene_id=scene_id,
        type=type,
        parent_id=parent_uuid,
        fingerprint=fingerprint if fingerprint is not None else (parent_fingerprint or ""),
        kind=kind,
        payload=payload,
        lifecycle_state=lifecycle_state,
        request_id=request_id,
        created_by=actor,
        created_by_step=created_by_step,
    )
    if artifact_id is not None:
        artifact.pk = parse_uuid(artifact_id, what="artifact")

    if artifact_type.planning and scene_id is not None:
        _check_planning_lock(scene_id, type, actor=actor)
    if prepared is not None:
        # Once every check has passed (a refused create stores nothing), and before the
        # stream's lock, which the write would only hold longer.
        stored = store_content(prepared)
    if stored is not None:
        artifact.content.name = stored.name
        artifact.content_sha256 = stored.sha256
        artifact.content_size = stored.size
        artifact.mime_type = stored.mime_type
    # The critical section: the stream's lock and the INSERT (one round trip), the COMMIT.
    # A version taken meanwhile (only a writer bypassing the lock could) makes the INSERT
    # do nothing rather than fail, so the safety net retries it without a savepoint: the
    # transaction stays usable and the lock stays held.
    for attempt in range(1, MAX_CREATE_ATTEMPTS + 1):
        made = insert_next_version(
            artifact,
            inherit_parent=parent_uuid is None,
            inherit_fingerprint=fingerprint is None,
            lock=attempt == 1,
        )
        if made is not None:
            return made
        logger.warning(
            "version conflict on %s/%s (attempt %d of %d)", scene_id or story_id, type, attempt, MAX_CREATE_ATTEMPTS
        )
    logger.error(
        "version assignment exhausted %d attempts on stream %s/%s", MAX_CREATE_ATTEMPTS, scene_id or story_id, type
    )
    raise VersionConflict(f"could not assign a version on {type} after {MAX_CREATE_ATTEMPTS} attempts")


def _stream_version_fingerprint(parent_uuid, *, story_id, scene_id, type) -> str:
    """The fingerprint of ``parent_uuid``, which must be a version of this stream."""
    found = (
        selectors.stream(story_id=story_id, scene_id=scene_id, type=type)
        .filter(pk=parent_uuid)
        .values_list("fingerprint", flat=True)
        .first()
    )
    if found is None:
        # An id that names nothing is 400 not_found (SPEC §7); one of another stream is a bad parent.
        if not Artifact.objects.filter(pk=parent_uuid).exists():
            raise NotFound(f"parent {parent_uuid} does not exist", field="parent_id")
        raise InvalidParent(f"parent {parent_uuid} is not a version of this {type} stream", field="parent_id")
    return found


def _check_planning_lock(scene_id, type: str, *, actor) -> None:
    # A shared lock on the scene row: a concurrent "lock planning" waits for this create
    # (or this create sees the lock), so no planning artifact slips in after the lock.
    scene = locks.share_scene(scene_id)
    if planning_blocks(actor=actor, type=type, scene=scene):
        raise PlanningLocked(f"planning is locked on scene {scene_id}")


# -- the seed's ArtifactService: a facade over the actions above --------------------------------


class ArtifactService:
    """The seed's five methods, under their names and meaning (SPEC §6): a facade that hands
    its calls to the actions and reads of this module. ``user`` and ``request_id`` describe
    who asks and under which request; they are stored on every row written."""

    def __init__(self, *, user=None, request_id: str | None = None):
        self.user = acting_user(user)
        self.request_id = _request_id(request_id)

    def create_artifact(self, scene_id, type, payload, parent_id=None, **options) -> Artifact:
        """Create the next version of the scene's ``type`` stream (``options``: kind, content,
        mime_type, lifecycle_state, as ``artifact_create`` takes them)."""
        return artifact_create(
            scene_id=scene_id,
            type=type,
            payload=payload,
            parent_id=parent_id,
            actor=self.user,
            request_id=self.request_id,
            **options,
        )

    def get_artifact(self, artifact_id) -> Artifact:
        return selectors.artifact_get(artifact_id)

    def get_latest_artifact(self, scene_id, type) -> Artifact | None:
        get_type(type)
        return selectors.stream_latest(story_id=None, scene_id=parse_uuid(scene_id, what="scene"), type=type)

    def list_artifacts(self, scene_id, type=None):
        artifacts = selectors.scene_artifacts(parse_uuid(scene_id, what="scene"))
        if type is not None:
            get_type(type)
            artifacts = artifacts.filter(type=type)
        return artifacts.order_by("type", "version")

    def get_next_version(self, scene_id, type) -> int:
        """The version the next create would get (informational: creates lock the stream)."""
        get_type(type)
        latest = selectors.stream_latest(
            story_id=None, scene_id=parse_uuid(scene_id, what="scene"), type=type, fields=("version",)
        )
        return latest.version + 1 if latest is not None else 1


# -- the INSERT of a new version ----------------------------------------------------------------

# The unique index a stream's versions are checked against, in each stream shape (the
# model's artifact_unique_scene_stream_version and artifact_unique_story_stream_version).
_SCENE_STREAM_VERSION = "(scene_id, type, version) WHERE scene_id IS NOT NULL"
_STORY_STREAM_VERSION = "(story_id, type, version) WHERE scene_id IS NULL"


def insert_next_version(
    artifact: Artifact,
    *,
    inherit_parent: bool,
    inherit_fingerprint: bool,
    lock: bool = True,
    unless_fingerprint: str | None = None,
    next_version: str = "COALESCE(latest.version, 0) + 1",
) -> Artifact | None:
    """Insert ``artifact`` as its stream's next version in one statement, which reads the
    stream's latest version (one backward probe of the stream's unique index, joined in
    once) for the version number and, when inherited, the parent and the fingerprint.

    With ``lock``, the stream's lock is taken first, in the same round trip; the INSERT is
    only meaningful under that lock. Returns None, having written nothing, when the version
    it computed is taken (the unique index is the last word should anything slip past the
    lock), or when ``unless_fingerprint`` is the stream's latest fingerprint already: the
    pipeline's "made meanwhile by another run", decided under the lock at no extra cost.
    The caller has checked everything else; this is the one place a version is written.
    """
    db = transaction.get_connection()  # the connection itself: every use of the proxy costs a lookup
    table = Artifact._meta.db_table
    key = Artifact._meta.pk
    if artifact.scene_id is not None:
        stream = "scene_id = %s AND type = %s"
        stream_params = [key.get_db_prep_value(artifact.scene_id, db), artifact.type]
        arbiter = _SCENE_STREAM_VERSION
    else:
        stream = "story_id = %s AND scene_id IS NULL AND type = %s"
        stream_params = [key.get_db_prep_value(artifact.story_id, db), artifact.type]
        arbiter = _STORY_STREAM_VERSION
    computed = {"version": next_version}
    if inherit_parent:
        computed["parent_id"] = "latest.id"
    if inherit_fingerprint and inherit_parent:
        computed["fingerprint"] = "COALESCE(latest.fingerprint, '')"
    fields, columns = _insert_columns(db)
    values, params = [], []
    for field in fields:
        if field.attname in computed:
            values.append(computed[field.attname])
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(artifact, True), db))
    condition = "true"
    if unless_fingerprint is not None:
        condition = "COALESCE(latest.fingerprint, '') <> %s"
    # A derived table rather than a LATERAL join, which SQLite lacks; the WHERE clause also
    # tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to the join.
    postgres = db.vendor == "postgresql"
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {', '.join(values)}"
        f" FROM (SELECT 1) AS one LEFT JOIN (SELECT version, id, fingerprint FROM {table} WHERE {stream}"
        f" ORDER BY version DESC LIMIT 1) AS latest ON true WHERE {condition}"
        f" ON CONFLICT {arbiter} DO NOTHING RETURNING version, parent_id, fingerprint"
    )
    params.extend(stream_params)
    if unless_fingerprint is not None:
        params.append(unless_fingerprint)
    if postgres:
        # Its artifact.created event (and webhook deliveries) in the same statement.
        sql, event_params = change_services.with_artifact_created(sql + ", id, story_id, scene_id, type")
        params = [*params, *event_params]
    if lock:
        rows = locks.lock_stream(
            story_id=artifact.story_id, scene_id=artifact.scene_id, type=artifact.type, then=(sql, params)
        )
    else:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    if not rows:
        return None
    ((version, parent_id, fingerprint, *deliveries),) = rows
    artifact.version = version
    artifact.parent_id = key.to_python(parent_id) if parent_id is not None else None
    artifact.fingerprint = fingerprint
    artifact._state.adding = False
    artifact._state.db = db.alias
    if postgres:
        change_services.written(deliveries=deliveries[0])
        return artifact
    change_services.artifacts_created([artifact])
    return artifact


def hold_unpruned(fields: dict) -> None:
    """Before a new reference to artifacts (a relation, a story link, a run link, a new
    version made from them): refuse one that does not exist (404) or is pruned (409
    ``pruned``, SPEC §9), and keep them from being pruned until the caller's transaction ends.

    ``fields``: artifact id -> the request field that names it, in the order to report them.

    A prune's batch locks the rows it prunes (``locks.lock_artifacts``, FOR NO KEY UPDATE),
    reads again under those locks which of them something references, and prunes the rest.
    The foreign-key check of the reference's INSERT takes only FOR KEY SHARE, which does not
    conflict with that lock: a reference checked and inserted beside a batch could point at
    a row the batch prunes without seeing it. So the referenced rows are held here FOR SHARE
    (``locks.share_artifacts``, level 6 of the lock order), which does conflict with it, and
    read in the same statement: either the batch committed first, and the read, made once
    the lock is granted, sees ``pruned_at``; or the batch waits for this transaction and,
    reading after it, finds the reference and keeps the row (SPEC §9). References to one
    artifact do not wait for each other.
    """
    wanted = list(dict.fromkeys(parse_uuid(pk, what="artifact") for pk in fields))
    fields = {parse_uuid(pk, what="artifact"): field for pk, field in fields.items()}
    found = locks.share_artifacts(wanted)
    for pk in wanted:
        if pk not in found:
            raise NotFound(f"artifact {pk} does not exist", field=fields[pk])
    for pk in wanted:
        if found[pk] is not None:
            raise _pruned(pk, field=fields[pk])


def _pruned(pk, *, field: str) -> Pruned:
    return Pruned(f"artifact {pk} was pruned: it takes no new reference", field=field)


# -- writes of the batch paths (import, prune, backfill) and of the audit trail ----------------


def prune_rows(ids, *, at) -> int:
    """Empty the payload and content of the given artifacts, still unpruned, and stamp them
    pruned ``at``: the one UPDATE the immutability trigger allows besides a transition.
    The caller (``retention``) holds their row locks and has checked the rule under them.
    Each one pruned is an ``artifact.pruned`` event, all in one INSERT."""
    ids = list(ids)
    if not ids:
        return 0
    key, time_field = Artifact._meta.pk, Artifact._meta.get_field("pruned_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Artifact._meta.db_table} SET payload = NULL, content = '', pruned_at = %s"
            f" WHERE id IN ({', '.join(['%s'] * len(ids))}) AND pruned_at IS NULL RETURNING id, story_id, scene_id",
            [time_field.get_db_prep_value(at, connection), *(key.get_db_prep_value(pk, connection) for pk in ids)],
        )
        pruned = [tuple(key.to_python(v) if v is not None else None for v in row) for row in cursor.fetchall()]
    change_services.artifacts_pruned(pruned)
    return len(pruned)


def relations_insert(relations: list[ArtifactRelation]) -> None:
    """Insert relations the caller has checked (existence, duplicates, cycles) in bulk:
    ``backfill_relations``, under its own checks and transaction."""
    ArtifactRelation.objects.bulk_create(relations)


def relations_of_new_version(artifact: Artifact, sources, *, created_by_step_id, request_id: str) -> None:
    """``artifact`` derived_from each of ``sources``, in one INSERT, for a version inserted
    in the transaction still open (the pipeline's record). Nothing is checked, and that is
    sound: nothing can point at a row no other transaction sees yet, so these edges close
    no cycle, now or later; they are new, so none is a duplicate; and their targets are the
    inputs the caller read, which the foreign keys hold."""
    relations_insert(
        [
            ArtifactRelation(
                from_artifact_id=artifact.pk,
                to_artifact_id=source,
                relation_type=RelationType.DERIVED_FROM,
                created_by_step_id=created_by_step_id,
                request_id=request_id,
            )
            for source in sources
        ]
    )


def artifacts_insert_as_given(rows: list[dict]) -> None:
    """The import's write (``import_artifacts``): artifact rows as their source gave them
    (attribute name -> value for every column: ids, versions, parents, states, times), which
    the caller has checked and whose streams it holds. As fast as the database allows.

    ``bulk_create`` would stamp ``created_at`` with now (``auto_now_add``); an import keeps
    the source's time, so every value goes in as given. On PostgreSQL the rows are streamed
    with COPY: the driver sends ids, numbers, text and times as they are, and only JSON
    needs its field's preparation (None is SQL NULL, anything else a jsonb value). A
    multi-row INSERT spends most of its time building model instances and quoting
    parameters on the client. On SQLite they go through the raw insert ``loaddata`` uses
    (``save_base(raw=True)``), as many rows per statement as SQLite takes.
    """
    if not rows:
        return
    if not connection.in_atomic_block:  # a caller of its own (a test's helper): rows and events stand together
        with transaction.atomic():
            artifacts_insert_as_given(rows)
        return
    change_services.artifacts_created_as_given(rows)
    model = Artifact
    fields = model._meta.local_concrete_fields
    if connection.vendor == "postgresql":
        prepared = [
            (field.attname, field.get_db_prep_save if field.get_internal_type() == "JSONField" else None)
            for field in fields
        ]
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(
                    [row[name] if prepare is None else prepare(row[name], connection) for name, prepare in prepared]
                )
        return
    objects = [model(**row) for row in rows]
    size = max(connection.ops.bulk_batch_size(fields, objects), 1)
    for start in range(0, len(objects), size):
        model._base_manager._insert(objects[start : start + size], fields=fields, raw=True)
