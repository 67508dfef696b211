"""Reads of artifacts shared by the API, the admin, the services and the commands.

Each is written once, fetches only what its callers show (no payload of a parent, no
join nobody reads) and names the index that serves it, so it stays fast at millions of
rows. Lineage has a module of its own (``lineage.py``).
"""

from __future__ import annotations

import uuid

from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.functions import Cast, Substr

from kernel.errors import NotFound
from kernel.lookups import parse_uuid
from stories.models import Scene

from .models import Artifact, ArtifactRelation
from .payloads import ARTIFACT_TYPES, SCOPE_SCENE, get_type

# What a version list shows of each version (no payload).
VERSION_COLUMNS = ("id", "version", "lifecycle_state", "created_at", "request_id", "pruned_at", "parent_id")
# What the API shows of an artifact (ArtifactSerializer): every column but the stored file's
# name and the fingerprint.
API_COLUMNS = (
    "id",
    "story_id",
    "scene_id",
    "type",
    "version",
    "parent_id",
    "kind",
    "payload",
    "content_sha256",
    "content_size",
    "mime_type",
    "lifecycle_state",
    "request_id",
    "created_by_step_id",
    "created_by_id",
    "created_at",
    "pruned_at",
)


def artifact_get(artifact_id) -> Artifact:
    """One artifact, its own columns (primary key)."""
    artifact = Artifact.objects.filter(pk=parse_uuid(artifact_id, what="artifact")).first()
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} does not exist", field="artifact_id")
    return artifact


def stream(*, story_id, scene_id, type: str) -> QuerySet:
    """Every version of one stream (artifact_unique_scene_stream_version, or
    artifact_unique_story_stream_version for a story-level stream)."""
    return Artifact.objects.for_stream(story_id=story_id, scene_id=scene_id, type=type)


def stream_of(artifact: Artifact) -> QuerySet:
    return stream(story_id=artifact.story_id, scene_id=artifact.scene_id, type=artifact.type)


def stream_latest(*, story_id, scene_id, type: str, fields: tuple[str, ...] | None = None) -> Artifact | None:
    """The newest version of a stream: one index probe, backwards on the stream's unique index."""
    queryset = stream(story_id=story_id, scene_id=scene_id, type=type).order_by("-version")
    if fields is not None:
        queryset = queryset.only(*fields)
    return queryset.first()


def stream_versions(artifact: Artifact) -> QuerySet:
    """The artifact's stream, oldest version first."""
    return stream_of(artifact).order_by("version")


def scene_artifacts(scene_id) -> QuerySet:
    """A scene's artifacts (artifact_scene_created_idx serves the newest-first list)."""
    return Artifact.objects.filter(scene_id=scene_id)


def artifact_rows(artifacts: QuerySet) -> QuerySet:
    """``artifacts`` as dicts of API_COLUMNS, for the API's lists: building a model instance
    per row cost more than the query of a 50-artifact page. The payload comes as the JSON text
    the database holds (``payload_text``): the API writes it into its answer as it is."""
    columns = [column for column in API_COLUMNS if column != "payload"]
    return artifacts.annotate(payload_text=Cast("payload", TextField())).values(*columns, "payload_text")


def story_level_artifacts(story_id) -> QuerySet:
    """A story's own artifacts, those without a scene (artifact_unique_story_stream_version:
    a story has few, all of them in that partial index)."""
    return Artifact.objects.filter(story_id=story_id, scene__isnull=True)


def scene_latest_per_type(scene_id, type: str | None = None) -> QuerySet:
    """The newest version of each type in a scene, by type name.

    One index probe per registered type, all in one query: the type registry names the
    streams, so no scan of the scene's versions is needed however many there are.
    """
    names = (
        [get_type(type).name]
        if type is not None
        else [name for name, t in ARTIFACT_TYPES.items() if SCOPE_SCENE in t.scopes]
    )
    heads = Q()
    for name in names:
        newest = Artifact.objects.filter(scene_id=scene_id, type=name).order_by("-version").values("pk")[:1]
        heads |= Q(pk=Subquery(newest))
    return Artifact.objects.filter(heads).order_by("type")


