"""import_artifacts: ids, versions, lineage and times kept; each bad line refused with its
number and reason, the rest imported; never half a line; a second run changes nothing."""

import datetime
import io
import json
import uuid

import pytest
from django.db import transaction

from artifacts import services as artifact_services
from artifacts.content import prepare_content, store_content
from artifacts.models import Artifact
from stories import services as story_services
from stories.models import Scene, Story
from tests.conftest import PNG_BYTES, SCENE_INTENT
from tests.operations.conftest import chain, jsonl, line, run, snapshot, summary


def imported(row: dict) -> Artifact:
    return Artifact.objects.get(pk=row["artifact_id"])


def test_good_lines_keep_ids_versions_parents_request_ids_and_times(tmp_path, story, scene):
    intents = chain(scene, 3)
    branch = line(scene, 4, parent=intents[0], payload={**SCENE_INTENT, "mood": "calm"})  # an editor's branch
    with transaction.atomic():
        stored = store_content(prepare_content(PNG_BYTES, mime_type="image/png", kind="image"))
    cover = line(
        None,
        1,
        type="cover_image",
        story_id=str(story.pk),
        payload={"alt": "a cover"},
        lifecycle_state="published",
        content_sha256=stored.sha256,
        content_size=stored.size,
        mime_type="image/png",
    )
    plan = line(
        scene,
        1,
        type="panel_plan",
        payload={"panels": [{"grammar_id": "establishing", "weight": 1, "must_show": []}]},
        fingerprint="f" * 64,
    )
    outcome = run("import_artifacts", jsonl(tmp_path / "a.jsonl", [*intents, branch, cover, plan]))

    assert outcome.code == 0, outcome.err
    assert "request id: " in outcome.out and "imported" in outcome.out
    for row in [*intents, branch, plan]:
        artifact = imported(row)
        assert str(artifact.scene_id) == row["scene_id"] and artifact.story_id == story.pk
        assert (artifact.type, artifact.version, artifact.payload) == (row["type"], row["version"], row["payload"])
        assert (str(artifact.parent_id) if artifact.parent_id else None) == row["parent_id"]
        assert artifact.request_id == "seed-export-1"
        assert artifact.created_at == datetime.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
        assert artifact.lifecycle_state == "intermediate"
    assert imported(branch).parent_id == uuid.UUID(intents[0]["artifact_id"])
    assert imported(plan).fingerprint == "f" * 64
    media = imported(cover)
    assert (media.scene_id, media.kind, media.lifecycle_state, media.content_sha256) == (
        None,
        "image",
        "published",
        stored.sha256,
    )
    assert media.content.name == stored.name and media.content.read() == PNG_BYTES


def test_unicode_payloads_survive_the_trip(tmp_path, scene):
    payload = {"mood": "tendu — 紧张", "pacing": "vif", "key_beats": ["la porte grince 🚪", "مرحبا", "\u00e9\u0301"]}
    row = line(scene, 1, payload=payload)
    outcome = run("import_artifacts", jsonl(tmp_path / "u.jsonl", [row]))
    assert outcome.code == 0, outcome.err
    assert imported(row).payload == payload


