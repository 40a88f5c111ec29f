"""Braille curves, resume marks, x by step or wall time, and the Compare screen.

Ledgers are real SQLite files filled through :meth:`Ledger.record_status` and
:meth:`Ledger.add_points` with the same parsed objects a poll records.
"""

from __future__ import annotations

import math

import numpy as np
from colabtui_remote.schema import MetricPoint
from history_fixtures import COLAB, play_session
from ui_fixtures import NOW, write_config

from colabtui.app import ColabTuiApp
from colabtui.curves import (
    ResumeMark,
    compare_metric,
    load_metric,
    resume_marks,
    run_choices,
    run_curves,
)
from colabtui.ledger import Ledger, iter_pages
from colabtui.screens.compare import CompareScreen
from colabtui.widgets.chart_axes import TimeAxisFormatter, time_ticks
from colabtui.widgets.chart_data import ChartLine, minmax_per_column, prepare
from colabtui.widgets.loss_chart import LossChart


def add_session(ledger: Ledger, run: str, sid: str, steps: range, *, t0: float,
                value=lambda s: 1.0 / (1 + s), gpu: str = "Tesla T4",
                started_at: float | None = None, metric: str = "loss") -> None:
    """A session of ``run`` that logged ``metric`` at ``steps`` (its clock: ``t0 + step``)."""
    start = t0 + steps.start if started_at is None else started_at
    play_session(ledger, run=run, session_id=sid, label=run, gpu=gpu, platform=COLAB,
                 started_at=start, lifetime_s=60, rate=1.0, end="stopped")
    for page in iter_pages(run, {metric: [(s, value(s)) for s in steps]}, t0=t0):
        ledger.add_points(run, sid, page)


# ----------------------------------------------------------------- the reducer and the axes

def test_every_dot_column_keeps_its_spike_and_nan_is_marked_not_lost():
    n, cells = 100_000, 50
    steps = np.arange(n, dtype=np.float64)
    values = np.exp(-steps / n)
    values[12_345] = 50.0  # a one-step spike
    values[77_777] = -3.0  # and a one-step dip
    xs, ys = minmax_per_column(steps, values, 2 * cells, 0.0, n - 1.0)
    assert len(xs) <= 4 * cells
    assert 50.0 in ys and -3.0 in ys
    assert xs[list(ys).index(50.0)] == 12_345  # the spike keeps its own step
    assert np.all(np.diff(xs) > 0)
    pts = [MetricPoint(i + 1, i, 1000.0 + 2 * i, v) for i, v in enumerate([1, math.nan, 3])]
    by_time = prepare("loss", pts, False, x_axis="time", origin=1000.0)
    assert list(by_time.steps) == [0.0, 4.0] and list(by_time.top) == [2.0]
    assert by_time.nan == 1


def test_equal_extremes_keep_the_first_and_a_column_of_one_point_keeps_it():
    steps = np.array([0.0, 1, 2, 3, 10, 11])
    values = np.array([5.0, 5, 1, 1, 7, 7])
    xs, ys = minmax_per_column(steps, values, 2, 0.0, 11.0)
    assert list(zip(xs, ys, strict=True)) == [(0, 5), (2, 1), (10, 7)]


def test_wall_time_ticks_are_round_and_labelled_as_durations():
    assert time_ticks(0, 3600, 5) == [0.0, 900.0, 1800.0, 2700.0, 3600.0]
    assert time_ticks(0, 50, 6) == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert TimeAxisFormatter().get_labels_for_ticks([0, 90, 5400, 90_000]) == \
        ["0s", "1m", "1h30m", "1d01h"]
    many = time_ticks(0, 1e9, 4)
    assert 1 <= len(many) <= 4
    assert time_ticks(5, 5, 4) == [5]
    assert time_ticks(math.nan, 5, 4) == []


# ----------------------------------------------------------------- resume marks

def test_resume_marks_are_where_each_later_session_took_over(tmp_path):
    with Ledger(tmp_path / "h.sqlite") as ledger:
        add_session(ledger, "r", "s1", range(0, 80), t0=NOW - 9000)
        add_session(ledger, "r", "s2", range(50, 130), t0=NOW - 5000)  # resumed at 50
        add_session(ledger, "r", "s3", range(130, 200), t0=NOW - 2000)
        add_session(ledger, "one", "o1", range(0, 10), t0=NOW - 100)
        marks = resume_marks(ledger, "r")
        assert marks == [ResumeMark(50, NOW - 5000 + 50), ResumeMark(130, NOW - 2000 + 130)]
        assert resume_marks(ledger, "one") == []
        series, resumes = run_curves(ledger, "r")
        assert [p.step for p in series["loss"]] == list(range(200))
        assert resumes == tuple(marks)


def test_a_session_whose_every_point_was_replaced_leaves_no_mark(tmp_path):
    with Ledger(tmp_path / "h.sqlite") as ledger:
        add_session(ledger, "r", "s1", range(0, 100), t0=NOW - 9000)
        add_session(ledger, "r", "s2", range(60, 90), t0=NOW - 6000)  # lost before a save
        add_session(ledger, "r", "s3", range(40, 120), t0=NOW - 3000)  # from step 40
        assert resume_marks(ledger, "r") == [ResumeMark(40, NOW - 3000 + 40)]


# ----------------------------------------------------------------- the chart

