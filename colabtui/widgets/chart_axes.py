"""Axis ticks and labels for the loss chart: linear and log10 y axes, step and wall-time x axes.

Every tick sits at a round value (1, 2, 5 × 10^k for values and steps; whole seconds, minutes
or hours for time) and every label is short enough for a panel's narrow margin, never cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from colabtui.formatting import fmt_duration

MAX_Y_TICKS = 8
"""Most y ticks on a tall chart (a short one gets one every other row)."""


class NumericAxisFormatter:
    """Linear ticks at a 1, 2, 5 × 10^k spacing (:func:`nice_ticks`), labelled with as many
    decimals as the spacing needs (``0.25``, ``2``, ``400``). The base of the chart's axes."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        """Ticks in ``[min_, max_]``, ``max_ticks`` or fewer."""
        return nice_ticks(min_, max_, max_ticks)

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        """One label a tick, in the same order."""
        if not ticks:
            return []
        spacing = abs(ticks[1] - ticks[0]) if len(ticks) >= 2 else 0.0
        power = math.floor(math.log10(spacing)) if math.isfinite(spacing) and spacing > 0 else 0
        decimals = -min(0, power)
        return [f"{t:.{decimals}f}" for t in ticks]


class LogAxisFormatter(NumericAxisFormatter):
    """Ticks on a log10 axis at 1, 2, 5 × 10^k (or whole decades over a wide range),
    labelled with the values themselves (``0.001``, ``0.5``, ``20``)."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        lo, hi = math.floor(min_), math.ceil(max_)
        decades = max(1, hi - lo)
        if decades >= 3:
            every = max(1, math.ceil(decades / max(1, max_ticks)))
            return [float(k) for k in range(lo, hi + 1, every) if min_ <= k <= max_]
        ticks = [k + math.log10(m) for k in range(lo, hi + 1) for m in (1, 2, 5)]
        ticks = [t for t in ticks if min_ <= t <= max_]
        return ticks if len(ticks) >= 2 else super().get_ticks(min_, max_, max_ticks)

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [f"{10 ** t:.2g}" for t in ticks]


class StepAxisFormatter(NumericAxisFormatter):
    """Step ticks with short labels (``800``, ``1.5k``, ``20k``, ``1.2M``) so they fit."""

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [short_number(t) for t in ticks]


MAX_Y_LABEL = 6
"""Widest y tick label, in cells, before labels switch to fewer significant digits."""


def distinct_labels(ticks: Sequence[float], max_width: int = MAX_Y_LABEL) -> list[str]:
    """Labels for y ticks that stay distinct and, where possible, ``max_width`` cells or less.

    Fixed-point with as many decimals as the tick spacing needs (``0.002``, ``1.5``, ``20``)
    when that fits; otherwise the fewest significant digits that keep every label distinct
    (``1e-05``, ``1.23e+04``). Never truncated: the chart widens its margin to the longest.

    Args:
        ticks: tick values, ascending.
        max_width: the widest label wanted, in cells.
    """
    labels = NumericAxisFormatter().get_labels_for_ticks(ticks)
    if not labels or max(map(len, labels)) <= max_width:
        return labels
    best: list[str] | None = None
    for digits in range(1, 8):
        candidate = [f"{t:.{digits}g}" for t in ticks]
        if len(set(candidate)) == len(candidate):
            if max(map(len, candidate)) <= max_width:
                return candidate
            best = best or candidate
    shortest = best if best is not None else labels
    return shortest if max(map(len, shortest)) < max(map(len, labels)) else labels


class ValueAxisFormatter(NumericAxisFormatter):
    """Linear y ticks at 1, 2, 5 × 10^k with labels from :func:`distinct_labels`."""

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return distinct_labels(ticks)


def nice_ticks(lo: float, hi: float, most: int) -> list[float]:
    """Ticks at a 1, 2, 5 × 10^k spacing inside ``[lo, hi]``: the finest with ``most`` or fewer.

    Args:
        lo, hi: the range, ``lo < hi``.
        most: the most ticks wanted (>= 1).
    """
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo] if math.isfinite(lo) else []
    power = math.floor(math.log10(span / max(1, most))) - 1
    for k in range(power, power + 4):
        for m in (1, 2, 5):
            step = m * 10.0**k
            first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
            if last - first + 1 <= most:
                # multiply integers, so 0.1 * 3 does not print as 0.30000000000000004
                return [round(i * step, 12) for i in range(first, last + 1)]
    return [lo, hi]


def y_ticks(formatter: NumericAxisFormatter, lo: float, hi: float, rows: int) -> list[float]:
    """Ticks in ``[lo, hi]``, at most one every other row so no two share a row or touch.

    Args:
        formatter: a :class:`LogAxisFormatter` gives its own ticks; any other gets
            :func:`nice_ticks`.
        lo, hi: the y range of the axis box.
        rows: rows inside the axis box (>= 1).
    """
    most = max(2, min(MAX_Y_TICKS, rows // 2))
    if not isinstance(formatter, LogAxisFormatter):
        return nice_ticks(lo, hi, most)
    ticks = [t for t in formatter.get_ticks(lo, hi, max_ticks=most) if lo <= t <= hi]
    if len(ticks) > most:
        ticks = ticks[::math.ceil(len(ticks) / most)]
    return ticks


def short_number(value: float) -> str:
    """``1500`` → ``"1.5k"``, ``20000`` → ``"20k"``, ``800`` → ``"800"``."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"


TIME_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                     21600, 43200, 86400, 172800, 432000, 864000)
"""Spacings of wall-time ticks, seconds: round seconds, minutes, hours and days."""


def time_ticks(lo: float, hi: float, most: int) -> list[float]:
    """Ticks in ``[lo, hi]`` (seconds since the chart's origin) at the finest spacing of
    :data:`TIME_TICK_STEPS_S` that gives ``most`` or fewer (at least one tick)."""
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        return [lo] if math.isfinite(lo) else []
    for step in TIME_TICK_STEPS_S:
        first, last = math.ceil(lo / step), math.floor(hi / step)
        if last - first + 1 <= max(1, most):
            return [float(i * step) for i in range(first, last + 1)]
    step = TIME_TICK_STEPS_S[-1] * math.ceil((hi - lo) / (most * TIME_TICK_STEPS_S[-1]))
    return [float(i * step) for i in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


class TimeAxisFormatter(NumericAxisFormatter):
    """Wall-time ticks (seconds since the origin) labelled ``30s``, ``5m``, ``1h30m``, ``2d03h``."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        return time_ticks(min_, max_, max_ticks)

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [fmt_duration(t) for t in ticks]
