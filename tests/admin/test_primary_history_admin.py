"""The story page's primary history panel and its "as of" picker (SPEC §13)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from stories import services as story_services
from stories.models import PrimaryInterval
from tests.stories.test_primary_history import TICK, published_image

from .conftest import change_url

pytestmark = pytest.mark.django_db


def test_the_story_page_shows_the_history_and_answers_as_of(editor_client, story):
    first, second = published_image(story, 1), published_image(story, 2)
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=first.pk)
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=second.pk)
    old, new = PrimaryInterval.objects.order_by("since")

    page = editor_client.get(change_url(story)).content.decode()
    assert "Primary history" in page and 'id="primary-as-of-form" method="get"' in page
    history = page[page.index("primary-history-table") :]
    assert history.index(f'data-artifact-id="{second.pk}"') < history.index(f'data-artifact-id="{first.pk}"')

    moment = (old.since + TICK).astimezone().replace(tzinfo=None).isoformat()
    answer = editor_client.get(change_url(story), {"as_of": moment}).content.decode()
    as_of_table = answer[answer.index("primaries-as-of") : answer.index("primary-history-table")]
    assert str(first.pk) in as_of_table and str(second.pk) not in as_of_table

    refused = editor_client.get(change_url(story), {"as_of": "soon"})
    assert refused.status_code == 200 and "is not a date and time" in refused.content.decode()


def test_the_panel_costs_the_same_whatever_the_history(editor_client, story):
    images = [published_image(story, n) for n in range(6)]
    story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=images[0].pk)
    editor_client.get(change_url(story))
    with CaptureQueriesContext(connection) as few:
        editor_client.get(change_url(story), {"as_of": "2026-01-01T00:00"})
    for image in images[1:]:
        story_services.story_set_primary(story_id=story.pk, role="cover", artifact_id=image.pk)
    with CaptureQueriesContext(connection) as many:
        editor_client.get(change_url(story), {"as_of": "2026-01-01T00:00"})
    assert len(many) == len(few)
