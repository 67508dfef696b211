"""The invariants of SPEC §3 to §5, checked against what is stored (``verify_artifacts``).

Each check is a function yielding ``Problem``s, each naming the ids concerned. Most
invariants are also guaranteed by a constraint or a trigger; checking them anyway finds
what went around the database's guard (a restored dump, a disabled trigger, raw SQL as the
table owner) and what no constraint can say: gapless streams, parents in their stream,
payloads their type accepts, files that match their digests, story references that equal
their primaries, relations without cycles.

Reads only, server-side on PostgreSQL (``.iterator(chunk_size=...)``), a batch at a time;
the one repair, ``--fix``, rewrites derived data only (the stories' references) through
``stories.services.story_sync_references``.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from artifacts import selectors
from artifacts.content import storage_name
from artifacts.models import ACYCLIC_RELATIONS, Artifact, ArtifactRelation, LifecycleState
from artifacts.payloads import ARTIFACT_TYPES, MEDIA_KINDS, SCOPE_SCENE, SCOPE_STORY, validate_payload
from kernel.errors import ArtifactError
from operations import retention
from runs import selectors as run_selectors
from runs import services as run_services
from runs.models import Direction, RunArtifactLink
from stories import selectors as story_selectors
from stories import services as story_services
from stories.models import KIND_FOR_ROLE, ROLE_SCENE_IMAGE, Story, StoryArtifactLink

MAX_IDS_SHOWN = 20
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Problem:
    check: str
    message: str
    ids: tuple = ()
    fixed: bool = False

    def __str__(self):
        shown = ", ".join(str(i) for i in self.ids[:MAX_IDS_SHOWN])
        more = f" and {len(self.ids) - MAX_IDS_SHOWN:,} more" if len(self.ids) > MAX_IDS_SHOWN else ""
        prefix = "fixed " if self.fixed else ""
        return f"{prefix}[{self.check}] {self.message}" + (f" (ids: {shown}{more})" if self.ids else "")


@dataclass
class Options:
    batch_size: int = 1000
    grace: datetime.timedelta = retention.DEFAULT_GRACE
    fix: bool = False  # repair derived data (story references)
    dry_run: bool = False  # with fix: say what would be repaired
    progress: Callable[[int], None] = lambda done: None  # called with rows read


_ART = Artifact._meta.db_table
_REL = ArtifactRelation._meta.db_table
_LINK = RunArtifactLink._meta.db_table


def _rows(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _where(artifact) -> str:
    story_id, scene_id, type_name = artifact
    return f"{type_name} of {'scene ' + str(scene_id) if scene_id else 'story ' + str(story_id)}"


# -- streams and parents (§3) ---------------------------------------------------------------


def check_version_gaps(options: Options) -> Iterator[Problem]:
    """Every stream runs 1..n: with versions unique and >= 1 (constraints), a stream of n rows
    whose top version is above n has a gap."""
    streams = (
        Artifact.objects.order_by()
        .values_list("story_id", "scene_id", "type")
        .annotate(count=Count("id"), top=Max("version"))
        .filter(count__lt=F("top"))
    )
    for story_id, scene_id, type_name, count, top in streams.iterator(chunk_size=options.batch_size):
        versions = dict(
            selectors.stream(story_id=story_id, scene_id=scene_id, type=type_name).values_list("version", "id")
        )
        missing = [v for v in range(1, top + 1) if v not in versions]
        after = tuple(versions[v + 1] for v in missing if v + 1 in versions)
        shown = ", ".join(map(str, missing[:MAX_IDS_SHOWN])) + (" ..." if len(missing) > MAX_IDS_SHOWN else "")
        yield Problem(
            "version_gaps",
            f"{_where((story_id, scene_id, type_name))} has {count} versions up to v{top}: missing v{shown}",
            after,
        )


def check_parents(options: Options) -> Iterator[Problem]:
    """A parent is an earlier version of the same stream."""
    sql = (
        f"SELECT a.id, a.parent_id, a.type, a.version, p.type, p.version"
        f" FROM {_ART} a JOIN {_ART} p ON p.id = a.parent_id"
        " WHERE p.type <> a.type OR p.story_id <> a.story_id OR (p.scene_id IS NULL) <> (a.scene_id IS NULL)"
        " OR p.scene_id <> a.scene_id OR p.version >= a.version"
    )
    for artifact_id, parent_id, type_name, version, parent_type, parent_version in _rows(sql):
        yield Problem(
            "parents",
            f"{type_name} v{version} has parent {parent_type} v{parent_version}, not an earlier version of its stream",
            (selectors.as_uuid(artifact_id), selectors.as_uuid(parent_id)),
        )


def check_scene_story(options: Options) -> Iterator[Problem]:
    """A scene artifact's story is its scene's story."""
    rows = Artifact.objects.filter(scene__isnull=False).exclude(scene__story_id=F("story_id"))
    for artifact_id, story_id, scene_id, scene_story in rows.order_by().values_list(
        "id", "story_id", "scene_id", "scene__story_id"
    ):
        yield Problem(
            "scene_story",
            f"artifact of story {story_id} is on scene {scene_id} of story {scene_story}",
            (artifact_id, scene_id),
        )


def check_tombstones(options: Options) -> Iterator[Problem]:
    """A pruned artifact has neither payload nor content; every other one has a payload."""
    half_pruned = Artifact.objects.filter(pruned_at__isnull=False).filter(Q(payload__isnull=False) | ~Q(content=""))
    ids = tuple(half_pruned.order_by("pk").values_list("id", flat=True))
    if ids:
        yield Problem("tombstones", f"{len(ids):,} pruned artifact(s) still hold a payload or content", ids)
    empty = tuple(
        Artifact.objects.filter(pruned_at__isnull=True, payload__isnull=True)
        .order_by("pk")
        .values_list("id", flat=True)
    )
    if empty:
        yield Problem("tombstones", f"{len(empty):,} artifact(s) have no payload but were never pruned", empty)


# -- payloads and kinds (§4) ---------------------------------------------------------------


def check_payloads(options: Options) -> Iterator[Problem]:
    """Each payload against its type's schema; type, kind and scope registered; media rows
    (and only they) carry content."""
    rows = (
        Artifact.objects.filter(pruned_at__isnull=True)
        .order_by()
        .values_list("id", "type", "kind", "scene_id", "content_sha256", "payload")
        .iterator(chunk_size=options.batch_size)
    )
    for done, (artifact_id, type_name, kind, scene_id, sha, payload) in enumerate(rows, start=1):
        if done % options.batch_size == 0:
            options.progress(options.batch_size)
        artifact_type = ARTIFACT_TYPES.get(type_name)
        if artifact_type is None:
            yield Problem("payloads", f"unknown artifact type {type_name!r}", (artifact_id,))
            continue
        scope = SCOPE_SCENE if scene_id else SCOPE_STORY
        if scope not in artifact_type.scopes:
            yield Problem("payloads", f"a {type_name} artifact belongs to a {artifact_type.scopes[0]}", (artifact_id,))
        if kind not in artifact_type.kinds:
            yield Problem("payloads", f"a {type_name} artifact has kind {kind}", (artifact_id,))
        if (kind in MEDIA_KINDS) != bool(sha):
            yield Problem(
                "payloads",
                f"a {kind} artifact {'without' if kind in MEDIA_KINDS else 'with'} content",
                (artifact_id,),
            )
        if payload is not None:
            try:
                validate_payload(type_name, payload)
            except ArtifactError as exc:
                yield Problem("payloads", f"{type_name}: {exc.message}", (artifact_id,))


# -- links, primaries, references (§3, §5) ---------------------------------------------------


def check_links(options: Options) -> Iterator[Problem]:
    """A link's artifact is of its story, of the kind its role shows, of its scene."""
    other_story = StoryArtifactLink.objects.exclude(artifact__story_id=F("story_id"))
    for link_id, artifact_id in other_story.order_by().values_list("id", "artifact_id"):
        yield Problem("links", "a story link names an artifact of another story", (link_id, artifact_id))
    for role, kind in KIND_FOR_ROLE.items():
        wrong = StoryArtifactLink.objects.filter(role=role).exclude(artifact__kind=kind)
        for link_id, artifact_id, actual in wrong.order_by().values_list("id", "artifact_id", "artifact__kind"):
            yield Problem("links", f"role {role} needs a {kind} artifact, not {actual}", (link_id, artifact_id))
    misplaced = StoryArtifactLink.objects.filter(role=ROLE_SCENE_IMAGE).filter(
        ~Q(scene__story_id=F("story_id")) | (Q(artifact__scene__isnull=False) & ~Q(artifact__scene_id=F("scene_id")))
    )
    for link_id, artifact_id, scene_id in misplaced.order_by().values_list("id", "artifact_id", "scene_id"):
        yield Problem(
            "links",
            f"a scene_image link's scene {scene_id} is not its artifact's or its story's",
            (link_id, artifact_id),
        )


