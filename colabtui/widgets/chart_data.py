"""What a loss chart draws, before any drawing: which series, each reduced to what the
chart's columns can show, with the points that cannot be drawn counted and marked.

* **Non-finite points** (NaN, ±inf) are never dropped silently: the chart marks each on its
  top edge (``-inf`` on the bottom edge) and counts them in its title line.
* **Long runs** are cut to at most two points per dot column (the minimum and the maximum of
  the points that fall in it), so a spike stays visible however many points the run has logged.
* **Log scale**: values are drawn as log10; values <= 0 cannot be, so they are marked on the
  bottom edge and counted, like non-finite ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from colabtui_remote.schema import MetricPoint

SERIES_STYLES = ("bright_cyan", "bright_magenta", "yellow")
"""Line colours, in the order series are chosen by :func:`chart_series`."""

COMPARE_STYLES = ("bright_cyan", "bright_magenta", "yellow", "bright_green", "bright_red",
                  "bright_blue", "orange1", "white")
"""Line colours of the compare view, one per run in the order the runs were chosen."""

MAX_SERIES = 3
MARKER_STYLE = "bold red"
RESUME_STYLE = "grey50"
"""The vertical line where a later session of the run took over the curve."""


def chart_series(names: Sequence[str]) -> list[str]:
    """The series worth charting: those whose name contains ``loss`` (up to three), in
    name order with ``loss`` itself first; otherwise the first series logged."""
    losses = sorted((n for n in names if "loss" in n.lower()), key=lambda n: (n != "loss", n))
    if losses:
        return losses[:MAX_SERIES]
    return list(names[:1])


def minmax_per_column(steps: np.ndarray, values: np.ndarray, columns: int,
                      x_min: float, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Reduce finite points to at most two a column: each column's minimum and maximum.

    A braille chart has two dot columns per cell: pass ``2 * cells`` as ``columns`` so every
    dot column keeps its extremes (a spike one step wide stays drawn, however long the run).

    Args:
        steps: shape (n,), the x values (steps or seconds), ascending.
        values: shape (n,), finite y values.
        columns: the number of columns the x range is cut into (>= 1).
        x_min, x_max: the x range the columns span.

    Returns:
        ``(steps, values)``, at most ``2 * columns`` long, in x order; a column's min and max
        keep their own x, so the line passes through both (the first of equal extremes).
    """
    n = len(steps)
    if n <= 2 * columns or columns < 1:
        return steps, values
    span = (x_max - x_min) or 1.0
    bucket = np.clip(((steps - x_min) / span * columns).astype(np.int64), 0, columns - 1)
    # steps ascend, so each column's points are one run: reduce each run in C
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    chosen = []
    for extreme in (np.minimum, np.maximum):
        at = np.flatnonzero(values == extreme.reduceat(values, starts)[run])
        _, first = np.unique(run[at], return_index=True)  # the first of equal extremes
        chosen.append(at[first])
    idx = np.unique(np.concatenate(chosen))
    return steps[idx], values[idx]


