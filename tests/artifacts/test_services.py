import logging

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, connection
from django.utils import timezone

from artifacts import lineage as lineage_walk
from artifacts import selectors, services
from artifacts import services as artifact_services
from artifacts.models import ALLOWED_TRANSITIONS, Artifact, LifecycleState
from artifacts.payloads import ARTIFACT_TYPES
from artifacts.services import ArtifactService
from audit.models import AuditEvent
from kernel.errors import (
    Cycle,
    DuplicateRelation,
    InvalidContent,
    InvalidInput,
    InvalidKind,
    InvalidParent,
    InvalidPayload,
    InvalidRelation,
    InvalidScope,
    InvalidTransition,
    NotFound,
    PlanningLocked,
    Pruned,
    StillPrimary,
    UnknownType,
    VersionConflict,
)
from kernel.request_id import request_id_scope
from stories import services as story_services
from tests.conftest import MP3_BYTES, PNG_BYTES, SCENE_INTENT, make_image

PANEL_PLAN = ARTIFACT_TYPES["panel_plan"].example
RENDER_SPEC = ARTIFACT_TYPES["render_spec"].example


def intent(n):
    return {**SCENE_INTENT, "mood": f"mood {n}"}


class TestVersioning:
    def test_versions_count_up_per_stream_each_with_the_previous_as_parent(self, service, scene):
        made = [service.create_artifact(scene.pk, "scene_intent", intent(n)) for n in range(3)]
        assert [a.version for a in made] == [1, 2, 3]
        assert [a.parent_id for a in made] == [None, made[0].pk, made[1].pk]
        other = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
        assert (other.version, other.parent_id) == (1, None)

    def test_story_level_stream_is_separate_from_scene_streams(self, service, story, scene):
        make_image(scene, "s")
        a = make_image(story, "a")
        b = make_image(story, "b")
        assert (a.version, b.version, b.parent_id, a.scene_id) == (1, 2, a.pk, None)

    def test_explicit_parent_branches_from_an_older_version_of_the_same_stream(self, service, scene):
        v1 = service.create_artifact(scene.pk, "scene_intent", intent(1))
        service.create_artifact(scene.pk, "scene_intent", intent(2))
        branch = service.create_artifact(scene.pk, "scene_intent", intent(3), parent_id=v1.pk)
        assert (branch.version, branch.parent_id) == (3, v1.pk)

    def test_parent_from_another_stream_is_refused_and_nothing_written(self, service, scene):
        plan = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
        with pytest.raises(InvalidParent) as excinfo:
            service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT, parent_id=plan.pk)
        assert excinfo.value.field == "parent_id"
        with pytest.raises(InvalidParent):
            service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT, parent_id="not-a-uuid")
        assert not Artifact.objects.filter(type="scene_intent").exists()

    def test_seed_reads_latest_list_and_next_version(self, service, scene):
        assert service.get_latest_artifact(scene.pk, "scene_intent") is None
        assert service.get_next_version(scene.pk, "scene_intent") == 1
        first = service.create_artifact(scene.pk, "scene_intent", intent(1))
        second = service.create_artifact(scene.pk, "scene_intent", intent(2))
        plan = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
        assert service.get_latest_artifact(scene.pk, "scene_intent") == second
        assert service.get_next_version(scene.pk, "scene_intent") == 3
        assert list(service.list_artifacts(scene.pk)) == [plan, first, second]
        assert list(service.list_artifacts(scene.pk, type="scene_intent")) == [first, second]
        assert service.get_artifact(str(first.pk)) == first
        assert list(selectors.scene_latest_per_type(scene.pk)) == [plan, second]  # by type name
        assert list(selectors.scene_latest_per_type(scene.pk, type="scene_intent")) == [second]

    def test_unknown_and_malformed_ids_are_not_found(self, service, scene):
        for bad in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"]:
            with pytest.raises(NotFound):
                service.get_artifact(bad)
            with pytest.raises(NotFound):
                service.create_artifact(bad, "scene_intent", SCENE_INTENT)

    @staticmethod
    def stale(monkeypatch, times: int) -> None:
        """The INSERT hands out the stream's latest version itself, taken, ``times`` times: as
        a writer bypassing the stream's lock would make it do."""
        real, left = services.insert_next_version, [times]

        def insert_next_version(artifact, **options):
            if left[0]:
                left[0] -= 1
                options["next_version"] = "latest.version"
            return real(artifact, **options)

        monkeypatch.setattr(services, "insert_next_version", insert_next_version)

    def test_safety_net_retry_recovers_from_a_forced_version_conflict(self, scene, caplog, monkeypatch):
        ArtifactService().create_artifact(scene.pk, "scene_intent", intent(1))
        self.stale(monkeypatch, 1)
        with caplog.at_level(logging.WARNING, logger="artifacts.services"):
            made = ArtifactService().create_artifact(scene.pk, "scene_intent", intent(2))
        assert made.version == 2
        assert "version conflict" in caplog.text

    def test_retry_exhaustion_is_logged_and_raised(self, scene, caplog, monkeypatch):
        ArtifactService().create_artifact(scene.pk, "scene_intent", intent(1))
        self.stale(monkeypatch, 99)
        with caplog.at_level(logging.ERROR, logger="artifacts.services"), pytest.raises(VersionConflict):
            ArtifactService().create_artifact(scene.pk, "scene_intent", intent(2))
        assert "exhausted 3 attempts" in caplog.text
        assert Artifact.objects.filter(scene=scene).count() == 1