BAD_LINES = {
    "truncated": lambda scene: json.dumps(line(scene, 1))[:60],
    "not an object": lambda scene: "[1, 2, 3]",
    "version as a string": lambda scene: line(scene, "1"),
    "version zero": lambda scene: line(scene, 0),
    "version a boolean": lambda scene: line(scene, True),
    "artifact_id a number": lambda scene: line(scene, 1, artifact_id=12),
    "artifact_id not a uuid": lambda scene: line(scene, 1, artifact_id="nope"),
    "payload a list": lambda scene: line(scene, 1, payload=[1]),
    "payload against its schema": lambda scene: line(scene, 1, payload={"mood": "x", "pacing": "y", "key_beats": []}),
    "payload with NaN": lambda scene: json.dumps(line(scene, 1)).replace('"tense"', "NaN"),
    "unknown type": lambda scene: line(scene, 1, type="haiku"),
    "story type on a scene": lambda scene: line(scene, 1, type="cover_image", payload={"alt": "x"}),
    "unknown field": lambda scene: line(scene, 1, colour="blue"),
    "created_at not a time": lambda scene: line(scene, 1, created_at="yesterday"),
    "unknown lifecycle state": lambda scene: line(scene, 1, lifecycle_state="golden"),
    "request_id too long": lambda scene: line(scene, 1, request_id="r" * 65),
    "NUL in a payload": lambda scene: line(scene, 1, payload={**SCENE_INTENT, "mood": "a\u0000b"}),
    "media without its digest": lambda scene: line(scene, 1, type="cover_image", payload={"alt": "x"}, kind="image"),
    "json kind with content": lambda scene: line(scene, 1, content_sha256="a" * 64),
    "own parent": lambda scene: line(
        scene, 1, artifact_id="00000000-0000-0000-0000-000000000001", parent_id="00000000-0000-0000-0000-000000000001"
    ),
    "neither scene nor story": lambda scene: line(None, 1),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_a_bad_line_is_refused_with_its_number_and_the_good_ones_around_it_imported(tmp_path, scene, case):
    first, second = line(scene, 1), line(scene, 2, type="scene_intent")
    second["parent_id"] = first["artifact_id"]
    bad = BAD_LINES[case](scene)
    outcome = run("import_artifacts", jsonl(tmp_path / "bad.jsonl", [first, bad, second]))

    assert outcome.code == 1
    assert "line 2: " in outcome.err and "line 1:" not in outcome.err and "line 3:" not in outcome.err
    assert Artifact.objects.count() == 2  # the two good lines, nothing of the bad one
    assert imported(second).parent_id == uuid.UUID(first["artifact_id"])


def test_reasons_name_what_is_wrong(tmp_path, story, scene):
    other_scene = story_services.scene_create(story_id=story.pk, title="Other")
    elsewhere = line(other_scene, 1)
    one, two = chain(scene, 2)
    taken = line(scene, 2, parent=one)
    rows = [
        json.dumps(one)[:50],  # 1: truncated
        one,  # 2
        line(scene, 3, parent=one),  # 3: gap (v2 not there yet)
        line(scene, 2, parent=str(uuid.uuid4())),  # 4: unknown parent
        elsewhere,  # 5
        line(scene, 2, parent=elsewhere),  # 6: parent from another stream
        {**one, "payload": {**SCENE_INTENT, "mood": "other"}},  # 7: same id, other content
        one,  # 8: same id, same content: skipped
        two,  # 9
        taken,  # 10: v2 exists already
        line(scene, 1, type="panel_plan", payload={"panels": []}),  # 11: bad payload
    ]
    outcome = run("import_artifacts", jsonl(tmp_path / "r.jsonl", rows), batch_size=4)

    reasons = dict(entry.split(": ", 1) for entry in outcome.err.splitlines() if entry.startswith("line "))
    assert outcome.code == 1
    assert set(reasons) == {f"line {n}" for n in (1, 3, 4, 6, 7, 10, 11)}
    assert "not valid JSON" in reasons["line 1"]
    assert "version gap" in reasons["line 3"] and "expects v2 after v1" in reasons["line 3"]
    assert "unknown parent" in reasons["line 4"]
    assert "not a version of this stream" in reasons["line 6"]
    assert "already exists with other content (payload differ)" in reasons["line 7"]
    assert "exists already" in reasons["line 10"]
    assert "payload.panels" in reasons["line 11"]
    assert summary(outcome.out)["skipped (already imported)"] == "1"
    assert Artifact.objects.count() == 3


def test_a_stream_continues_what_the_store_holds(tmp_path, service, scene):
    made = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
    follows = line(scene, 2, parent=str(made.pk))
    outcome = run("import_artifacts", jsonl(tmp_path / "c.jsonl", [line(scene, 3, parent=follows), follows]))
    assert outcome.code == 1 and "line 1: version gap" in outcome.err  # file order is dependency order
    assert imported(follows).version == 2
    assert service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT).version == 3


def test_an_empty_file_imports_nothing_and_succeeds(tmp_path, scene):
    outcome = run("import_artifacts", jsonl(tmp_path / "empty.jsonl", []))
    assert outcome.code == 0 and summary(outcome.out)["lines read"] == "0"
    outcome = run("import_artifacts", jsonl(tmp_path / "blank.jsonl", ["", "   "]))
    assert outcome.code == 0 and not Artifact.objects.exists()


