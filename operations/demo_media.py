"""The demo story's sound and video, made here, offline, with no binary checked in.

``sea_wav``: a few seconds of surf, written with the standard library's ``wave``.

``beam_webm``: a lighthouse beam sweeping over the sea, a few frames a second. Pillow draws
each frame and encodes it as lossy WebP, whose image data is one VP8 key frame; the frames
go, unchanged, into a WebM (Matroska) file written below: the EBML header, the segment's
info, one VP8 video track and one cluster of SimpleBlocks. Browsers play it; there are no
cues, so it cannot be seeked before it has loaded, which a clip this short never needs.
"""

from __future__ import annotations

import io
import math
import struct
import wave

from PIL import Image, ImageDraw

SAMPLE_RATE = 8000


def sea_wav(seconds: float = 3.0) -> bytes:
    """16-bit mono PCM: a low swell that rises and falls like a wave on rocks."""
    frames = bytearray()
    noise = 12345
    for n in range(int(seconds * SAMPLE_RATE)):
        t = n / SAMPLE_RATE
        noise = (1103515245 * noise + 12345) & 0x7FFFFFFF  # the same bytes every run
        hiss = noise / 0x3FFFFFFF - 1.0
        swell = 0.5 - 0.5 * math.cos(2 * math.pi * t / seconds)
        sample = swell * (0.55 * hiss + 0.25 * math.sin(2 * math.pi * 110 * t))
        frames += struct.pack("<h", int(max(-1.0, min(1.0, sample)) * 20000))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(bytes(frames))
    return buffer.getvalue()


def beam_frame(angle: float, size: tuple[int, int] = (160, 96)) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size, (14, 24, 52))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height * 3 // 4, width, height), fill=(20, 50, 90))
    top = (width // 2, height // 3)
    draw.polygon(
        [(top[0] - 5, top[1]), (top[0] + 5, top[1]), (top[0] + 8, height * 3 // 4), (top[0] - 8, height * 3 // 4)],
        fill=(235, 235, 235),
    )
    reach = width
    left = (top[0] + reach * math.cos(angle - 0.12), top[1] + reach * math.sin(angle - 0.12))
    right = (top[0] + reach * math.cos(angle + 0.12), top[1] + reach * math.sin(angle + 0.12))
    draw.polygon([top, left, right], fill=(250, 210, 110))
    return image


def vp8_key_frame(image: Image.Image) -> bytes:
    """The VP8 bitstream of ``image``: the payload of a simple lossy WebP's ``VP8 `` chunk."""
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=60, method=4)
    data = buffer.getvalue()
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or data[12:16] != b"VP8 ":
        raise ValueError("Pillow did not write a simple lossy WebP")
    (length,) = struct.unpack("<I", data[16:20])
    return data[20 : 20 + length]


def beam_webm(frames: int = 12, fps: int = 4) -> bytes:
    """A WebM of ``frames`` VP8 key frames at ``fps`` frames a second: the beam sweeps."""
    images = [beam_frame(math.pi * (1.05 + 0.9 * n / max(1, frames - 1))) for n in range(frames)]
    width, height = images[0].size
    step_ms = 1000 // fps
    blocks = b"".join(
        _element(0xA3, b"\x81" + struct.pack(">hB", n * step_ms, 0x80) + vp8_key_frame(image))  # track 1, key frame
        for n, image in enumerate(images)
    )
    header = _element(
        0x1A45DFA3,
        _uint(0x4286, 1)  # EBMLVersion
        + _uint(0x42F7, 1)  # EBMLReadVersion
        + _uint(0x42F2, 4)  # EBMLMaxIDLength
        + _uint(0x42F3, 8)  # EBMLMaxSizeLength
        + _element(0x4282, b"webm")  # DocType
        + _uint(0x4287, 2)  # DocTypeVersion
        + _uint(0x4285, 2),  # DocTypeReadVersion
    )
    info = _element(
        0x1549A966,
        _uint(0x2AD7B1, 1_000_000)  # TimestampScale: timestamps in milliseconds
        + _element(0x4489, struct.pack(">d", float(frames * step_ms)))  # Duration
        + _element(0x4D80, b"artifact-store demo")  # MuxingApp
        + _element(0x5741, b"artifact-store demo"),  # WritingApp
    )
    track = _element(
        0xAE,
        _uint(0xD7, 1)  # TrackNumber
        + _uint(0x73C5, 1)  # TrackUID
        + _uint(0x83, 1)  # TrackType: video
        + _uint(0x9C, 0)  # FlagLacing
        + _element(0x86, b"V_VP8")  # CodecID
        + _element(0xE0, _uint(0xB0, width) + _uint(0xBA, height)),  # Video: PixelWidth, PixelHeight
    )
    cluster = _element(0x1F43B675, _uint(0xE7, 0) + blocks)  # Timestamp 0, then the frames
    return header + _element(0x18538067, info + _element(0x1654AE6B, track) + cluster)


def _element(element_id: int, data: bytes) -> bytes:
    """One EBML element: its id's bytes, its size as the shortest variable-length integer, the data."""
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + _size(len(data)) + data


def _size(value: int) -> bytes:
    for length in range(1, 9):
        if value < (1 << (7 * length)) - 1:  # all ones is reserved for "unknown size"
            return ((1 << (7 * length)) | value).to_bytes(length, "big")
    raise ValueError(f"{value} is too large for an EBML size")


def _uint(element_id: int, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))
