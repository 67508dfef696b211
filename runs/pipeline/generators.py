"""The shipped generators: one per pipeline type, deterministic and offline (SPEC §10).

Each is ``generate_<type>(ctx)`` with ``version = "1"``. ``ctx.scene`` is the Scene (only
the first three read it: its ``source_text``, ``title`` and ``position``), ``ctx.inputs``
maps a type to the input Artifact (``.payload``), ``ctx.params`` holds the node's params,
merged here over ``DEFAULT_PARAMS[type]``, and ``ctx.content_url`` is where
render_result's image will be served. A generator returns the payload, or for
render_result ``(payload, png_bytes, "image/png")``; it reads nothing but ctx and writes
nothing, so the same ctx gives the same output byte for byte.

Inputs may have been edited by hand (an edit is a new version the next node reads), so
each generator reads any payload its schema allows and says in extra fields how it got
its output. Indexes into other payloads (a panel's "beats", "dialogue_lines") are only
hints: each is checked before use and there is a fallback by text.

``GENERATORS`` maps each type to its generator (the nodes, in ``nodes.py``, name them by
dotted path, as the ``PIPELINE_GENERATORS`` setting does); ``DEFAULT_PARAMS`` holds each
node's default params.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from itertools import combinations

from . import render, text


class InputError(ValueError):
    """An input or a param no attempt can read (a number no float holds, a param out of its
    range): the node fails at once, without the retries a generator's other errors get."""


# -- the registry ---------------------------------------------------------------------

MAX_PANELS = 9

DEFAULT_PARAMS = {
    "scene_intent": {"max_beat_chars": 200},
    "visual_plan": {"max_characters": 12},
    "dialogue_suggestions": {},
    "panel_plan": {
        "max_panels": MAX_PANELS,
        "base_weight": 1.0,
        "words_per_weight": 12,  # a beat of 12 words weighs one more unit
        "dialogue_weight": 0.5,  # per line of dialogue in the beat
        "establishing_bonus": 0.5,
    },
    "panel_plan_normalized": {"max_panels": MAX_PANELS, "sum_tolerance": 1e-9},
    "layout_template": {"gutter": 0.02},
    "panel_semantics": {},
    "render_spec": {"style": "ink", "reference_images": [], "max_prompt_chars": 2000},
    "render_result": {"width": 1024, "height": 768, "font_size": 14},
    "qc_report": {
        "sum_tolerance": 1e-6,
        "bounds_tolerance": 1e-6,
        "overlap_tolerance": 1e-6,  # intersection area, in page units, that still counts as touching
        "area_tolerance": 0.1,  # relative deviation of a panel's area share from its weight
        "min_coverage": 0.6,
    },
    "blind_test_report": {"beat_match_threshold": 0.5},
}

VERSION = "1"


def _generator(func: Callable) -> Callable:
    func.version = VERSION
    return func


# -- reading ctx ----------------------------------------------------------------------


def _params(ctx, type_name: str) -> dict:
    return {**DEFAULT_PARAMS[type_name], **(getattr(ctx, "params", None) or {})}


def _input(ctx, type_name: str) -> dict:
    artifact = (getattr(ctx, "inputs", None) or {}).get(type_name)
    if artifact is None:
        raise InputError(f"this node reads a {type_name} input and none was given")
    return artifact.payload if isinstance(artifact.payload, dict) else {}


def _number(params: dict, key: str, low: float, high: float, *, integer: bool = False):
    """A param within [low, high]; a wrong one is an error naming it, never silently replaced."""
    value = params[key]
    # The range check comes first: NaN and the infinities fail it, and an integer too large
    # for a float (PIPELINE_PARAMS is JSON, which has no limit) is compared exactly.
    ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "an integer" if integer else "a number"
        raise InputError(f"param {key} must be {kind} in [{low}, {high}], got {value!r}")
    return int(value) if integer else float(value)


def _list(payload: dict, key: str) -> list:
    value = payload.get(key)
    return value if isinstance(value, list) else []


def _dicts(payload: dict, key: str) -> list[dict]:
    return [item for item in _list(payload, key) if isinstance(item, dict)]


def _strings(value) -> list[str]:
    return [item for item in value if isinstance(item, str) and item.strip()] if isinstance(value, list) else []