def test_a_file_of_only_bad_lines_imports_nothing_and_fails(tmp_path, scene):
    path = jsonl(tmp_path / "bad.jsonl", ["{", "null", line(scene, 2), line(scene, 1, payload={})])
    outcome = run("import_artifacts", path)
    assert outcome.code == 1 and "4 line(s) refused" in outcome.err
    assert [entry.split(":")[0] for entry in outcome.err.splitlines()[:4]] == [f"line {n}" for n in (1, 2, 3, 4)]
    assert not Artifact.objects.exists()


def test_bytes_that_are_not_utf8_are_a_refused_line(tmp_path, scene):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(line(scene, 1)).encode() + b"\n" + b'{"mood": "caf\xe9"}\n')
    outcome = run("import_artifacts", str(path))
    assert outcome.code == 1 and "line 2: not UTF-8" in outcome.err
    assert Artifact.objects.count() == 1


def test_missing_stories_and_scenes_are_created_only_when_asked(tmp_path, db):
    story_id, scene_id = uuid.uuid4(), uuid.uuid4()
    where = {"scene_id": str(scene_id), "story_id": str(story_id)}
    rows = [
        line(None, 1, **where),
        line(
            None, 1, type="render_result", payload={"image_url": "x", "metadata": {}, "generation_params": {}}, **where
        ),
    ]
    path = jsonl(tmp_path / "m.jsonl", rows)

    refused = run("import_artifacts", path)
    assert refused.code == 1 and "--create-missing creates it" in refused.err
    assert not Story.objects.exists() and not Scene.objects.exists()

    created = run("import_artifacts", path, create_missing=True)
    assert created.code == 0, created.err
    scene = Scene.objects.get(pk=scene_id)
    assert (scene.story_id, scene.position) == (story_id, 1)
    assert Artifact.objects.filter(scene=scene).count() == 2
    assert (summary(created.out)["stories created"], summary(created.out)["scenes created"]) == ("1", "1")


def test_a_scene_of_another_story_is_refused(tmp_path, story, scene):
    other = story_services.story_create(title="Other")
    outcome = run("import_artifacts", jsonl(tmp_path / "s.jsonl", [line(scene, 1, story_id=str(other.pk))]))
    assert outcome.code == 1 and f"belongs to story {story.pk}, not {other.pk}" in outcome.err


def test_media_needs_its_file_in_storage(tmp_path, story):
    row = line(None, 1, type="cover_image", story_id=str(story.pk), payload={"alt": "x"})
    row.update(content_sha256="ab" * 32, content_size=10, mime_type="image/png")
    outcome = run("import_artifacts", jsonl(tmp_path / "f.jsonl", [row]))
    assert outcome.code == 1 and "is not in storage" in outcome.err
    assert not Artifact.objects.exists()


def test_a_tombstone_is_imported_as_one(tmp_path, scene):
    gone = line(scene, 1, payload=None, pruned_at="2024-05-01T00:00:00Z")
    gone["payload"] = None
    kept = line(scene, 2, parent=gone)
    outcome = run("import_artifacts", jsonl(tmp_path / "t.jsonl", [gone, kept]))
    assert outcome.code == 0, outcome.err
    tombstone = imported(gone)
    assert (tombstone.payload, tombstone.is_pruned) == (None, True)
    no_payload = {**line(scene, 3, parent=kept), "payload": None}
    refused = run("import_artifacts", jsonl(tmp_path / "t2.jsonl", [no_payload]))
    assert refused.code == 1 and "payload must be a JSON object" in refused.err


def test_running_twice_changes_nothing(tmp_path, scene, service):
    rows = chain(scene, 5) + chain(scene, 3, type="render_spec", payload=None)
    for row in rows[5:]:
        row["payload"] = {"prompt": "p", "style": "ink", "characters": [], "reference_images": []}
    path = jsonl(tmp_path / "twice.jsonl", rows)
    first = run("import_artifacts", path, batch_size=2)
    before = snapshot()
    # A lifecycle change in between is not "other content": the rerun still skips the row.
    artifact_services.artifact_transition(artifact_id=rows[0]["artifact_id"], to="candidate")
    before_state = snapshot()
    second = run("import_artifacts", path, batch_size=3)

    assert (first.code, second.code) == (0, 0)
    assert summary(first.out)["imported"] == "8"
    assert (summary(second.out)["imported"], summary(second.out)["skipped (already imported)"]) == ("0", "8")
    assert snapshot() == before_state != before


