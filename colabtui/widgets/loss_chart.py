"""The loss chart of one session (or of several runs, in the compare view): braille lines
(2×4 dots a cell) in an axis box, drawn by :class:`~colabtui.widgets.braille.BrailleCanvas`.

What is drawn is worked out in :mod:`colabtui.widgets.chart_data` (non-finite points marked on
the edges and counted, at most two points a dot column, log10 on request) and labelled with
:mod:`colabtui.widgets.chart_axes`. On top of that this widget draws:

* **x by step or by wall time** (:attr:`LossChart.x_axis`, a key in the app): time is seconds
  since the chart's first point, or since each line's own first point in the compare view;
* **resumes**: a grey vertical line where each later session of the run took over its curve,
  and the title counts the sessions.

Drawing is one widget's strips, built once per change of data or size and kept: a repaint of
the screen around the chart (an age ticking in the panel) copies them, it does not draw again.
A live chart (:meth:`LossChart.update_series`, then :meth:`LossChart.flush`) keeps its axes
while the new points fit in them, and moves an end they outgrow past them by
:data:`HEADROOM` of the span, so that a flush changes only the rows the new points touch, and
only those rows are repainted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from colabtui_remote.schema import MetricPoint
from colabtui_remote.wire import clean_text
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region, Size
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from colabtui.curves import ResumeMark
from colabtui.widgets.braille import BrailleCanvas
from colabtui.widgets.chart_axes import (
    LogAxisFormatter,
    NumericAxisFormatter,
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
    PointTables,
    PreparedSeries,
    chart_series,
    minmax_per_column,
    prepare,
)

X_AXES = ("step", "time")
"""What x can be: the step, or wall time (seconds since the origin)."""

MIN_MARGIN, MAX_MARGIN = 4, 12
"""Cells left of the axis box for y labels: the longest label plus two, within these."""

MIN_PLOT_ROWS = 2
"""Fewest rows inside the axis box worth drawing; a shorter chart shows its title alone."""

X_LABEL_GAP = 2
"""Cells kept free between two x labels (a label that would come closer is left out)."""

HEADROOM = 0.1
"""When a live chart's points outgrow an end of an axis, that end moves past them by this share
of the span: room for the next points, so the axes (and every row of dots already drawn) stay
as they are until then."""


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

    COMPONENT_CLASSES = {"loss-chart--axis"}
    """``loss-chart--axis``: the axis box, its ticks and labels."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 3; }
    LossChart > .loss-chart--axis { color: $primary; }
    """

    log_scale: reactive[bool] = reactive(False)
    x_axis: reactive[str] = reactive("step")

    def __init__(self, *, id: str | None = None, classes: str | None = None,
                 empty_text: str = "no points logged yet") -> None:
        super().__init__(id=id, classes=classes)
        self._series: dict[str, list[MetricPoint]] = {}
        self._lines: list[ChartLine] | None = None
        self._resumes: tuple[ResumeMark, ...] = ()
        self._dirty = False
        self._empty_text = empty_text
        self._prepared_cache: tuple[list[PreparedSeries], float] | None = None
        self._tables = PointTables()
        self._strips: list[Strip] = []
        self._drawn_for: tuple[Size, Style] | None = None
        self._y_labels: list[str] = []
        self._title_text = Text(empty_text)
        self._axes: tuple[float, float, float, float] | None = None
        """(x_min, x_max, y_min, y_max) of the last draw, kept for a live flush."""
        self._keep_axes = False
        self.rows_repainted = 0
        """Rows the last :meth:`flush` repainted (all of them after anything but a flush)."""

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
        """Draw the series given by :meth:`update_series`, if any; ``True`` when it drew.

        The axes are kept while the points fit (see the module's text), and only the rows
        that differ from what is on screen are repainted."""
        if not self._dirty:
            return False
        self._dirty = False
        self._prepared_cache = None
        old, drawn_for = self._strips, self._drawn_for
        if drawn_for is None or drawn_for[0] != self.size or len(old) != self.size.height:
            self._redraw()  # nothing drawn at this size yet: the whole chart
            return True
        self._keep_axes = True
        try:
            self._strips = self._draw(self.size.width, self.size.height, drawn_for[1])
        finally:
            self._keep_axes = False
        changed = [Region(0, y, self.size.width, 1)
                   for y, (was, now) in enumerate(zip(old, self._strips, strict=True))
                   if was != now]
        self.rows_repainted = len(changed)
        if changed:
            self.refresh(*changed)
        return True

    def watch_log_scale(self) -> None:
        self._redraw()

    def watch_x_axis(self) -> None:
        self._redraw()

    @property
    def title(self) -> Text:
        """The title line as drawn last: the lines' names, counts of undrawable points."""
        return self._title_text

    @property
    def y_labels(self) -> list[str]:
        """The y tick labels drawn last, top to bottom (empty before the first draw)."""
        return list(self._y_labels)

    def chart_lines(self) -> list[ChartLine]:
        """The lines drawn: those given to :meth:`set_lines`, or the series' losses."""
        if self._lines is not None:
            return self._lines
        names = chart_series(list(self._series))
        return [ChartLine(n, self._series[n], style)
                for n, style in zip(names, SERIES_STYLES, strict=False)]

    def _prepared(self) -> tuple[list[PreparedSeries], float]:
        """The lines prepared for the x axis shown, and the shared time origin (seconds);
        kept until the data, the scale or the axis change (a resize only redraws)."""
        if self._prepared_cache is not None:
            return self._prepared_cache
        lines = self.chart_lines()
        time_axis = self.x_axis == "time"
        shared = min((float(self._tables.table(line.points)[:, 2].min())
                      for line in lines if line.points), default=0.0) if time_axis else 0.0
        self._prepared_cache = [
            prepare(line.name, line.points, self.log_scale, x_axis=self.x_axis,
                    origin=(shared if line.origin is None else line.origin), style=line.style,
                    tables=self._tables)
            for line in lines], shared
        self._tables.forget_unused()
        return self._prepared_cache

    def _redraw(self) -> None:
        """Forget the drawing and its axes: the next paint draws the data as it is now."""
        self._dirty = False
        self._prepared_cache = None
        self._drawn_for = None
        self._axes = None
        self.rows_repainted = self.size.height
        self.refresh()

    # ----------------------------------------------------------------- painting

    def render_lines(self, crop):
        # the style is worked out once a paint (it walks every ancestor), not once a line
        key = (self.size, self.rich_style)
        if key != self._drawn_for:
            self._drawn_for = key
            self._strips = self._draw(self.size.width, self.size.height, key[1])
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        if 0 <= y < len(self._strips):
            return self._strips[y]
        style = self._drawn_for[1] if self._drawn_for is not None else Style()
        return Strip.blank(self.size.width, style)

    def _draw(self, width: int, height: int, base: Style) -> list[Strip]:
        """The whole chart, ``height`` strips of ``width`` cells: the title, then the axis
        box (with y labels left of it and x labels under it) when there is room."""
        prepared, origin = self._prepared()
        self._title_text = self._title(prepared)
        strips = [self._text_strip(self._title_text, width, base)]
        self._y_labels = []
        rows = height - 1 - 3  # title; the box's top and bottom; the x labels
        all_x = [a for p in prepared for a in (p.steps, p.top, p.bottom) if len(a)]
        if height > 1 and all_x and rows >= MIN_PLOT_ROWS:
            strips += self._plot(prepared, origin, all_x, width, rows, base)
        blank = Strip.blank(width, base)
        return (strips + [blank] * height)[:height]

    def _plot(self, prepared: list[PreparedSeries], origin: float, all_x: list[np.ndarray],
              width: int, rows: int, base: Style) -> list[Strip]:
        """The axis box and what is in it: ``rows`` + 3 strips."""
        x_min = float(min(a.min() for a in all_x))
        x_max = float(max(a.max() for a in all_x))
        if x_min == x_max:
            x_min, x_max = x_min - 1, x_max + 1
        finite = [p.values for p in prepared if len(p.values)]
        y_min = float(min(v.min() for v in finite)) if finite else 0.0
        y_max = float(max(v.max() for v in finite)) if finite else 1.0
        if y_min == y_max:
            pad = abs(y_min) * 0.05 or 0.5
            y_min, y_max = y_min - pad, y_max + pad
        x_min, x_max, y_min, y_max = self._axes_for(x_min, x_max, y_min, y_max)
        # a row of headroom and one of footroom for the edge markers, where the span allows
        cell = (y_max - y_min) / max(1, rows - 2)
        lo, hi = (y_min - cell, y_max + cell) if math.isfinite(cell) else (y_min, y_max)
        formatter = LogAxisFormatter() if self.log_scale else ValueAxisFormatter()
        ticks = y_ticks(formatter, lo, hi, rows)
        labels = formatter.get_labels_for_ticks(ticks)
        margin = min(MAX_MARGIN, max(MIN_MARGIN, max(map(len, labels), default=0) + 2))
        columns = width - margin - 1  # the box's left side is the margin's last cell
        if columns < 2:
            return []
        dots_x, dots_y = 2 * columns - 1, 4 * rows - 1

        def to_x(x: np.ndarray | float) -> np.ndarray:
            return (np.asarray(x, dtype=np.float64) - x_min) / (x_max - x_min) * dots_x

        def to_y(y: np.ndarray | float) -> np.ndarray:
            # halves first: hi - lo overflows when the values span past ±1e308
            with np.errstate(over="ignore", invalid="ignore"):
                y = np.asarray(y, dtype=np.float64)
                return (hi / 2 - y / 2) / (hi / 2 - lo / 2) * dots_y

        canvas = BrailleCanvas(columns, rows)
        for mark in self._resumes:
            x = mark.step if self.x_axis == "step" else mark.time - origin
            if x_min <= x <= x_max:
                canvas.line(to_x([x, x]), [0, dots_y], RESUME_STYLE)
        for p in prepared:
            if not len(p.steps):
                continue
            # two dot columns a cell: each keeps its extremes
            xs, ys = minmax_per_column(p.steps, p.values, 2 * columns, x_min, x_max)
            if len(xs) == 1:
                col, row = int(to_x(xs[0]) // 2), int(np.nan_to_num(to_y(ys[0])) // 4)
                canvas.text(min(max(row, 0), rows - 1), col, "•", p.style)
            else:
                canvas.line(to_x(xs), to_y(ys), p.style)
        for p in prepared:
            for xs, row, mark in ((p.top, 0, "▲"), (p.bottom, rows - 1, "▼")):
                for col in np.unique((to_x(xs) // 2).astype(np.int64)).tolist():
                    canvas.text(row, col, mark, MARKER_STYLE)
        tick_rows = {}
        for tick, label in zip(ticks, labels, strict=True):
            row = int(np.nan_to_num(to_y(tick)) // 4)
            if 0 <= row < rows:
                tick_rows.setdefault(row, label)
        self._y_labels = [tick_rows[r] for r in sorted(tick_rows)]
        x_format: NumericAxisFormatter = (TimeAxisFormatter() if self.x_axis == "time"
                                          else StepAxisFormatter())
        max_ticks = max(2, columns // 7)
        x_ticks = x_format.get_ticks(x_min, x_max, max_ticks=max_ticks)
        x_ticks = x_ticks[::math.ceil(len(x_ticks) / max_ticks)] if x_ticks else x_ticks
        x_cols = [int(to_x(t) // 2) for t in x_ticks]
        axis = base + self.get_component_rich_style("loss-chart--axis", partial=True)
        return self._box(canvas.to_strips(base), tick_rows, margin, columns,
                         list(zip(x_cols, x_format.get_labels_for_ticks(x_ticks), strict=True)),
                         width, axis)

    def _axes_for(self, x_min: float, x_max: float, y_min: float, y_max: float
                  ) -> tuple[float, float, float, float]:
        """The axes to draw the data's ranges on. During a live flush each end of the last
        draw's axes is kept while the data stays within it, and an end the data passed moves
        past the data by :data:`HEADROOM` of the span; otherwise the data's own ranges."""
        kept = self._axes if self._keep_axes else None
        if kept is not None and kept[0] == x_min:
            x_max = kept[1] if x_max <= kept[1] else _grown(x_max, x_max - x_min)
            span = max(y_max, kept[3]) - min(y_min, kept[2])
            y_min = kept[2] if y_min >= kept[2] else _grown(y_min, -span)
            y_max = kept[3] if y_max <= kept[3] else _grown(y_max, span)
        self._axes = (x_min, x_max, y_min, y_max)
        return self._axes

    def _box(self, inside: list[Strip], tick_rows: dict[int, str], margin: int, columns: int,
             x_ticks: list[tuple[int, str]], width: int, axis: Style) -> list[Strip]:
        """The canvas framed: y labels and ``┫`` ticks left, ``┳`` ticks and x labels below."""
        left = " " * (margin - 1)
        bottom = ["━"] * columns
        label_row = [" "] * width
        free_from = 0
        for col, label in x_ticks:
            if not 0 <= col < columns:
                continue
            bottom[col] = "┳"
            at = margin + col
            start = max(0, min(at - len(label) // 2, width - len(label)))
            if start >= free_from:
                label_row[start:start + len(label)] = label
                free_from = start + len(label) + X_LABEL_GAP
        strips = [Strip([Segment(left + "┏" + "━" * columns + "┓", axis)], width)]
        for row, strip in enumerate(inside):
            label = tick_rows.get(row)
            head = (label.rjust(margin - 2) + " ┫") if label is not None else left + "┃"
            strips.append(Strip([Segment(head[-margin:], axis), *strip,
                                 Segment("┃", axis)], width))
        strips.append(Strip([Segment(left + "┗" + "".join(bottom) + "┛", axis)],
                            width))
        strips.append(Strip([Segment("".join(label_row), axis)], width))
        return strips

    def _text_strip(self, text: Text, width: int, base: Style) -> Strip:
        text = text.copy()
        text.truncate(width, overflow="ellipsis")
        segments = list(text.render(self.app.console, end=""))
        return Strip(Segment.apply_style(segments, base)).extend_cell_length(width, base)

    def _title(self, prepared: list[PreparedSeries]) -> Text:
        if not prepared:
            return Text(self._empty_text, style="dim", no_wrap=True, overflow="ellipsis")
        text = Text(no_wrap=True, overflow="ellipsis")
        for p in prepared:
            if text:
                text.append("  ")
            text.append("━ ", style=p.style)
            text.append(clean_text(p.name))  # untrusted: plain text, never markup
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


def _grown(end: float, by: float) -> float:
    """``end`` moved by :data:`HEADROOM` of ``by`` (signed), or ``end`` when that is not finite."""
    grown = end + by * HEADROOM
    return grown if math.isfinite(grown) else end