class TestValidation:
    def test_bad_payload_is_refused_with_its_path_and_nothing_written(self, service, scene):
        bad = {"panels": [{"grammar_id": "g", "weight": -1, "must_show": []}]}
        with pytest.raises(InvalidPayload) as excinfo:
            service.create_artifact(scene.pk, "panel_plan", bad)
        assert excinfo.value.field == "payload.panels[0].weight"
        assert Artifact.objects.count() == 0

    def test_unknown_type_wrong_kind_and_wrong_scope_are_refused(self, service, story, scene):
        with pytest.raises(UnknownType):
            service.create_artifact(scene.pk, "storyboard", {})
        with pytest.raises(InvalidKind):
            service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT, kind="image")
        with pytest.raises(InvalidScope):
            artifact_services.artifact_create(story_id=story.pk, type="scene_intent", payload=SCENE_INTENT)
        assert Artifact.objects.count() == 0

    def test_media_needs_matching_content_and_json_takes_none(self, service, story, scene):
        with pytest.raises(InvalidContent):
            artifact_services.artifact_create(story_id=story.pk, type="cover_image", payload={"alt": "x"})
        with pytest.raises(InvalidContent):
            artifact_services.artifact_create(
                story_id=story.pk, type="cover_image", payload={"alt": "x"}, content=b"RIFF", mime_type="audio/wav"
            )
        with pytest.raises(InvalidContent):
            artifact_services.artifact_create(
                story_id=story.pk, type="cover_image", payload={"alt": "x"}, content=b"", mime_type="image/png"
            )
        with pytest.raises(InvalidContent):
            service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT, content=PNG_BYTES)
        assert Artifact.objects.count() == 0


class TestContent:
    def test_equal_bytes_are_stored_once_by_digest(self, service, story):
        upload = SimpleUploadedFile("cover.png", PNG_BYTES, content_type="image/png")
        a = artifact_services.artifact_create(
            story_id=story.pk, type="cover_image", payload={"alt": "a"}, content=upload
        )
        b = make_image(story, "b")
        c = artifact_services.artifact_create(
            story_id=story.pk,
            type="cover_image",
            payload={"alt": "c"},
            content=PNG_BYTES + b"\x00",
            mime_type="image/png",
        )
        assert a.content.name == b.content.name != c.content.name
        assert a.content_sha256 == b.content_sha256 and a.content_size == len(PNG_BYTES) and a.mime_type == "image/png"
        folder = a.content.name.rsplit("/", 1)[0]
        assert default_storage.listdir(folder)[1] == [a.content_sha256]
        with default_storage.open(a.content.name) as handle:
            assert handle.read() == PNG_BYTES

    def test_an_undeclared_mime_type_is_read_from_the_bytes(self, service, story):
        upload = SimpleUploadedFile("theme.bin", MP3_BYTES, content_type="application/octet-stream")
        track = artifact_services.artifact_create(
            story_id=story.pk, type="audio_track", payload={"alt": "theme"}, content=upload
        )
        assert (track.kind, track.mime_type) == ("audio", "audio/mpeg")


