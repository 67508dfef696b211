"""GET /v1/stories/{id}/primaries?as_of= and /primaries/history (SPEC §13)."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from stories import services as story_services
from stories.models import PrimaryInterval
from tests.api.conftest import assert_error
from tests.stories.test_primary_history import TICK, published_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def changes(story, scene, make_user):
    """Cover: first, then second; a scene image in between."""
    curator = make_user("curator")
    first, second, image = published_image(story, 1), published_image(story, 2), published_image(scene, 3)
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=first.pk, actor=curator)
    story_services.story_set_primary(story_id=story.pk, role="scene_image", artifact_id=image.pk, actor=curator)
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=second.pk)
    return {
        "first": first,
        "second": second,
        "image": image,
        "intervals": list(PrimaryInterval.objects.order_by("since")),
    }


def results(response):
    assert response.status_code == 200, response.content[:500]
    return response.json()["results"]


def test_as_of_defaults_to_now(reader, story, scene, changes):
    rows = results(reader.get(f"/v1/stories/{story.pk}/primaries"))
    assert {(r["role"], r["scene_id"], r["artifact_id"], r["until"]) for r in rows} == {
        ("cover", None, str(changes["second"].pk), None),
        ("scene_image", str(scene.pk), str(changes["image"].pk), None),
    }
    cover = next(r for r in rows if r["role"] == "cover")
    assert set(cover) == {"role", "scene_id", "artifact_id", "since", "until", "set_by"}
    assert cover["set_by"] is None
    scene_row = next(r for r in rows if r["role"] == "scene_image")
    assert scene_row["set_by"] == "curator"


def test_as_of_a_past_instant(reader, story, changes):
    first_cover, scene_image, _ = changes["intervals"]
    moment = scene_image.since.isoformat()  # after the first cover, before the second
    rows = results(reader.get(f"/v1/stories/{story.pk}/primaries", {"as_of": moment}))
    by_role = {r["role"]: r for r in rows}
    assert by_role["cover"]["artifact_id"] == str(changes["first"].pk)
    assert by_role["cover"]["until"] is not None
    before = (first_cover.since - TICK).isoformat()
    assert results(reader.get(f"/v1/stories/{story.pk}/primaries", {"as_of": before})) == []


def test_history_newest_first_paginated_and_filtered(reader, story, scene, changes):
    url = f"/v1/stories/{story.pk}/primaries/history"
    rows = results(reader.get(url))
    newest_first = [str(i.artifact_id) for i in reversed(changes["intervals"])]
    assert [r["artifact_id"] for r in rows] == newest_first

    page = reader.get(url, {"page_size": 1}).json()
    assert [r["artifact_id"] for r in page["results"]] == newest_first[:1]
    following = reader.get(page["next"]).json()
    assert [r["artifact_id"] for r in following["results"]] == newest_first[1:2]

    covers = results(reader.get(url, {"role": "cover"}))
    assert [r["artifact_id"] for r in covers] == [str(changes["second"].pk), str(changes["first"].pk)]
    scenes = results(reader.get(url, {"scene_id": str(scene.pk)}))
    assert [r["artifact_id"] for r in scenes] == [str(changes["image"].pk)]
    assert results(reader.get(url + "/", {"role": "final_audio"})) == []
    assert results(reader.get(url, {"role": "cover", "scene_id": str(scene.pk)})) == []  # only scene_image has one


@pytest.mark.parametrize(
    "path, query, field",
    [
        ("primaries", {"as_of": "yesterday"}, "as_of"),
        ("primaries", {"as_of": "2026-13-01T00:00:00Z"}, "as_of"),
        ("primaries", {"as_of": "0001-01-01T00:00:00+01:00"}, "as_of"),
        ("primaries", {"role": "cover"}, "role"),
        ("primaries/history", {"role": "poster"}, "role"),
        ("primaries/history", {"scene_id": "not-a-uuid"}, "scene_id"),
        ("primaries/history", {"page_size": "0"}, "page_size"),
        ("primaries/history", {"as_of": "2026-01-01T00:00:00Z"}, "as_of"),
    ],
)
def test_strict_parameters(reader, story, path, query, field):
    assert_error(reader.get(f"/v1/stories/{story.pk}/{path}", query), 400, "invalid_parameter", field)


def test_unknown_story_and_anonymous(reader, anon, story):
    missing = "00000000-0000-0000-0000-000000000009"
    assert_error(reader.get(f"/v1/stories/{missing}/primaries"), 404, "not_found")
    assert_error(reader.get(f"/v1/stories/{missing}/primaries/history"), 404, "not_found")
    assert anon.get(f"/v1/stories/{story.pk}/primaries").status_code == 401


def test_query_counts_stay_constant(reader, story, scene, make_user):
    url = f"/v1/stories/{story.pk}/primaries/history"
    image = published_image(scene, 1)
    story_services.story_set_primary(
        story_id=story.pk, role="scene_image", artifact_id=image.pk, actor=make_user("one")
    )
    reader.get(url)  # the token's first use
    with CaptureQueriesContext(connection) as few:
        results(reader.get(url))
    for n in range(2, 8):
        other = story_services.scene_create(story_id=story.pk, title=f"s{n}")
        story_services.story_set_primary(
            story_id=story.pk,
            role="scene_image",
            artifact_id=published_image(other, n).pk,
            actor=make_user(f"user{n}"),
        )
    with CaptureQueriesContext(connection) as many:
        assert len(results(reader.get(url))) == 7
    assert len(many) == len(few)
    with CaptureQueriesContext(connection) as as_of:
        assert (
            len(
                results(
                    reader.get(
                        f"/v1/stories/{story.pk}/primaries", {"as_of": datetime.datetime.now(datetime.UTC).isoformat()}
                    )
                )
            )
            == 7
        )
    assert len(as_of) == len(few)
