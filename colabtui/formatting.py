"""Plain-text formatting of ages, durations, sizes, rates and ETAs for the panels.

Every function is pure: times come in as numbers (Unix seconds, or seconds), so the app's
injected clock decides what "now" is and tests can freeze it. Missing values give ``"n/a"``.
The figures themselves (ages, ETA, throughput, work at risk) are computed in
:mod:`colabtui.figures`; this module only words them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from colabtui.figures import age_s, eta_s, throughput

NA = "n/a"
"""Shown for a value the session did not report (null on the wire)."""

INVALID = "invalid"
"""Shown for a value the session sent out of range (named in the parsed object's
``invalid``, see :mod:`colabtui_remote.schema`): a step of ``1e30``, a size of ``10**400``."""


def fmt_duration(seconds: float | None) -> str:
    """A compact duration: ``"42s"``, ``"3m"``, ``"1h05m"``, ``"2d03h"``.

    Args:
        seconds: a length of time in seconds; negative counts as zero.

    Returns:
        The duration, or ``"n/a"`` when ``seconds`` is ``None`` or not finite.
    """
    if seconds is None or not math.isfinite(seconds):
        return NA
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def fmt_minutes(seconds: float | None) -> str:
    """A duration to the minute: ``"<1m"``, ``"3m"``, ``"1h05m"``, ``"2d03h"``.

    For figures shown on a clock that ticks (work at risk, uptime, time to the next
    autosave): the text, and so the screen, changes at most once a minute.

    Args:
        seconds: a length of time in seconds; negative counts as zero.

    Returns:
        The duration, or ``"n/a"`` when ``seconds`` is ``None`` or not finite.
    """
    if seconds is not None and math.isfinite(seconds) and seconds < 60:
        return "<1m"
    return fmt_duration(seconds)


def fmt_limit(seconds: float | None) -> str:
    """A runtime's maximum as its platform words it: ``"12h"``, ``"24h"``, else as
    :func:`fmt_duration` (``"1h30m"``); ``"n/a"`` for ``None``."""
    if seconds is not None and math.isfinite(seconds) and seconds >= 3600 \
            and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return fmt_duration(seconds)


def fmt_age(then: float | None, now: float) -> str:
    """How long ago ``then`` was: ``"just now"``, ``"12 s ago"``, ``"4 min ago"``, ``"2 h ago"``.

    Args:
        then: a Unix time in seconds (``None`` → ``"n/a"``).
        now: the current Unix time in seconds (the app's clock).
    """
    s = age_s(then, now)
    if s is None:
        return NA
    if s < 2:
        return "just now"
    if s < 60:
        return f"{int(s)} s ago"
    if s < 3600:
        return f"{int(s // 60)} min ago"
    if s < 86400:
        h, m = divmod(int(s // 60), 60)
        return f"{h} h ago" if m == 0 else f"{h} h {m} min ago"
    return f"{int(s // 86400)} d ago"


def fmt_field(obj: Any, name: str, fmt: Callable[[Any], str] = str) -> str:
    """Field ``name`` of a parsed object (a status, a GPU, a checkpoint…) as text:
    :data:`INVALID` when the session sent it out of range, :data:`NA` when not reported,
    else ``fmt(value)``."""
    if name in getattr(obj, "invalid", ()):
        return INVALID
    value = getattr(obj, name)
    return NA if value is None else fmt(value)


_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def fmt_bytes(n: int | float | None) -> str:
    """A size in decimal units as people read them on disks: ``"180 MB"``, ``"1.4 GB"``.

    Args:
        n: a size in bytes (``None`` → ``"n/a"``).
    """
    if n is None or not math.isfinite(n):
        return NA
    value = float(max(0, n))
    for unit in _UNITS:
        if value < 1000 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def fmt_gib(n: int | None) -> str:
    """GPU memory in GiB with one decimal, as nvidia-smi users expect (``"14.7"``)."""
    if n is None:
        return NA
    return f"{n / 2**30:.1f}"


def fmt_number(value: float | None, digits: int = 4) -> str:
    """A metric value in ``digits`` significant digits; ``"NaN"``/``"inf"`` for non-finite."""
    if value is None:
        return NA
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def fmt_rate(steps_per_s: float | None) -> str:
    """Throughput: ``"12.3 steps/s"``, or ``"2.0 s/step"`` when slower than one a second
    (``"n/a"`` when not usable, see :func:`colabtui.figures.throughput`)."""
    steps_per_s = throughput(steps_per_s)
    if steps_per_s is None:
        return NA
    if steps_per_s < 1:
        return f"{1 / steps_per_s:.1f} s/step"
    return f"{steps_per_s:.1f} steps/s"


def fmt_eta(step: int | None, total: int | None, steps_per_s: float | None) -> str:
    """Remaining time (see :func:`colabtui.figures.eta_s`), ``"n/a"`` when unknown.

    Under 10 minutes to the second (``"1m49s"``), so the last minutes do not read as a
    minute less than they are; beyond, to the nearest minute (``"12m"``, ``"1h05m"``).
    """
    seconds = eta_s(step, total, steps_per_s)
    if seconds is None:
        return NA
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60:02d}s"
    return fmt_duration(round(s / 60) * 60)


def short_count(n: int) -> str:
    """A count (steps) in at most five characters: ``800``, ``8.4k``, ``20k``, ``1.2M``."""
    value = float(n)
    for suffix in ("", "k", "M", "G"):
        if abs(value) < 999.5 or suffix == "G":
            if not suffix:
                return str(int(n))
            return f"{value:.1f}{suffix}" if abs(value) < 9.95 else f"{value:.0f}{suffix}"
        value /= 1000
    raise AssertionError("unreachable")


def bar(fraction: float | None, width: int) -> str:
    """A text bar ``width`` cells wide filled to ``fraction`` (0–1) with eighth blocks.

    ``None`` gives a bar of light shade, so an unknown value never looks like zero.
    """
    width = max(0, width)
    if fraction is None or not math.isfinite(fraction):
        return "░" * width
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[rest] if rest else ""
    return ("█" * full + partial).ljust(width, " ")[:width]
