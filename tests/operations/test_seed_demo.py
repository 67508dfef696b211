import io
import wave

from django.contrib.auth.models import User
from django.core.management import call_command

from artifacts.models import Artifact
from audit.models import AuditEvent
from operations.demo_media import beam_webm
from runs.models import Run
from runs.pipeline.nodes import downstream
from stories.models import Story


def test_seed_demo_runs_the_pipeline_edits_one_plan_and_curates_once(db, capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "admin login: demo / " in out and "request id: " in out
    story = Story.objects.get()
    assert story.cover_artifact.lifecycle_state == "published"
    scenes = list(story.scenes.order_by("position"))
    assert len(scenes) == 3
    for scene in scenes:
        assert Artifact.objects.filter(scene=scene).values("type").distinct().count() == 11
    # The pipeline made it: every scene artifact but the edit has its fingerprint and step.
    made = Artifact.objects.filter(scene__isnull=False, created_by_step__isnull=True)
    assert list(made.values_list("type", flat=True)) == ["panel_plan"]
    assert AuditEvent.objects.filter(action="edit").count() == 1
    # The second run of the first scene remade exactly what follows the edited plan.
    second = {a.type for a in Artifact.objects.filter(scene=scenes[0], version=2)}
    assert second == {"panel_plan"} | downstream({"panel_plan"})
    assert Run.objects.filter(status="succeeded").count() == 4
    assert story.links.filter(role="scene_image", is_primary=True).count() == 3
    assert User.objects.get(username="demo").is_superuser
    request_ids = set(Artifact.objects.values_list("request_id", flat=True))
    assert len(request_ids) == 1 and request_ids.pop() in out


def test_seed_demo_publishes_a_cover_a_sound_track_and_a_video_as_the_story_primaries(db, client):
    call_command("seed_demo", stdout=io.StringIO())
    story = Story.objects.get()
    primaries = {link.role: link.artifact for link in story.links.filter(is_primary=True).exclude(role="scene_image")}
    assert {role: artifact.type for role, artifact in primaries.items()} == {
        "cover": "cover_image",
        "final_audio": "audio_track",
        "final_video": "video_render",
    }
    assert {artifact.lifecycle_state for artifact in primaries.values()} == {"published"}
    assert (story.cover_artifact, story.canonical_audio, story.canonical_video) == (
        primaries["cover"],
        primaries["final_audio"],
        primaries["final_video"],
    )
    # The video animates the three scene images: lineage to each.
    video = primaries["final_video"]
    sources = set(video.relations_out.filter(relation_type="derived_from").values_list("to_artifact__type", flat=True))
    assert sources == {"render_result"} and video.relations_out.count() == 3

    # Served as what they are, inline, so the admin's <audio> and <video> previews play them.
    client.force_login(User.objects.get(username="demo"))
    sound = primaries["final_audio"]
    for artifact, mime_type in ((sound, "audio/x-wav"), (video, "video/webm")):
        response = client.get(f"/v1/artifacts/{artifact.pk}/content")
        assert response.status_code == 200
        assert response["Content-Type"] == artifact.mime_type == mime_type
        assert response["Content-Disposition"].startswith("inline")
    with wave.open(io.BytesIO(b"".join(client.get(f"/v1/artifacts/{sound.pk}/content").streaming_content))) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (1, 8000)
        assert wav.getnframes() / wav.getframerate() == 3.0


def test_the_demo_video_is_a_webm_of_vp8_key_frames():
    """Read back the WebM seed_demo writes: the EBML header says webm, one VP8 video track of
    160x96, and every SimpleBlock is a key frame whose VP8 header has that size."""
    data = beam_webm()
    header, segment = list(ebml(data))
    assert header[0] == 0x1A45DFA3 and dict(ebml(header[1]))[0x4282] == b"webm"
    assert segment[0] == 0x18538067
    parts = dict(ebml(segment[1]))
    track = dict(ebml(dict(ebml(parts[0x1654AE6B]))[0xAE]))
    assert track[0x86] == b"V_VP8" and track[0x83] == b"\x01"
    size = dict(ebml(track[0xE0]))
    assert (int.from_bytes(size[0xB0], "big"), int.from_bytes(size[0xBA], "big")) == (160, 96)
    blocks = [body for element, body in ebml(parts[0x1F43B675]) if element == 0xA3]
    assert len(blocks) == 12
    for n, block in enumerate(blocks):
        track_number, timestamp, flags = block[0], int.from_bytes(block[1:3], "big"), block[3]
        frame = block[4:]
        assert (track_number, timestamp, flags) == (0x81, 250 * n, 0x80)  # track 1, every 250 ms, key frame
        # A VP8 key frame: bit 0 of the frame tag clear, the start code, then 14-bit width and height.
        assert frame[0] & 1 == 0 and frame[3:6] == b"\x9d\x01\x2a"
        assert (int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF) == (
            160,
            96,
        )


def ebml(data: bytes):
    """(id, body) of each EBML element in ``data``, in order."""
    position = 0
    while position < len(data):
        element, position = _vint(data, position, keep_marker=True)
        size, position = _vint(data, position, keep_marker=False)
        yield element, data[position : position + size]
        position += size


def _vint(data: bytes, position: int, *, keep_marker: bool) -> tuple[int, int]:
    length = 9 - data[position].bit_length()
    value = int.from_bytes(data[position : position + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, position + length
