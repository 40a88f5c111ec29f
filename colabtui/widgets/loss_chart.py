"""The loss chart of one session: its logged series drawn with textual-plot.

Three things a plain line plot gets wrong for training curves are handled here:

* **Non-finite points** (NaN, ±inf) are never dropped silently: each is drawn as a red marker
  on the top edge of the chart (``-inf`` on the bottom edge) and counted in the title line.
* **Long runs** are cut to at most two points per column (the minimum and the maximum of the
  steps that fall in it), so a spike stays visible however many points the run has logged.
* **Log scale** (toggled by the app): values are drawn as log10; values <= 0 cannot be, so they
  are marked on the bottom edge and counted, like non-finite ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from colabtui_remote.schema import MetricPoint
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static
from textual_hires_canvas import Canvas
from textual_plot import HiResMode, NumericAxisFormatter, PlotWidget
from textual_plot.plot_widget import Legend

from colabtui.widgets.text_block import text_key

SERIES_STYLES = ("bright_cyan", "bright_magenta", "yellow")
"""Line colours, in the order series are chosen by :func:`chart_series`."""

MAX_SERIES = 3
MARKER_STYLE = "bold red"

MAX_Y_TICKS = 8
"""Most y ticks on a tall chart (a short one gets one every other row)."""

MIN_MARGIN, MAX_MARGIN = 4, 12
"""Cells left of the axis box for y labels: the longest label plus two, within these."""


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

    Args:
        steps: shape (n,), the x values (steps), ascending.
        values: shape (n,), finite y values.
        columns: the number of columns the chart has (>= 1).
        x_min, x_max: the x range the columns span.

    Returns:
        ``(steps, values)``, at most ``2 * columns`` long, in step order; a column's min and max
        keep their own steps, so the line passes through both.
    """
    n = len(steps)
    if n <= 2 * columns or columns < 1:
        return steps, values
    span = (x_max - x_min) or 1.0
    bucket = np.minimum(((steps - x_min) / span * columns).astype(np.int64), columns - 1)
    # Columns are contiguous runs because steps ascend; their starts split the arrays.
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    i_min = np.minimum.reduceat(values, starts)
    i_max = np.maximum.reduceat(values, starts)
    keep: list[int] = []
    bounds = np.r_[starts, n]
    for b in range(len(starts)):
        lo, hi = bounds[b], bounds[b + 1]
        seg = values[lo:hi]
        a = lo + int(np.flatnonzero(seg == i_min[b])[0])
        z = lo + int(np.flatnonzero(seg == i_max[b])[0])
        keep.extend(sorted({a, z}))
    idx = np.asarray(keep, dtype=np.int64)
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
class PreparedSeries:
    """One series ready to draw: finite points (already log10 when asked) and the steps of
    the points that cannot be drawn, split by which edge marks them."""

    name: str
    steps: np.ndarray
    values: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    nan: int
    inf: int
    nonpositive: int


def prepare(name: str, points: Sequence[MetricPoint], log_scale: bool) -> PreparedSeries:
    """Split a series into drawable points and marked ones (see the module docstring)."""
    if not points:
        empty = np.zeros(0)
        return PreparedSeries(name, empty, empty, empty, empty, 0, 0, 0)
    pts = sorted(points, key=lambda p: p.step)
    steps = np.fromiter((p.step for p in pts), dtype=np.float64, count=len(pts))
    values = np.fromiter((p.value for p in pts), dtype=np.float64, count=len(pts))
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
    )


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


class _Canvas(Canvas):
    """A Canvas that works out its style once per paint, not once per line.

    ``Canvas.render_line`` asks for ``self.rich_style`` on every line, and that walks every
    ancestor's styles each time: about a third of the cost of painting a chart. Within one
    :meth:`render_lines` call the style cannot change, so it is computed once there.
    """

    _frame_style: Style | None = None

    @property
    def rich_style(self) -> Style:
        if self._frame_style is not None:
            return self._frame_style
        return super().rich_style

    def render_lines(self, crop) -> list[Strip]:
        self._frame_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._frame_style = None

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        # Canvas answers a line it has no buffer for (before its first resize) with
        # Strip.blank(0), whose segment has no style; Textual's Monochrome filter (NO_COLOR)
        # reads style.color of every segment and raises on None. Give such segments ours.
        if any(segment.style is None for segment in strip):
            style = self.rich_style
            strip = Strip([Segment(text, style if seg_style is None else seg_style, control)
                           for text, seg_style, control in strip], strip.cell_length)
        return strip