def _real(value, field: str) -> float | None:
    """A number read from an input payload, as a float; None when it is no number (each
    caller decides what that means). JSON has integers of any size and the store keeps
    them (a weight of 10**400 meets the schema), but no float holds one beyond about
    1.8e308: that fails the node naming the field, where arithmetic on it would raise a
    bare OverflowError, and every later run of the scene with it."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        raise InputError(f"{field} is too large: a number here must fit a float (at most about 1.8e308)") from None


def _weight(value, field: str) -> float | None:
    """A usable weight: a finite number > 0 (booleans are not numbers here)."""
    number = _real(value, field)
    return number if number is not None and math.isfinite(number) and number > 0 else None


def _total(values) -> float:
    """Their exact sum, or infinity when it overflows (weights of 1e308 are numbers too)."""
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf


def _json_number(value: float) -> float | None:
    # JSON has no infinity or NaN: the store refuses them, so a payload says null instead.
    return value if math.isfinite(value) else None


def _filled(weights: list[float | None]) -> list[float]:
    """Missing weights (None) replaced by the mean of the others, or 1 when there are none."""
    good = [w for w in weights if w is not None]
    largest = max(good, default=1.0)
    mean = largest * math.fsum(w / largest for w in good) / len(good) if good else 1.0
    return [mean if w is None else w for w in weights]


def _shares(weights: list[float]) -> list[float]:
    """Positive weights as shares of their total; scaled by the largest first, so huge ones cannot overflow."""
    if not weights:
        return []
    largest = max(weights)
    scaled = [w / largest for w in weights]
    total = math.fsum(scaled)
    return [w / total for w in scaled]


def _scene_text(ctx) -> str:
    return getattr(ctx.scene, "source_text", "") or ""


def _shorten(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    cut = value[: limit - 1].rsplit(" ", 1)[0] or value[: limit - 1]
    return cut.rstrip() + "…"


def _character_names(visual_plan: dict) -> list[tuple[str, list[str]]]:
    return [
        (c["name"], _strings(c.get("aliases")))
        for c in _dicts(visual_plan, "characters")
        if isinstance(c.get("name"), str) and c["name"].strip()
    ]


# -- scene_intent ---------------------------------------------------------------------

# Word stems per mood: a word counts when it starts with a stem.
MOODS = {
    "tense": "fear afraid storm dark shadow scream trembl danger threat blood crash shak panic dread cold fail "
    "hurr urgent sharp break broke alarm",
    "joyful": "laugh smil bright sun warm danc happ joy delight cheer glow golden celebrat sing song",
    "melancholy": "sad tear alone grey gray rain lost cry wept weep grief mourn empty fading sorrow lonel",
    "mysterious": "strange fog mist secret hidden unknown silent whisper myster shadowy eerie odd puzzl riddle",
    "calm": "calm gentle soft peace still quiet slow rest breath serene tranquil mild",
}
MOOD_STEMS = {mood: tuple(stems.split()) for mood, stems in MOODS.items()}
ACTION_STEMS = tuple(
    "run ran rush leap jump crash broke break struck strike slam grab fled flee chase fell burst dash hurl snatch "
    "spun race climb charg shove kick".split()
)
SLOW_STEMS = tuple("slow wait linger still paus rest drift sat watch".split())
ATMOSPHERE = ("night", "dusk", "dawn", "morning", "evening", "storm", "rain", "fog", "mist", "wind", "snow", "sun")


def _stem_hits(words: list[str], stems: tuple[str, ...]) -> list[str]:
    return [w for w in words if w.startswith(stems)]


@_generator
def generate_scene_intent(ctx) -> dict:
    """Beats are the text's sentences; mood is the lexicon mood with most words; pacing from
    sentence length, action words and exclamations against words of stillness."""
    params = _params(ctx, "scene_intent")
    max_chars = _number(params, "max_beat_chars", 20, 10_000, integer=True)
    source = _scene_text(ctx)
    sents = text.sentences(source)
    beats = [_shorten(s.text, max_chars) for s in sents]
    beat_source = "sentences"
    if not beats:
        title = (getattr(ctx.scene, "title", "") or "").strip()
        beats = [_shorten(title, max_chars) if title else f"Scene {getattr(ctx.scene, 'position', '') or ''}".strip()]
        beat_source = "title" if title else "scene position"
    words = text.words(source)
    scores = {mood: _stem_hits(words, stems) for mood, stems in MOOD_STEMS.items()}
    best = max(scores, key=lambda m: len(scores[m]))  # ties: the first mood in MOODS
    mood = best if scores[best] else "neutral"
    count = max(len(sents), 1)
    average = len(words) / count
    action = _stem_hits(words, ACTION_STEMS)
    slow = _stem_hits(words, SLOW_STEMS)
    exclamations = source.count("!")
    fast_rate, slow_rate = (len(action) + exclamations) / count, len(slow) / count
    if not words:
        pacing = "measured"
    elif (fast_rate >= 0.5 or average <= 8) and fast_rate >= slow_rate:
        pacing = "fast"
    elif slow_rate >= 0.5 or average >= 22:
        pacing = "slow"
    else:
        pacing = "measured"
    settings = text.setting_phrases(source)
    return {
        "mood": mood,
        "pacing": pacing,
        "key_beats": beats,
        "beat_source": beat_source,
        "mood_scores": {m: len(hits) for m, hits in scores.items()},
        "mood_evidence": sorted(set(scores[best])) if scores[best] else [],
        "pacing_evidence": {
            "sentences": len(sents),
            "words": len(words),
            "average_words_per_sentence": round(average, 2),
            "action_words": sorted(set(action)),
            "exclamations": exclamations,
            "slow_words": sorted(set(slow)),
        },
        "setting": settings[0] if settings else "",
        "settings": settings[:10],
        "atmosphere": [w for w in ATMOSPHERE if any(word.startswith(w) for word in words)],
    }


# -- visual_plan and dialogue_suggestions ---------------------------------------------


@_generator
def generate_visual_plan(ctx) -> dict:
    """Characters are the capitalised names (text.Reading._names) then unnamed speakers ('the
    keeper'); details are the colours, clothing, features and props in their sentences."""
    params = _params(ctx, "visual_plan")
    limit = _number(params, "max_characters", 1, 1000, integer=True)
    reading = text.read(_scene_text(ctx))
    everyone = reading.cast + reading.roles([reading.attribute(q) for q in reading.quotes])
    details = reading.details(everyone)
    characters = []
    for c in everyone:
        first = reading.sentence_at(c.mentions[0][0]) if c.mentions else None
        characters.append(
            {
                "name": c.name,
                "visual_details": {**details[c.name], "first_sentence": first.index if first else None},
                "kind": c.kind,
                "aliases": c.aliases,
            }
        )
    return {
        "characters": characters[:limit],
        "omitted_characters": [c["name"] for c in characters[limit:]],
        "method": "capitalised names (corroborated when a sentence opens with them) and unnamed speakers",
    }


@_generator
def generate_dialogue_suggestions(ctx) -> dict:
    """One line per quoted passage; speaker from the words beside it (Reading.attribute);
    emotion from its speech verb, else an adverb, else its closing punctuation."""
    _params(ctx, "dialogue_suggestions")
    reading = text.read(_scene_text(ctx))
    lines = []
    for quote in reading.quotes:
        if not re.search(r"[^\W_]", quote.text):
            continue  # "..." on its own says nothing
        who = reading.attribute(quote)
        emotion, emotion_source = _emotion(quote.text, who)
        sentence = reading.sentence_at(quote.start)
        lines.append(
            {
                "speaker": who.speaker,
                "text": quote.text.rstrip(",").rstrip(),
                "emotion": emotion,
                "sentence_index": sentence.index if sentence else None,
                "speaker_source": who.source,
                "emotion_source": emotion_source,
            }
        )
    return {"lines": lines}


def _emotion(spoken: str, who: text.Attribution) -> tuple[str, str]:
    if who.verb in text.VERB_EMOTIONS:
        return text.VERB_EMOTIONS[who.verb], f"verb '{who.verb}'"
    if who.adverb in text.ADVERB_EMOTIONS:
        return text.ADVERB_EMOTIONS[who.adverb], f"adverb '{who.adverb}'"
    end = spoken.rstrip(",; ")
    for marks, emotion in (("?!", "alarmed"), ("!?", "alarmed"), ("!", "emphatic"), ("?", "questioning")):
        if end.endswith(marks):
            return emotion, f"punctuation '{marks}'"
    for marks in ("...", "…"):
        if end.endswith(marks):
            return "hesitant", f"punctuation '{marks}'"
    if end.endswith(("—", "–", "-")):
        return "interrupted", "a dash cuts the line"
    return "neutral", "no verb, adverb or punctuation of feeling"


# -- panel_plan -----------------------------------------------------------------------


def _chunks(count: int, groups: int) -> list[list[int]]:
    """0..count-1 in `groups` contiguous runs as even as possible, the longer runs first."""
    size, extra = divmod(count, groups)
    result, start = [], 0
    for g in range(groups):
        end = start + size + (1 if g < extra else 0)
        result.append(list(range(start, end)))
        start = end
    return result


def _folded(value: str) -> str:
    return " ".join(value.casefold().split())


def _line_beats(lines: list[dict], beats: list[str]) -> list[int | None]:
    """The beat each line belongs to: the beat that contains its text (its own sentence
    first when several do), else its sentence index, else none."""
    folded = [_folded(b) for b in beats]
    placed = []
    for line in lines:
        said = _folded(line["text"]) if isinstance(line.get("text"), str) else ""
        index = line.get("sentence_index")
        index = index if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(beats) else None
        if index is not None and said in folded[index]:
            placed.append(index)  # the usual case: its own sentence holds it
            continue
        matches = [i for i, b in enumerate(folded) if said and said in b]
        placed.append(matches[0] if matches else index)
    return placed


def _grammar(i: int, count: int, speakers: list[str], shown: list[str], caption: str) -> tuple[str, str]:
    if i == 0:
        return "establishing", "the first panel sets the scene"
    if len(speakers) >= 2:
        return "two_shot", "two speakers exchange lines"
    if speakers:
        return "close_up", f"{speakers[0]} speaks"
    if _stem_hits(text.words(caption), ACTION_STEMS):
        return "action", "the beat has an action word"
    if i == count - 1 and count >= 3:
        return "closing", "the last panel closes the scene"
    if len(shown) >= 2:
        return "group_shot", "several characters, no dialogue"
    if shown:
        return "medium_shot", f"{shown[0]} acts"
    return "detail", "no character: a detail of the place"


@_generator
def generate_panel_plan(ctx) -> dict:
    """One panel per key beat (consecutive beats share a panel past max_panels); weight from
    the beat's length and its dialogue; must_show the characters it names and its speakers;
    grammar from its role (establishing first, close_up for one speaker...)."""
    params = _params(ctx, "panel_plan")
    max_panels = _number(params, "max_panels", 1, 100, integer=True)
    base = _number(params, "base_weight", 0.001, 1000)
    per_word = _number(params, "words_per_weight", 1, 10_000)
    per_line = _number(params, "dialogue_weight", 0, 1000)
    bonus = _number(params, "establishing_bonus", 0, 1000)
    intent, visual, dialogue = (
        _input(ctx, "scene_intent"),
        _input(ctx, "visual_plan"),
        _input(ctx, "dialogue_suggestions"),
    )
    beats = _strings(intent.get("key_beats")) or ["(no beats)"]
    characters = _character_names(visual)
    known = {name for name, _aliases in characters}
    lines = _dicts(dialogue, "lines")
    line_beats = _line_beats(lines, beats)
    groups = _chunks(len(beats), min(len(beats), max_panels))
    panels = []
    for i, beat_ids in enumerate(groups):
        caption = " ".join(beats[b] for b in beat_ids)
        line_ids = [n for n, b in enumerate(line_beats) if b in beat_ids]
        speakers = []
        for n in line_ids:
            speaker = lines[n].get("speaker")
            if isinstance(speaker, str) and speaker.strip() and speaker != "narrator" and speaker not in speakers:
                speakers.append(speaker)
        shown = text.mentions_in(caption, characters)
        shown += [s for s in speakers if s not in shown]
        grammar, why = _grammar(i, len(groups), speakers, shown, caption)
        words = len(text.words(caption))
        weight = base + words / per_word + per_line * len(line_ids) + (bonus if i == 0 else 0)
        panels.append(
            {
                "grammar_id": grammar,
                "weight": round(weight, 4),
                "must_show": shown,
                "beats": beat_ids,
                "caption": caption,
                "dialogue_lines": line_ids,
                "grammar_reason": why,
                "weight_from": {"words": words, "dialogue_lines": len(line_ids), "establishing": i == 0},
                "unknown_speakers": [s for s in speakers if s not in known],
            }
        )
    return {
        "panels": panels,
        "beats": len(beats),
        "unplaced_dialogue": [n for n, b in enumerate(line_beats) if b is None],
    }


# -- panel_plan_normalized ------------------------------------------------------------


def _check(name: str, passed: bool, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "detail": detail}


@_generator
def generate_panel_plan_normalized(ctx) -> dict:
    """The plan's weights scaled to sum 1, its checks run on the plan as received.

    A weight that is not a finite number > 0 (possible only before the store's schema
    check, or in a hand-built ctx) is replaced by the mean of the good ones, so the output
    stays a valid plan, and its check fails. Too many panels fail a check but are kept:
    dropping a panel would drop a beat without anyone deciding it.
    """
    params = _params(ctx, "panel_plan_normalized")
    max_panels = _number(params, "max_panels", 1, 1000, integer=True)
    tolerance = _number(params, "sum_tolerance", 0, 0.1)
    received = _list(_input(ctx, "panel_plan"), "panels")
    panels = [p if isinstance(p, dict) else {} for p in received]
    checks = [_check("non_empty", bool(panels), f"{len(panels)} panel(s)")]
    raw = [_weight(p.get("weight"), f"panel_plan.panels[{i}].weight") for i, p in enumerate(panels)]
    bad = [i for i, w in enumerate(raw) if w is None]
    checks.append(
        _check(
            "weights_positive_finite",
            not bad,
            f"panels {bad} have no finite weight > 0" if bad else "every weight is a finite number > 0",
        )
    )
    checks.append(_check("max_panels", len(panels) <= max_panels, f"{len(panels)} of at most {max_panels}"))
    bad_shows = [i for i, p in enumerate(panels) if _strings(p.get("must_show")) != p.get("must_show")]
    checks.append(
        _check(
            "must_show_strings",
            not bad_shows,
            f"panels {bad_shows} have a must_show that is not a list of non-empty strings"
            if bad_shows
            else "every must_show is a list of non-empty strings",
        )
    )
    bad_grammar = [i for i, p in enumerate(panels) if not (isinstance(p.get("grammar_id"), str) and p["grammar_id"])]
    checks.append(
        _check(
            "grammar_ids",
            not bad_grammar,
            f"panels {bad_grammar} have no grammar_id" if bad_grammar else "every panel has a grammar_id",
        )
    )
    if not panels:
        panels, raw = [{"grammar_id": "establishing", "must_show": [], "placeholder": True}], [1.0]
    good = [w for w in raw if w is not None]
    normalized = _shares(_filled(raw))
    underflow = [i for i, w in enumerate(normalized) if w <= 0]
    normalized = [w if w > 0 else math.ulp(0.0) for w in normalized]
    checks.append(
        _check(
            "weights_representable",
            not underflow,
            f"panels {underflow} weigh too little against the rest to be represented" if underflow else "yes",
        )
    )
    weight_sum = math.fsum(normalized)
    checks.append(_check("weights_sum_to_one", abs(weight_sum - 1) <= tolerance, f"sum {weight_sum!r}"))
    out = []
    for p, w, original in zip(panels, normalized, raw, strict=True):
        grammar = p.get("grammar_id") if isinstance(p.get("grammar_id"), str) and p["grammar_id"] else "panel"
        out.append(
            {
                **p,
                "grammar_id": grammar,
                "weight": w,
                "must_show": _strings(p.get("must_show")),
                "source_weight": original,
            }
        )
    return {
        "panels": out,
        "qc": {"passed": all(c["passed"] for c in checks), "checks": checks},
        "source_weight_sum": _json_number(_total(good)),
        "max_panels": max_panels,
    }


# -- layout_template ------------------------------------------------------------------


def _row_counts(count: int) -> list[int]:
    """Panels per row: about sqrt(count) rows, the first rows the shortest (a wide opening)."""
    rows = max(1, round(math.sqrt(count)))
    size, extra = divmod(count, rows)
    return [size + (1 if r >= rows - extra else 0) for r in range(rows)]


@_generator
def generate_layout_template(ctx) -> dict:
    """Rows of panels in reading order. Within a row widths are proportional to the weights;
    row heights are proportional to each row's weight divided by the row's usable width, so
    every panel's area is the same constant times its weight, gutters and all."""
    params = _params(ctx, "layout_template")
    gutter = _number(params, "gutter", 0, 0.1)
    plan = _dicts(_input(ctx, "panel_plan_normalized"), "panels")
    weights = _shares(
        _filled([_weight(p.get("weight"), f"panel_plan_normalized.panels[{i}].weight") for i, p in enumerate(plan)])
    )
    if not weights:
        return {"template_id": "empty", "panels": [], "rows": [], "gutter": gutter}
    counts = _row_counts(len(weights))
    # Room is left for the page: at most half the width or height goes to gutters.
    gutter = min(gutter, 0.5 / (max(max(counts), len(counts)) + 1))
    rows, start = [], 0
    for n in counts:
        rows.append(list(range(start, start + n)))
        start += n
    usable_w = [1 - gutter * (len(r) + 1) for r in rows]
    row_weight = [math.fsum(weights[i] for i in r) for r in rows]
    raw_h = [rw / uw for rw, uw in zip(row_weight, usable_w, strict=True)]
    usable_h = 1 - gutter * (len(rows) + 1)
    heights = [h / math.fsum(raw_h) * usable_h for h in raw_h]
    rects, y = [], gutter
    for r, members in enumerate(rows):
        x = gutter
        for i in members:
            w = weights[i] / row_weight[r] * usable_w[r]
            rects.append(
                {"panel_index": i, "x": round(x, 6), "y": round(y, 6), "w": round(w, 6), "h": round(heights[r], 6)}
            )
            x += w + gutter
        y += heights[r] + gutter
    areas = [r["w"] * r["h"] for r in rects]
    return {
        "template_id": "rows-" + "-".join(map(str, counts)),
        "panels": rects,
        "rows": counts,
        "gutter": gutter,
        "area_shares": [round(a / math.fsum(areas), 6) for a in areas],
        "method": "rows in reading order; widths and row heights from the weights, areas proportional to them",
    }


# -- panel_semantics ------------------------------------------------------------------


def _environment(caption: str, intent: dict) -> str:
    places = text.setting_phrases(caption)
    place = places[0] if places else intent.get("setting") if isinstance(intent.get("setting"), str) else ""
    if not place:
        for beat in _strings(intent.get("key_beats")):
            found = text.setting_phrases(beat)
            if found:
                place = found[0]
                break
    words = text.words(caption)
    weather = [w for w in ATMOSPHERE if any(word.startswith(w) for word in words)]
    weather = weather or [w for w in _strings(intent.get("atmosphere"))]
    place = place or "unspecified setting"
    return f"{place} ({', '.join(weather)})" if weather else place


def _visual_notes(visual: dict) -> dict[str, str]:
    notes = {}
    for c in _dicts(visual, "characters"):
        if isinstance(c.get("name"), str):
            details = c.get("visual_details") if isinstance(c.get("visual_details"), dict) else {}
            parts = [str(v) for key in ("clothing", "features", "props") for v in _list(details, key)]
            notes[c["name"]] = ", ".join(parts[:6])
    return notes


@_generator
def generate_panel_semantics(ctx) -> dict:
    """Per plan panel: its must_show and the speakers of its lines as characters, the lines
    the plan gave it (else the lines its caption contains), and the place its caption names
    (else the scene's setting) with the weather, as environment."""
    intent = _input(ctx, "scene_intent")
    visual = _input(ctx, "visual_plan")
    lines = _dicts(_input(ctx, "dialogue_suggestions"), "lines")
    plan = _dicts(_input(ctx, "panel_plan_normalized"), "panels")
    layout = {
        r["panel_index"]: r
        for r in _dicts(_input(ctx, "layout_template"), "panels")
        if isinstance(r.get("panel_index"), int)
    }
    _params(ctx, "panel_semantics")
    notes = _visual_notes(visual)
    use_hints = any("dialogue_lines" in p for p in plan)
    panels = []
    for i, p in enumerate(plan):
        caption = p.get("caption") if isinstance(p.get("caption"), str) else ""
        if use_hints:
            ids = [n for n in _list(p, "dialogue_lines") if isinstance(n, int) and 0 <= n < len(lines)]
        else:
            ids = [
                n for n, line in enumerate(lines) if _folded(str(line.get("text", ""))) in _folded(caption) and caption
            ]
        spoken = [{k: str(lines[n].get(k, "")) for k in ("speaker", "text", "emotion")} for n in ids]
        characters = _strings(p.get("must_show"))
        characters += [d["speaker"] for d in spoken if d["speaker"] not in ("", "narrator", *characters)]
        rect = layout.get(i)
        panels.append(
            {
                "panel_index": i,
                "characters": list(dict.fromkeys(characters)),
                "environment": _environment(caption, intent),
                "dialogue": spoken,
                "caption": caption,
                "grammar_id": p.get("grammar_id", ""),
                "rect": {k: rect[k] for k in ("x", "y", "w", "h") if k in rect} if rect else None,
                "visual_notes": {c: notes[c] for c in characters if notes.get(c)},
            }
        )
    return {"panels": panels, "mood": intent.get("mood", ""), "pacing": intent.get("pacing", "")}


# -- render_spec ----------------------------------------------------------------------


@_generator
def generate_render_spec(ctx) -> dict:
    """A prompt from the mood and pacing, each drawn character's look and each panel's
    shot, cast and place; the style and reference images from the params."""
    params = _params(ctx, "render_spec")
    style = params["style"]
    if not isinstance(style, str) or not style.strip():
        raise InputError(f"param style must be a non-empty string, got {style!r}")
    references = params["reference_images"]
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise InputError("param reference_images must be a list of strings")
    limit = _number(params, "max_prompt_chars", 100, 100_000, integer=True)
    intent = _input(ctx, "scene_intent")
    notes = _visual_notes(_input(ctx, "visual_plan"))
    panels = _dicts(_input(ctx, "panel_semantics"), "panels")
    drawn = list(dict.fromkeys(c for p in panels for c in _strings(p.get("characters"))))
    characters = [{"name": c, "description": notes.get(c, "")} for c in drawn]
    cast = "; ".join(f"{c['name']} ({c['description']})" if c["description"] else c["name"] for c in characters)
    shots = []
    for n, p in enumerate(panels, start=1):
        who = ", ".join(_strings(p.get("characters"))) or "no one"
        grammar = str(p.get("grammar_id") or "panel").replace("_", " ")
        talk = len(_list(p, "dialogue"))
        shots.append(
            f"Panel {n}, {grammar}: {who}, {p.get('environment', '')}" + (f", {talk} speech balloon(s)" if talk else "")
        )
    mood, pacing = str(intent.get("mood", "")), str(intent.get("pacing", ""))
    prompt = f"A comic page of {len(panels)} panel(s) in {style} style; {mood} mood, {pacing} pacing."
    if cast:
        prompt += f" Characters: {cast}."
    if shots:
        prompt += " " + ". ".join(shots) + "."
    return {
        "prompt": _shorten(prompt, limit),
        "style": style,
        "characters": characters,
        "reference_images": list(references),
        "panel_prompts": shots,
        "mood": mood,
        "pacing": pacing,
    }


# -- render_result --------------------------------------------------------------------


@_generator
def generate_render_result(ctx):
    """A PNG of the layout: one box per rect at its geometry, with the panel's caption and
    its dialogue wrapped inside (render.draw_page)."""
    params = _params(ctx, "render_result")
    width = _number(params, "width", 64, 4096, integer=True)
    height = _number(params, "height", 64, 4096, integer=True)
    font_size = _number(params, "font_size", 6, 96, integer=True)
    spec = _input(ctx, "render_spec")
    rects = [
        r
        for n, r in enumerate(_dicts(_input(ctx, "layout_template"), "panels"))
        if isinstance(r.get("panel_index"), int)
        and all(_unit(r.get(k), f"layout_template.panels[{n}].{k}") for k in ("x", "y", "w", "h"))
    ]
    texts = {}
    for p in _dicts(_input(ctx, "panel_semantics"), "panels"):
        if not isinstance(p.get("panel_index"), int):
            continue
        shows = [
            str(p.get("grammar_id") or "").replace("_", " "),
            ", ".join(_strings(p.get("characters"))),
            str(p.get("environment") or ""),
        ]
        caption = [f"{p['panel_index'] + 1}. {p.get('caption') or ''}".strip(), " · ".join(x for x in shows if x)]
        dialogue = [f"{d.get('speaker', '')}: {d.get('text', '')}" for d in _list(p, "dialogue") if isinstance(d, dict)]
        texts[p["panel_index"]] = render.PanelText(caption, dialogue)
    png, info = render.draw_page(width, height, rects, texts, font_size)
    prompt = str(spec.get("prompt", ""))
    payload = {
        "image_url": str(getattr(ctx, "content_url", "") or ""),
        "metadata": {
            "width": width,
            "height": height,
            "format": "PNG",
            "mode": "RGB",
            "panels": len(rects),
            "panel_boxes": [
                {"panel_index": r["panel_index"], "box": b} for r, b in zip(rects, info.boxes, strict=True)
            ],
            "text_lines": info.lines_drawn,
            "truncated_panels": info.truncated_panels,
            "bytes": len(png),
            "sha256": hashlib.sha256(png).hexdigest(),
        },
        "generation_params": {
            "width": width,
            "height": height,
            "font_size": font_size,
            "style": str(spec.get("style", "")),
            "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
            "renderer": "runs.pipeline.render (layout boxes and captions)",
            "font": info.font,
            "pillow": render.pillow_version(),
        },
    }
    return payload, png, "image/png"


def _unit(value, field: str) -> bool:
    number = _real(value, field)
    return number is not None and 0 <= number <= 1  # NaN fails the comparison


# -- qc_report ------------------------------------------------------------------------


@_generator
def generate_qc_report(ctx) -> dict:
    """Checks the plan (weights valid and summing to 1, its own QC), the layout against it
    (one rect per panel, inside the page, no overlaps, areas proportional to the weights,
    enough of the page used) and the render (an image size, one box per rect)."""
    params = _params(ctx, "qc_report")
    sum_tol = _number(params, "sum_tolerance", 0, 1)
    bounds_tol = _number(params, "bounds_tolerance", 0, 0.1)
    overlap_tol = _number(params, "overlap_tolerance", 0, 0.1)
    area_tol = _number(params, "area_tolerance", 0, 10)
    min_coverage = _number(params, "min_coverage", 0, 1)
    plan_payload = _input(ctx, "panel_plan_normalized")
    plan = _list(plan_payload, "panels")
    rects = _list(_input(ctx, "layout_template"), "panels")
    metadata = _input(ctx, "render_result").get("metadata")
    issues, checks = [], []

    def check(name: str, ok: bool, code: str, message: str) -> None:
        checks.append({"name": name, "passed": bool(ok)})
        if not ok:
            issues.append({"code": code, "message": message, "severity": "error"})

    weights = [
        _weight(p.get("weight"), f"panel_plan_normalized.panels[{i}].weight") if isinstance(p, dict) else None
        for i, p in enumerate(plan)
    ]
    bad = [i for i, w in enumerate(weights) if w is None]
    weight_sum = _total(w for w in weights if w is not None)
    check("plan_not_empty", bool(plan), "plan_empty", "the plan has no panels")
    check("plan_weights_valid", not bad, "weights_invalid", f"panels {bad} have no finite weight > 0")
    check(
        "plan_weights_sum",
        bool(plan) and not bad and abs(weight_sum - 1) <= sum_tol,
        "weights_not_normalized",
        f"the weights sum to {weight_sum!r}, not 1 (tolerance {sum_tol})",
    )
    plan_qc = plan_payload.get("qc") if isinstance(plan_payload.get("qc"), dict) else {}
    check("plan_qc_passed", plan_qc.get("passed") is True, "plan_qc_failed", "the normalized plan failed its own QC")

    check(
        "panel_counts_agree",
        len(rects) == len(plan),
        "panel_count_mismatch",
        f"the layout has {len(rects)} rects for {len(plan)} plan panels",
    )
    indexes = [r.get("panel_index") if isinstance(r, dict) else None for r in rects]
    indexes_ok = sorted(i for i in indexes if isinstance(i, int)) == list(range(len(rects)))
    check(
        "panel_indexes",
        indexes_ok,
        "panel_index_mismatch",
        f"the rects' panel_index values {indexes} are not 0..{len(rects) - 1}, once each",
    )
    boxes, sizes = {}, {}
    for n, r in enumerate(rects):
        if isinstance(r, dict):
            x, y, w, h = (_real(r.get(k), f"layout_template.panels[{n}].{k}") for k in ("x", "y", "w", "h"))
            if None not in (x, y, w, h):
                boxes[n], sizes[n] = (x, y, x + w, y + h), (w, h)
    outside = [
        n
        for n in range(len(rects))
        if n not in boxes
        or min(sizes[n]) <= 0
        or min(boxes[n][0], boxes[n][1]) < -bounds_tol
        or max(boxes[n][2], boxes[n][3]) > 1 + bounds_tol
    ]
    check(
        "rects_inside_page",
        not outside,
        "rect_out_of_bounds",
        f"rects {outside} are empty or reach outside [0, 1]",
    )
    overlaps = []
    for (a, ba), (b, bb) in combinations(boxes.items(), 2):
        area = max(0, min(ba[2], bb[2]) - max(ba[0], bb[0])) * max(0, min(ba[3], bb[3]) - max(ba[1], bb[1]))
        if area > overlap_tol:
            overlaps.append((a, b, area))
    check(
        "rects_disjoint",
        not overlaps,
        "rects_overlap",
        "rects overlap: " + ", ".join(f"{a} and {b} by {area:.4f}" for a, b, area in overlaps),
    )
    areas = {n: max(0, (bx[2] - bx[0])) * max(0, (bx[3] - bx[1])) for n, bx in boxes.items()}
    coverage = math.fsum(areas.values())
    deviation = None
    if plan and not bad and indexes_ok and len(rects) == len(plan) and coverage > 0:
        by_index = {rects[n]["panel_index"]: a for n, a in areas.items()}
        deviations = [abs(by_index.get(i, 0) / coverage - share) / share for i, share in enumerate(_shares(weights))]
        deviation = max(deviations)
        check(
            "areas_follow_weights",
            deviation <= area_tol,
            "area_not_proportional",
            f"a panel's share of the area is {deviation:.0%} off its weight (tolerance {area_tol:.0%})",
        )
    check(
        "page_coverage",
        coverage >= min_coverage,
        "low_coverage",
        f"the panels cover {coverage:.0%} of the page (at least {min_coverage:.0%} expected)",
    )
    metadata = metadata if isinstance(metadata, dict) else {}
    size = (metadata.get("width"), metadata.get("height"))
    check(
        "image_size",
        all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size),
        "image_size_missing",
        "the render's metadata has no positive integer width and height",
    )
    drawn = metadata.get("panels")
    check(
        "render_panels",
        drawn == len(rects),
        "render_panel_mismatch",
        f"the render drew {drawn!r} panels for {len(rects)} rects",
    )
    return {
        "passed": not issues,
        "issues": issues,
        "metrics": {
            "plan_panels": len(plan),
            "layout_panels": len(rects),
            "weight_sum": _json_number(weight_sum),
            "coverage": round(coverage, 6),
            "overlapping_pairs": len(overlaps),
            "max_area_deviation": None if deviation is None else round(deviation, 6),
            "image_width": size[0],
            "image_height": size[1],
            "checks": checks,
        },
    }