class TestRequestIdAndActor:
    def test_request_id_in_force_is_stored_on_every_write(self, story, scene, make_user):
        user = make_user("writer")
        with request_id_scope("req-123"):
            artifact = ArtifactService(user=user).create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
            artifact_services.artifact_transition(artifact_id=artifact.pk, to="candidate", actor=user)
        assert (artifact.request_id, artifact.created_by) == ("req-123", user)
        event = AuditEvent.objects.get(action="transition")
        assert (event.request_id, event.actor, event.from_value, event.to_value) == (
            "req-123",
            user,
            "intermediate",
            "candidate",
        )

    def test_explicit_request_id_wins(self, scene):
        with request_id_scope("ambient"):
            artifact = ArtifactService(request_id="explicit").create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
        assert artifact.request_id == "explicit"


ALL_STATES = LifecycleState.values


class TestLifecycle:
    @pytest.mark.parametrize("source", ALL_STATES)
    @pytest.mark.parametrize("target", ALL_STATES)
    def test_each_transition_is_allowed_or_refused_as_spec_section_5_says(self, service, story, source, target):
        artifact = artifact_services.artifact_create(
            story_id=story.pk,
            type="cover_image",
            payload={"alt": "x"},
            content=PNG_BYTES,
            mime_type="image/png",
            lifecycle_state=source,
        )
        allowed = {
            ("intermediate", "candidate"),
            ("candidate", "published"),
            ("published", "archived"),
            ("intermediate", "archived"),
            ("candidate", "archived"),
            ("archived", "candidate"),
        }
        assert {(s, t) for s, targets in ALLOWED_TRANSITIONS.items() for t in targets} == allowed
        if (source, target) in allowed:
            assert artifact_services.artifact_transition(artifact_id=artifact.pk, to=target).lifecycle_state == target
            artifact = Artifact.objects.get(pk=artifact.pk)
            assert artifact.lifecycle_state == target
        else:
            with pytest.raises(InvalidTransition):
                artifact_services.artifact_transition(artifact_id=artifact.pk, to=target)
            assert Artifact.objects.get(pk=artifact.pk).lifecycle_state == source

    def test_unknown_state_is_invalid_input(self, service, scene):
        artifact = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
        with pytest.raises(InvalidInput):
            artifact_services.artifact_transition(artifact_id=artifact.pk, to="deleted")

    def test_a_primary_artifact_cannot_be_archived_until_replaced(self, service, story, published_cover):
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=published_cover.pk)
        with pytest.raises(StillPrimary):
            artifact_services.artifact_transition(artifact_id=published_cover.pk, to="archived")
        newer = artifact_services.artifact_create(
            story_id=story.pk,
            type="cover_image",
            payload={"alt": "new"},
            content=PNG_BYTES,
            mime_type="image/png",
            lifecycle_state="published",
        )
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=newer.pk)
        assert (
            artifact_services.artifact_transition(artifact_id=published_cover.pk, to="archived").lifecycle_state
            == "archived"
        )


