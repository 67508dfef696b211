"""Storing content (SPEC §12): bytes sniffed before anything is written, stored only after
every other check, removed again when the create rolls back, shared files kept."""

import contextlib
import json
import signal
import threading
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from artifacts import services as artifact_services
from artifacts.content import is_svg, prepare_content, remove_if_unreferenced, storage_name, store_content
from artifacts.models import Artifact
from kernel.errors import InvalidContent, NotFound, PlanningLocked
from kernel.transactions import composing
from stories import services as story_services
from tests.api.conftest import assert_error, client_for
from tests.conftest import MP3_BYTES, PNG_BYTES, SVG_BYTES, WAV_BYTES, WEBM_BYTES


def files(media_root) -> list[str]:
    return (
        sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())
        if media_root.exists()
        else []
    )


@pytest.mark.parametrize(
    "kind, data, declared, stored",
    [
        ("image", PNG_BYTES, "image/png", "image/png"),
        ("image", PNG_BYTES, None, "image/png"),
        ("image", PNG_BYTES, "image/x-png", "image/png"),
        ("image", SVG_BYTES, "image/svg+xml", "image/svg+xml"),
        ("audio", WAV_BYTES, "audio/wav", "audio/x-wav"),
        ("audio", MP3_BYTES, "audio/mp3", "audio/mpeg"),
        ("audio", WEBM_BYTES, "audio/webm", "audio/webm"),  # a container: the declared kind says which
        ("video", WEBM_BYTES, "video/webm", "video/webm"),
        ("video", WEBM_BYTES, None, "video/webm"),
    ],
)
def test_the_stored_type_is_what_the_bytes_are(kind, data, declared, stored):
    assert prepare_content(data, mime_type=declared, kind=kind).mime_type == stored


@pytest.mark.parametrize(
    "kind, data, declared",
    [
        ("image", b"<html><script>1</script></html>", "image/png"),
        ("image", b"not an image at all", None),
        ("image", PNG_BYTES, "image/gif"),
        ("image", MP3_BYTES, "audio/mpeg"),  # right bytes, wrong kind
        ("audio", PNG_BYTES, "audio/mpeg"),
        ("video", WAV_BYTES, None),
        ("image", PNG_BYTES, "image/png, text/html"),
        ("image", b"", "image/png"),
    ],
)
def test_bytes_that_are_not_what_they_claim_are_refused(kind, data, declared):
    with pytest.raises(InvalidContent) as refused:
        prepare_content(data, mime_type=declared, kind=kind)
    assert refused.value.field == "content"


# -- the SVG sniff is linear (SPEC §12) --------------------------------------------------

COMMENT = "<!---->"
A_MEGABYTE_OF_COMMENTS = (1 << 20) // len(COMMENT)


class Stuck(Exception):
    pass


@contextlib.contextmanager
def finishes_within(seconds: float):
    """A liveness guard, not a timing: it only fails a check that has not finished after
    ``seconds``, far more than any linear scan of these inputs needs (a megabyte takes
    milliseconds) and far less than a backtracking one (2**40 steps for 40 comments). An
    alarm rather than a thread: the regular expression engine holds the GIL but checks for
    signals, so the alarm's exception ends even a runaway match."""

    def alarm(signum, frame):
        raise Stuck(f"still running after {seconds} s: backtracking?")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "text, svg",
    [
        ("<svg xmlns='http://www.w3.org/2000/svg'/>", True),
        ("\ufeff \n<SVG>", True),
        (
            '<?xml version="1.0"?>\n<!-- made by hand -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN">\n<svg\n>',
            True,
        ),
        ("<!-- a > b --><!doctype svg><!----><svg\t>", True),
        ("<!-- --> --><svg>", False),  # a comment ends at its first -->, as XML says
        ("<svg/>", False),
        ("<svgx>", False),
        ("<?xml version='1.0'><svg>", False),
        ("<!-- never closed <svg>", False),
        ("<!DOCTYPE svg <svg>", False),
        ("<html><svg></svg></html>", False),
        ("", False),
    ],
)
def test_an_svg_is_its_root_element_after_declaration_comments_and_doctypes(text, svg):
    assert is_svg(text) is svg


@pytest.mark.parametrize("comments", [40, 2000, A_MEGABYTE_OF_COMMENTS], ids=["40", "2000", "1MB"])
@pytest.mark.parametrize("root, svg", [("<svg>", True), ("<x>", False), ("", False)])
def test_the_svg_sniff_is_linear_in_the_number_of_comments(comments, root, svg):
    """The whole text, past the 8 KiB an upload's sniff reads: the scan itself is linear."""
    text = COMMENT * comments + root
    with finishes_within(10):
        assert is_svg(text) is svg


@pytest.mark.parametrize("comments", [40, 2000, A_MEGABYTE_OF_COMMENTS], ids=["40", "2000", "1MB"])
@pytest.mark.parametrize("declared", ["image/svg+xml", None])
def test_an_upload_of_comments_is_refused_at_once(comments, declared):
    """The issue's repro: 40 comments (281 bytes) pinned a worker for a minute."""
    with finishes_within(10), pytest.raises(InvalidContent):
        prepare_content((COMMENT * comments + "x").encode(), mime_type=declared, kind="image")


