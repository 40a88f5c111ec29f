"""Snapshot tests of the main layouts, from fixed data with a frozen clock (no network).

Regenerate with ``pytest tests/app/test_snapshots.py --snapshot-update`` and look at the
result (``python scripts/screenshots.py`` writes the same layouts as PNG).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_fixtures import (
    drive_sessions,
    feed,
    frozen_clock,
    launched_session,
    stopped_session,
    three_sessions,
    unreachable_session,
    write_config,
    write_launches,
)

from colabtui.app import ColabTuiApp


def _app(tmp_path: Path, sessions) -> ColabTuiApp:
    config = tmp_path / "config.toml"
    if sessions:
        write_config(config, sessions)
    return ColabTuiApp(config, tmp_path / "ledger.sqlite3", clock=frozen_clock, poll=False,
                       launches_path=tmp_path / "launches.json")


def _feeder(sessions):
    async def run_before(pilot) -> None:
        await pilot.pause()
        feed(pilot.app, sessions)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (160, 48), (40, 12)], ids=["80x24", "160x48", "40x12"])
def test_three_sessions(snap_compare, tmp_path, size):
    sessions = three_sessions()
    assert snap_compare(_app(tmp_path, sessions), terminal_size=size,
                        run_before=_feeder(sessions))


def test_checkpoints_on_drive(snap_compare, tmp_path):
    sessions = drive_sessions()
    assert snap_compare(_app(tmp_path, sessions), terminal_size=(120, 36),
                        run_before=_feeder(sessions))


def test_unreachable_session(snap_compare, tmp_path):
    sessions = [three_sessions()[0], unreachable_session()]
    assert snap_compare(_app(tmp_path, sessions), terminal_size=(120, 36),
                        run_before=_feeder(sessions))


def test_stopped_session(snap_compare, tmp_path):
    sessions = [three_sessions()[0], stopped_session()]
    assert snap_compare(_app(tmp_path, sessions), terminal_size=(120, 36),
                        run_before=_feeder(sessions))


@pytest.mark.parametrize("size", [(120, 36), (40, 12)], ids=["120x36", "40x12"])
def test_stop_confirmation(snap_compare, tmp_path, size):
    sessions = three_sessions()
    assert snap_compare(_app(tmp_path, sessions), terminal_size=size, press=["2", "x"],
                        run_before=_feeder(sessions))


def test_a_dead_launched_session_offers_r_and_asks_before_relaunching(snap_compare, tmp_path):
    sessions = [three_sessions()[0], launched_session()]
    write_launches(tmp_path / "launches.json", sessions[1])
    assert snap_compare(_app(tmp_path, sessions), terminal_size=(120, 36), press=["2", "R"],
                        run_before=_feeder(sessions))


def test_remove_confirmation(snap_compare, tmp_path):
    sessions = three_sessions()
    assert snap_compare(_app(tmp_path, sessions), terminal_size=(120, 36), press=["3", "d"],
                        run_before=_feeder(sessions))


def test_welcome_screen(snap_compare, tmp_path):
    assert snap_compare(_app(tmp_path, []), terminal_size=(100, 32))


def test_history_screen(snap_compare, tmp_path, monkeypatch):
    import time

    from history_fixtures import fill_history

    from colabtui.ledger import Ledger

    monkeypatch.setenv("TZ", "UTC")  # the start times, the same on every machine
    time.tzset()
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        fill_history(ledger)
    sessions = three_sessions()

    async def run_before(pilot) -> None:
        await _feeder(sessions)(pilot)
        await pilot.press("h")
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    try:
        assert snap_compare(_app(tmp_path, sessions), terminal_size=(160, 30),
                            run_before=run_before)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_compare_screen(snap_compare, tmp_path):
    from history_fixtures import fill_learning_rates

    from colabtui.ledger import Ledger

    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        fill_learning_rates(ledger)

    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(_app(tmp_path, []), terminal_size=(140, 36), run_before=run_before)