class TestEdit:
    def test_edit_creates_the_next_version_with_the_edited_one_as_parent(self, service, scene):
        v1 = service.create_artifact(scene.pk, "scene_intent", intent(1))
        service.create_artifact(scene.pk, "scene_intent", intent(2))
        edited = artifact_services.artifact_edit(artifact_id=v1.pk, payload=intent("edited"))
        assert (edited.version, edited.parent_id, edited.payload["mood"]) == (3, v1.pk, "mood edited")
        assert Artifact.objects.get(pk=v1.pk).payload == intent(1)
        event = AuditEvent.objects.get(action="edit")
        assert event.target_id == edited.pk and event.from_value["version"] == 1

    def test_unchanged_edit_writes_nothing(self, service, scene):
        v1 = service.create_artifact(scene.pk, "scene_intent", intent(1))
        assert artifact_services.artifact_edit(artifact_id=v1.pk, payload=intent(1)) == v1
        assert Artifact.objects.count() == 1 and not AuditEvent.objects.exists()

    def test_edit_of_media_keeps_the_bytes(self, service, story):
        cover = make_image(story, "a")
        edited = artifact_services.artifact_edit(artifact_id=cover.pk, payload={"alt": "better words"})
        assert (edited.content.name, edited.content_sha256, edited.mime_type, edited.kind) == (
            cover.content.name,
            cover.content_sha256,
            "image/png",
            "image",
        )

    def test_invalid_edit_writes_nothing(self, service, scene):
        v1 = service.create_artifact(scene.pk, "scene_intent", intent(1))
        with pytest.raises(InvalidPayload):
            artifact_services.artifact_edit(artifact_id=v1.pk, payload={"mood": "only"})
        assert Artifact.objects.count() == 1

    def test_an_edit_and_its_audit_event_commit_together_or_not_at_all(self, service, scene, is_postgres):
        """The database refuses the audit event (a trigger added for this test): the new
        version must not stay behind without the record of who made it."""
        v1 = service.create_artifact(scene.pk, "scene_intent", intent(1))
        with connection.cursor() as cursor:
            if is_postgres:
                cursor.execute(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'audit refused' USING ERRCODE = 'check_violation'; END $$ LANGUAGE plpgsql"
                )
                cursor.execute(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON artifacts_auditevent "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                )
            else:
                cursor.execute(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON artifacts_auditevent "
                    "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
                )
        with pytest.raises(IntegrityError, match="audit refused"):
            artifact_services.artifact_edit(artifact_id=v1.pk, payload=intent("edited"))
        assert list(Artifact.objects.values_list("version", flat=True)) == [1]
        assert not AuditEvent.objects.exists()

    def test_a_version_made_outside_the_pipeline_carries_its_parents_fingerprint(self, service, scene):
        made = artifact_services.artifact_create(
            scene_id=scene.pk, type="scene_intent", payload=intent(1), fingerprint="a" * 64
        )
        edited = artifact_services.artifact_edit(artifact_id=made.pk, payload=intent("edited"))
        posted = service.create_artifact(scene.pk, "scene_intent", intent("posted"))  # parent: the latest
        branched = service.create_artifact(scene.pk, "scene_intent", intent("branch"), parent_id=made.pk)
        assert [a.fingerprint for a in (made, edited, posted, branched)] == ["a" * 64] * 4
        assert service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN).fingerprint == ""  # nothing to inherit

    def test_a_pruned_artifact_cannot_be_edited(self, service, story):
        cover = make_image(story, "a")
        Artifact.objects.filter(pk=cover.pk).update(payload=None, content="", pruned_at=timezone.now())
        with pytest.raises(Pruned):
            artifact_services.artifact_edit(artifact_id=cover.pk, payload={"alt": "new words for gone bytes"})
        assert Artifact.objects.count() == 1 and not AuditEvent.objects.exists()


class TestPlanningLock:
    def test_planning_types_are_frozen_on_a_locked_scene(self, service, scene, make_user):
        story_services.scene_lock_planning(scene_id=scene.pk)
        with pytest.raises(PlanningLocked):
            service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
        assert service.create_artifact(scene.pk, "render_spec", RENDER_SPEC).version == 1
        editor = make_user("editor", "artifacts.override_planning_lock")
        assert ArtifactService(user=editor).create_artifact(scene.pk, "panel_plan", PANEL_PLAN).version == 1
        assert Artifact.objects.filter(type="panel_plan").count() == 1