class _Plot(PlotWidget, can_focus=False):
    """A PlotWidget that is only a display: the panel owns the keys (no pan, zoom, focus)."""

    BINDINGS = []
    margin_top = reactive(0)
    margin_bottom = reactive(1)
    margin_left = reactive(7)

    def compose(self) -> ComposeResult:
        # PlotWidget.compose, with the faster canvas
        with Grid():
            yield _Canvas(1, 1, id="margin-top")
            yield _Canvas(1, 1, id="margin-left")
            yield _Canvas(1, 1, id="plot")
            yield _Canvas(1, 1, id="margin-bottom")
        yield Legend(id="legend")

    def _render_plot(self) -> None:
        # every pixel set refreshes its canvas; one refresh per canvas at the end is enough
        with ExitStack() as stack:
            for canvas in self.query(_Canvas):
                stack.enter_context(canvas.batch_refresh())
            super()._render_plot()

    def on_canvas_resize(self, event: Canvas.Resize) -> None:
        # PlotWidget resizes its canvases' buffers only on its own layout refresh; a new
        # margin (or a terminal resize the widget itself survives) resizes only the canvases,
        # which left y labels cut to the old margin and empty columns on the right.
        event.stop()
        if event.size != event.canvas._canvas_size:
            self.refresh(layout=True)


