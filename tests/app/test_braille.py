"""The braille canvas and the chart drawn on it: dots, lines, clipping, and hostile values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from colabtui_remote.schema import MetricPoint
from rich.style import Style
from textual.app import App

from colabtui.widgets.braille import BRAILLE_BASE, BrailleCanvas
from colabtui.widgets.chart_data import PointTables, points_table
from colabtui.widgets.loss_chart import LossChart

BASE = Style(color="white", bgcolor="black")


def cells(canvas: BrailleCanvas) -> list[str]:
    return [strip.text for strip in canvas.to_strips(BASE)]


def test_each_dot_sets_its_own_bit_in_unicode_order():
    # dots 1-8: (0,0)=1 (0,1)=2 (0,2)=3 (1,0)=4 (1,1)=5 (1,2)=6 (0,3)=7 (1,3)=8
    expected = {(0, 0): 0x01, (0, 1): 0x02, (0, 2): 0x04, (1, 0): 0x08,
                (1, 1): 0x10, (1, 2): 0x20, (0, 3): 0x40, (1, 3): 0x80}
    for (x, y), bit in expected.items():
        canvas = BrailleCanvas(1, 1)
        canvas.line([x], [y])
        assert cells(canvas) == [chr(BRAILLE_BASE + bit)], (x, y)
    full = BrailleCanvas(1, 1)
    full.line([0, 0, 1, 1], [0, 3, 3, 0])
    assert cells(full) == ["⣿"]


def test_a_line_is_continuous_and_every_row_is_the_canvas_width():
    canvas = BrailleCanvas(10, 3)
    canvas.line([0, 19], [0, 11])  # corner to corner
    rows = cells(canvas)
    assert all(len(row) == 10 for row in rows)
    # every dot column from 0 to 19 has a dot: no gaps in a steep or shallow line
    dots = np.zeros((12, 20), dtype=bool)
    for r, row in enumerate(rows):
        for c, ch in enumerate(row):
            bits = ord(ch) - BRAILLE_BASE if ch != " " else 0
            for (dy, dx), bit in np.ndenumerate(np.array([[1, 8], [2, 16], [4, 32], [64, 128]])):
                dots[4 * r + dy, 2 * c + dx] |= bool(bits & bit)
    assert dots.any(axis=0).all() and dots.any(axis=1).all()


def test_off_canvas_huge_and_non_finite_points_are_clipped_or_left_out():
    canvas = BrailleCanvas(4, 2)
    canvas.line([0, 1e308, np.nan, 7], [0, -1e308, 3, np.inf])
    canvas.line([np.inf], [np.nan])  # nothing finite: nothing drawn, no error
    canvas.text(5, 0, "x")  # a row off the canvas: clipped
    canvas.text(0, 3, "abc")  # runs off the right edge: clipped
    rows = cells(canvas)
    assert [len(r) for r in rows] == [4, 4] and rows[0][3] == "a"


def test_the_last_line_drawn_colours_a_shared_cell_and_segments_are_merged():
    canvas = BrailleCanvas(3, 1)
    canvas.line([0, 5], [0, 0], "red")
    canvas.line([0, 1], [3, 3], "blue")
    strips = canvas.to_strips(BASE)
    segments = list(strips[0])
    assert [s.text for s in segments] == ["⣉", "⠉⠉"]  # blue's dots merged into red's first cell
    assert segments[0].style.color.name == "blue" and segments[1].style.color.name == "red"
    assert all(s.style.bgcolor is not None for s in segments)  # the base under every segment


class _One(App):
    CSS = "LossChart { width: 48; height: 14; }"

    def compose(self):
        yield LossChart()


async def test_values_past_1e308_and_a_single_point_are_drawn_without_error():
    app = _One()
    async with app.run_test(size=(60, 20)) as pilot:
        chart = app.query_one(LossChart)
        huge = [MetricPoint(1, 0, 0.0, -1.7e308), MetricPoint(2, 1, 1.0, 1.7e308),
                MetricPoint(3, 2, 2.0, math.nan), MetricPoint(4, 3, 3.0, 5e-324)]
        chart.set_series({"loss": huge})
        await pilot.pause()
        rows = [chart.render_line(y).text for y in range(chart.size.height)]
        assert "1 NaN" in chart.title.plain and "▲" in "".join(rows[1:])
        assert all(len(row) == 48 for row in rows)
        assert any(BRAILLE_BASE < ord(c) <= BRAILLE_BASE + 0xFF for c in "".join(rows))
        chart.set_series({"loss": [MetricPoint(1, 5, 0.0, 0.25)]})
        await pilot.pause()
        rows = [chart.render_line(y).text for y in range(chart.size.height)]
        assert "•" in "".join(rows)


async def test_a_resize_draws_again_and_a_repaint_does_not():
    app = _One()
    async with app.run_test(size=(60, 20)) as pilot:
        chart = app.query_one(LossChart)
        chart.set_series({"loss": [MetricPoint(i + 1, i, float(i), 1 / (i + 1))
                                   for i in range(200)]})
        await pilot.pause()
        drawn = chart._strips
        chart.refresh()  # the panel around it repainted: the strips are kept
        await pilot.pause()
        assert chart._strips is drawn
        chart.styles.width = 30
        await pilot.pause()
        assert chart._strips is not drawn
        assert all(chart.render_line(y).cell_length == 30 for y in range(chart.size.height))


def _curve(n: int, start: int = 0) -> list[MetricPoint]:
    return [MetricPoint(i + 1, i, float(i), 2.0 * math.exp(-i / 150) + 0.1 + 0.02 * (i % 7))
            for i in range(start, n)]


async def test_a_live_chart_keeps_its_axes_and_repaints_only_the_rows_new_points_touch():
    app = _One()
    async with app.run_test(size=(60, 20)) as pilot:
        chart = app.query_one(LossChart)
        chart.set_series({"loss": _curve(500)})
        await pilot.pause()
        labels, height = chart.y_labels, chart.size.height
        assert chart.rows_repainted == height  # a new series: drawn whole

        points = _curve(560)  # outgrows the x axis: it grows past the last point
        chart.update_series({"loss": points})
        chart.flush()
        await pilot.pause()
        assert chart._axes[1] == pytest.approx(559 + 559 * 0.1)
        for n in (580, 600):  # within the room it made: only the rows near the end change
            points = points + _curve(n, len(points))
            chart.update_series({"loss": points})
            assert chart.flush()
            await pilot.pause()
            assert 0 < chart.rows_repainted <= 4, chart.rows_repainted
            assert chart.y_labels == labels and chart._axes[1] == pytest.approx(614.9)
        assert not chart.flush()  # nothing new: nothing drawn

        # a spike past the top moves the top end, and is drawn: min/max per column kept
        spike = points + [MetricPoint(601, 600, 600.0, 9.0)]
        chart.update_series({"loss": spike})
        chart.flush()
        await pilot.pause()
        assert chart._axes[3] > 9.0 and chart.rows_repainted > 4
        rows = [chart.render_line(y).text for y in range(height)]
        dotted = [y for y, r in enumerate(rows)
                  if any(BRAILLE_BASE < ord(c) <= BRAILLE_BASE + 0xFF for c in r)]
        assert dotted[0] <= 3  # the spike reaches the top rows of the box
        assert chart.y_labels != labels

        chart.set_series({"loss": _curve(100)})  # a new history: its own axes again
        await pilot.pause()
        assert chart._axes[1] == 99 and chart.rows_repainted == height


def test_point_tables_extend_a_growing_list_and_convert_a_refilled_one_again():
    tables = PointTables()
    points = [MetricPoint(i + 1, i, float(i), 1.0 / (i + 1)) for i in range(10)]
    first = tables.table(points)
    tables.forget_unused()
    points.extend(MetricPoint(i + 1, i, float(i), 2.0) for i in range(10, 15))
    grown = tables.table(points)
    tables.forget_unused()
    assert np.array_equal(grown, points_table(points))
    assert grown[:10].tolist() == first.tolist()
    # a resume: the tail cut and refilled with other values at the same length
    del points[8:]
    points.extend(MetricPoint(i + 1, i, float(i), -7.0) for i in range(8, 15))
    again = tables.table(points)
    assert np.array_equal(again, points_table(points)) and again[-1, 3] == -7.0
