"""JSON on the wire: compact UTF-8, non-finite floats as ``null`` (never ``NaN``/``Infinity``
tokens), and the markers that let a metric point say NaN, +inf or -inf beside its ``null``.
Below :mod:`.schema`, which builds the protocol's types on it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "MAX_JSON_DIGITS", "MAX_TEXT", "MISSING", "NONFINITE_MARKERS", "NUM",
           "OPT_INT", "OPT_NUM", "OPT_STR", "SchemaError", "dumps", "expect_object",
           "finite_or_none", "get_field", "loads", "marker_value", "nonfinite_marker",
           "split_nonfinite", "type_names"]

NONFINITE_MARKERS = ("nan", "inf", "-inf")

MAX_TEXT = 512
"""Longest free-text field (label, error message) the laptop keeps; longer is cut."""

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects :func:`loads` accepts; a protocol v1 document nests
about 4 deep. Checked before decoding: Python's decoder recurses once per level and raises
``RecursionError`` near 1,000 levels, or overflows the C stack and kills the process when a
notebook raised ``sys.setrecursionlimit``."""

MAX_JSON_DIGITS = 100
"""Longest run of digits in a JSON number :func:`loads` accepts (an integer, or a float's
integer, fraction or exponent part); protocol v1 integers have at most 20. Python's own limit
(``sys.get_int_max_str_digits()``, 4,300 by default) raises ``ValueError``, and the conversion
costs time quadratic in the digits where a notebook lifted it."""

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
"""A JSON string with its escapes, paired as the decoder pairs the quotes (a ``\\"`` does not
end it). One left unclosed runs to the end: the decoder stops there, and without the optional
closing quote every quote after it would rescan the rest (quadratic time)."""
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_DIGITS = re.compile(rf"[0-9]{{{MAX_JSON_DIGITS + 1},}}")


class SchemaError(ValueError):
    """A JSON document does not match protocol v1. The message says which field and why."""


def finite_or_none(value: float | None) -> float | None:
    """Return ``value`` if it is a finite number, else ``None`` (the wire form of NaN/inf)."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def nonfinite_marker(value: float) -> str | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a non-finite float, ``None`` for a finite one."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def marker_value(marker: str | None, value: float | None) -> float | None:
    """Inverse of the wire encoding: rebuild the float a point stood for (NaN, ±inf or value)."""
    if marker == "nan":
        return math.nan
    if marker == "inf":
        return math.inf
    if marker == "-inf":
        return -math.inf
    return value


def _sanitize(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` (dataclasses allowed) as compact UTF-8 JSON with non-finite floats as null.

    Raises:
        TypeError: ``obj`` holds something JSON cannot carry.
    """
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    try:  # fast path: the C encoder alone, when nothing non-finite is inside
        text = json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        text = json.dumps(_sanitize(obj), allow_nan=False, separators=(",", ":"),
                          ensure_ascii=False)
    return text.encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Decode UTF-8 JSON from a peer (a request body, a response, a mailbox file).

    Raises:
        SchemaError: not UTF-8, not JSON, a bare ``NaN``/``Infinity``, nested deeper than
            :data:`MAX_JSON_DEPTH`, or a number with more than :data:`MAX_JSON_DIGITS` digits
            in a row; never ``ValueError``, ``UnicodeError`` or ``RecursionError`` as such.
    """
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        _check_bounds(data)
        return json.loads(data, parse_constant=_reject_constant)
    except SchemaError:
        raise
    except RecursionError:  # a deep document inside an already deep call stack
        raise SchemaError("JSON nested too deeply for this process's stack") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digit limit
        raise SchemaError(f"not valid JSON: {exc}") from None


def _check_bounds(text: str) -> None:
    """Refuse what :func:`json.loads` would recurse or grind on, before it runs.

    Outside strings a document is numbers, keywords, punctuation and brackets, so with the
    strings cut out the digit runs and the bracket nesting are those the decoder would meet
    (up to its first syntax error, where it stops anyway)."""
    outside = _JSON_STRING.sub("", text) if '"' in text else text
    if _LONG_DIGITS.search(outside):
        raise SchemaError(f"JSON with a number over {MAX_JSON_DIGITS} digits long (the limit)")
    brackets = _NOT_BRACKET.sub("", outside)
    if brackets.count("[") + brackets.count("{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise SchemaError(f"JSON nested deeper than {MAX_JSON_DEPTH} arrays and objects "
                                  "(the limit)")
        else:
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise SchemaError(f"not valid JSON: bare {name} is not allowed")


def split_nonfinite(values: dict[str, float]) -> tuple[dict[str, float | None], dict[str, str]]:
    """(values with non-finite ones as None, the marker of each non-finite one by name)."""
    finite: dict[str, float | None] = {}
    markers: dict[str, str] = {}
    for name, value in values.items():
        marker = nonfinite_marker(value)
        if marker:
            markers[name] = marker
        finite[name] = None if marker else value
    return finite, markers


# --------------------------------------------------------------------------- reading fields

MISSING = object()


def get_field(obj: dict, key: str, types: tuple, where: str, default: Any = MISSING) -> Any:
    """``obj[key]`` checked against ``types`` (booleans are not numbers; strings cut to
    :data:`MAX_TEXT`); ``default`` when missing or null.

    Raises:
        SchemaError: missing, or of another type; the message names ``where.key``.
    """
    value = obj.get(key, MISSING)
    if value is MISSING or value is None:
        if default is not MISSING:
            return default
        if value is None and type(None) in types:
            return None
        raise SchemaError(f"{where}.{key}: missing")
    if isinstance(value, bool) and bool not in types:
        raise SchemaError(f"{where}.{key}: expected {type_names(types)}, got a boolean")
    if not isinstance(value, types):
        raise SchemaError(f"{where}.{key}: expected {type_names(types)}, got {type(value).__name__}")
    if isinstance(value, str):
        value = value[:MAX_TEXT]
    return value


def type_names(types: tuple) -> str:
    """``"int or float or null"``: ``types`` as a message says them."""
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_INT = (int, type(None))
OPT_STR = (str, type(None))


def expect_object(value: Any, where: str) -> dict:
    """``value`` when it is a JSON object. Raises :class:`SchemaError` naming ``where``."""
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected an object, got {type(value).__name__}")
    return value
