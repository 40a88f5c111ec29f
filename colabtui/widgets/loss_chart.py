"""The loss chart of one session (or of several runs, in the compare view): braille lines
(2×4 dots a cell) drawn with textual-plot.

What is drawn is worked out in :mod:`colabtui.widgets.chart_data` (non-finite points marked on
the edges and counted, at most two points a dot column, log10 on request) and labelled with
:mod:`colabtui.widgets.chart_axes`. On top of that this widget draws:

* **x by step or by wall time** (:attr:`LossChart.x_axis`, a key in the app): time is seconds
  since the chart's first point, or since each line's own first point in the compare view;
* **resumes**: a grey vertical line where each later session of the run took over its curve,
  and the title counts the sessions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import ExitStack

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

from colabtui.curves import ResumeMark
from colabtui.widgets.chart_axes import (
    LogAxisFormatter,
    StepAxisFormatter,
    TimeAxisFormatter,
    ValueAxisFormatter,
    y_ticks,
)
from colabtui.widgets.chart_data import (
    MARKER_STYLE,
    RESUME_STYLE,
    SERIES_STYLES,
    ChartLine,
    PreparedSeries,
    chart_series,
    minmax_per_column,
    prepare,
)
from colabtui.widgets.text_block import text_key

X_AXES = ("step", "time")
"""What x can be: the step, or wall time (seconds since the origin)."""

MIN_MARGIN, MAX_MARGIN = 4, 12
"""Cells left of the axis box for y labels: the longest label plus two, within these."""


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
    """A chart of training curves, with a title line naming them and counting the points that
    cannot be drawn.

    Two ways in: :meth:`set_series`/:meth:`update_series` take a session's series and chart
    its losses (:func:`chart_series`); :meth:`set_lines` takes the lines themselves (the compare
    view: one metric of several runs).

    Attributes:
        log_scale: draw y on a log10 scale.
        x_axis: ``"step"`` or ``"time"`` (:data:`X_AXES`).
    """

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 3; }
    LossChart > #chart-title { height: 1; }
    LossChart > _Plot { height: 1fr; }
    """

    log_scale: reactive[bool] = reactive(False)
    x_axis: reactive[str] = reactive("step")

    def __init__(self, *, id: str | None = None, classes: str | None = None,
                 empty_text: str = "no points logged yet") -> None:
        super().__init__(id=id, classes=classes)
        self._series: dict[str, list[MetricPoint]] = {}
        self._lines: list[ChartLine] | None = None
        self._resumes: tuple[ResumeMark, ...] = ()
        self._heading: tuple[object, ...] | None = None
        self._dirty = False
        self._empty_text = empty_text

    def compose(self) -> ComposeResult:
        yield Static(Text(self._empty_text, style="dim"), id="chart-title")
        yield _Plot(allow_pan_and_zoom=False)

    def set_series(self, series: Mapping[str, list[MetricPoint]],
                   resumes: Sequence[ResumeMark] | None = None) -> None:
        """Show these series now (name → points; any order; non-finite values allowed) and,
        when given, where later sessions resumed (``None`` keeps the marks shown)."""
        self._take(series, resumes)
        self._redraw()

    def update_series(self, series: Mapping[str, list[MetricPoint]],
                      resumes: Sequence[ResumeMark] | None = None) -> None:
        """Take these series, to be drawn by the next :meth:`flush` (a live panel draws its
        chart once per tick, however many polls brought points in between)."""
        self._take(series, resumes)
        self._dirty = True

    def set_lines(self, lines: Sequence[ChartLine]) -> None:
        """Show exactly these lines now, in this order (no resume marks)."""
        self._lines = list(lines)
        self._resumes = ()
        self._redraw()

    def _take(self, series: Mapping[str, list[MetricPoint]],
              resumes: Sequence[ResumeMark] | None) -> None:
        self._series = dict(series)
        self._lines = None
        if resumes is not None:
            self._resumes = tuple(resumes)

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

    def watch_x_axis(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def on_mount(self) -> None:
        self._redraw()

    def chart_lines(self) -> list[ChartLine]:
        """The lines drawn: those given to :meth:`set_lines`, or the series' losses."""
        if self._lines is not None:
            return self._lines
        names = chart_series(list(self._series))
        return [ChartLine(n, self._series[n], style)
                for n, style in zip(names, SERIES_STYLES, strict=False)]

    def _prepared(self) -> tuple[list[PreparedSeries], float]:
        """The lines prepared for the x axis shown, and the shared time origin (seconds)."""
        lines = self.chart_lines()
        time_axis = self.x_axis == "time"
        shared = min((min(p.time for p in line.points) for line in lines if line.points),
                     default=0.0) if time_axis else 0.0
        return [prepare(line.name, line.points, self.log_scale, x_axis=self.x_axis,
                        origin=(shared if line.origin is None else line.origin),
                        style=line.style) for line in lines], shared

    def _redraw(self) -> None:
        self._dirty = False
        if not self.is_mounted:
            return
        try:
            plot = self.query_one(_Plot)
            title = self.query_one("#chart-title", Static)
        except Exception:  # noqa: BLE001 - not composed yet; the mount redraw follows
            return
        prepared, origin = self._prepared()
        heading = self._title(prepared)
        key = text_key(heading)
        if key != self._heading:
            # one row high whatever it says: no layout pass (that cost more than the plot)
            self._heading = key
            title.update(heading, layout=False)
        plot.clear()
        formatter = LogAxisFormatter() if self.log_scale else ValueAxisFormatter()
        plot.set_y_formatter(formatter)
        all_x = [a for p in prepared for a in (p.steps, p.top, p.bottom) if len(a)]
        # no points yet: the title says so; an empty 0..1 box would only look like data
        plot.display = bool(all_x)
        if not all_x:
            plot.set_yticks(None)
            plot.set_xlimits(0, 1)
            plot.set_ylimits(0, 1)
            return
        x_min = float(min(a.min() for a in all_x))
        x_max = float(max(a.max() for a in all_x))
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
        x_format: NumericAxisFormatter = (TimeAxisFormatter() if self.x_axis == "time"
                                          else StepAxisFormatter())
        max_ticks = max(2, columns // 7)
        ticks = x_format.get_ticks(x_min, x_max, max_ticks=max_ticks)
        ticks = ticks[::math.ceil(len(ticks) / max_ticks)] if ticks else ticks
        plot.set_xticks(ticks)
        plot.set_x_formatter(x_format)
        y_max, y_min = y_max + cell * 0.6, y_min - cell * 0.6
        for mark in self._resumes:
            x = mark.step if self.x_axis == "step" else mark.time - origin
            if x_min <= x <= x_max:
                plot.plot(np.array([x, x]), np.array([y_min, y_max]), line_style=RESUME_STYLE,
                          hires_mode=HiResMode.BRAILLE)
        for p in prepared:
            if len(p.steps):
                # two dot columns a cell: each keeps its extremes
                xs, ys = minmax_per_column(p.steps, p.values, 2 * columns, x_min, x_max)
                if len(xs) == 1:
                    plot.scatter(xs, ys, marker="•", marker_style=p.style)
                else:
                    plot.plot(xs, ys, line_style=p.style, hires_mode=HiResMode.BRAILLE)
        for p in prepared:
            if len(p.top):
                plot.scatter(p.top, np.full(len(p.top), y_max), marker="▲",
                             marker_style=MARKER_STYLE)
            if len(p.bottom):
                plot.scatter(p.bottom, np.full(len(p.bottom), y_min), marker="▼",
                             marker_style=MARKER_STYLE)

    def _title(self, prepared: list[PreparedSeries]) -> Text:
        if not prepared:
            return Text(self._empty_text, style="dim", no_wrap=True, overflow="ellipsis")
        text = Text(no_wrap=True, overflow="ellipsis")
        for p in prepared:
            if text:
                text.append("  ")
            text.append("━ ", style=p.style)
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
        if self._resumes:
            text.append(f"  ┊ {len(self._resumes) + 1} sessions", style=RESUME_STYLE)
        return text
