"""The editors' workbench in a real Chromium (SPEC §13): the story page's primary history
and its "as of" picker, and an artifact's comment thread. The server, the browser and the
logged-in page are test_browser's fixtures (a server of this module's own)."""

import datetime

import pytest

from tests.admin import test_browser as base
from tests.admin.test_browser import artifact_url, hex_id, query, shot

# test_browser's module-scoped fixtures, for a server and a logged-in page of this module's own.
server, browser, page = base.server, base.browser, base.page

pytestmark = pytest.mark.browser


def publish(page, artifact_id: str) -> None:
    page.goto(artifact_url(artifact_id))
    for state in ("candidate", "published"):
        page.click(f"button[value={state}]")
        page.wait_for_selector("ul.messagelist li.success")


def make_primary(page, story: str, role: str, artifact_id: str) -> None:
    page.goto(f"/admin/stories/story/{story}/change/")
    page.click(f"tr[data-role={role}] button[data-artifact-id='{artifact_id}']")
    page.wait_for_selector("ul.messagelist li.success")


def utc(text: str) -> datetime.datetime:
    """A time as Django stores it on SQLite (naive, UTC)."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def test_story_page_shows_the_primary_history_and_answers_as_of(server, page):
    ids = server["ids"]
    story, cover, audio = ids["story"], ids["cover"], ids["audio"]
    publish(page, cover)
    make_primary(page, story, "cover", cover)
    publish(page, audio)
    make_primary(page, story, "final_audio", audio)

    page.goto(f"/admin/stories/story/{story}/change/")
    history = page.locator("table.primary-history-table tbody tr")
    assert history.count() == 2
    assert history.nth(0).get_attribute("data-role") == "final_audio"  # newest first
    assert "in force" in history.nth(1).inner_text()
    page.locator("fieldset.primary-history").scroll_into_view_if_needed()
    shot(page, "ws-01-story-primary-history")

    # The picker is a GET form: what it sends is ?as_of=, which the page answers.
    page.fill("#primary-as-of", "2099-01-01T00:00:30")
    page.click("fieldset.primary-history button[type=submit]")
    page.wait_for_url(lambda url: "as_of=2099-01-01T00%3A00%3A30" in url)
    assert page.locator("table.primaries-as-of tbody tr[data-role]").count() == 2

    (cover_since,), (audio_since,) = (
        query(server, "SELECT since FROM stories_primaryinterval ORDER BY since")[0],
        query(server, "SELECT since FROM stories_primaryinterval ORDER BY since")[1],
    )
    between = utc(cover_since) + (utc(audio_since) - utc(cover_since)) / 2
    page.goto(f"/admin/stories/story/{story}/change/?as_of={between.isoformat().replace('+', '%2B')}")
    rows = page.locator("table.primaries-as-of tbody tr[data-role]")
    assert rows.count() == 1 and rows.first.get_attribute("data-artifact-id") == cover
    page.locator("fieldset.primary-history").scroll_into_view_if_needed()
    shot(page, "ws-02-story-primaries-as-of")

    page.goto(f"/admin/stories/story/{story}/change/?as_of=soon")
    assert "is not a date and time" in page.locator("fieldset.primary-history .errornote").inner_text()


def test_artifact_page_thread_add_and_resolve_a_comment(server, page):
    intent = server["ids"]["intent"]
    page.goto(artifact_url(intent))
    assert "No comments yet." in page.locator("#comments").inner_text()
    page.fill("#comment-body", "The storm should start in panel 2, not panel 3.")
    page.click("#comments button[form=comment-add-form]")
    page.wait_for_selector("ul.messagelist li.success")
    assert "Comment added" in page.locator("ul.messagelist").inner_text()
    page.fill("#comment-body", "Agreed, and the lamp should flicker.")
    page.click("#comments button[form=comment-add-form]")
    page.wait_for_selector("ul.messagelist li.success")

    thread = page.locator("#comments tr.comment")
    assert thread.count() == 2
    assert "The storm should start in panel 2" in thread.nth(0).inner_text()  # oldest first
    assert server["ids"]["username"] in thread.nth(0).inner_text()
    thread.nth(0).locator("button.resolve-comment").click()
    page.wait_for_selector("ul.messagelist li.success")
    resolved = page.locator("#comments tr.comment.resolved")
    assert resolved.count() == 1 and f"by {server['ids']['username']}" in resolved.inner_text()
    page.locator("#comments").scroll_into_view_if_needed()
    shot(page, "ws-03-artifact-comment-thread")

    rows = query(
        server,
        "SELECT body, resolved_at IS NOT NULL FROM comments_comment WHERE artifact_id = ? ORDER BY created_at",
        hex_id(intent),
    )
    assert rows == [
        ("The storm should start in panel 2, not panel 3.", 1),
        ("Agreed, and the lamp should flicker.", 0),
    ]