def check_primaries(options: Options) -> Iterator[Problem]:
    """At most one primary per (story, role[, scene]); every primary published (SPEC §5)."""
    doubles = (
        StoryArtifactLink.objects.filter(is_primary=True)
        .order_by()
        .values_list("story_id", "role", "scene_id")
        .annotate(count=Count("id"))
        .filter(count__gt=1)
    )
    for story_id, role, scene_id, count in doubles:
        ids = tuple(
            StoryArtifactLink.objects.filter(story_id=story_id, role=role, scene_id=scene_id, is_primary=True)
            .order_by("pk")
            .values_list("artifact_id", flat=True)
        )
        yield Problem("one_primary", f"story {story_id} has {count} primaries for {role}", ids)
    unpublished = StoryArtifactLink.objects.filter(is_primary=True).filter(
        ~Q(artifact__lifecycle_state=LifecycleState.PUBLISHED) | Q(artifact__pruned_at__isnull=False)
    )
    for link_id, artifact_id, role, state, pruned_at in unpublished.order_by().values_list(
        "id", "artifact_id", "role", "artifact__lifecycle_state", "artifact__pruned_at"
    ):
        what = "pruned" if pruned_at else state
        yield Problem("primaries_published", f"the primary {role} is {what}, not published", (artifact_id, link_id))


