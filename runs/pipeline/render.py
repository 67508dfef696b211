"""Drawing a page: the layout's panels as boxes, each with its caption and dialogue (Pillow).

The bytes are a pure function of the arguments: Pillow's own embedded font (no system
fonts, which differ between machines), its basic layout engine (no shaping library), no
antialiasing settings taken from the environment, and a PNG without a timestamp chunk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import PIL
from PIL import Image, ImageDraw, ImageFont

INK = (20, 20, 20)
PAPER = (255, 255, 255)
CAPTION_FILL = (250, 240, 200)
SPEECH_FILL = (255, 255, 255)
PANEL_FILL = (236, 236, 236)
BORDER_PX = 2
PAD_PX = 6
ELLIPSIS = "…"


@dataclass(frozen=True)
class PanelText:
    caption: list[str]  # paragraphs: the beat, then what the panel shows
    dialogue: list[str] = field(default_factory=list)  # "Mara: The light is failing."


@dataclass(frozen=True)
class PageInfo:
    boxes: list[list[int]]  # per rect: [x0, y0, x1, y1] in pixels
    lines_drawn: int
    truncated_panels: list[int]  # panel indexes whose text did not fit
    font: str


def _font(size: int):
    # Pillow's embedded Aileron through FreeType when built with it; its bitmap font otherwise.
    font = ImageFont.load_default(size)
    return font, ("Pillow default (Aileron)" if isinstance(font, ImageFont.FreeTypeFont) else "Pillow bitmap default")


def _drawable(text: str, font) -> str:
    # The bitmap fallback only knows Latin-1: anything else becomes "?" rather than an error.
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


def wrap(text: str, font, width: int, limit: int = 1000) -> list[str]:
    """Greedy word wrap to a pixel width; a word wider than a line is cut by characters.

    Stops once past `limit` lines: a box shows only so many, and a long text stays cheap.
    """
    lines: list[str] = []
    for word in text.split():
        if len(lines) > limit:
            break
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
            continue
        while len(word) > 1 and font.getlength(word) > width:
            cut = 1
            while cut < len(word) and font.getlength(word[: cut + 1]) <= width:
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def _fit(lines: list[str], font, width: int, room: int) -> tuple[list[str], bool]:
    """The lines that fit in `room` lines; the last one kept ends with an ellipsis when some are cut."""
    if len(lines) <= room:
        return lines, False
    kept = lines[:room]
    if kept:
        last = kept[-1]
        while last and font.getlength(last + ELLIPSIS) > width:
            last = last[:-1]
        kept[-1] = last.rstrip() + ELLIPSIS
    return kept, True


def draw_page(width: int, height: int, rects: list[dict], texts: dict[int, PanelText], font_size: int):
    """PNG bytes of a page with one box per rect ({panel_index, x, y, w, h} in [0, 1]).

    Each box holds its caption in a tinted band, then its dialogue lines in a speech box;
    text that does not fit is cut with an ellipsis, never drawn outside its box.
    """
    image = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(image)
    font, font_name = _font(font_size)
    line_h = font_size + 3
    boxes, drawn, truncated = [], 0, []
    for rect in rects:
        x0, y0 = round(rect["x"] * width), round(rect["y"] * height)
        x1 = max(x0, round((rect["x"] + rect["w"]) * width) - 1)
        y1 = max(y0, round((rect["y"] + rect["h"]) * height) - 1)
        boxes.append([x0, y0, x1, y1])
        draw.rectangle((x0, y0, x1, y1), fill=PANEL_FILL, outline=INK, width=BORDER_PX)
        text = texts.get(rect["panel_index"])
        if text is None:
            continue
        inner_w = x1 - x0 - 2 * (BORDER_PX + PAD_PX)
        inner_h = y1 - y0 - 2 * (BORDER_PX + PAD_PX)
        if inner_w < font_size or inner_h < line_h:
            truncated.append(rect["panel_index"])
            continue
        room = inner_h // line_h
        caption = [line for part in text.caption for line in wrap(_drawable(part, font), font, inner_w, room)]
        speech = [line for d in text.dialogue for line in wrap(_drawable(d, font), font, inner_w - 2 * PAD_PX, room)]
        # The caption gets at most half the room when there is speech to show.
        caption_room = min(len(caption), room if not speech else max(1, room // 2))
        caption, cut_caption = _fit(caption, font, inner_w, caption_room)
        speech_room = room - len(caption) - (1 if speech else 0)
        speech, cut_speech = _fit(speech, font, inner_w - 2 * PAD_PX, max(0, speech_room))
        if cut_caption or cut_speech:
            truncated.append(rect["panel_index"])
        tx, ty = x0 + BORDER_PX + PAD_PX, y0 + BORDER_PX + PAD_PX
        if caption:
            draw.rectangle((tx - 2, ty - 2, x1 - BORDER_PX - PAD_PX + 2, ty + len(caption) * line_h), fill=CAPTION_FILL)
            for line in caption:
                draw.text((tx, ty), line, fill=INK, font=font)
                ty += line_h
                drawn += 1
        if speech:
            ty += line_h // 2
            draw.rounded_rectangle(
                (tx, ty - 2, x1 - BORDER_PX - PAD_PX, ty + len(speech) * line_h + 2),
                radius=6,
                fill=SPEECH_FILL,
                outline=INK,
            )
            for line in speech:
                draw.text((tx + PAD_PX, ty), line, fill=INK, font=font)
                ty += line_h
                drawn += 1
    buffer = io.BytesIO()
    # No pnginfo, so no tIME or text chunks; a fixed compression level, so fixed bytes.
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue(), PageInfo(boxes, drawn, truncated, font_name)


def pillow_version() -> str:
    return PIL.__version__
