"""POST /v1/scenes/{scene_id}/artifacts/batch (SPEC §7): all or nothing, up to 1,000 items,
versions in list order."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from artifacts.models import Artifact
from artifacts.payloads import ARTIFACT_TYPES
from stories import services as story_services
from tests.conftest import SCENE_INTENT

from .conftest import assert_error

SPEC = ARTIFACT_TYPES["render_spec"].example
PLAN = ARTIFACT_TYPES["panel_plan"].example


def url(scene):
    return f"/v1/scenes/{scene.pk}/artifacts/batch"


def test_a_batch_makes_consecutive_versions_in_list_order(writer, scene, intent):
    items = [
        {"type": "scene_intent", "payload": {**SCENE_INTENT, "n": 1}},
        {"type": "render_spec", "payload": SPEC},
        {"type": "scene_intent", "payload": {**SCENE_INTENT, "n": 2}},
        {"type": "scene_intent", "payload": {**SCENE_INTENT, "n": 3}, "parent_id": str(intent.pk)},
    ]
    response = writer.post(url(scene), {"artifacts": items}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert [(a["type"], a["version"]) for a in body] == [
        ("scene_intent", 2),
        ("render_spec", 1),
        ("scene_intent", 3),
        ("scene_intent", 4),
    ]
    assert body[0]["parent_id"] == str(intent.pk) and body[2]["parent_id"] == body[0]["artifact_id"]
    assert body[3]["parent_id"] == str(intent.pk)  # a branch from an older version
    assert body[1]["parent_id"] is None
    assert [a["payload"].get("n") for a in body if a["type"] == "scene_intent"] == [1, 2, 3]
    assert len({a["request_id"] for a in body}) == 1


def test_a_parent_made_earlier_in_the_same_batch(writer, scene):
    first = str(uuid.uuid4())
    response = writer.post(url(scene), {"artifacts": [{"type": "render_spec", "payload": SPEC}]}, format="json")
    made = response.json()[0]["artifact_id"]
    items = [
        {"type": "render_spec", "payload": {**SPEC, "x": 1}},
        {"type": "render_spec", "payload": SPEC, "parent_id": made},
    ]
    body = writer.post(url(scene), {"artifacts": items}, format="json").json()
    assert [a["version"] for a in body] == [2, 3] and body[1]["parent_id"] == made and first


@pytest.mark.parametrize(
    "items, status, code, field",
    [
        ([], 400, "invalid", "artifacts"),
        ([{"type": "scene_intent", "payload": SCENE_INTENT}] * 1001, 400, "invalid", "artifacts"),
        ([{"type": "render_spec", "payload": SPEC}, {"type": "bogus", "payload": {}}], 400, "unknown_type", None),
        (
            [
                {"type": "render_spec", "payload": SPEC},
                {"type": "scene_intent", "payload": {**SCENE_INTENT, "mood": 1}},
            ],
            400,
            "invalid_payload",
            "artifacts[1].payload.mood",
        ),
        ([{"type": "cover_image", "payload": {"alt": "x"}}], 400, "invalid_scope", "artifacts[0].type"),
        (
            [{"type": "render_spec", "payload": SPEC, "parent_id": "nope"}],
            400,
            "invalid_parent",
            "artifacts[0].parent_id",
        ),
        (
            [{"type": "render_spec", "payload": SPEC, "parent_id": str(uuid.uuid4())}],
            400,
            "not_found",  # an id that names nothing (SPEC §7)
            "artifacts[0].parent_id",
        ),
        (["not an object"], 400, "invalid", "artifacts[0]"),
    ],
    ids=[
        "empty",
        "1001 items",
        "unknown type",
        "bad payload",
        "media type",
        "bad parent",
        "unknown parent",
        "not an object",
    ],
)
def test_a_bad_item_refuses_the_whole_batch(writer, scene, items, status, code, field):
    response = writer.post(url(scene), {"artifacts": items}, format="json")
    assert_error(response, status, code, field)
    assert not Artifact.objects.exists()


def test_a_locked_scene_refuses_a_batch_with_a_planning_type(writer, scene):
    story_services.scene_lock_planning(scene_id=scene.pk)
    items = [{"type": "render_spec", "payload": SPEC}, {"type": "panel_plan", "payload": PLAN}]
    assert_error(writer.post(url(scene), {"artifacts": items}, format="json"), 409, "planning_locked")
    assert not Artifact.objects.exists()
    assert writer.post(url(scene), {"artifacts": items[:1]}, format="json").status_code == 201


def test_a_batch_needs_the_add_permission_and_a_known_scene(clients, scene):
    body = {"artifacts": [{"type": "render_spec", "payload": SPEC}]}
    assert clients["anonymous"].post(url(scene), body, format="json").status_code == 401
    assert clients["reader"].post(url(scene), body, format="json").status_code == 403
    assert_error(
        clients["writer"].post(f"/v1/scenes/{uuid.uuid4()}/artifacts/batch", body, format="json"), 404, "not_found"
    )
    assert clients["writer"].post(url(scene), {"artifacts": "x"}, format="json").status_code == 400


def test_a_thousand_items_are_one_insert(writer, scene, is_postgres):
    items = [{"type": "render_spec", "payload": {**SPEC, "n": n}} for n in range(1000)]
    with CaptureQueriesContext(connection) as queries:
        response = writer.post(url(scene), {"artifacts": items}, format="json")
    assert response.status_code == 201
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "artifacts_artifact"')]
    # One statement on PostgreSQL; SQLite caps a statement at 999 parameters, about 50 rows.
    assert len(inserts) == 1 if is_postgres else len(inserts) <= 21
    assert len(queries) <= len(inserts) + 15
    assert list(Artifact.objects.filter(scene=scene).order_by("version").values_list("version", flat=True)) == list(
        range(1, 1001)
    )