def check_story_references(options: Options) -> Iterator[Problem]:
    """A story's cover_artifact, canonical_audio and canonical_video equal its primaries;
    ``--fix`` repairs them (derived data), one transaction per batch of stories."""
    ids = Story.objects.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=options.batch_size)
    while batch := list(itertools.islice(ids, options.batch_size)):
        drifts = story_selectors.story_reference_drifts(batch)
        if drifts and options.fix and not options.dry_run:
            drifts = story_services.story_sync_references(story_ids={d.story_id for d in drifts})
        for drift in drifts:
            fixed = options.fix and not options.dry_run
            yield Problem(
                "story_references",
                str(drift),
                tuple(i for i in (drift.story_id, drift.stored, drift.primary) if i),
                fixed,
            )
        options.progress(len(batch))


# -- relations (§3) ----------------------------------------------------------------------------


def check_relation_cycles(options: Options) -> Iterator[Problem]:
    """derived_from and transcoded_from never form a cycle.

    The acyclic edges are copied into a temporary table and peeled: edges into an artifact
    with no outgoing edge, and out of one with no incoming edge, cannot be on a cycle, and
    go, level by level, until none goes. What stays is the cycles and the edges between
    them, few or none, so the strongly connected components are found in Python on that.
    """
    table = "artifacts_verify_edges"
    id_type = "uuid" if connection.vendor == "postgresql" else "char(32)"
    rel = ArtifactRelation._meta.db_table
    types = ", ".join(f"'{t}'" for t in ACYCLIC_RELATIONS)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(f"CREATE TEMPORARY TABLE {table} (src {id_type} NOT NULL, dst {id_type} NOT NULL)")
        try:
            cursor.execute(
                f"INSERT INTO {table} (src, dst) SELECT from_artifact_id, to_artifact_id FROM {rel}"
                f" WHERE relation_type IN ({types})"
            )
            cursor.execute(f"CREATE INDEX {table}_src ON {table} (src)")
            cursor.execute(f"CREATE INDEX {table}_dst ON {table} (dst)")
            while True:
                cursor.execute(
                    f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM {table} e WHERE e.src = {table}.dst)"
                )
                removed = cursor.rowcount
                cursor.execute(
                    f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM {table} e WHERE e.dst = {table}.src)"
                )
                if removed + cursor.rowcount == 0:
                    break
            cursor.execute(f"SELECT src, dst FROM {table}")
            edges = [(selectors.as_uuid(a), selectors.as_uuid(b)) for a, b in cursor.fetchall()]
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
    for component in strongly_connected(edges):
        if len(component) > 1:
            yield Problem(
                "relation_cycles",
                f"{len(component)} artifacts derive from each other in a cycle",
                tuple(sorted(component)),
            )