def artifact_relations(artifact_id) -> QuerySet:
    """Relations from or to an artifact (relation_unique_edge by ``from``, relation_to_idx by ``to``)."""
    return ArtifactRelation.objects.filter(Q(from_artifact_id=artifact_id) | Q(to_artifact_id=artifact_id))


def story_media(story_id) -> QuerySet:
    """A story's media artifacts that still have their bytes, newest first
    (artifact_story_media_idx: only media rows are in it)."""
    return (
        Artifact.objects.filter(story_id=story_id, pruned_at__isnull=True)
        .exclude(content_sha256="")
        .order_by("-created_at", "-id")
    )


# -- reads of the batch commands (SPEC §9) -------------------------------------------------


def stream_heads(*, scene_streams, story_streams) -> dict[tuple, int]:
    """The latest version of many streams at once, keyed ``("scene", scene_id, type)`` or
    ``("story", story_id, type)``; streams with no version are absent.

    One query per stream shape, whatever the number of streams: a row per stream (a VALUES
    list), each answered by one backward probe of artifact_unique_scene_stream_version (or
    the story one) for its MAX, so a stream's length never matters. (Grouping the scenes'
    rows instead would read every version of every stream of those scenes.)
    """
    heads: dict[tuple, int] = {}
    table = Artifact._meta.db_table
    for shape, streams, match in (
        ("scene", scene_streams, "a.scene_id = v.column1"),
        ("story", story_streams, "a.scene_id IS NULL AND a.story_id = v.column1"),
    ):
        streams = sorted(streams, key=str)
        if not streams:
            continue
        sql = (
            f"SELECT v.column1, v.column2, (SELECT MAX(a.version) FROM {table} a WHERE {match}"
            f" AND a.type = v.column2) FROM (VALUES {', '.join(['(%s, %s)'] * len(streams))}) AS v"
        )
        params = [value for owner, type in streams for value in (_db_id(owner), type)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        heads.update({(shape, as_uuid(owner), type): top for owner, type, top in rows if top is not None})
    return heads


def _db_id(value):
    return Artifact._meta.pk.get_db_prep_value(value, connection)


def as_uuid(value) -> uuid.UUID:
    """An id as raw SQL returns it: a UUID on PostgreSQL, 32 hex digits on SQLite."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def existing_artifacts(artifact_ids) -> set[uuid.UUID]:
    """Which of ``artifact_ids`` exist (primary key probes)."""
    table = Artifact._meta.db_table
    return {as_uuid(pk) for (pk,) in _by_ids(f"SELECT id FROM {table} WHERE id", artifact_ids)}


def artifact_streams(artifact_ids) -> dict:
    """id -> (story_id, scene_id, type) of the artifacts that exist among ``artifact_ids``."""
    table = Artifact._meta.db_table
    rows = _by_ids(f"SELECT id, story_id, scene_id, type FROM {table} WHERE id", artifact_ids)
    return {as_uuid(pk): (as_uuid(story), scene and as_uuid(scene), type) for pk, story, scene, type in rows}


def _by_ids(select: str, ids) -> list[tuple]:
    """``select`` (ending in ``WHERE id``) for many ids at once: one array parameter on
    PostgreSQL, where a thousand-item IN list costs more to send and to plan than the probes."""
    ids = list(ids)
    if not ids:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"{select} = ANY(%s)", [ids])
        else:
            cursor.execute(f"{select} IN ({', '.join(['%s'] * len(ids))})", [_db_id(pk) for pk in ids])
        return cursor.fetchall()


def live_digests(digests) -> set[str]:
    """The digests among ``digests`` that an artifact still names with its content (a pruned
    tombstone keeps ``content_sha256`` but not the file: it names nothing). Served by
    artifact_content_sha256_idx, which holds media rows only."""
    return set(
        Artifact.objects.filter(content_sha256__in=list(digests), pruned_at__isnull=True)
        .order_by()
        .values_list("content_sha256", flat=True)
        .distinct()
    )


def scene_heads(scene_id, types) -> dict[str, Artifact]:
    """The newest version of each of ``types`` in a scene, by type: one query, one backward
    probe of artifact_unique_scene_stream_version per type (what a pipeline node reads)."""
    heads = Q()
    for name in dict.fromkeys(types):
        newest = Artifact.objects.filter(scene_id=scene_id, type=name).order_by("-version").values("pk")[:1]
        heads |= Q(pk=Subquery(newest))
    return {artifact.type: artifact for artifact in Artifact.objects.filter(heads).order_by()}


def scenes_heads(scene_ids, types) -> dict:
    """``scene_heads`` of many scenes at once: scene id -> type -> newest version (every
    column), one query whatever the number of scenes (``_heads_of``)."""
    found = {scene_id: {} for scene_id in scene_ids}
    if found and types:
        for artifact in _heads_of(Scene.objects.filter(pk__in=list(found)), types):
            found[artifact.scene_id][artifact.type] = artifact
    return found


def _heads_of(scenes: QuerySet, types) -> QuerySet:
    """The newest version of each of ``types`` in each of ``scenes``: one backward probe of
    artifact_unique_scene_stream_version per scene and type."""
    per_type = [
        scenes.annotate(
            head=Subquery(
                Artifact.objects.filter(scene_id=OuterRef("pk"), type=name).order_by("-version").values("pk")[:1]
            )
        )
        .values("head")
        .order_by()
        for name in dict.fromkeys(types)
    ]
    # One IN over a UNION ALL: the planner joins the few ids to the primary key, where an OR
    # of "pk = (subquery)" per scene and type filters the whole table.
    ids = per_type[0].union(*per_type[1:], all=True)
    return Artifact.objects.filter(pk__in=ids).order_by()


# -- the editors' boards (SPEC §13) ----------------------------------------------------------

# What a thumbnail with its caption needs of an artifact (no payload): the storyboard's
# cards, the review queue's rows.
CARD_COLUMNS = (
    "id",
    "story_id",
    "scene_id",
    "type",
    "version",
    "kind",
    "mime_type",
    "lifecycle_state",
    "pruned_at",
    "content_sha256",
    "fingerprint",
    "created_at",
)


def story_scene_heads(story_id, types) -> dict:
    """The newest version of each of ``types`` in every scene of a story, as {scene_id: {type:
    artifact}}: one query whatever the number of scenes (``scene_heads_of_story``)."""
    found: dict = {}
    for artifact in scene_heads_of_story(story_id, types):
        found.setdefault(artifact.scene_id, {})[artifact.type] = artifact
    return found


def scene_heads_of_story(story_id, types) -> QuerySet:
    """The heads of every scene of a story (``_heads_of``), the card's columns only."""
    return _heads_of(Scene.objects.filter(story_id=story_id), types).only(*CARD_COLUMNS)


def story_candidates(story_id, *, limit: int) -> list[Artifact]:
    """A story's candidates, newest first, at most ``limit`` (artifact_candidate_story_idx,
    which holds only candidates)."""
    return list(
        Artifact.objects.filter(story_id=story_id, lifecycle_state="candidate")
        .only(*CARD_COLUMNS)
        .order_by("-created_at", "-id")[:limit]
    )


# What the review queue shows of a JSON payload: its first characters, cut in the database
# so a large payload never leaves it.
EXCERPT_CHARACTERS = 240


def candidates_page(*, story_id=None, type: str | None = None, after: tuple | None = None, limit: int) -> list:
    """The review queue (SPEC §13): candidates newest first, of one story and/or type, the
    ``limit`` after the keyset ``after`` (created_at, id) of the previous page's last row, no
    count. Served by the partial indexes that hold candidates only: artifact_candidate_idx,
    artifact_candidate_story_idx, artifact_candidate_type_idx."""
    rows = Artifact.objects.filter(lifecycle_state="candidate")
    if story_id is not None:
        rows = rows.filter(story_id=story_id)
    if type is not None:
        rows = rows.filter(type=type)
    if after is not None:
        created_at, pk = after
        rows = rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk))
    return list(
        rows.select_related("story", "scene")
        .only(*CARD_COLUMNS, "story__id", "story__title", "scene__id", "scene__position", "scene__title")
        .annotate(excerpt=Substr(Cast("payload", TextField()), 1, EXCERPT_CHARACTERS + 1))
        .order_by("-created_at", "-id")[:limit]
    )
