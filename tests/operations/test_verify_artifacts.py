"""verify_artifacts: clean data passes; each broken invariant (made behind the services'
back) is reported by its check with the ids concerned, and the exit code says so; --fix
repairs the stories' references and nothing else."""

import contextlib
import datetime
import hashlib
import os
import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from artifacts import services as artifact_services
from artifacts.content import storage_name
from artifacts.migrations._immutability import SQLITE_PRIMARY_LINK
from artifacts.models import Artifact, ArtifactRelation
from artifacts.services import ArtifactService, prune_rows
from operations.verification import strongly_connected
from runs import services as run_services
from runs.models import RunArtifactLink
from stories import services as story_services
from stories.models import Story, StoryArtifactLink
from tests.conftest import SCENE_INTENT, make_image
from tests.operations.conftest import Rows, insert, run, summary


@pytest.fixture
def store(story, scene, published_cover):
    """A small store where every invariant holds: versions, a branch, relations, a run,
    a media primary and its story reference."""
    service = ArtifactService()
    v1 = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    v2 = service.create_artifact(scene.pk, "scene_intent", {**SCENE_INTENT, "mood": "calm"})
    branch = service.create_artifact(scene.pk, "scene_intent", {**SCENE_INTENT, "mood": "odd"}, parent_id=v1.pk)
    spec = service.create_artifact(
        scene.pk, "render_spec", {"prompt": "p", "style": "s", "characters": [], "reference_images": []}
    )
    artifact_services.relation_create(from_artifact_id=spec.pk, to_artifact_id=v2.pk, relation_type="derived_from")
    run_ = run_services.run_create(story_id=story.pk, workflow="w", start=True)
    step = run_services.step_start(run_id=run_.pk, node="render_spec")
    run_services.run_link_artifact(run_id=run_.pk, artifact_id=v2.pk, stage="s", direction="consumed", step_id=step.pk)
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
    return {"v1": v1, "v2": v2, "branch": branch, "spec": spec, "cover": published_cover, "run": run_, "step": step}


def test_a_sound_store_passes_every_check(store):
    outcome = run("verify_artifacts")
    assert outcome.code == 0, outcome.err
    assert outcome.err == "" and "all invariants hold" in outcome.out
    assert set(summary(outcome.out).values()) == {"0"}


def gap(store, story, scene):
    row = Rows(story).make(scene=scene, version=5, parent=store["v2"])
    return "version_gaps", [row.pk], "missing v4"


def foreign_parent(store, story, scene):
    row = Rows(story).make(scene=scene, type="render_spec", version=2, parent=store["v2"])
    return "parents", [row.pk, store["v2"].pk], "not an earlier version of its stream"


def scene_of_another_story(store, story, scene):
    other = story_services.story_create(title="Other")
    row = Artifact(id=uuid.uuid4(), story=other, scene=scene, type="visual_plan", version=1, payload={"characters": []})
    row.created_at = datetime.datetime.now(datetime.UTC)
    insert(row)
    return "scene_story", [row.pk, scene.pk], f"is on scene {scene.pk}"


def bad_payload(store, story, scene):
    row = Rows(story).make(
        scene=scene, type="qc_report", version=1, payload={"passed": "yes", "issues": [], "metrics": {}}
    )
    return "payloads", [row.pk], "payload.passed"


def never_pruned_without_payload(store, story, scene):
    pruned = Rows(story).make(scene=scene, type="qc_report", version=1)
    Artifact.objects.filter(pk=pruned.pk).update(
        payload=None, content="", pruned_at=datetime.datetime.now(datetime.UTC)
    )
    empty = Artifact(id=uuid.uuid4(), story=story, scene=scene, type="visual_plan", version=1, payload=None)
    empty.created_at = datetime.datetime.now(datetime.UTC)
    insert(empty)  # a tombstone is fine; a NULL payload on a live row is not
    return "tombstones", [empty.pk], "no payload but were never pruned"