# -- blind_test_report ----------------------------------------------------------------


def _content_words(value: str) -> set[str]:
    return {w for w in text.words(value) if len(w) >= 3 and w not in text.NOT_NAMES}


@_generator
def generate_blind_test_report(ctx) -> dict:
    """What a reader who sees only the panels would miss: the share of key beats whose
    content words one panel shows (caption, place, cast, lines), the share of characters
    drawn somewhere, and a penalty for panels that show nobody or nothing."""
    params = _params(ctx, "blind_test_report")
    threshold = _number(params, "beat_match_threshold", 0, 1)
    beats = _strings(_input(ctx, "scene_intent").get("key_beats"))
    characters = _character_names(_input(ctx, "visual_plan"))
    panels = _dicts(_input(ctx, "panel_semantics"), "panels")
    confusions = []
    seen_text = []
    fill = []
    for n, p in enumerate(panels, start=1):
        cast = _strings(p.get("characters"))
        lines = [d for d in _list(p, "dialogue") if isinstance(d, dict)]
        shown = " ".join(
            [str(p.get("caption", "")), str(p.get("environment", "")), *cast, *(str(d.get("text", "")) for d in lines)]
        )
        seen_text.append(_content_words(shown))
        if cast or lines:
            fill.append(1.0)
        elif str(p.get("caption", "")).strip() or str(p.get("environment", "")).strip():
            fill.append(0.5)
            confusions.append(f"panel {n} shows nobody")
        else:
            fill.append(0.0)
            confusions.append(f"panel {n} shows nothing")
        folded_cast = {c.casefold() for c in cast}
        for d in lines:
            speaker = str(d.get("speaker", ""))
            if speaker and speaker != "narrator" and speaker.casefold() not in folded_cast:
                confusions.append(f"panel {n}: {speaker} speaks but is not shown")
    scored_beats = [(i, b, _content_words(b)) for i, b in enumerate(beats)]
    scored_beats = [(i, b, words) for i, b, words in scored_beats if words]
    covered = 0
    for i, beat, words in scored_beats:
        best = max((len(words & seen) / len(words) for seen in seen_text), default=0)
        if best >= threshold and best > 0:
            covered += 1
        else:
            confusions.append(f"beat {i + 1} is not shown: {_shorten(beat, 80)!r}")
    drawn = {c.casefold() for p in panels for c in _strings(p.get("characters"))}
    present = 0
    for name, aliases in characters:
        if any(n.casefold() in drawn for n in (name, *aliases)):
            present += 1
        else:
            confusions.append(f"{name} never appears in a panel")
    beat_share = covered / len(scored_beats) if scored_beats else 1.0
    character_share = present / len(characters) if characters else 1.0
    fill_share = math.fsum(fill) / len(fill) if fill else 0.0
    unseen_speakers = sum(1 for c in confusions if "speaks but is not shown" in c)
    score = 0.5 * beat_share + 0.3 * character_share + 0.2 * fill_share - min(0.2, 0.05 * unseen_speakers)
    score = 0.0 if not panels else round(min(1.0, max(0.0, score)), 4)
    summary = (
        f"{covered} of {len(scored_beats)} key beats and {present} of {len(characters)} characters appear "
        f"across {len(panels)} panel(s); clarity {score:.2f}"
        + (f", {len(confusions)} confusion(s)." if confusions else ", nothing missing.")
    )
    return {
        "clarity_score": score,
        "summary": summary,
        "confusions": confusions,
        "metrics": {
            "beat_coverage": round(beat_share, 4),
            "character_coverage": round(character_share, 4),
            "panel_fill": round(fill_share, 4),
            "unseen_speakers": unseen_speakers,
        },
    }


# generate_<type> for each type, in the order they are defined (the stage order).
GENERATORS = {name.removeprefix("generate_"): f for name, f in list(globals().items()) if name.startswith("generate_")}
