"""GET /v1/artifacts/{id}/provenance: the lineage walk as W3C PROV-JSON (SPEC §15)."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prov.model import PROV, ProvDocument

from artifacts import services as artifact_services
from artifacts.models import Artifact
from runs.pipeline import driver
from stories import services as story_services

TEXT = (
    "Mara climbs the lighthouse stairs as the storm rises. "
    '"Hold the lamp steady," Mara says to Tomas. '
    "Tomas grips the rail with cold hands. "
    "At dawn the sea is calm again."
)


@pytest.fixture
def piped_scene(story, make_user):
    scene = story_services.scene_create(story_id=story.pk, title="Storm", source_text=TEXT)
    driver.run_scene(scene.pk, actor=make_user("starter"))
    return scene


def latest(scene, type_name) -> Artifact:
    return Artifact.objects.filter(scene=scene, type=type_name).order_by("-version").first()


def read(response) -> ProvDocument:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return ProvDocument.deserialize(content=response.content.decode(), format="json")


def records(document, kind):
    return [r for r in document.get_records() if r.get_type() == kind]


def local(identifier) -> str:
    return identifier.localpart


def test_each_lineage_node_is_one_entity_with_its_columns(reader, piped_scene):
    qc = latest(piped_scene, "qc_report")
    lineage = reader.get(f"/v1/artifacts/{qc.pk}/lineage?depth=20").json()
    document = read(reader.get(f"/v1/artifacts/{qc.pk}/provenance?depth=20"))
    entities = {local(e.identifier): e for e in records(document, PROV["Entity"])}
    assert set(entities) == {n["artifact_id"] for n in lineage["nodes"]}
    assert str(document.get_records()[0].identifier.namespace.prefix) in {"artifact", "user", "generator", "step"}
    entity = entities[str(qc.pk)]
    values = {str(k.localpart): v for k, v in entity.attributes}
    assert values["type"] == "qc_report"
    assert values["version"] == 1
    assert values["lifecycle_state"] == "intermediate"
    assert "content_sha256" in values
    render = latest(piped_scene, "render_result")
    render_values = {str(k.localpart): v for k, v in entities[str(render.pk)].attributes}
    assert render_values["content_sha256"] == render.content_sha256 != ""


def test_steps_generators_users_and_relations_are_present(reader, piped_scene):
    qc = latest(piped_scene, "qc_report")
    document = read(reader.get(f"/v1/artifacts/{qc.pk}/provenance?depth=20"))
    reached = {local(e.identifier) for e in records(document, PROV["Entity"])}
    activities = {local(a.identifier): a for a in records(document, PROV["Activity"])}
    made = Artifact.objects.filter(pk__in=reached).exclude(created_by_step=None)
    assert {str(a.created_by_step_id) for a in made} == set(activities)
    step = activities[str(qc.created_by_step_id)]
    attributes = {str(k.localpart): v for k, v in step.attributes}
    assert attributes["node"] == "qc_report"
    assert str(qc.created_by_step.run_id) in str(attributes["run"])
    assert step.get_startTime() is not None and step.get_endTime() is not None

    generated = {(local(r.args[0]), local(r.args[1])) for r in records(document, PROV["Generation"])}
    assert (str(qc.pk), str(qc.created_by_step_id)) in generated
    used = {(local(r.args[0]), local(r.args[1])) for r in records(document, PROV["Usage"])}
    consumed = qc.created_by_step.artifact_links.filter(direction="consumed").values_list("artifact_id", flat=True)
    assert {(str(qc.created_by_step_id), str(a)) for a in consumed} <= used
    assert consumed.exists()
    derived = [r for r in records(document, PROV["Derivation"])]
    kinds = {
        (local(r.args[0]), local(r.args[1])): {str(k.localpart): v for k, v in r.attributes}["relation_type"]
        for r in derived
    }
    assert all(kind == "derived_from" for kind in kinds.values())
    assert {(str(qc.pk), str(a)) for a in consumed} <= set(kinds)

    agents = {a.identifier.namespace.prefix: a for a in records(document, PROV["Agent"])}
    assert {"generator", "user"} <= set(agents)
    associations = [r for r in records(document, PROV["Association"]) if local(r.args[0]) == str(qc.created_by_step_id)]
    assert {r.args[1].namespace.prefix for r in associations} == {"generator", "user"}


def test_a_parent_is_a_revision_and_an_editors_version_is_attributed(reader, scene, make_user):
    editor = make_user("author")
    first = artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=_intent())
    second = artifact_services.artifact_create(scene_id=scene.pk, type="scene_intent", payload=_intent(), actor=editor)
    document = read(reader.get(f"/v1/artifacts/{second.pk}/provenance"))
    (revision,) = records(document, PROV["Derivation"])
    assert (local(revision.args[0]), local(revision.args[1])) == (str(second.pk), str(first.pk))
    assert PROV["Revision"] in revision.get_asserted_types()
    (attribution,) = records(document, PROV["Attribution"])
    assert local(attribution.args[1]) == str(editor.pk)


def _intent():
    return {"mood": "tense", "pacing": "fast", "key_beats": ["door creaks"]}


def test_descendants_and_limit_follow_the_lineage_rules(reader, piped_scene):
    intent = latest(piped_scene, "scene_intent")
    response = reader.get(f"/v1/artifacts/{intent.pk}/provenance?direction=descendants&depth=20&limit=3")
    document = read(response)
    assert len(records(document, PROV["Entity"])) == 3
    assert response["X-Lineage-Truncated"] == "true"
    whole = reader.get(f"/v1/artifacts/{intent.pk}/provenance?direction=descendants&depth=20")
    assert whole["X-Lineage-Truncated"] == "false"
    lineage = reader.get(f"/v1/artifacts/{intent.pk}/lineage?direction=descendants&depth=20").json()
    assert len(records(read(whole), PROV["Entity"])) == len(lineage["nodes"])


@pytest.mark.parametrize(
    "query, field",
    [
        ("direction=sideways", "direction"),
        ("direction=", "direction"),
        ("depth=0", "depth"),
        ("depth=10001", "depth"),
        ("depth=x", "depth"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
    ],
)
def test_bad_parameters_are_400_naming_them(reader, piped_scene, query, field):
    qc = latest(piped_scene, "qc_report")
    response = reader.get(f"/v1/artifacts/{qc.pk}/provenance?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"
    assert response.json()["field"] == field


def test_unknown_or_malformed_ids_are_404(reader, db):
    for artifact_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = reader.get(f"/v1/artifacts/{artifact_id}/provenance")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_anonymous_is_401(anon, db):
    assert anon.get("/v1/artifacts/00000000-0000-0000-0000-000000000000/provenance").status_code == 401


def _count(client, artifact_id) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/v1/artifacts/{artifact_id}/provenance?direction=descendants&depth=50")
    assert response.status_code == 200
    return len(queries), len(json.loads(response.content)["entity"])


def test_queries_are_constant_in_the_size_of_the_graph(reader, story, make_user):
    small = story_services.scene_create(story_id=story.pk, title="One", source_text=TEXT)
    driver.run_scene(small.pk, actor=make_user("starter"))
    big = story_services.scene_create(story_id=story.pk, title="Two", source_text=TEXT + " The lamp burns.")
    driver.run_scene(big.pk, actor=make_user("other"))
    for text in ("Mara sleeps. Tomas watches.", "The storm ends. The sea sleeps."):
        story_services.scene_update(scene_id=big.pk, source_text=text)
        driver.run_scene(big.pk, force=True)
    few, few_entities = _count(reader, latest(small, "scene_intent").pk)
    first_big = Artifact.objects.get(scene=big, type="scene_intent", version=1)
    many, many_entities = _count(reader, first_big.pk)
    assert many_entities > 2 * few_entities
    assert many == few


def test_types_and_roles_are_qualified_names(reader, piped_scene):
    qc = latest(piped_scene, "qc_report")
    body = json.loads(reader.get(f"/v1/artifacts/{qc.pk}/provenance").content)
    entity = body["entity"][f"artifact:{qc.pk}"]
    assert entity["prov:type"] == {"$": "store:Artifact", "type": "xsd:QName"}
    assert body["prefix"]["store"] == "urn:artifact-store:"
    assert body["activity"][f"step:{qc.created_by_step_id}"]["store:node"] == "qc_report"