def test_a_dry_run_writes_nothing_and_says_what_a_real_run_would_do(tmp_path, scene):
    rows = chain(scene, 4) + [line(scene, 9)]
    path = jsonl(tmp_path / "dry.jsonl", rows)
    dry = run("import_artifacts", path, dry_run=True, batch_size=1)  # later batches see the earlier ones
    assert dry.code == 1 and "line 5: version gap" in dry.err
    assert summary(dry.out)["would be imported"] == "4"
    assert not Artifact.objects.exists()
    real = run("import_artifacts", path, batch_size=1)
    assert real.err.splitlines()[0] == dry.err.splitlines()[0]
    assert Artifact.objects.count() == 4


def test_standard_input_is_read_with_a_dash(scene):
    rows = chain(scene, 2)
    data = io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())
    outcome = run("import_artifacts", "-", stdin=data)
    assert outcome.code == 0, outcome.err
    assert Artifact.objects.count() == 2


def test_usage_errors_exit_2(tmp_path, db):
    assert run("import_artifacts", str(tmp_path / "missing.jsonl")).code == 2


def test_lines_without_request_id_or_time_get_the_invocations(tmp_path, scene):
    row = line(scene, 1)
    del row["request_id"], row["created_at"]
    outcome = run("import_artifacts", jsonl(tmp_path / "n.jsonl", [row]))
    request_id = outcome.out.splitlines()[0].removeprefix("request id: ")
    assert imported(row).request_id == request_id
    assert run("import_artifacts", jsonl(tmp_path / "n.jsonl", [row])).code == 0  # still "the same content"


def test_a_time_outside_what_python_and_the_databases_hold_is_a_bad_line_by_number(tmp_path, scene):
    rows = [
        line(scene, 1, created_at="9999-12-30T00:00:00Z"),  # a day before the latest time accepted
        line(scene, 1, type="panel_plan", payload={"panels": [{"grammar_id": "g", "weight": 1, "must_show": []}]}),
        line(scene, 1, type="render_spec", created_at="9999-12-31T23:00:00-05:00"),
        line(scene, 1, type="qc_report", created_at="0001-01-01T00:00:00Z"),
    ]
    rows[2]["payload"] = {"prompt": "p", "style": "s", "characters": [], "reference_images": []}
    rows[3]["payload"] = {"passed": True, "issues": [], "metrics": {}}
    rows.append({**line(scene, 1, type="visual_plan"), "payload": None, "pruned_at": "9999-12-31T23:59:59-00:01"})
    outcome = run("import_artifacts", jsonl(tmp_path / "times.jsonl", rows))

    assert outcome.code == 1
    reasons = [entry for entry in outcome.err.splitlines() if entry.startswith("line ")]
    assert reasons == [
        "line 3: created_at '9999-12-31T23:00:00-05:00' is outside 0001-01-02 to 9999-12-30 (UTC),"
        " the times both databases and Python hold",
        "line 4: created_at '0001-01-01T00:00:00Z' is outside 0001-01-02 to 9999-12-30 (UTC),"
        " the times both databases and Python hold",
        "line 5: pruned_at '9999-12-31T23:59:59-00:01' is outside 0001-01-02 to 9999-12-30 (UTC),"
        " the times both databases and Python hold",
    ]
    assert sorted(Artifact.objects.values_list("type", flat=True)) == ["panel_plan", "scene_intent"]
    assert imported(rows[0]).created_at == datetime.datetime(9999, 12, 30, tzinfo=datetime.UTC)
    assert list(Artifact.objects.order_by("created_at").values_list("created_at", flat=True))  # every row reads back


def seed_rows(count_scenes: int) -> list[dict]:
    """Rows as the seed's own artifacts table has them: a scene_id, no story_id, scenes not
    in the store."""
    rows = []
    for _ in range(count_scenes):
        scene = Scene(pk=uuid.uuid4())
        rows += chain(scene, 2)
    return rows


def made(out: str) -> list[str]:
    return [entry for entry in out.splitlines() if entry.startswith(("created ", "would create "))]


