"""QA findings on layout and wording, checked on fixed data with a frozen clock: chart axes
that survive resizes, compact wording at 80x24, dialogs at 40x12, ended and unreachable
sessions, the ETA, the welcome cell, and plain-text notifications."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from colabtui_remote.schema import MetricPoint
from textual.widgets import Button
from textual.widgets._footer import FooterKey
from ui_fixtures import (
    feed,
    frozen_clock,
    loss_curve,
    stopped_session,
    three_sessions,
    unreachable_session,
    write_config,
)

import colabtui
from colabtui.app import ColabTuiApp
from colabtui.formatting import fmt_eta, short_count
from colabtui.screens.add_session import AddSessionScreen
from colabtui.screens.confirm_stop import ConfirmStopScreen
from colabtui.screens.help import HelpScreen
from colabtui.screens.welcome import NOTEBOOK_CELL
from colabtui.widgets.app_footer import AppFooter
from colabtui.widgets.chart_axes import distinct_labels, nice_ticks
from colabtui.widgets.loss_chart import LossChart


def _app(tmp_path: Path, sessions) -> ColabTuiApp:
    write_config(tmp_path / "config.toml", sessions)
    return ColabTuiApp(tmp_path / "config.toml", tmp_path / "ledger.sqlite3",
                       clock=frozen_clock, poll=False)


async def _fed(pilot, sessions) -> None:
    await pilot.pause()
    feed(pilot.app, sessions)
    await pilot.pause()


def _y_labels(chart: LossChart) -> list[str]:
    """The y tick labels the chart drew, top to bottom, read off its painted rows."""
    rows = [strip.text for strip in (chart.render_line(y) for y in range(chart.size.height))]
    return [row.split("┫")[0].strip() for row in rows if "┫" in row]


def _canvases_fit(chart: LossChart) -> bool:
    """Every row the chart painted is its width, and the axis box's right side is its last
    column (no stale columns after a resize)."""
    chart.render_lines(chart.region.reset_offset)  # what a paint does now
    rows = [chart.render_line(y) for y in range(chart.size.height)]
    framed = [strip.text for strip in rows if "┃" in strip.text]
    return (all(strip.cell_length == chart.size.width for strip in rows) and bool(framed)
            and all(text.endswith("┃") for text in framed) and chart.y_labels == [
                label for label in _y_labels(chart)])


# --------------------------------------------------------------------------- pure parts


def test_eta_rounds_to_the_second_under_ten_minutes_then_to_the_minute():
    assert fmt_eta(0, 109, 1.0) == "1m49s"  # QA: 109 s read "1m"
    assert fmt_eta(0, 45, 1.0) == "45s"
    assert fmt_eta(0, 599, 1.0) == "9m59s"
    assert fmt_eta(0, 1770, 1.0) == "30m"  # 29.5 min, to the nearest minute
    assert fmt_eta(0, 3570, 1.0) == "1h00m"
    assert fmt_eta(5, None, 1.0) == "n/a"


def test_short_count():
    assert [short_count(n) for n in (800, 8420, 9980, 20_000, 999_999, 1_200_000)] == [
        "800", "8.4k", "10k", "20k", "1.0M", "1.2M"]


def test_y_labels_stay_distinct_and_short():
    # QA: a loss between 0.001 and 0.005 showed "0.00" on every tick (labels cut to the margin)
    ticks = nice_ticks(0.0008, 0.0052, 5)
    labels = distinct_labels(ticks)
    assert labels == ["0.001", "0.002", "0.003", "0.004", "0.005"]
    tiny = distinct_labels(nice_ticks(1e-5, 5e-5, 5))
    assert len(set(tiny)) == len(tiny) and max(map(len, tiny)) <= 6, tiny
    big = distinct_labels(nice_ticks(123_450.0, 123_456.0, 4))
    assert len(set(big)) == len(big), big
    for lo, hi, most in ((0, 8.8, 3), (-0.4, 2.7, 8), (0.05, 0.09, 2), (1e3, 9e5, 4)):
        ticks = nice_ticks(lo, hi, most)
        assert 1 <= len(ticks) <= most and all(lo <= t <= hi for t in ticks), (lo, hi, ticks)


# --------------------------------------------------------------------------- chart


async def test_chart_labels_survive_resizes_and_fill_the_panel(tmp_path):
    sessions = three_sessions()
    app = _app(tmp_path, sessions)
    async with app.run_test(size=(160, 48)) as pilot:
        await _fed(pilot, sessions)
        chart = app.panels[0].query_one(LossChart)
        wide = _y_labels(chart)
        assert wide == ["2.5", "2.0", "1.5", "1.0", "0.5"]
        for size in ((80, 24), (40, 12), (160, 48)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            await pilot.pause()
            if size != (40, 12):  # at 40x12 the panel has no room left for the chart
                assert _canvases_fit(chart), size
        # QA: back at 160 columns the labels read "2.", "1.", "0." until a restart
        assert _y_labels(chart) == wide


async def test_a_narrow_chart_of_a_small_loss_keeps_distinct_labels(tmp_path):
    sessions = three_sessions()
    # a loss between 0.001 and 0.005, as the digits demo logs late in a run
    small = [MetricPoint(p.seq, p.step, p.time, 0.001 + p.value / 600)
             for p in loss_curve(400, seed=7, start=2.3, floor=0.1, tau=500)]
    sessions[0].series = {"loss": small}
    app = _app(tmp_path, sessions)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, sessions)
        chart = app.panels[0].query_one(LossChart)
        labels = _y_labels(chart)
        assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
        values = [float(label) for label in labels]
        assert all(0.0 <= v <= 0.006 for v in values), labels
        assert _canvases_fit(chart)


# --------------------------------------------------------------------------- 80x24


async def test_compact_wording_and_footer_fit_80x24(tmp_path):
    sessions = three_sessions()
    app = _app(tmp_path, sessions)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, sessions)
        panel = app.panels[0]
        progress = panel.query_one("#progress")
        checkpoint = panel.query_one("#checkpoint")
        width = progress.size.width
        first = progress.render().plain.splitlines()[0]
        assert "8,420/20k" in first and len(first) <= width, first
        line = checkpoint.render().plain.splitlines()[0]
        assert line == "ckpt 4m · s8.0k 180MB" and len(line) <= width
        footer = app.screen.query_one(AppFooter)
        keys = list(footer.query(FooterKey))
        shown = {k.action for k in keys}
        assert {"save", "stop", "help", "quit"} <= shown and "focus_panel(1)" not in shown
        palette = [k for k in keys if k.has_class("-command-palette")]
        right = palette[0].region.x if palette else 80
        for key in keys:
            if key not in palette:
                assert key.region.right <= right, (key.action, key.region, right)
        # a key left out of the footer still works
        await pilot.press("3")
        assert app.focused is app.panels[2]


# --------------------------------------------------------------------------- dialogs


async def test_the_stop_dialog_fits_40x12_and_q_answers_no(tmp_path):
    sessions = three_sessions()
    app = _app(tmp_path, sessions)
    async with app.run_test(size=(40, 12)) as pilot:
        await _fed(pilot, sessions)
        await pilot.press("2", "x")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmStopScreen)
        screen = dialog.region
        for button in dialog.query(Button):
            region = button.region
            assert region.area and screen.contains_region(region), (button.id, region)
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, ConfirmStopScreen)
        assert not list(app.panels[1].workers), "No sends nothing"


async def test_help_says_how_to_close_it_and_q_closes_dialogs(tmp_path):
    sessions = three_sessions()
    app = _app(tmp_path, sessions)
    async with app.run_test(size=(100, 32)) as pilot:
        await _fed(pilot, sessions)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(str(w.render()) for w in app.screen.query("Static"))
        assert "escape, ? or q closes this help" in text
        await pilot.press("q")
        assert app.is_running and not isinstance(app.screen, HelpScreen)
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AddSessionScreen)
        await pilot.press("q")  # in a text field, q is a letter
        assert form.query_one("#url").value == "q" and app.screen is form
        form.query_one("#cancel").focus()
        await pilot.press("q")
        assert app.is_running and not isinstance(app.screen, AddSessionScreen)


# --------------------------------------------------------------------------- session states


async def test_unreachable_reads_last_known_and_ended_reads_final(tmp_path):
    lost, stopped = unreachable_session(), stopped_session()
    sessions = [lost, stopped]
    app = _app(tmp_path, sessions)
    async with app.run_test(size=(120, 36)) as pilot:
        await _fed(pilot, sessions)
        gone, done = app.panels
        progress = gone.query_one("#progress").render().plain
        risk = gone.query_one("#checkpoint").render().plain
        assert progress.startswith("last known: running · 3m ago"), progress
        assert "ETA —" in progress
        assert "at risk  ≥" in risk and "autosave" not in risk
        assert gone.has_class("-stale") and gone.has_class("-error")

        progress = done.query_one("#progress").render().plain
        risk = done.query_one("#checkpoint").render().plain
        header = done.query_one("#header").render().plain
        assert progress.startswith("stopped · 3m ago"), progress
        assert "at risk — (all saved, stopped)" in risk and "autosave" not in risk
        assert "stopped at step 1,200; server closed 3m ago" in header, header
        assert "unreachable" not in header
        assert not done.has_class("-stale") and not done.has_class("-error")


@pytest.mark.parametrize(("state", "words"), [
    ("finished", "at risk — (all saved, finished)"),
    ("failed", "lost work after step 1,200"),
])
async def test_a_finished_or_failed_session_shows_no_live_risk(tmp_path, state, words):
    session = stopped_session()
    session.status = dataclasses.replace(session.status, state=state, error="boom")
    session.error = None
    app = _app(tmp_path, [session])
    async with app.run_test(size=(120, 36)) as pilot:
        await _fed(pilot, [session])
        panel = app.panels[0]
        risk = panel.query_one("#checkpoint").render().plain
        progress = panel.query_one("#progress").render().plain
        assert words in risk and "autosave" not in risk, risk
        assert progress.startswith(state) and "ETA —" in progress


# --------------------------------------------------------------------------- text


def test_the_welcome_screen_sends_to_colabtui_notebook_and_has_no_placeholder_to_paste():
    from colabtui.screens.welcome import welcome_text

    assert "<" not in NOTEBOOK_CELL and "!git clone" not in NOTEBOOK_CELL  # pasted, it would fail
    assert "pip install colabtui-remote" not in NOTEBOOK_CELL  # not on PyPI
    text = "".join(r.plain for r in welcome_text().renderables if hasattr(r, "plain"))
    assert "colabtui notebook --drive gdrive://root/colabtui" in text
    assert "colabtui connect colab://ENDPOINT" in text


def test_every_notification_is_plain_text():
    """Remote text (labels, errors) reaches notify(): markup=False on every call."""
    package = Path(colabtui.__file__).parent
    calls = 0
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("notify", "toast")):
                calls += 1
                if node.func.attr == "toast":  # ColabTuiApp.toast: plain text always
                    continue
                markup = [k for k in node.keywords if k.arg == "markup"]
                assert markup and isinstance(markup[0].value, ast.Constant) \
                    and markup[0].value.value is False, f"{path.name}:{node.lineno}"
    assert calls >= 10
    # the one toast() builds its Notification as plain text
    source = ast.parse(Path(colabtui.__file__).with_name("app.py").read_text(encoding="utf-8"))
    made = [node for node in ast.walk(source) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name) and node.func.id == "Notification"]
    assert made and all(any(k.arg == "markup" and isinstance(k.value, ast.Constant)
                            and k.value.value is False for k in node.keywords) for node in made)


@pytest.mark.parametrize("width", [100, 130, 160])
async def test_every_footer_key_fits_beside_the_palette_key(tmp_path, width):
    sessions = three_sessions()
    app = _app(tmp_path, sessions)
    async with app.run_test(size=(width, 40)) as pilot:
        await _fed(pilot, sessions)
        keys = list(app.screen.query_one(AppFooter).query(FooterKey))
        palette = [k for k in keys if k.has_class("-command-palette")]
        right = palette[0].region.x if palette else width
        assert {"save", "stop", "help", "quit"} <= {k.action for k in keys}
        for key in keys:
            if key not in palette:
                assert key.region.right <= right, (key.action, key.region, right)