@contextlib.contextmanager
def primary_guard_off():
    """The database's own primary-link guard set aside (as in a dump restored before it, or
    by an owner who disabled it), for this test's transaction only."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # every trigger off, for this transaction (the suite's a superuser)
            cursor.execute("SET LOCAL session_replication_role = replica")
            yield
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")
            return
        for name in SQLITE_PRIMARY_LINK:
            cursor.execute(f"DROP TRIGGER {name}")
        yield
        for trigger in SQLITE_PRIMARY_LINK.values():
            cursor.execute(trigger)


def unpublished_primary(store, story, scene):
    image = make_image(story, "draft")
    StoryArtifactLink.objects.filter(role="cover").update(is_primary=False)
    with primary_guard_off():
        StoryArtifactLink.objects.create(story=story, artifact=image, role="cover", is_primary=True)
    Story.objects.filter(pk=story.pk).update(cover_artifact=image)  # the reference follows: one problem only
    return "primaries", [image.pk], "is intermediate, not published"


def reference_drift(store, story, scene):
    Story.objects.filter(pk=story.pk).update(cover_artifact=None)
    return "story_references", [story.pk, store["cover"].pk], "cover_artifact is empty"


def relation_cycle(store, story, scene):
    ArtifactRelation.objects.create(from_artifact=store["v2"], to_artifact=store["spec"], relation_type="derived_from")
    return "relation_cycles", [store["v2"].pk, store["spec"].pk], "2 artifacts derive from each other"


def made_from_a_tombstone(store, story, scene):
    prune_rows([store["v2"].pk], at=datetime.datetime.now(datetime.UTC))  # as a relation racing a prune left it
    return "tombstone_references", [store["spec"].pk, store["v2"].pk], "was made from pruned scene_intent (derived"


def made_by_a_step_from_a_tombstone(store, story, scene):
    step = run_services.step_start(run_id=store["run"].pk, node="scene_intent")
    links = [(store["v1"].pk, "consumed"), (store["branch"].pk, "produced")]
    run_services.run_link_artifacts(run_id=store["run"].pk, stage="scene_intent", links=links, step_id=step.pk)
    prune_rows([store["v1"].pk], at=datetime.datetime.now(datetime.UTC))
    return "tombstone_references", [store["branch"].pk, store["v1"].pk], "(consumed by its step)"


def link_to_a_tombstone(store, story, scene):
    image = make_image(scene, "a panel")
    link = story_services.link_create(story_id=story.pk, artifact_id=image.pk, role="scene_image")
    prune_rows([image.pk], at=datetime.datetime.now(datetime.UTC))
    return "tombstone_references", [image.pk, link.pk], "a scene_image link names a pruned artifact"


def run_link_of_another_run(store, story, scene):
    other = run_services.run_create(story_id=story.pk, workflow="w")
    link = RunArtifactLink.objects.create(
        run=other, step=store["step"], artifact=store["v1"], stage="x", direction="consumed"
    )
    return "run_links", [link.pk, store["step"].pk], "of another run"


def missing_file(store, story, scene):
    default_storage.delete(store["cover"].content.name)
    return "content", [store["cover"].pk], "is missing"


def other_bytes(store, story, scene):
    name = store["cover"].content.name
    default_storage.delete(name)
    default_storage.save(name, ContentFile(b"x" * store["cover"].content_size))  # same size, other bytes
    return "content", [store["cover"].pk], "bytes whose sha256 is"


def unreferenced_file(store, story, scene):
    data = b"left by a failed upload"
    name = default_storage.save(storage_name(hashlib.sha256(data).hexdigest()), ContentFile(data))
    two_hours_ago = (datetime.datetime.now() - datetime.timedelta(hours=2)).timestamp()
    os.utime(default_storage.path(name), (two_hours_ago, two_hours_ago))
    young = b"a create in flight"
    default_storage.save(storage_name(hashlib.sha256(young).hexdigest()), ContentFile(young))
    return "unreferenced_files", [name], "no artifact uses the stored file"


@pytest.mark.parametrize(
    "corrupt",
    [
        gap,
        foreign_parent,
        scene_of_another_story,
        bad_payload,
        never_pruned_without_payload,
        unpublished_primary,
        reference_drift,
        relation_cycle,
        made_from_a_tombstone,
        made_by_a_step_from_a_tombstone,
        link_to_a_tombstone,
        run_link_of_another_run,
        missing_file,
        other_bytes,
        unreferenced_file,
    ],
)
def test_each_broken_invariant_is_reported_with_its_ids(store, story, scene, corrupt):
    check, ids, words = corrupt(store, story, scene)
    outcome = run("verify_artifacts")

    assert outcome.code == 1
    problems = [entry for entry in outcome.err.splitlines() if entry.startswith("[")]
    assert len(problems) == 1, outcome.err
    assert words in problems[0] and all(str(i) in problems[0] for i in ids), problems[0]
    assert summary(outcome.out)[check] == "1"


def test_fix_repairs_the_story_references_only(store, story, scene):
    reference_drift(store, story, scene)
    gap(store, story, scene)

    dry = run("verify_artifacts", fix=True, dry_run=True)
    story.refresh_from_db()
    assert dry.code == 1 and story.cover_artifact_id is None

    fixed = run("verify_artifacts", fix=True)
    story.refresh_from_db()
    assert fixed.code == 1  # the gap is still there: --fix touches derived data only
    assert story.cover_artifact_id == store["cover"].pk
    assert "fixed [story_references]" in fixed.err and "[version_gaps]" in fixed.err
    assert summary(fixed.out)["story_references"] == "0 (1 fixed)"
    assert run("verify_artifacts", check=["story_references"]).code == 0


def test_strongly_connected_components_find_every_cycle():
    edges = [(1, 2), (2, 3), (3, 1), (3, 4), (4, 5), (5, 4), (6, 7)]
    components = sorted(sorted(c) for c in strongly_connected(edges) if len(c) > 1)
    assert components == [[1, 2, 3], [4, 5]]
    long = [(i, i + 1) for i in range(20_000)] + [(20_000, 0)]  # deeper than any recursion limit
    assert [len(c) for c in strongly_connected(long) if len(c) > 1] == [20_001]
