"""Every admin list and page renders with data, at a query cost that does not grow with rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from artifacts.models import Artifact, ArtifactRelation
from audit.models import AuditEvent
from runs.models import AgentStep, Run, RunArtifactLink
from stories.models import Scene, Story, StoryArtifactLink

from .conftest import admin_view_url, change_url, changelist_url

MODELS = [Artifact, ArtifactRelation, AuditEvent, Story, Scene, StoryArtifactLink, Run, AgentStep, RunArtifactLink]

# Pages whose content grows as the world grows: the stream, lineage, links, audit trail,
# steps and scenes of these objects get longer with every add_rows().
PAGES = {
    "index": lambda world: reverse("admin:index"),
    "artifact (json)": lambda world: change_url(world.artifacts[1]),
    "artifact (image, growing stream)": lambda world: change_url(world.covers[0]),
    "artifact lineage": lambda world: admin_view_url(world.covers[0], "lineage"),
    "story (growing links, scenes, audit)": lambda world: change_url(world.story),
    "scene (growing versions, audit)": lambda world: change_url(world.scenes[0]),
    "run (growing steps and links)": lambda world: change_url(world.runs[0]),
    "relation": lambda world: change_url(ArtifactRelation.objects.order_by("created_at").first()),
    "audit event": lambda world: change_url(AuditEvent.objects.order_by("created_at").first()),
    "story link": lambda world: change_url(StoryArtifactLink.objects.order_by("created_at").first()),
    "agent step": lambda world: change_url(AgentStep.objects.order_by("started_at").first()),
    "run artifact link": lambda world: change_url(RunArtifactLink.objects.order_by("created_at").first()),
    "story add": lambda world: reverse("admin:stories_story_add"),
    "scene add": lambda world: reverse("admin:stories_scene_add"),
    **{f"{model._meta.model_name} list": (lambda world, model=model: changelist_url(model)) for model in MODELS},
}


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_with_data_and_its_query_count_does_not_grow(
    editor_client, world, page, django_assert_max_num_queries
):
    world.add_rows(1)  # two of everything, so no list is empty (an empty one can skip a query)
    url = PAGES[page](world)
    with CaptureQueriesContext(connection) as small:
        response = editor_client.get(url)
    assert response.status_code == 200, response.content[:2000]

    world.add_rows(3)
    with django_assert_max_num_queries(len(small)):
        response = editor_client.get(url)
    assert response.status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.model_name)
def test_changelist_lists_the_rows(editor_client, world, model):
    response = editor_client.get(changelist_url(model))
    assert response.status_code == 200
    assert response.context["cl"].result_count == model.objects.count() > 0
    big = (Artifact, ArtifactRelation, AuditEvent, Run, AgentStep, RunArtifactLink)
    assert response.context["cl"].show_full_result_count is False or model not in big


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    "model", [Artifact, ArtifactRelation, AuditEvent, Run, AgentStep, RunArtifactLink], ids=lambda m: m._meta.model_name
)
def test_big_lists_never_count_their_whole_table(editor_client, world, model, monkeypatch):
    """At millions of rows a COUNT(*) is a full scan: the list reads the planner's estimate
    instead (lowered threshold here, so a small test table counts as big)."""
    from kernel.admin_kit import EstimatedCountPaginator

    monkeypatch.setattr(EstimatedCountPaginator, "estimate_above", 0)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {model._meta.db_table}")
    table = model._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        response = editor_client.get(changelist_url(model))
    assert response.status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper() and f'"{table}"' in q["sql"]]
    assert [sql for sql in counts if "WHERE" not in sql.upper()] == [], counts


def test_artifact_list_has_no_full_table_count_and_offers_indexed_filters_only(editor_client, world):
    from artifacts.admin import ArtifactAdmin, EstimatedCountPaginator

    assert ArtifactAdmin.show_full_result_count is False
    assert ArtifactAdmin.paginator is EstimatedCountPaginator
    assert ArtifactAdmin.sortable_by == ("created_at",)
    response = editor_client.get(changelist_url(Artifact))
    filters = [spec.title for spec in response.context["cl"].filter_specs]
    assert filters == ["type", "lifecycle state", "kind", "created at"]
    # The type filter comes from the registry: no SELECT DISTINCT over the table.
    with CaptureQueriesContext(connection) as queries:
        editor_client.get(changelist_url(Artifact))
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]


@pytest.mark.parametrize(
    "term, expected",
    [
        (lambda world: str(world.artifacts[1].pk), lambda world: {world.artifacts[1].pk}),
        (
            lambda world: str(world.scenes[0].pk),
            lambda world: set(world.scenes[0].artifacts.values_list("pk", flat=True)),
        ),
        (
            lambda world: "world",
            lambda world: set(Artifact.objects.filter(request_id="world").values_list("pk", flat=True)),
        ),
        (
            lambda world: "panel_plan",
            lambda world: set(Artifact.objects.filter(type="panel_plan").values_list("pk", flat=True)),
        ),
        (lambda world: "no such thing", lambda world: set()),
    ],
    ids=["artifact id", "scene id", "request id", "type", "junk"],
)
def test_artifact_search_matches_ids_request_ids_and_types_exactly(editor_client, world, term, expected):
    response = editor_client.get(changelist_url(Artifact), {"q": term(world)})
    assert response.status_code == 200
    assert {a.pk for a in response.context["cl"].result_list} == expected(world)


def test_story_and_scene_search_by_title(editor_client, world):
    response = editor_client.get(changelist_url(Story), {"q": "lighth"})
    assert [s.pk for s in response.context["cl"].result_list] == [world.story.pk]
    response = editor_client.get(changelist_url(Scene), {"q": "Scene 1"})
    assert [s.pk for s in response.context["cl"].result_list] == [world.scenes[0].pk]


def test_list_filter_links_narrow_to_a_story_or_scene(editor_client, world):
    scene = world.scenes[0]
    response = editor_client.get(changelist_url(Artifact), {"scene": str(scene.pk)})
    assert {a.pk for a in response.context["cl"].result_list} == set(scene.artifacts.values_list("pk", flat=True))
    response = editor_client.get(changelist_url(Artifact), {"lifecycle_state": "published", "type": "cover_image"})
    assert {a.lifecycle_state for a in response.context["cl"].result_list} == {"published"}