class LossChart(Widget):
    """The chart of a session's loss series, with a title line naming them and counting the
    points that cannot be drawn.

    Attributes:
        log_scale: draw y on a log10 scale.
    """

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 3; }
    LossChart > #chart-title { height: 1; }
    LossChart > _Plot { height: 1fr; }
    """

    log_scale: reactive[bool] = reactive(False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._series: dict[str, list[MetricPoint]] = {}
        self._heading: tuple[object, ...] | None = None
        self._dirty = False

    def compose(self) -> ComposeResult:
        yield Static(Text("no points logged yet", style="dim"), id="chart-title")
        yield _Plot(allow_pan_and_zoom=False)

    def set_series(self, series: Mapping[str, list[MetricPoint]]) -> None:
        """Show these series now (name → points; any order; non-finite values allowed)."""
        self._series = dict(series)
        self._redraw()

    def update_series(self, series: Mapping[str, list[MetricPoint]]) -> None:
        """Take these series, to be drawn by the next :meth:`flush` (a live panel draws its
        chart once per tick, however many polls brought points in between)."""
        self._series = dict(series)
        self._dirty = True

    @property
    def dirty(self) -> bool:
        """Whether series were given by :meth:`update_series` and not drawn yet."""
        return self._dirty

    def flush(self) -> bool:
        """Draw the series given by :meth:`update_series`, if any; ``True`` when it drew."""
        if not self._dirty:
            return False
        self._redraw()
        return True

    def watch_log_scale(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def on_mount(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        self._dirty = False
        if not self.is_mounted:
            return
        try:
            plot = self.query_one(_Plot)
            title = self.query_one("#chart-title", Static)
        except Exception:  # noqa: BLE001 - not composed yet; the mount redraw follows
            return
        names = chart_series(list(self._series))
        prepared = [prepare(n, self._series[n], self.log_scale) for n in names]
        heading = self._title(prepared)
        key = text_key(heading)
        if key != self._heading:
            # one row high whatever it says: no layout pass (that cost more than the plot)
            self._heading = key
            title.update(heading, layout=False)
        plot.clear()
        formatter = LogAxisFormatter() if self.log_scale else ValueAxisFormatter()
        plot.set_y_formatter(formatter)
        all_steps = [a for p in prepared for a in (p.steps, p.top, p.bottom) if len(a)]
        # no points yet: the title says so; an empty 0..1 box would only look like data
        plot.display = bool(all_steps)
        if not all_steps:
            plot.set_yticks(None)
            plot.set_xlimits(0, 1)
            plot.set_ylimits(0, 1)
            return
        x_min = float(min(a.min() for a in all_steps))
        x_max = float(max(a.max() for a in all_steps))
        if x_min == x_max:
            x_min, x_max = x_min - 1, x_max + 1
        finite = [p.values for p in prepared if len(p.values)]
        if finite:
            y_min = float(min(v.min() for v in finite))
            y_max = float(max(v.max() for v in finite))
        else:
            y_min, y_max = 0.0, 1.0
        if y_min == y_max:
            pad = abs(y_min) * 0.05 or 0.5
            y_min, y_max = y_min - pad, y_max + pad
        rows = max(2, self.size.height - 1 - plot.margin_bottom - 2)
        # one row of headroom (and footroom) so edge markers sit inside the axis box
        cell = (y_max - y_min) / rows
        ticks = y_ticks(formatter, y_min - cell, y_max + cell, rows)
        labels = formatter.get_labels_for_ticks(ticks)
        # the margin fits the longest label (labels are never cut), within reason
        margin = min(MAX_MARGIN, max(MIN_MARGIN, max(map(len, labels), default=0) + 2))
        if plot.margin_left != margin:
            plot.margin_left = margin
        plot.set_yticks(ticks)
        columns = max(1, self.size.width - margin - 2)
        plot.set_xlimits(x_min, x_max)
        plot.set_ylimits(y_min - cell, y_max + cell)
        max_ticks = max(2, columns // 7)
        ticks = StepAxisFormatter().get_ticks(x_min, x_max, max_ticks=max_ticks)
        ticks = ticks[::math.ceil(len(ticks) / max_ticks)] if ticks else ticks
        plot.set_xticks(ticks)
        plot.set_x_formatter(StepAxisFormatter())
        y_max, y_min = y_max + cell * 0.6, y_min - cell * 0.6
        for style, p in zip(SERIES_STYLES, prepared, strict=False):
            if len(p.steps):
                xs, ys = minmax_per_column(p.steps, p.values, columns, x_min, x_max)
                if len(xs) == 1:
                    plot.scatter(xs, ys, marker="•", marker_style=style)
                else:
                    plot.plot(xs, ys, line_style=style, hires_mode=HiResMode.QUADRANT)
        for p in prepared:
            if len(p.top):
                plot.scatter(p.top, np.full(len(p.top), y_max), marker="▲",
                             marker_style=MARKER_STYLE)
            if len(p.bottom):
                plot.scatter(p.bottom, np.full(len(p.bottom), y_min), marker="▼",
                             marker_style=MARKER_STYLE)

    @staticmethod
    def _title(prepared: list[PreparedSeries]) -> Text:
        if not prepared:
            return Text("no points logged yet", style="dim", no_wrap=True, overflow="ellipsis")
        text = Text(no_wrap=True, overflow="ellipsis")
        for style, p in zip(SERIES_STYLES, prepared, strict=False):
            if text:
                text.append("  ")
            text.append("━ ", style=style)
            text.append(p.name)  # untrusted: appended as plain text, never markup
        counts = []
        nan = sum(p.nan for p in prepared)
        inf = sum(p.inf for p in prepared)
        nonpos = sum(p.nonpositive for p in prepared)
        if nan:
            counts.append(f"{nan} NaN")
        if inf:
            counts.append(f"{inf} inf")
        if nonpos:
            counts.append(f"{nonpos} ≤0")
        if counts:
            text.append("  ▲ " + ", ".join(counts), style=MARKER_STYLE)
        return text


def count_nonfinite(points: Sequence[MetricPoint]) -> int:
    """How many points of a series are NaN or ±inf."""
    return sum(1 for p in points if not math.isfinite(p.value))
