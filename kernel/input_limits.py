"""The bounds every input meets, defined once (SPEC §7: never a 500 for input).

JSON text is read by ``loads``: NaN, Infinity and numbers that overflow to infinity are
refused, and so is nesting deep enough to exhaust the parser. The API's parsers, the
multipart ``payload`` field and the admin's JSON editor all read JSON through it.

Values are checked by ``check_json``, ``check_text`` and ``check_int`` in the services,
the one write path, so a command or the pipeline meets the same bounds as a request:
JSON at most 64 levels deep, text that both databases can store (no NUL, which PostgreSQL
refuses, and no lone surrogate, which is not UTF-8 at all), integers within their column,
strings within their column's length. Each refusal names the offending field path.
"""

from __future__ import annotations

import json
import math
import re

from kernel.errors import InvalidInput, InvalidJSON, InvalidText, JSONTooDeep, OutOfRange

MAX_JSON_DEPTH = 64
# PositiveIntegerField and IntegerField on PostgreSQL: a 32-bit signed integer.
INT_MAX = 2_147_483_647

# A lone UTF-16 surrogate, which JSON's \ud800 escapes can produce, or a NUL.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _refuse_constant(name: str):
    raise InvalidJSON(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"{text} is beyond the range of a JSON number here")
    return value


def loads(text, *, field: str = "body"):
    """Parse JSON text, refusing what a database or a client could not take back."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except InvalidJSON as exc:
        exc.field = exc.field or field
        raise
    except RecursionError:
        raise JSONTooDeep(f"{field}: JSON nested deeper than {MAX_JSON_DEPTH} levels", field=field) from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError, an integer of too many digits, bytes not UTF-8
        raise InvalidJSON(f"{field}: not valid JSON ({exc})", field=field) from None


def check_text(value, *, field: str, max_length: int | None = None) -> None:
    if not isinstance(value, str):
        return
    bad = _UNSTORABLE.search(value)
    if bad is not None:
        what = "NUL characters (\\u0000)" if bad.group() == "\x00" else "lone surrogates (\\ud800-\\udfff)"
        raise InvalidText(f"{field}: {what} cannot be stored", field=field)
    if max_length is not None and len(value) > max_length:
        raise InvalidText(f"{field}: at most {max_length} characters, got {len(value)}", field=field)


def check_int(value, *, field: str, minimum: int = 0, maximum: int = INT_MAX) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be an integer", field=field)
    if not minimum <= value <= maximum:
        raise OutOfRange(f"{field} must be from {minimum} to {maximum:,}", field=field)


def check_columns(model, **values) -> None:
    """Text and integers bound for ``model``'s columns: a string within its column's
    length, an integer within its column's range."""
    for name, value in values.items():
        column = model._meta.get_field(name)
        if isinstance(value, str):
            check_text(value, field=name, max_length=getattr(column, "max_length", None))
        elif value is not None and column.get_internal_type() in ("IntegerField", "PositiveIntegerField"):
            check_int(value, field=name, minimum=0 if "Positive" in column.get_internal_type() else -INT_MAX - 1)


def check_json(value, *, field: str) -> None:
    """Walk a parsed JSON value once, without recursion: depth, text and numbers.

    Stops at the first problem, so refusing costs no more than accepting.
    """
    stack = [(value, field, 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, field=path)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidJSON(f"{path}: NaN and Infinity are not JSON numbers", field=path)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JSONTooDeep(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels", field=path)
            if isinstance(item, dict):
                # Reversed onto the stack, so the first problem in document order is reported.
                for key, child in reversed(item.items()):
                    check_text(key, field=path)  # a bad key is reported where its object is
                    stack.append((child, f"{path}.{key}", depth + 1))
            else:
                for index in range(len(item) - 1, -1, -1):
                    stack.append((item[index], f"{path}[{index}]", depth + 1))
        elif item is not None and not isinstance(item, bool | int):
            raise InvalidJSON(f"{path}: {type(item).__name__} is not a JSON value", field=path)