def test_an_svg_after_40_comments_is_still_an_svg():
    data = (COMMENT * 40 + "<svg xmlns='http://www.w3.org/2000/svg'></svg>").encode()
    assert prepare_content(data, mime_type=None, kind="image").mime_type == "image/svg+xml"


@pytest.mark.parametrize("comments", [40, A_MEGABYTE_OF_COMMENTS], ids=["40", "1MB"])
def test_an_upload_of_comments_over_http_is_a_json_400(make_user, story, media_root, comments):
    client = client_for(make_user("uploader", "artifacts.add_artifact"))
    with finishes_within(10):
        response = client.post(
            f"/v1/stories/{story.pk}/artifacts",
            {
                "type": "cover_image",
                "payload": json.dumps({"alt": "x"}),
                "content": SimpleUploadedFile("c.svg", (COMMENT * comments + "x").encode(), "application/octet-stream"),
            },
            format="multipart",
        )
    assert_error(response, 400, "invalid_content", "content")
    assert files(media_root) == [] and not Artifact.objects.exists()


def test_a_refused_create_stores_no_file(service, story, scene, media_root):
    with pytest.raises(NotFound):
        artifact_services.artifact_create(
            story_id=story.pk,
            type="cover_image",
            payload={"alt": "x"},
            parent_id=uuid.uuid4(),
            content=PNG_BYTES,
            mime_type="image/png",
        )
    story_services.scene_lock_planning(scene_id=scene.pk)
    with pytest.raises(PlanningLocked):
        service.create_artifact(scene.pk, "panel_plan", {"panels": [{"grammar_id": "a", "weight": 1, "must_show": []}]})
    assert files(media_root) == [] and not Artifact.objects.exists()


def refuse_artifact_inserts(is_postgres):
    """A trigger that makes the database refuse the row after the bytes are stored."""
    with connection.cursor() as cursor:
        if is_postgres:
            cursor.execute(
                "CREATE FUNCTION refuse_artifacts() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_artifacts BEFORE INSERT ON artifacts_artifact "
                "FOR EACH ROW EXECUTE FUNCTION refuse_artifacts()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_artifacts BEFORE INSERT ON artifacts_artifact "
                "BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
            )


def allow_artifact_inserts(is_postgres):
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER refuse_artifacts" + (" ON artifacts_artifact" if is_postgres else ""))
        if is_postgres:
            cursor.execute("DROP FUNCTION refuse_artifacts()")


@pytest.mark.django_db(transaction=True)
def test_a_create_that_rolls_back_removes_the_file_it_added(story, media_root, is_postgres):
    refuse_artifact_inserts(is_postgres)
    try:
        with pytest.raises(Exception, match="refused for the test"):
            artifact_services.artifact_create(
                story_id=story.pk, type="cover_image", payload={"alt": "x"}, content=PNG_BYTES, mime_type="image/png"
            )
        assert files(media_root) == []
    finally:
        allow_artifact_inserts(is_postgres)


@pytest.mark.django_db(transaction=True)
def test_a_create_that_rolls_back_keeps_a_file_another_artifact_uses(story, media_root, is_postgres):
    kept = artifact_services.artifact_create(
        story_id=story.pk, type="cover_image", payload={"alt": "first"}, content=PNG_BYTES, mime_type="image/png"
    )
    refuse_artifact_inserts(is_postgres)
    try:
        with pytest.raises(Exception, match="refused for the test"):
            artifact_services.artifact_create(
                story_id=story.pk,
                type="cover_image",
                payload={"alt": "same bytes"},
                content=PNG_BYTES,
                mime_type="image/png",
            )
    finally:
        allow_artifact_inserts(is_postgres)
    assert files(media_root) == [kept.content.name]


def test_the_sweep_removes_only_unreferenced_files(service, story, media_root):
    used = artifact_services.artifact_create(
        story_id=story.pk, type="cover_image", payload={"alt": "x"}, content=PNG_BYTES, mime_type="image/png"
    )
    with composing():
        orphan = store_content(prepare_content(SVG_BYTES, mime_type="image/svg+xml", kind="image"))
    assert remove_if_unreferenced(used.content_sha256) is False
    assert remove_if_unreferenced(orphan.sha256) is True
    assert files(media_root) == [used.content.name]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_sweep_waits_for_a_create_that_is_about_to_reference_its_file(story, media_root):
    """The per-digest lock: a create has written the file and not yet committed its row; a
    sweep of that digest must wait for the commit and then keep the file."""
    prepared = prepare_content(PNG_BYTES, mime_type="image/png", kind="image")
    stored, swept, errors = threading.Event(), threading.Event(), []
    go_on = threading.Event()

    def create():
        try:
            with composing():
                store_content(prepared)
                stored.set()
                go_on.wait(10)
                artifact_services.artifact_create(
                    story_id=story.pk,
                    type="cover_image",
                    payload={"alt": "x"},
                    content=PNG_BYTES,
                    mime_type="image/png",
                )
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    def sweep():
        try:
            remove_if_unreferenced(prepared.sha256)
            swept.set()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    creator = threading.Thread(target=create)
    creator.start()
    assert stored.wait(10)
    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    assert not swept.wait(1.0)  # held off by the digest lock
    go_on.set()
    creator.join(20)
    sweeper.join(20)
    assert errors == [] and swept.is_set()
    assert files(media_root) == [storage_name(prepared.sha256)]