def test_the_seeds_own_table_goes_into_one_story_made_for_the_import(tmp_path, db):
    rows = seed_rows(3)
    path = jsonl(tmp_path / "seed.jsonl", rows)
    refused = run("import_artifacts", path)
    assert refused.code == 1 and "--create-missing creates it" in refused.err and not Scene.objects.exists()

    outcome = run("import_artifacts", path, create_missing=True, batch_size=4)

    assert outcome.code == 0, outcome.err
    story = Story.objects.get()
    assert story.title == f"Imported from seed.jsonl on {datetime.date.today().isoformat()}"
    scene_ids = list(dict.fromkeys(uuid.UUID(row["scene_id"]) for row in rows))
    assert list(Scene.objects.filter(story=story).order_by("position").values_list("pk", "position")) == [
        (scene_id, position) for position, scene_id in enumerate(scene_ids, start=1)
    ]
    assert Artifact.objects.filter(story=story).count() == 6
    assert (summary(outcome.out)["stories created"], summary(outcome.out)["scenes created"]) == ("1", "3")
    assert made(outcome.out) == [f"created story {story.pk} {story.title!r}"] + [
        f"created scene {scene_id} in story {story.pk}" for scene_id in scene_ids
    ]
    again = run("import_artifacts", path, create_missing=True)
    assert (again.code, summary(again.out)["skipped (already imported)"], made(again.out)) == (0, "6", [])
    assert Story.objects.count() == 1


def test_a_rerun_after_an_interruption_finds_the_story_it_made(tmp_path, db):
    rows = seed_rows(2)
    path = tmp_path / "seed.jsonl"
    jsonl(path, rows[:2])  # the first run dies after the first scene's lines
    assert run("import_artifacts", str(path), create_missing=True).code == 0
    jsonl(path, rows)
    rerun = run("import_artifacts", str(path), create_missing=True)
    assert rerun.code == 0, rerun.err
    story = Story.objects.get()
    assert made(rerun.out) == [f"created scene {rows[2]['scene_id']} in story {story.pk}"]
    assert Scene.objects.filter(story=story).count() == 2 and Artifact.objects.count() == 4


def test_story_puts_the_new_scenes_after_its_own(tmp_path, story, scene):
    rows = seed_rows(2)
    outcome = run("import_artifacts", jsonl(tmp_path / "seed.jsonl", rows), create_missing=True, story=str(story.pk))
    assert outcome.code == 0, outcome.err
    assert Story.objects.count() == 1
    assert list(Scene.objects.filter(story=story).order_by("position").values_list("pk", flat=True)) == [
        scene.pk,
        uuid.UUID(rows[0]["scene_id"]),
        uuid.UUID(rows[2]["scene_id"]),
    ]
    assert made(outcome.out) == [f"created scene {rows[i]['scene_id']} in story {story.pk}" for i in (0, 2)]


def test_story_is_made_when_missing_and_a_dry_run_says_so(tmp_path, db):
    story_id = uuid.uuid4()
    rows = seed_rows(1)
    path = jsonl(tmp_path / "seed.jsonl", rows)
    dry = run("import_artifacts", path, create_missing=True, story=str(story_id), dry_run=True)
    assert dry.code == 0, dry.err
    assert made(dry.out)[1:] == [f"would create scene {rows[0]['scene_id']} in story {story_id}"]
    assert made(dry.out)[0].startswith(f"would create story {story_id} 'Imported from seed.jsonl on ")
    assert not Story.objects.exists() and not Scene.objects.exists()

    real = run("import_artifacts", path, create_missing=True, story=str(story_id))
    assert real.code == 0, real.err
    assert Scene.objects.get().story_id == story_id and Artifact.objects.filter(story_id=story_id).count() == 2


def test_story_needs_create_missing_and_an_id(tmp_path, db):
    path = jsonl(tmp_path / "seed.jsonl", seed_rows(1))
    assert run("import_artifacts", path, story=str(uuid.uuid4())).code == 2
    assert run("import_artifacts", path, "--create-missing", "--story", "nope").code == 2
    assert not Artifact.objects.exists()


def test_a_byte_order_mark_on_line_1_is_read_past(tmp_path, scene):
    rows = chain(scene, 2)
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(row) + "\n" for row in rows).encode())
    outcome = run("import_artifacts", str(path))
    assert outcome.code == 0, outcome.err
    assert Artifact.objects.count() == 2