def strongly_connected(edges: list[tuple]) -> list[list]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    graph: dict = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict = {}
    low: dict = {}
    on_stack: set = set()
    stack: list = []
    components: list[list] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph[successor])))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def check_tombstone_references(options: Options) -> Iterator[Problem]:
    """No live artifact was made from a pruned one (a relation of any type from it, or a
    step, or a run's stage without steps, that produced it and consumed the pruned one),
    and no story link names a pruned one (a primary is ``check_primaries``'s).

    None should: a prune keeps everything a kept artifact was made from, and reads again,
    under its batch's row locks, what references them; a new reference to a pruned artifact
    is refused (SPEC §9). What is found is a reference that raced a prune before that rule
    (or went around the services), or a prune interrupted between two batches, which the
    next run finishes (the live artifact found is then a tombstone to be).
    """
    consumed, produced = f"'{Direction.CONSUMED.value}'", f"'{Direction.PRODUCED.value}'"

    def made_from(how: str, edges: str, made: str, source: str, where: str = "") -> str:
        return (
            f"SELECT a.id, a.type, t.id, t.type, {how} FROM {edges}"
            f" JOIN {_ART} a ON a.id = {made} AND a.pruned_at IS NULL"
            f" JOIN {_ART} t ON t.id = {source} AND t.pruned_at IS NOT NULL" + (f" WHERE {where}" if where else "")
        )

    by_step = f"{_LINK} p JOIN {_LINK} c ON c.run_id = p.run_id AND c.step_id = p.step_id AND c.direction = {consumed}"
    by_stage = (
        f"{_LINK} p JOIN {_LINK} c ON c.run_id = p.run_id AND c.stage = p.stage"
        f" AND c.step_id IS NULL AND c.direction = {consumed}"
    )
    sql = " UNION ALL ".join(
        [
            made_from("r.relation_type", f"{_REL} r", "r.from_artifact_id", "r.to_artifact_id"),
            made_from("'consumed by its step'", by_step, "p.artifact_id", "c.artifact_id", f"p.direction = {produced}"),
            made_from(
                "'consumed by its run stage'",
                by_stage,
                "p.artifact_id",
                "c.artifact_id",
                f"p.direction = {produced} AND p.step_id IS NULL",
            ),
        ]
    )
    for made, made_type, source, source_type, how in _rows(sql):
        yield Problem(
            "tombstone_references",
            f"live {made_type} was made from pruned {source_type} ({how}): its payload and content are gone",
            (selectors.as_uuid(made), selectors.as_uuid(source)),
        )
    links = StoryArtifactLink.objects.filter(artifact__pruned_at__isnull=False, is_primary=False)
    for link_id, artifact_id, role in links.order_by().values_list("id", "artifact_id", "role"):
        yield Problem("tombstone_references", f"a {role} link names a pruned artifact", (artifact_id, link_id))