async def test_the_chart_draws_by_wall_time_and_marks_the_sessions(tmp_path):
    with Ledger(tmp_path / "h.sqlite") as ledger:
        add_session(ledger, "r", "s1", range(0, 300), t0=NOW - 9000)
        add_session(ledger, "r", "s2", range(200, 600), t0=NOW - 5000)
        series, resumes = run_curves(ledger, "r")

    from textual.app import App

    class One(App):
        CSS = "LossChart { width: 60; height: 20; }"

        def compose(self):
            yield LossChart()

    app = One()
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.query_one(LossChart)
        chart.set_series(series, resumes)
        await pilot.pause()
        title = chart.title.plain
        assert "2 sessions" in title
        steps_shown = app.export_screenshot()
        chart.x_axis = "time"
        await pilot.pause()
        by_time = app.export_screenshot()
        assert by_time != steps_shown
        # 9000 - 5000 + 400 s of wall time from the first point: labels in minutes or hours
        assert "1h" in by_time and "600" not in by_time
        assert "⠀" in by_time or any(0x2801 <= ord(c) <= 0x28FF for c in by_time)


# ----------------------------------------------------------------- the compare view

def three_runs(ledger: Ledger) -> None:
    for i, lr in enumerate(("1e-3", "3e-3", "1e-2")):
        add_session(ledger, f"digits-lr{lr}", f"d{i}", range(0, 400), t0=NOW - 3000 + i,
                    value=lambda s, i=i: 2.0 * math.exp(-s * (i + 1) / 200) + 0.05)
    add_session(ledger, "old-run", "o", range(0, 50), t0=NOW - 90_000,
                started_at=NOW - 90_000, metric="accuracy")


def test_runs_to_compare_are_listed_newest_first_with_their_metrics(tmp_path):
    with Ledger(tmp_path / "h.sqlite") as ledger:
        three_runs(ledger)
        choices = run_choices(ledger)
        assert [c.run for c in choices][-1] == "old-run"
        assert {c.run for c in choices[:3]} == {"digits-lr1e-3", "digits-lr3e-3", "digits-lr1e-2"}
        assert choices[0].series == ("loss",) and choices[0].gpus == ("Tesla T4",)
        assert compare_metric(choices[:3]) == "loss"
        assert compare_metric(choices) == "loss"  # most runs share it
        assert compare_metric([choices[-1]]) == "accuracy"
        got = load_metric(ledger, ["digits-lr1e-3", "old-run"], "loss")
        assert list(got) == ["digits-lr1e-3"] and len(got["digits-lr1e-3"]) == 400


async def test_compare_overlays_the_newest_three_runs_and_follows_the_ticks(tmp_path):
    config = tmp_path / "config.toml"
    write_config(config, [])
    ledger_path = tmp_path / "history.sqlite"
    with Ledger(ledger_path) as ledger:
        three_runs(ledger)
    app = ColabTuiApp(config, ledger_path, clock=lambda: NOW)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        for _ in range(50):
            await pilot.pause(0.05)
            if len(screen.query_one(LossChart).chart_lines()) == 3:
                break
        lines = screen.query_one(LossChart).chart_lines()
        assert sorted(line.name for line in lines) == \
            ["digits-lr1e-2", "digits-lr1e-3", "digits-lr3e-3"]
        assert len({line.style for line in lines}) == 3
        assert "loss of 3 runs, by step" in str(screen.query_one("#compare-title").render())
        await pilot.press("t")
        for _ in range(50):
            await pilot.pause(0.05)
            if "wall time" in str(screen.query_one("#compare-title").render()):
                break
        assert screen.query_one(LossChart).x_axis == "time"
        # each run's time starts at its own first point
        assert all(line.origin == min(p.time for p in line.points)
                   for line in screen.query_one(LossChart).chart_lines())
        await pilot.press("space")  # untick the highlighted (newest) run
        for _ in range(50):
            await pilot.pause(0.05)
            if len(screen.query_one(LossChart).chart_lines()) == 2:
                break
        assert len(screen.query_one(LossChart).chart_lines()) == 2
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CompareScreen)


async def test_compare_shows_hostile_run_names_literally_and_says_when_empty(tmp_path):
    config = tmp_path / "config.toml"
    write_config(config, [])
    ledger_path = tmp_path / "history.sqlite"
    with Ledger(ledger_path):
        pass
    app = ColabTuiApp(config, ledger_path, clock=lambda: NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause(0.3)
        assert "no runs recorded yet" in str(app.screen.query_one("#compare-empty").render())
    hostile = "[/bold]x\x1b]0;pwned\x07[red]"
    with Ledger(ledger_path) as ledger:
        add_session(ledger, hostile, "h", range(0, 20), t0=NOW - 100)
    app = ColabTuiApp(config, ledger_path, clock=lambda: NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("c")
        for _ in range(50):
            await pilot.pause(0.05)
            if app.screen.query_one(LossChart).chart_lines():
                break
        lines = app.screen.query_one(LossChart).chart_lines()
        assert len(lines) == 1 and lines[0].name.startswith("[/bold]x")
        assert "\x1b" not in lines[0].name and "\x07" not in lines[0].name
        shot = app.export_screenshot()
        assert "[/bold]x" in shot and "pwned" in shot


def test_a_chart_line_keeps_the_order_and_colour_it_is_given():
    line = ChartLine("a", [MetricPoint(1, 1, 1.0, 1.0)], "yellow", origin=1.0)
    p = prepare(line.name, line.points, False, style=line.style)
    assert p.style == "yellow"
