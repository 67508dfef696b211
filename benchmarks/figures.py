"""Headline figures: the one line a benchmark prints for each, and what run.py makes of them.

A benchmark prints its tables for people and, for every figure the README quotes, one line
for ``run.py``::

    FIGURE hot stream, 16 writers: service / raw locked counter = 0.81 x target >= 0.8
    FIGURE import_artifacts = 4251 rows/s target >= 5000
    FIGURE pipeline: queries per made node = 9 queries target <= 10

``<name> = <value> <unit>``, then optionally ``target <op> <number>`` with op one of
``<=``, ``>=``, ``<``, ``>``. The name is the figure's key across runs: the same figure
prints the same name in every run. A benchmark does not judge its target itself:
``make bench`` runs each benchmark several times and judges the median of the runs
(``summarize``), so one lucky or unlucky run neither meets nor misses a target.
"""

from __future__ import annotations

import math
import operator
import re
import statistics
from dataclasses import dataclass, field

PREFIX = "FIGURE "
OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
LINE = re.compile(
    r"^FIGURE (?P<name>.+?) = (?P<value>\S+) (?P<unit>\S+)(?: target (?P<op><=|>=|<|>) (?P<target>\S+))?\s*$"
)
UNSTABLE = 1.5  # a figure whose runs differ by more than this factor (max / min) is marked unstable


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    op: str | None = None
    target: float | None = None

    @property
    def target_text(self) -> str:
        return f"{self.op} {number(self.target)}" if self.op else ""


def number(value: float) -> str:
    """Plain enough to parse back, short enough to read."""
    if not math.isfinite(value):
        return "nan"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"


def line(name: str, value: float, unit: str, target: tuple[str, float] | None = None) -> str:
    if not name or " = " in name or "\n" in name:
        raise ValueError(f"a figure's name must be one line without ' = ': {name!r}")
    if not unit or any(c.isspace() for c in unit):
        raise ValueError(f"a figure's unit is one word: {unit!r}")
    text = f"{PREFIX}{name} = {number(float(value))} {unit}"
    if target is not None:
        op, bound = target
        if op not in OPERATORS:
            raise ValueError(f"a target's operator is one of {', '.join(OPERATORS)}: {op!r}")
        text += f" target {op} {number(float(bound))}"
    return text


def figure(name: str, value: float, unit: str, target: tuple[str, float] | None = None) -> None:
    """Print a headline figure's line (see the module's docstring); ``target`` is e.g. ``(">=", 0.8)``."""
    print(line(name, value, unit, target), flush=True)


def parse(text: str) -> Figure | None:
    """The figure on a line of a benchmark's output, or None for any other line."""
    found = LINE.match(text.strip())
    if not found:
        return None
    try:
        value = float(found["value"])
        target = float(found["target"]) if found["op"] else None
    except ValueError:
        return None
    return Figure(found["name"], value, found["unit"], found["op"], target)


def parse_all(output: str) -> list[Figure]:
    return [f for f in map(parse, output.splitlines()) if f is not None]


@dataclass
class Summary:
    """One figure over the runs of its benchmark."""

    benchmark: str
    name: str
    unit: str
    op: str | None
    target: float | None
    values: list[float] = field(default_factory=list)

    @property
    def measured(self) -> list[float]:
        return [v for v in self.values if math.isfinite(v)]

    @property
    def median(self) -> float:
        return statistics.median(self.measured) if self.measured else math.nan

    @property
    def low(self) -> float:
        return min(self.measured, default=math.nan)

    @property
    def high(self) -> float:
        return max(self.measured, default=math.nan)

    @property
    def met(self) -> bool | None:
        """The target judged on the median; None without a target."""
        if self.op is None:
            return None
        return math.isfinite(self.median) and OPERATORS[self.op](self.median, self.target)

    @property
    def spread(self) -> float:
        """max / min of the runs (1 when they agree; inf when one is 0 and another is not)."""
        low, high = self.low, self.high
        if not math.isfinite(low) or low == high:
            return 1.0
        if low <= 0:
            return math.inf
        return high / low

    @property
    def unstable(self) -> bool:
        return len(self.measured) > 1 and self.spread > UNSTABLE


def summarize(runs: list[tuple[str, list[Figure]]]) -> list[Summary]:
    """Figures of many runs, ``(benchmark, figures)`` each, folded by (benchmark, name) in the
    order they first appear; the target is the last one printed."""
    summaries: dict[tuple[str, str], Summary] = {}
    for benchmark, figures in runs:
        for f in figures:
            key = (benchmark, f.name)
            if key not in summaries:
                summaries[key] = Summary(benchmark, f.name, f.unit, f.op, f.target)
            summary = summaries[key]
            summary.values.append(f.value)
            summary.unit = f.unit
            if f.op is not None:
                summary.op, summary.target = f.op, f.target
    return list(summaries.values())
