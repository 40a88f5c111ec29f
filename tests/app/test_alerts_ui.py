"""The app's alerts: a poll result that fires one is a toast, the Alerts screen (``!``, the
command palette) lists every alert newest first; a snapshot of that screen.

Regenerate the snapshot with ``pytest tests/app/test_alerts_ui.py --snapshot-update`` and look
at the result.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from textual.widgets import DataTable
from ui_fixtures import (
    NOW,
    feed,
    fire_alerts,
    frozen_clock,
    three_sessions,
    unreachable_session,
    write_config,
)

from colabtui.app import ColabTuiApp
from colabtui.screens.alerts import AlertsScreen
from colabtui.widgets.poll_result import PollResult


def _app(tmp_path: Path, sessions) -> ColabTuiApp:
    config = tmp_path / "config.toml"
    write_config(config, sessions)
    return ColabTuiApp(config, tmp_path / "ledger.sqlite3", clock=frozen_clock, poll=False)


def test_the_alerts_screen(snap_compare, tmp_path, utc):
    sessions = [*three_sessions(), unreachable_session()]

    async def run_before(pilot) -> None:
        await pilot.pause()
        feed(pilot.app, sessions)
        fire_alerts(pilot.app, sessions)
        pilot.app.clear_notifications()  # the toasts (tested below) would cover the table
        await pilot.press("exclamation_mark")
        await pilot.pause()

    assert snap_compare(_app(tmp_path, sessions), terminal_size=(120, 30),
                        run_before=run_before)


async def test_a_poll_that_fires_an_alert_is_a_toast_and_a_row_newest_first(tmp_path):
    sessions = three_sessions()[:1]
    t4 = sessions[0]
    app = _app(tmp_path, sessions)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        panel = app.panel(t4.config.key)
        nan = replace(t4.status, metrics={"loss": None}, metrics_nonfinite={"loss": "inf"})
        panel.post_message(PollResult(t4.config.key, NOW, status=nan))
        await pilot.pause()
        toasts = [n for (key, kind), n in app._toasts.items() if kind.startswith("alert-")]
        assert [n.severity for n in toasts] == ["error"]
        assert "loss is inf" in toasts[0].message and toasts[0].markup is False
        panel.post_message(PollResult(t4.config.key, NOW + 1, status=replace(
            t4.status, state="finished")))
        await pilot.pause()
        await pilot.press("exclamation_mark")
        await pilot.pause()
        assert isinstance(app.screen, AlertsScreen)
        table = app.screen.query_one(DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [r[2] for r in rows] == ["ended", "nonfinite"]  # newest first
        assert rows[0][3] == "holds" and rows[1][3].startswith("cleared")  # the loss is finite again
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, AlertsScreen)
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Alerts" in commands


async def test_the_app_polling_a_real_session_toasts_its_nan(tmp_path):
    from colabtui_remote import Monitor

    from colabtui.config import Config, SessionConfig, Settings, save_config

    mon = Monitor(run="live-nan", autosave_every=None)
    url = mon.serve(port=0, quiet=True)
    try:
        config = tmp_path / "config.toml"
        save_config(Config([SessionConfig(url, mon.token, "live")],
                           Settings(poll_interval_s=0.1)), config)
        app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: app.panels and app.panels[0].status is not None,
                           "the first status")
            mon.log(step=1, loss=float("nan"))
            mon.at_step_boundary(1)
            await wait_for(pilot, lambda: any("live: loss is nan" in n.message
                                              for n in app._notifications), "the NaN toast")
            assert [a.kind for a in app.alerts.book.alerts()] == ["nonfinite"]
    finally:
        mon.close()


async def wait_for(pilot, condition, what: str, bound_s: float = 60.0) -> None:
    """Pause the app until ``condition()`` holds (bounded: fails after ``bound_s``)."""
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await pilot.pause(0.05)