class TestRelationsAndLineage:
    def test_relations_refuse_self_edges_duplicates_unknown_types_and_cycles(self, service, scene):
        a = service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
        b = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
        c = service.create_artifact(scene.pk, "scene_intent", SCENE_INTENT)
        artifact_services.relation_create(from_artifact_id=a.pk, to_artifact_id=b.pk, relation_type="derived_from")
        artifact_services.relation_create(from_artifact_id=b.pk, to_artifact_id=c.pk, relation_type="transcoded_from")
        with pytest.raises(InvalidRelation):
            artifact_services.relation_create(from_artifact_id=a.pk, to_artifact_id=a.pk, relation_type="variant_of")
        with pytest.raises(InvalidRelation):
            artifact_services.relation_create(from_artifact_id=a.pk, to_artifact_id=c.pk, relation_type="copied_from")
        with pytest.raises(DuplicateRelation):
            artifact_services.relation_create(from_artifact_id=a.pk, to_artifact_id=b.pk, relation_type="derived_from")
        with pytest.raises(Cycle):
            artifact_services.relation_create(from_artifact_id=c.pk, to_artifact_id=a.pk, relation_type="derived_from")
        with pytest.raises(Cycle):
            artifact_services.relation_create(
                from_artifact_id=c.pk, to_artifact_id=a.pk, relation_type="transcoded_from"
            )
        # variant_of is symmetric in meaning; it may point back.
        artifact_services.relation_create(from_artifact_id=c.pk, to_artifact_id=a.pk, relation_type="variant_of")

    def test_lineage_walks_versions_and_relations_to_a_depth(self, service, scene):
        intent_v1 = service.create_artifact(scene.pk, "scene_intent", intent(1))
        intent_v2 = service.create_artifact(scene.pk, "scene_intent", intent(2))
        plan = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
        spec = service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
        artifact_services.relation_create(
            from_artifact_id=plan.pk, to_artifact_id=intent_v2.pk, relation_type="derived_from"
        )
        artifact_services.relation_create(
            from_artifact_id=spec.pk, to_artifact_id=plan.pk, relation_type="derived_from"
        )

        full = lineage_walk.walk(spec.pk, direction="ancestors", depth=10)
        assert [(n.pk, n.depth) for n in full.nodes] == [
            (spec.pk, 0),
            (plan.pk, 1),
            (intent_v2.pk, 2),
            (intent_v1.pk, 3),
        ]
        assert {(e.from_id, e.to_id, e.kind) for e in full.edges} == {
            (spec.pk, plan.pk, "derived_from"),
            (plan.pk, intent_v2.pk, "derived_from"),
            (intent_v2.pk, intent_v1.pk, "parent"),
        }
        assert [n.pk for n in lineage_walk.walk(spec.pk, depth=2).nodes] == [spec.pk, plan.pk, intent_v2.pk]

        down = lineage_walk.walk(intent_v1.pk, direction="descendants", depth=10)
        assert [(n.pk, n.depth) for n in down.nodes] == [
            (intent_v1.pk, 0),
            (intent_v2.pk, 1),
            (plan.pk, 2),
            (spec.pk, 3),
        ]

    def test_lineage_terminates_on_variant_cycles_and_checks_its_arguments(self, service, scene):
        a = service.create_artifact(scene.pk, "render_spec", RENDER_SPEC)
        b = service.create_artifact(scene.pk, "panel_plan", PANEL_PLAN)
        artifact_services.relation_create(from_artifact_id=a.pk, to_artifact_id=b.pk, relation_type="variant_of")
        artifact_services.relation_create(from_artifact_id=b.pk, to_artifact_id=a.pk, relation_type="variant_of")
        assert [n.pk for n in lineage_walk.walk(a.pk, depth=100).nodes] == [a.pk, b.pk]
        with pytest.raises(InvalidInput):
            lineage_walk.walk(a.pk, direction="sideways")
        with pytest.raises(InvalidInput):
            lineage_walk.walk(a.pk, depth=0)


def test_nul_characters_are_refused_on_both_backends_with_their_path(service, story, scene):
    """PostgreSQL cannot store U+0000 in jsonb or text; SQLite could, so both refuse it."""
    from runs import services as run_services

    with pytest.raises(InvalidPayload) as excinfo:
        service.create_artifact(scene.pk, "scene_intent", {**SCENE_INTENT, "key_beats": ["ok", "bad\x00"]})
    assert excinfo.value.field == "payload.key_beats[1]"
    with pytest.raises(InvalidPayload):
        service.create_artifact(scene.pk, "scene_intent", {**SCENE_INTENT, "k\x00": 1})
    run = run_services.run_create(story_id=story.pk, workflow="w", start=True)
    with pytest.raises(InvalidInput) as excinfo:
        run_services.step_record(run_id=run.pk, node="n", status="failed", output_summary={"a": {"b": "\x00"}})
    assert excinfo.value.field == "output_summary.a.b"
    with pytest.raises(InvalidInput):
        run_services.run_set_status(run_id=run.pk, status="failed", error="boom\x00")
    with pytest.raises(InvalidInput):
        story_services.story_update(story_id=story.pk, description="x\x00")
    assert Artifact.objects.count() == 0 and run.steps.count() == 0