def check_run_links(options: Options) -> Iterator[Problem]:
    """A run link's step belongs to the link's run."""
    wrong = RunArtifactLink.objects.filter(step__isnull=False).exclude(step__run_id=F("run_id"))
    for link_id, run_id, step_id in wrong.order_by().values_list("id", "run_id", "step_id"):
        yield Problem("run_links", f"a link of run {run_id} names step {step_id} of another run", (link_id, step_id))


def check_lost_runs(options: Options) -> Iterator[Problem]:
    """No run stays pending or running once the process that drove it is gone (SPEC §10):
    reported here; ``run_pipeline --resume RUN_ID`` marks it failed and continues it."""
    for run in run_selectors.unfinished_runs().order_by().iterator(chunk_size=options.batch_size):
        if run_services.run_is_lost(run):
            yield Problem(
                "lost_runs",
                f"run {run.pk} is {run.status} but its process was lost; resume it with run_pipeline --resume",
                (run.pk,),
            )


# -- content (§3) ------------------------------------------------------------------------------


def check_content(options: Options) -> Iterator[Problem]:
    """Every file a live artifact names is in storage, under its digest's name, and its bytes
    hash to that digest and count its size. Each file is read once, however many share it."""
    rows = (
        Artifact.objects.filter(pruned_at__isnull=True)
        .exclude(content_sha256="")
        .order_by("content_sha256", "pk")
        .values_list("content_sha256", "content_size", "content", "id")
        .iterator(chunk_size=options.batch_size)
    )
    for sha, group in itertools.groupby(rows, key=lambda row: row[0]):
        group = list(group)
        ids = tuple(row[3] for row in group)
        name = storage_name(sha)
        misnamed = tuple(row[3] for row in group if row[2] != name)
        if misnamed:
            yield Problem("content_names", f"content is not stored under its digest's name {name}", misnamed)
        sizes = {row[1] for row in group}
        try:
            hasher, size = hashlib.sha256(), 0
            with default_storage.open(name, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
        except OSError:
            yield Problem("content_missing", f"the stored file {name} is missing", ids)
            options.progress(1)
            continue
        if hasher.hexdigest() != sha:
            yield Problem("content_digests", f"{name} holds bytes whose sha256 is {hasher.hexdigest()}", ids)
        if sizes != {size}:
            recorded = ", ".join(f"{s:,}" if s is not None else "none" for s in sorted(sizes, key=lambda s: s or -1))
            yield Problem("content_sizes", f"{name} has {size:,} bytes, the artifacts say {recorded}", ids)
        options.progress(1)


def check_unreferenced_files(options: Options) -> Iterator[Problem]:
    """Stored files no live artifact names (older than the grace period: a younger one may
    belong to a create in flight). ``prune_artifacts`` removes them."""
    now = timezone.now()
    names = retention.content_files()
    while chunk := list(itertools.islice(names, options.batch_size)):
        digests = {name.rsplit("/", 1)[-1]: name for name in chunk}
        live = selectors.live_digests(digests)
        for digest, name in sorted(digests.items()):
            if digest in live:
                continue
            if name != storage_name(digest):
                yield Problem("unreferenced_files", f"{name} is not a content file's name", (name,))
                continue
            try:
                if now - default_storage.get_modified_time(name) < options.grace:
                    continue
            except (OSError, NotImplementedError):
                continue
            yield Problem("unreferenced_files", f"no artifact uses the stored file {name}", (name,))
        options.progress(len(chunk))


CHECKS: dict[str, Callable[[Options], Iterator[Problem]]] = {
    "version_gaps": check_version_gaps,
    "parents": check_parents,
    "scene_story": check_scene_story,
    "tombstones": check_tombstones,
    "payloads": check_payloads,
    "links": check_links,
    "primaries": check_primaries,
    "story_references": check_story_references,
    "relation_cycles": check_relation_cycles,
    "tombstone_references": check_tombstone_references,
    "run_links": check_run_links,
    "lost_runs": check_lost_runs,
    "content": check_content,
    "unreferenced_files": check_unreferenced_files,
}
