"""JSON on the wire: compact UTF-8, non-finite floats as ``null`` (never ``NaN``/``Infinity``
tokens), and the markers that let a metric point say NaN, +inf or -inf beside its ``null``.
Below :mod:`.schema`, which builds the protocol's types on it.

Also the readers that make a peer's fields safe to show: :func:`clean_text` (every string),
:func:`get_int` and :func:`get_real` (every number: in range, or ``None`` and named invalid)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from typing import Any

__all__ = ["LINE_BREAK", "MAX_INT", "MAX_JSON_DEPTH", "MAX_JSON_DIGITS", "MAX_TEXT", "MIN_INT",
           "MISSING", "NONFINITE_MARKERS", "NUM", "OPT_INT", "OPT_NUM", "OPT_STR", "PLACEHOLDER",
           "TAB", "SchemaError", "clean_text", "dumps", "expect_object", "finite_or_none",
           "get_field", "get_int", "get_real", "loads", "marker_value", "nonfinite_marker",
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
"""Longest integer literal :func:`loads` turns into an ``int``; protocol v1 integers have at
most 20 digits. A longer one becomes a ``float`` (``±inf`` beyond about 309 digits), which no
integer field takes (:func:`get_int` calls it invalid): Python's own limit
(``sys.get_int_max_str_digits()``, 4,300 by default) raises ``ValueError``, and ``int()``
costs time quadratic in the digits where a notebook lifted it; ``float()`` is linear."""

MAX_INT = 2**63 - 1
"""Largest integer a peer's step, total, count, size or sequence number may be: SQLite's
``INTEGER`` and the runtime's int64 steps end here."""

MIN_INT = -(2**63)
"""Smallest integer of a signed field (a metric point's step: a loop may log below 0)."""

PLACEHOLDER = "\ufffd"
"""Shown by :func:`clean_text` in place of a character a terminal would act on or reorder
text by: C0 controls and DEL (ESC starts every CSI and OSC sequence), C1 controls
(U+0080–U+009F: U+009B is a one-character CSI), bidirectional controls (U+061C, U+200E,
U+200F, U+202A–U+202E, U+2066–U+2069) and lone surrogates (no terminal can encode them)."""

LINE_BREAK = "\u23ce"
"""``⏎``: shown in place of a line break (``\\n``, ``\\r``, ``\\r\\n``, U+2028, U+2029): every
field from a peer is one line, so none can take the row below it."""

TAB = "\u21e5"
"""``⇥``: shown in place of a tab (a tab's width depends on the column it lands in)."""

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
"""A JSON string with its escapes, paired as the decoder pairs the quotes (a ``\\"`` does not
end it). One left unclosed runs to the end: the decoder stops there, and without the optional
closing quote every quote after it would rescan the rest (quadratic time)."""
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_DIGITS = re.compile(rf"[0-9]{{{MAX_JSON_DIGITS + 1},}}")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069\ud800-\udfff]")
_BREAKS = re.compile("\r\n|[\n\r\u2028\u2029]")


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


def clean_text(text: str, limit: int | None = MAX_TEXT) -> str:
    """``text`` from a peer made safe to show on one line of a terminal, as plain text.

    Line breaks become :data:`LINE_BREAK`, tabs :data:`TAB`, and every other control
    character, bidirectional control or lone surrogate :data:`PLACEHOLDER` (see each). Text is
    cut to ``limit`` characters first (``None``: no limit). Markup (``[bold]``) is left as it
    is: the UI renders it literally. Idempotent; text with nothing to clean is returned as is.
    """
    if limit is not None and len(text) > limit:
        text = text[:limit]
    if _UNSAFE.search(text) is None:
        return text
    text = _BREAKS.sub(LINE_BREAK, text).replace("\t", TAB)
    return _UNSAFE.sub(PLACEHOLDER, text)


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
    return text.encode("utf-8", errors="replace")  # a lone surrogate in a name: "?", no error


def loads(data: bytes | str) -> Any:
    """Decode UTF-8 JSON from a peer (a request body, a response, a mailbox file).

    An integer literal longer than :data:`MAX_JSON_DIGITS` digits decodes as a ``float``
    (``±inf`` beyond the float range), never as an ``int``.

    Raises:
        SchemaError: not UTF-8, not JSON, a bare ``NaN``/``Infinity`` or nested deeper than
            :data:`MAX_JSON_DEPTH`; never ``ValueError``, ``UnicodeError`` or
            ``RecursionError`` as such.
    """
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        if _check_bounds(data):
            return json.loads(data, parse_constant=_reject_constant, parse_int=_parse_int)
        return json.loads(data, parse_constant=_reject_constant)
    except SchemaError:
        raise
    except RecursionError:  # a deep document inside an already deep call stack
        raise SchemaError("JSON nested too deeply for this process's stack") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digit limit
        raise SchemaError(f"not valid JSON: {exc}") from None


def _parse_int(literal: str) -> int | float:
    digits = len(literal) - literal.startswith("-")
    return int(literal) if digits <= MAX_JSON_DIGITS else float(literal)


def _check_bounds(text: str) -> bool:
    """Refuse what :func:`json.loads` would recurse on, before it runs; ``True`` when a run of
    digits is too long for ``int()`` (decode with :func:`_parse_int`).

    Outside strings a document is numbers, keywords, punctuation and brackets, so with the
    strings cut out the digit runs and the bracket nesting are those the decoder would meet
    (up to its first syntax error, where it stops anyway)."""
    outside = _JSON_STRING.sub("", text) if '"' in text else text
    long_digits = _LONG_DIGITS.search(outside) is not None
    brackets = _NOT_BRACKET.sub("", outside)
    if brackets.count("[") + brackets.count("{") <= MAX_JSON_DEPTH:
        return long_digits
    depth = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise SchemaError(f"JSON nested deeper than {MAX_JSON_DEPTH} arrays and objects "
                                  "(the limit)")
        else:
            depth -= 1
    return long_digits


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
    :data:`MAX_TEXT` and cleaned by :func:`clean_text`); ``default`` when missing or null.

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
        value = clean_text(value)
    return value


def get_int(obj: dict, key: str, where: str, invalid: list[str], default: Any = MISSING, *,
            low: int = 0) -> int | None:
    """``obj[key]`` as an integer from ``low`` to :data:`MAX_INT` (a step, total, count or size
    in bytes); ``default`` when missing or null.

    Any other number (below ``low``, above :data:`MAX_INT`, a float such as ``1e30``, an
    integer too long to decode, see :func:`loads`) gives ``None`` and appends ``key`` to
    ``invalid``: the field is shown as invalid, the rest of the object is kept.

    Raises:
        SchemaError: not a number (a string, a boolean…), or missing or null without a
            ``default``; the message names ``where.key``.
    """
    value = get_field(obj, key, NUM, where, default)
    if value is None or value is default:
        return value
    if isinstance(value, int) and low <= value <= MAX_INT:
        return value
    invalid.append(key)
    return None


def get_real(obj: dict, key: str, where: str, invalid: list[str],
             default: Any = MISSING) -> float | None:
    """``obj[key]`` as a finite ``float`` (a time, a duration, a rate, a temperature);
    ``default`` when missing or null.

    A number out of the float range (``1e400`` decodes as ``inf``) gives ``None`` and appends
    ``key`` to ``invalid``.

    Raises:
        SchemaError: not a number, or missing or null without a ``default``.
    """
    value = get_field(obj, key, NUM, where, default)
    if value is None or value is default:
        return value
    value = float(value)
    if math.isfinite(value):
        return value
    invalid.append(key)
    return None


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
