"""An app that watches quiet sessions must stay quiet: unchanged poll results repaint nothing,
charts draw once per tick, and polling stretches while nothing happens.

No timed assertions: every wait is a bounded loop on a condition.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from colabtui_remote import Monitor
from colabtui_remote.schema import MetricPoint, RuntimeInfo
from test_ui_live import wait_for
from textual.app import App, ComposeResult
from ui_fixtures import NOW, feed, frozen_clock, three_sessions, write_config

from colabtui.app import ColabTuiApp
from colabtui.client import SessionError
from colabtui.config import Config, SessionConfig, Settings, save_config
from colabtui.widgets.loss_chart import LossChart
from colabtui.widgets.poll_result import (
    IDLE_AFTER_POLLS,
    IDLE_MAX_S,
    PollResult,
    merge_results,
    poll_delay,
    same_but_clocks,
)


def test_poll_delay_stretches_while_quiet_up_to_the_cap():
    delays = [poll_delay(1.0, 0, quiet, 30.0) for quiet in range(12)]
    assert delays[:IDLE_AFTER_POLLS] == [1.0] * IDLE_AFTER_POLLS
    assert all(a <= b for a, b in zip(delays, delays[1:], strict=False))
    assert 1.0 < delays[IDLE_AFTER_POLLS] < IDLE_MAX_S
    assert delays[-1] == IDLE_MAX_S
    # failures have their own, longer back-off; a slow configured interval is never shortened
    assert poll_delay(1.0, 3, 10, 30.0) == 4.0
    assert poll_delay(10.0, 0, 10, 30.0) == 10.0


def test_only_the_session_clocks_moving_is_no_change():
    status = three_sessions()[0].status
    later = replace(status, server_time=(status.server_time or 0) + 1.0,
                    uptime_s=(status.uptime_s or 0) + 1.0)
    assert same_but_clocks(status, later)
    assert not same_but_clocks(status, replace(later, step=(status.step or 0) + 1))
    assert not same_but_clocks(status, None) and same_but_clocks(None, None)
    colab = RuntimeInfo(platform="colab", age_s=3600.0, max_s=43200.0)
    aged = replace(later, runtime=replace(colab, age_s=3601.0))
    assert same_but_clocks(replace(status, runtime=colab), aged)  # the runtime's age is a clock
    assert not same_but_clocks(replace(status, runtime=colab),
                               replace(aged, runtime=replace(colab, max_s=86400.0)))
    assert not same_but_clocks(status, aged)  # a runtime object appeared


def _received(panel, name: str) -> list[MetricPoint]:
    """Points of series ``name`` the panel shows or will show at the next tick."""
    pending = panel.pending.new_points.get(name, []) if panel.pending is not None else []
    return [*panel.series.get(name, []), *pending]


async def _settled(pilot, calls: list[str], quiet_s: float = 0.3, limit_s: float = 30.0) -> None:
    """Wait (bounded) until the widgets counted in ``calls`` go ``quiet_s`` without a refresh
    (the first frame's layout may still be drawing on a busy machine), then clear ``calls``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = len(calls)
        await pilot.pause(quiet_s)
        if len(calls) == before:
            break
    calls.clear()


def _count_refreshes(widgets) -> list[str]:
    calls: list[str] = []
    for w in widgets:
        original = w.refresh

        def counted(*args, _w=w, _original=original, **kwargs):
            calls.append(type(_w).__name__)
            return _original(*args, **kwargs)

        w.refresh = counted
    return calls


async def test_an_unchanged_poll_result_repaints_nothing(tmp_path):
    sessions = three_sessions()
    write_config(tmp_path / "config.toml", sessions)
    app = ColabTuiApp(tmp_path / "config.toml", tmp_path / "ledger.sqlite3",
                      clock=frozen_clock, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        feed(app, sessions)
        await pilot.pause()
        s = sessions[0]
        panel = app.panel(s.config.key)
        calls = _count_refreshes([panel, *panel.query("*")])
        again = replace(s.status, server_time=(s.status.server_time or NOW) + 0.2,
                        uptime_s=(s.status.uptime_s or 0) + 0.2)
        assert panel.apply(PollResult(s.config.key, NOW + 0.2, status=again)) is False
        panel.tick()
        await pilot.pause()
        assert calls == []
        # a new point is news: the chart (and only what shows it) repaints
        step = (s.status.step or 0) + 10
        point = MetricPoint(s.status.last_seq + 1, step, NOW, 0.01)
        newer = replace(again, step=step, last_seq=s.status.last_seq + 1)
        assert panel.apply(PollResult(s.config.key, NOW + 1, status=newer,
                                      new_points={"loss": [point]})) is True
        await pilot.pause()
        assert "ProgressView" in calls and "GpuView" not in calls
        assert panel.series["loss"][-1] == point


async def test_a_live_chart_draws_on_the_tick_not_on_every_poll():
    class ChartApp(App):
        def compose(self) -> ComposeResult:
            yield LossChart()

    app = ChartApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        chart = app.query_one(LossChart)
        for n in (5, 6, 7):  # three polls' worth of points before one tick
            chart.update_series({"loss": [MetricPoint(i + 1, i, NOW, 1.0 / (i + 1))
                                          for i in range(n)]})
        await pilot.pause()
        assert chart.dirty and "no points" in chart.title.plain
        assert chart.flush() is True and not chart.dirty
        await pilot.pause()
        assert "loss" in chart.title.plain and chart.flush() is False


async def test_idle_polling_stretches_and_snaps_back_on_news_and_on_a_key(tmp_path):
    mon = Monitor(run="idle", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    token = "idle-token-0123456789abcdef"
    mon.serve(port=0, token=token, quiet=True)
    mon.log(0, loss=1.0)
    mon.at_step_boundary(1)
    interval = 0.2
    config = tmp_path / "config.toml"
    save_config(Config([SessionConfig(mon.url, token, "idle")],
                       Settings(poll_interval_s=interval)), config)
    app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            panel = app.panels[0]
            await wait_for(pilot, lambda: panel.conn_kind == "connected", "connected")
            await wait_for(pilot, lambda: panel.poll_delay_s > interval, "a stretched interval")
            # news: a new point brings the interval straight back
            await asyncio.to_thread(mon.log, 1, loss=0.5)
            # received (shown by the next tick, or already)
            await wait_for(pilot, lambda: 1 in [p.step for p in _received(panel, "loss")],
                           "the new point")
            assert panel.poll_delay_s == interval
            await wait_for(pilot, lambda: panel.poll_delay_s > interval, "stretched again")
            # a key that acts on the session: back at once
            await pilot.press("s")
            assert panel.poll_delay_s == interval
    finally:
        mon.close()


async def test_a_live_chart_redraws_at_most_once_per_chart_refresh(tmp_path):
    mon = Monitor(run="refresh", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    token = "refresh-token-0123456789abcdef"
    mon.serve(port=0, token=token, quiet=True)
    mon.log(0, loss=1.0)
    config = tmp_path / "config.toml"
    settings = Settings(poll_interval_s=0.1, chart_refresh_s=3600.0)
    save_config(Config([SessionConfig(mon.url, token, "refresh")], settings), config)
    app = ColabTuiApp(config, tmp_path / "ledger.sqlite3")
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            panel = app.panels[0]
            chart = panel.query_one(LossChart)
            await wait_for(pilot, lambda: panel.series.get("loss"), "the first points (drawn)")
            await asyncio.to_thread(mon.log, 1, loss=0.5)
            await wait_for(pilot, lambda: len(panel.series["loss"]) == 2, "the new point")
            panel.tick()
            assert chart.dirty, "drawn again before chart_refresh_s passed"
            panel._settings.chart_refresh_s = 0.0
            panel.tick()
            assert not chart.dirty
    finally:
        mon.close()


# --------------------------------------------------------------------------- coalescing


def _next_result(s, at: float, n: int) -> PollResult:
    """The ``n``-th poll after the fixture's status: ten steps and one new loss point on."""
    step = (s.status.step or 0) + 10 * n
    seq = s.status.last_seq + n
    status = replace(s.status, step=step, last_seq=seq, server_time=at, uptime_s=at - NOW)
    return PollResult(s.config.key, at, status=status,
                      new_points={"loss": [MetricPoint(seq, step, at, 1.0 / n)]})


async def test_results_between_ticks_are_applied_together_on_the_next_tick(tmp_path):
    sessions = three_sessions()
    write_config(tmp_path / "config.toml", sessions)
    app = ColabTuiApp(tmp_path / "config.toml", tmp_path / "ledger.sqlite3",
                      clock=frozen_clock, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        feed(app, sessions)
        await pilot.pause()
        shown = {s.config.key: (app.panel(s.config.key).status,
                                len(app.panel(s.config.key).series["loss"])) for s in sessions}
        widgets = [w for s in sessions for w in (app.panel(s.config.key),
                                                  *app.panel(s.config.key).query("*"))]
        calls = _count_refreshes(widgets)
        await _settled(pilot, calls)
        for s in sessions:  # two polls of every session before one tick
            panel = app.panel(s.config.key)
            assert panel.receive(_next_result(s, NOW + 0.3, 1)) is True
            assert panel.receive(_next_result(s, NOW + 0.6, 2)) is True
        await pilot.pause()
        assert calls == [], "a result was drawn before the tick"
        for s in sessions:
            panel = app.panel(s.config.key)
            assert (panel.status, len(panel.series["loss"])) == shown[s.config.key]
            assert [p.step for p in panel.pending.new_points["loss"]] == [
                (s.status.step or 0) + 10, (s.status.step or 0) + 20]
        app._tick()
        await pilot.pause()
        for s in sessions:
            panel = app.panel(s.config.key)
            assert panel.pending is None
            assert panel.status.step == (s.status.step or 0) + 20
            assert len(panel.series["loss"]) == shown[s.config.key][1] + 2
        assert calls.count("ProgressView") == len(sessions), "one repaint per panel"


async def test_the_first_result_and_a_change_of_connection_apply_at_once(tmp_path):
    sessions = three_sessions()[:1]
    s = sessions[0]
    write_config(tmp_path / "config.toml", sessions)
    app = ColabTuiApp(tmp_path / "config.toml", tmp_path / "ledger.sqlite3",
                      clock=frozen_clock, poll=False)
    async with app.run_test(size=(120, 36)) as pilot:
        panel = app.panel(s.config.key)
        await pilot.pause()
        assert panel.receive(PollResult(s.config.key, NOW, status=s.status)) is True
        assert panel.status == s.status and panel.pending is None
        assert "running" in panel.query_one("#progress").render().plain
        later = _next_result(s, NOW + 0.5, 1)
        panel.receive(later)
        assert panel.pending is later and panel.status == s.status
        # the session stops answering: shown at once, with what was pending before it
        lost = PollResult(s.config.key, NOW + 1, error=SessionError("unreachable", "refused"))
        assert panel.receive(lost) is True
        assert panel.pending is None and panel.conn_kind == "unreachable"
        assert panel.status == later.status
        # still unreachable: nothing new, and it waits for the tick
        again = PollResult(s.config.key, NOW + 2, error=SessionError("unreachable", "refused"))
        assert panel.receive(again) is False
        assert panel.pending is again
        # back: at once
        assert panel.receive(_next_result(s, NOW + 3, 2)) is True
        assert panel.pending is None and panel.conn_kind == "connected"


def test_merged_results_keep_every_point_and_the_latest_status():
    s = three_sessions()[0]
    first, second = _next_result(s, NOW + 0.3, 1), _next_result(s, NOW + 0.6, 2)
    merged = merge_results(first, second)
    assert merged.status == second.status and merged.at == second.at
    assert merged.new_points["loss"] == first.new_points["loss"] + second.new_points["loss"]
    assert first.new_points["loss"] == [first.new_points["loss"][0]], "inputs are unchanged"
    # a resume repeats steps: the later points replace the earlier ones from that step on
    redo = replace(second, new_points={"loss": [p._replace(value=9.0)
                                                for p in merged.new_points["loss"]]})
    assert merge_results(merged, redo).new_points["loss"] == redo.new_points["loss"]


def test_results_that_cannot_be_merged_are_refused():
    s = three_sessions()[0]
    ok = _next_result(s, NOW, 1)
    history = replace(ok, history={"loss": []})
    lost = PollResult(s.config.key, NOW, error=SessionError("unreachable", "refused"))
    other = replace(ok, key="another")
    for old, new in ((history, ok), (ok, history), (ok, lost), (ok, other)):
        with pytest.raises(ValueError, match="cannot merge"):
            merge_results(old, new)
