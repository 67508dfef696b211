"""The registry of artifact types and their payload schemas (SPEC §4).

Adding a type is one entry in ``ARTIFACT_TYPES``: its name, the kinds it may have,
where its stream lives, whether a planning lock freezes it, and a JSON Schema for the
payload. Extra payload fields are always allowed.
"""

from dataclasses import dataclass, field

from jsonschema import Draft202012Validator

from kernel.errors import ArtifactError, InvalidInput, InvalidPayload, UnknownType
from kernel.input_limits import check_json

KIND_JSON = "json"
KIND_TEXT = "text"
KIND_IMAGE = "image"
KIND_AUDIO = "audio"
KIND_VIDEO = "video"
KINDS = (KIND_JSON, KIND_TEXT, KIND_IMAGE, KIND_AUDIO, KIND_VIDEO)
MEDIA_KINDS = (KIND_IMAGE, KIND_AUDIO, KIND_VIDEO)

SCOPE_SCENE = "scene"
SCOPE_STORY = "story"


def _obj(required: dict, **extra) -> dict:
    return {"type": "object", "required": list(required), "properties": required, **extra}


STR = {"type": "string"}
NUM = {"type": "number"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
UNIT = {"type": "number", "minimum": 0, "maximum": 1}
LIST = {"type": "array"}
OBJ = {"type": "object"}
STR_LIST = {"type": "array", "items": STR}

_PANEL_PLAN_PANELS = {
    "type": "array",
    "minItems": 1,
    "items": _obj({"grammar_id": STR, "weight": {"type": "number", "exclusiveMinimum": 0}, "must_show": STR_LIST}),
}


@dataclass(frozen=True)
class ArtifactType:
    name: str
    schema: dict
    kinds: tuple[str, ...] = (KIND_JSON,)
    scopes: tuple[str, ...] = (SCOPE_SCENE,)
    planning: bool = False
    description: str = ""
    # A valid payload, shown in the type listing and used by the demo data; checked here.
    example: dict = field(default_factory=dict)
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        Draft202012Validator.check_schema(self.schema)
        object.__setattr__(self, "validator", Draft202012Validator(self.schema))
        self.validator.validate(self.example)

    @property
    def default_kind(self) -> str:
        return self.kinds[0]


def _media(name: str, kind: str, description: str, alt: str) -> ArtifactType:
    return ArtifactType(
        name,
        _obj({"alt": STR}),
        kinds=(kind,),
        scopes=(SCOPE_STORY, SCOPE_SCENE),
        description=description,
        example={"alt": alt},
    )


ARTIFACT_TYPES: dict[str, ArtifactType] = {
    t.name: t
    for t in [
        ArtifactType(
            "scene_intent",
            _obj({"mood": STR, "pacing": STR, "key_beats": {**STR_LIST, "minItems": 1}}),
            planning=True,
            description="Narrative analysis: mood, pacing and key beats of the scene text.",
            example={"mood": "tense", "pacing": "fast", "key_beats": ["the door creaks", "the light fails"]},
        ),
        ArtifactType(
            "panel_plan",
            _obj({"panels": _PANEL_PLAN_PANELS}),
            planning=True,
            description="Panel breakdown with grammar ids, weights and must-show elements.",
            example={
                "panels": [
                    {"grammar_id": "establishing", "weight": 2, "must_show": ["lighthouse"]},
                    {"grammar_id": "close_up", "weight": 1, "must_show": ["keeper"]},
                ]
            },
        ),
        ArtifactType(
            "panel_plan_normalized",
            _obj({"panels": _PANEL_PLAN_PANELS, "qc": _obj({"passed": BOOL, "checks": LIST})}),
            planning=True,
            description="The panel plan validated and normalized, with its QC checks.",
            example={
                "panels": [
                    {"grammar_id": "establishing", "weight": 0.67, "must_show": ["lighthouse"]},
                    {"grammar_id": "close_up", "weight": 0.33, "must_show": ["keeper"]},
                ],
                "qc": {"passed": True, "checks": ["weights_sum_to_one"]},
            },
        ),
        ArtifactType(
            "layout_template",
            _obj(
                {
                    "template_id": STR,
                    "panels": {
                        "type": "array",
                        "items": _obj({"panel_index": INT, "x": UNIT, "y": UNIT, "w": UNIT, "h": UNIT}),
                    },
                }
            ),
            planning=True,
            description="The chosen layout template with panel geometry in [0, 1].",
            example={
                "template_id": "two_row",
                "panels": [
                    {"panel_index": 0, "x": 0, "y": 0, "w": 1, "h": 0.5},
                    {"panel_index": 1, "x": 0, "y": 0.5, "w": 1, "h": 0.5},
                ],
            },
        ),
        ArtifactType(
            "panel_semantics",
            _obj(
                {
                    "panels": {
                        "type": "array",
                        "items": _obj(
                            {"panel_index": INT, "characters": STR_LIST, "environment": STR, "dialogue": LIST}
                        ),
                    }
                }
            ),
            planning=True,
            description="What each panel shows: characters, environment, dialogue.",
            example={
                "panels": [{"panel_index": 0, "characters": ["keeper"], "environment": "stormy coast", "dialogue": []}]
            },
        ),
        ArtifactType(
            "render_spec",
            _obj({"prompt": STR, "style": STR, "characters": LIST, "reference_images": STR_LIST}),
            description="The complete image-generation prompt.",
            example={
                "prompt": "a lighthouse in a storm, ink style",
                "style": "ink",
                "characters": ["keeper"],
                "reference_images": [],
            },
        ),
        ArtifactType(
            "render_result",
            _obj({"image_url": STR, "metadata": OBJ, "generation_params": OBJ}),
            kinds=(KIND_JSON, KIND_IMAGE),
            description="A generated image (as content when kind is image) and its parameters.",
            example={
                "image_url": "render://example.png",
                "metadata": {"width": 64, "height": 64},
                "generation_params": {"seed": 7},
            },
        ),
        ArtifactType(
            "qc_report",
            _obj(
                {
                    "passed": BOOL,
                    "issues": {
                        "type": "array",
                        "items": {"type": "object", "required": ["code", "message", "severity"]},
                    },
                    "metrics": OBJ,
                }
            ),
            description="Quality-control results: issues and metrics.",
            example={"passed": True, "issues": [], "metrics": {"panels": 2}},
        ),
        ArtifactType(
            "blind_test_report",
            _obj({"clarity_score": UNIT, "summary": STR, "confusions": STR_LIST}),
            description="A blind reader's evaluation of narrative clarity.",
            example={"clarity_score": 0.8, "summary": "The beats read clearly.", "confusions": []},
        ),
        ArtifactType(
            "dialogue_suggestions",
            _obj({"lines": {"type": "array", "items": _obj({"speaker": STR, "text": STR, "emotion": STR})}}),
            planning=True,
            description="Dialogue lines with speaker and emotion hints.",
            example={"lines": [{"speaker": "keeper", "text": "Hold fast.", "emotion": "resolve"}]},
        ),
        ArtifactType(
            "visual_plan",
            _obj({"characters": {"type": "array", "items": _obj({"name": STR, "visual_details": OBJ})}}),
            planning=True,
            description="Characters extracted and normalized with their visual details.",
            example={"characters": [{"name": "keeper", "visual_details": {"coat": "yellow oilskin"}}]},
        ),
        _media("cover_image", KIND_IMAGE, "The story's cover image; payload.alt describes it.", "A lighthouse at dusk"),
        _media("audio_track", KIND_AUDIO, "An audio track; payload.alt describes it.", "Waves and wind"),
        _media("video_render", KIND_VIDEO, "A rendered video; payload.alt describes it.", "The storm, animated"),
    ]
}

PLANNING_TYPES = frozenset(name for name, t in ARTIFACT_TYPES.items() if t.planning)


def get_type(name: str) -> ArtifactType:
    try:
        return ARTIFACT_TYPES[name]
    except (KeyError, TypeError):
        raise UnknownType(f"unknown artifact type {name!r}; known types: {', '.join(ARTIFACT_TYPES)}") from None


def _path(error) -> str:
    parts = ["payload"]
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    # A missing required field is reported at the field itself, not at its parent.
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        if missing:
            parts.append(f".{missing}")
    return "".join(parts)


def validate_payload(type_name: str, payload) -> None:
    """Raise InvalidPayload naming the first offending field path, e.g. ``payload.panels[0].weight``.

    Both checks stop at the first problem: refusing a payload costs no more than accepting it.
    """
    artifact_type = get_type(type_name)
    if not isinstance(payload, dict):
        raise InvalidPayload("payload must be a JSON object", field="payload")
    try:
        check_json(payload, field="payload")
    except InvalidInput as exc:
        raise InvalidPayload(exc.message, field=exc.field) from None
    error = next(artifact_type.validator.iter_errors(payload), None)
    if error is not None:
        path = _path(error)
        raise InvalidPayload(f"{path}: {error.message}", field=path)


# jsonschema spends ~50 µs on a typical payload, most of an import's Python time. The
# schemas of payloads.py use a handful of keywords; surely_valid checks those directly and
# says True only when the payload is certainly valid. Everything else (an unknown keyword,
# a float where an integer is wanted, any payload it cannot accept) goes to
# validate_payload, so what is refused, and why, is exactly what the services say.
_FAST_KEYWORDS = frozenset(
    {"type", "required", "properties", "items", "minItems", "minimum", "maximum", "exclusiveMinimum"}
)
_FAST_TYPES = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def surely_valid(schema: dict, value) -> bool:
    """True when ``value`` meets ``schema`` for certain; False means "ask jsonschema"."""
    if not schema.keys() <= _FAST_KEYWORDS:
        return False
    if "type" in schema:
        kinds = _FAST_TYPES.get(schema["type"])
        if kinds is None or type(value) not in kinds:  # type(), not isinstance: True is no integer
            return False
    if "minimum" in schema or "maximum" in schema or "exclusiveMinimum" in schema:
        if type(value) not in (int, float):
            return False
        if "minimum" in schema and not value >= schema["minimum"]:
            return False
        if "maximum" in schema and not value <= schema["maximum"]:
            return False
        if "exclusiveMinimum" in schema and not value > schema["exclusiveMinimum"]:
            return False
    if "required" in schema or "properties" in schema:
        if type(value) is not dict or any(name not in value for name in schema.get("required", ())):
            return False
        for name, subschema in schema.get("properties", {}).items():
            if name in value and not surely_valid(subschema, value[name]):
                return False
    if "items" in schema or "minItems" in schema:
        if type(value) is not list or len(value) < schema.get("minItems", 0):
            return False
        if "items" in schema and not all(surely_valid(schema["items"], item) for item in value):
            return False
    return True


def check_payload(artifact_type, payload) -> None:
    """``validate_payload``'s verdict, faster on the payloads it would accept."""
    if type(payload) is dict:
        try:
            check_json(payload, field="payload")
        except ArtifactError:
            pass  # validate_payload refuses it, with its own message
        else:
            if surely_valid(artifact_type.schema, payload):
                return
    validate_payload(artifact_type.name, payload)