def thin_points(points: Sequence[MetricPoint], keep: int) -> list[MetricPoint]:
    """About ``keep`` of a series' points, chosen so a chart of them looks the same.

    The steps are cut into ``keep // 2`` buckets; each keeps its lowest and highest finite
    point and its first point of each non-finite kind (NaN, inf, -inf), so spikes and
    divergence stay visible; the first and last points always stay.

    Args:
        points: one series, by step.
        keep: the number of points wanted (at least 2).

    Returns:
        A new list in the same order: ``points`` itself copied when it has ``keep`` or fewer.
    """
    n = len(points)
    if n <= keep:
        return list(points)
    buckets = max(1, keep // 2)
    first = points[0].step
    span = max(1, points[-1].step - first + 1)
    lowest: dict[int, int] = {}
    highest: dict[int, int] = {}
    nonfinite: dict[tuple[int, str], int] = {}
    for i, p in enumerate(points):
        b = (p.step - first) * buckets // span
        v = p.value
        if not math.isfinite(v):
            nonfinite.setdefault((b, "nan" if v != v else "inf" if v > 0 else "-inf"), i)
            continue
        j = lowest.get(b)
        if j is None or v < points[j].value:
            lowest[b] = i
        j = highest.get(b)
        if j is None or v > points[j].value:
            highest[b] = i
    chosen = {0, n - 1, *lowest.values(), *highest.values(), *nonfinite.values()}
    return [points[i] for i in sorted(chosen)]


@dataclass(frozen=True)
class ChartLine:
    """One line of a chart.

    Attributes:
        name: the legend's name (untrusted text: a series or run name).
        points: its points, any order; non-finite values allowed.
        style: a Rich colour for the line and its legend.
        origin: on a wall-time x axis, the time (seconds, the session's clock) drawn as 0;
            ``None``: the chart's earliest point.
    """

    name: str
    points: Sequence[MetricPoint]
    style: str
    origin: float | None = None


@dataclass(frozen=True)
class PreparedSeries:
    """One series ready to draw: finite points (already log10 when asked) at their x (step,
    or seconds since the origin) and the x of the points that cannot be drawn, split by which
    edge marks them."""

    name: str
    steps: np.ndarray
    values: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    nan: int
    inf: int
    nonpositive: int
    style: str = SERIES_STYLES[0]


def points_table(points: Sequence[MetricPoint]) -> np.ndarray:
    """The points as a float64 table, shape (n, 4): seq, step, time (s), value."""
    return np.fromiter(itertools.chain.from_iterable(points), dtype=np.float64,
                       count=4 * len(points)).reshape(-1, 4)


class PointTables:
    """:func:`points_table` of the lists a chart draws, kept between draws and extended as a
    list grows (a live series gains a few points a poll; converting all of them again was
    most of a redraw). A list is known by identity, and its table is reused only while the
    point last converted is still the same object at the same place (a list cut and refilled
    after a resume is converted again)."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[Sequence[MetricPoint], MetricPoint, np.ndarray]] = {}
        self._used: dict[int, tuple[Sequence[MetricPoint], MetricPoint, np.ndarray]] = {}

    def table(self, points: Sequence[MetricPoint]) -> np.ndarray:
        """The table of ``points`` (see the class docstring)."""
        key, n = id(points), len(points)
        kept = self._used.get(key) or self._kept.get(key)  # asked for twice in one draw
        table: np.ndarray | None = None
        if kept is not None:
            ref, last, old = kept
            m = len(old)
            if ref is points and 0 < m <= n and points[m - 1] is last:
                table = old if m == n else np.concatenate([old, points_table(points[m:])])
        if table is None:
            table = points_table(points)
        if n:
            self._used[key] = (points, points[n - 1], table)
        return table

    def forget_unused(self) -> None:
        """Keep only the tables asked for since the last call (one draw's lists)."""
        self._kept, self._used = self._used, {}


def prepare(name: str, points: Sequence[MetricPoint], log_scale: bool, *,
            x_axis: str = "step", origin: float = 0.0,
            style: str = SERIES_STYLES[0], tables: PointTables | None = None) -> PreparedSeries:
    """Split a series into drawable points and marked ones (see :mod:`loss_chart`).

    Args:
        x_axis: ``"step"`` (x is the step) or ``"time"`` (x is ``point.time - origin``,
            seconds).
        origin: the time drawn as 0 on a time axis, seconds.
        tables: where the points' table is kept between draws (``None``: converted anew).
    """
    if not points:
        empty = np.zeros(0)
        return PreparedSeries(name, empty, empty, empty, empty, 0, 0, 0, style)
    table = tables.table(points) if tables is not None else points_table(points)
    # NumPy's stable sorts give the order sorted() gave
    if x_axis == "time":
        order = np.lexsort((table[:, 1], table[:, 2]))  # by time, then step
        steps = table[order, 2] - origin
    else:
        order = np.argsort(table[:, 1], kind="stable")
        steps = table[order, 1]
    values = table[order, 3]
    nan = np.isnan(values)
    pinf = np.isposinf(values)
    ninf = np.isneginf(values)
    finite = ~(nan | pinf | ninf)
    nonpos = finite & (values <= 0) if log_scale else np.zeros_like(finite)
    ok = finite & ~nonpos
    drawn = np.log10(values[ok]) if log_scale else values[ok]
    return PreparedSeries(
        name=name,
        steps=steps[ok],
        values=drawn,
        top=steps[nan | pinf],
        bottom=steps[ninf | nonpos],
        nan=int(nan.sum()),
        inf=int(pinf.sum() + ninf.sum()),
        nonpositive=int(nonpos.sum()),
        style=style,
    )


def count_nonfinite(points: Sequence[MetricPoint]) -> int:
    """How many points of a series are NaN or ±inf."""
    return sum(1 for p in points if not math.isfinite(p.value))
