"""The pipeline's nodes: one per pipeline type, in the seed's stage order (SPEC §10).

A node is a name, the types it consumes, the type it produces, whether it reads the scene
text, and a generator. Generators are found by dotted path: the shipped ones
(``generate_<type>`` in ``generators.py``), or those the ``PIPELINE_GENERATORS`` setting
names instead. ``NODES`` is the one list of the stages, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from kernel.errors import InvalidInput

from .generators import DEFAULT_PARAMS


@dataclass(frozen=True)
class Node:
    name: str
    consumes: tuple[str, ...]
    reads_text: bool = False

    @property
    def produces(self) -> str:
        return self.name

    @property
    def generator_path(self) -> str:
        return (getattr(settings, "PIPELINE_GENERATORS", None) or {}).get(self.name) or SHIPPED[self.name]

    def generator(self):
        """The callable and its version (a string, "1" unless the generator says otherwise)."""
        function = import_string(self.generator_path)
        return function, str(getattr(function, "version", "1"))

    @property
    def params(self) -> dict:
        overrides = (getattr(settings, "PIPELINE_PARAMS", None) or {}).get(self.name, {})
        return {**DEFAULT_PARAMS.get(self.name, {}), **overrides}


# Stage order. The first three read the scene text and nothing else, so they are independent.
NODES: tuple[Node, ...] = (
    Node("scene_intent", (), reads_text=True),
    Node("visual_plan", (), reads_text=True),
    Node("dialogue_suggestions", (), reads_text=True),
    Node("panel_plan", ("scene_intent", "visual_plan", "dialogue_suggestions")),
    Node("panel_plan_normalized", ("panel_plan",)),
    Node("layout_template", ("panel_plan_normalized",)),
    Node(
        "panel_semantics",
        ("scene_intent", "visual_plan", "dialogue_suggestions", "panel_plan_normalized", "layout_template"),
    ),
    Node("render_spec", ("scene_intent", "visual_plan", "panel_semantics")),
    Node("render_result", ("render_spec", "layout_template", "panel_semantics")),
    Node("qc_report", ("panel_plan_normalized", "layout_template", "render_result")),
    Node("blind_test_report", ("scene_intent", "visual_plan", "panel_semantics")),
)
BY_NAME = {node.name: node for node in NODES}
SHIPPED = {node.name: f"runs.pipeline.generators.generate_{node.name}" for node in NODES}


def selected(only: list[str] | None) -> list[Node]:
    """The nodes to run, in stage order: all, or those named by ``--only``."""
    if not only:
        return list(NODES)
    unknown = sorted(set(only) - set(BY_NAME))
    if unknown:
        raise InvalidInput(f"no pipeline node {', '.join(unknown)}; nodes: {', '.join(BY_NAME)}", field="only")
    return [node for node in NODES if node.name in only]


def downstream(names: set[str]) -> set[str]:
    """Every node that consumes, directly or not, one of ``names``."""
    found = set(names)
    for node in NODES:  # stage order: a consumer always comes after what it consumes
        if found.intersection(node.consumes):
            found.add(node.name)
    return found - set(names)
