"""The history of sessions: what the ledger keeps (and the migration of an older file), the
``colabtui history`` command, and the History screen.

Ledgers are real SQLite files filled through :meth:`Ledger.record_status` with schema.Status
objects, as the app records each poll (tests/app/history_fixtures.py), and in one test by the app
polling a real training session on loopback.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import time
from argparse import Namespace
from pathlib import Path

import pytest
from colabtui_remote import schema, wire
from history_fixtures import fill_history, play_session
from rich.text import Text
from textual.widgets import DataTable
from ui_fixtures import NOW, frozen_clock, write_config

from colabtui import cli_history
from colabtui.app import ColabTuiApp
from colabtui.history import (
    EMPTY,
    FIRST,
    LOST_AFTER_S,
    gpu_summary,
    history_page,
    iter_history,
)
from colabtui.ledger import Ledger
from colabtui.ledger_history import SCHEMA_VERSION
from colabtui.screens.history import PAGE_SIZE, HistoryScreen

DATA = Path(__file__).resolve().parent / "data"


def _run_cli(*argv: str, run: str | None = None) -> str:
    args = Namespace(run=run, json="--json" in argv, csv="--csv" in argv, demo="--demo" in argv)
    out = io.StringIO()
    assert cli_history.run(args, out) == 0
    return out.getvalue()


# --------------------------------------------------------------------------- the rows


def test_each_session_says_how_it_ended_and_what_it_did(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        fill_history(ledger)
        rows = {r.session_id: r for r in iter_history(ledger, now=NOW)}
    assert [rows[s].ended for s in ("r1", "r2", "r3", "r4", "r5", "r6", "b1", "b2")] == [
        "lost", "stopped", "interrupted", "failed", "stopped", "running", "stopped", "finished"]
    r1 = rows["r1"]
    assert (r1.platform, r1.gpu, r1.lifetime_s) == ("colab", "Tesla T4", 4 * 3600 + 600)
    assert r1.median_steps_per_s == pytest.approx(6.2, rel=0.03)
    # checkpoints every 30 min of 4h10m: 8 written; its replica verified the one before the
    # last (at 3h30m), and it was last seen at 4h10m: 40 minutes and their steps lost
    assert r1.checkpoints == 8
    assert r1.lost_s == pytest.approx(40 * 60)
    assert r1.lost_steps == pytest.approx(6.2 * 40 * 60, abs=2)
    assert rows["r4"].platform is None and rows["r4"].gpu is None
    assert rows["b2"].gpu == "2× Tesla T4"
    # a resumed session does not count the checkpoint it resumed from, and its steps start there
    assert rows["r2"].checkpoints == 11 * 6 and rows["r2"].steps == int(6.4 * 11 * 3600)
    assert all(r.lost_steps is None for r in rows.values() if r.ended != "lost")


def test_a_session_last_seen_training_is_lost_after_a_while_or_when_a_later_one_started(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        play_session(ledger, run="a", session_id="a1", label="a", gpu="Tesla T4",
                     platform="colab", started_at=NOW - 3600, lifetime_s=1800, rate=5.0,
                     end="lost")
        seen = NOW - 1800 + 0.5
        assert [r.ended for r in iter_history(ledger, now=seen + 10)] == ["running"]
        assert [r.ended for r in iter_history(ledger, now=seen + LOST_AFTER_S + 1)] == ["lost"]
        play_session(ledger, run="a", session_id="a2", label="a", gpu="Tesla T4",
                     platform="colab", started_at=seen + 5, lifetime_s=60, rate=5.0,
                     end="running")
        assert [r.ended for r in iter_history(ledger, now=seen + 70)] == ["lost", "running"]


def test_gpus_are_ranked_by_median_steps_per_s_per_run(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        fill_history(ledger)
        summary = gpu_summary(iter_history(ledger, run="resnet50-lr3e-4", now=NOW))
    assert [(s.gpu, s.sessions) for s in summary] == [
        ("NVIDIA A100-SXM4-40GB", 1), ("Tesla P100-PCIE-16GB", 1), ("Tesla T4", 3), ("-", 1)]
    t4 = summary[2]
    assert t4.median_steps_per_s == pytest.approx(6.2, rel=0.03)
    assert t4.median_lifetime_s == 5 * 3600  # of 4h10m, 11h, 5h
    assert summary[0].median_lifetime_s is None  # still running: no lifetime yet


# --------------------------------------------------------------------------- migration


def test_an_older_ledger_is_migrated_in_place_and_keeps_everything(tmp_path):
    # made by the schema before this change (colabtui on main, Ledger.record_status/add_points)
    path = tmp_path / "ledger.sqlite3"
    shutil.copy(DATA / "ledger-v0.sqlite3", path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        before = db.execute("SELECT * FROM sessions ORDER BY id").fetchall()
        points = db.execute("SELECT count(*) FROM points").fetchone()[0]
    with Ledger(path) as ledger:
        curve = ledger.load_series("run-old")["loss"]
        rows = {r.session_id: r for r in iter_history(ledger, now=1_759_100_000.0)}
        # what it records from now on adds to the migrated rows
        old_b = schema.parse_status(wire.loads(ledger.query(
            "SELECT status FROM last_status WHERE session_id = 'old-b'")[0][0]))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        after = db.execute("SELECT * FROM sessions ORDER BY id").fetchall()
        assert db.execute("SELECT count(*) FROM points").fetchone()[0] == points
    assert [r[:len(before[0])] for r in after] == before  # every old column as it was
    assert len(curve) == 901 and curve[0].step == 0 and curve[-1].step == 9000
    a, b = rows["old-a"], rows["old-b"]
    assert (a.ended, a.platform, a.gpu, a.lifetime_s, a.checkpoints) == (
        "stopped", "colab", "Tesla T4", 1000, 1)
    assert a.median_steps_per_s == pytest.approx(3.0, rel=0.01)  # its last status's, once
    assert (b.ended, b.platform, b.steps, b.lost_steps) == ("lost", None, 6000, 6000)
    assert b.lost_s == pytest.approx(600)  # from its start (it resumed from step 3000) to 9000
    with Ledger(path) as ledger:  # opened again: nothing migrates twice
        import dataclasses
        ledger.record_status("k-b", "u", "", dataclasses.replace(
            old_b, step=9500, uptime_s=650, server_time=old_b.server_time + 50),
            1_759_002_700.0)
        b2 = next(r for r in iter_history(ledger, now=1_759_002_700.0) if r.session_id == "old-b")
    assert b2.ended == "running" and b2.steps == 6500 and b2.lifetime_s == 650


# --------------------------------------------------------------------------- the command


def test_history_command_text_json_and_csv(tmp_path, monkeypatch, utc):
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path))
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        fill_history(ledger)
    text = _run_cli()
    assert "run bert-base-ft" in text and "run resnet50-lr3e-4" in text
    assert "by GPU, fastest first:" in text
    lost = next(line for line in text.splitlines() if " lost " in line)
    assert "Tesla T4" in lost and "steps, 40m" in lost
    doc = json.loads(_run_cli("--json"))
    runs = {r["run"]: r for r in doc["runs"]}
    assert [s["gpu"] for s in runs["resnet50-lr3e-4"]["by_gpu"]][0] == "NVIDIA A100-SXM4-40GB"
    assert len(runs["resnet50-lr3e-4"]["sessions"]) == 6
    only = json.loads(_run_cli("--json", run="bert-base-ft"))
    assert [r["run"] for r in only["runs"]] == ["bert-base-ft"]
    csv_text = _run_cli("--csv")
    assert csv_text.splitlines()[0].startswith("run,session_id,label,platform,gpu")
    assert len(csv_text.splitlines()) == 1 + 8


def test_the_demos_history_is_its_own(tmp_path, monkeypatch):
    # `colabtui demo` records into data_dir()/demo/ledger.sqlite3 (its app's History screen
    # reads it as any app does); `colabtui history --demo` prints it
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path))
    with Ledger(tmp_path / "demo" / "ledger.sqlite3") as ledger:
        play_session(ledger, run="digits-lr1e-3", session_id="d1", label="digits lr=1e-3",
                     gpu=None, platform="other", started_at=NOW - 600, lifetime_s=300, rate=50,
                     end="stopped")
    assert EMPTY in _run_cli()
    assert "run digits-lr1e-3" in _run_cli("--demo")
    from colabtui.cli import build_parser

    assert build_parser().parse_args(["history", "--demo", "--json"]).demo


def test_an_empty_history_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path))
    assert EMPTY in _run_cli()  # no file at all: none is created to say so
    assert not (tmp_path / "ledger.sqlite3").exists()
    Ledger(tmp_path / "ledger.sqlite3").close()
    assert EMPTY in _run_cli()
    assert json.loads(_run_cli("--json"))["runs"] == []
    assert _run_cli("--csv").startswith("run,session_id")
    assert f"{EMPTY} for run nope" in _run_cli(run="nope")


def _hostile(ledger: Ledger) -> None:
    """A session whose label and GPU name hold markup and an escape sequence, recorded as the
    app records it: parsed (cleaned) from the wire first."""
    status = schema.Status(protocol=schema.PROTOCOL_VERSION, run="evil[/", session_id="e1",
                           label="[/bold]x[/ \x1b]0;x\x07", state="running", step=10,
                           steps_per_s=1.0, started_at=NOW - 60, uptime_s=60, server_time=NOW,
                           gpus=[schema.GpuStats(0, "[red]T4[/] \x1b]0;x\x07", "GPU-0")])
    parsed = schema.parse_status(wire.loads(wire.dumps(schema.status_to_wire(status))))
    ledger.record_status("e", "http://127.0.0.1:1", "", parsed, NOW)


def test_hostile_names_print_as_plain_text(tmp_path, monkeypatch):
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path))
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        _hostile(ledger)
    for out in (_run_cli(), _run_cli("--json"), _run_cli("--csv")):
        assert "\x1b" not in out and "\x07" not in out
    assert "[/bold]x[/" in _run_cli() and "[red]T4[/]" in _run_cli()


def _sessions_5000(path: Path) -> None:
    with Ledger(path) as ledger:
        for i in range(5000):
            gpu = ("Tesla T4", "NVIDIA L4", "NVIDIA A100-SXM4-40GB")[i % 3]
            st = schema.Status(protocol=schema.PROTOCOL_VERSION, run=f"run-{i % 7}",
                               session_id=f"s{i:05d}", label=f"session {i}", state="running",
                               step=i, steps_per_s=1.0 + i % 3, started_at=NOW - 5000 + i,
                               uptime_s=100, server_time=NOW, gpus=[schema.GpuStats(0, gpu)])
            ledger.record_status(f"k{i}", "http://127.0.0.1:1", "", st, NOW - 5000 + i)


def test_five_thousand_sessions_page_and_stream(tmp_path, monkeypatch):
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path))
    _sessions_5000(tmp_path / "ledger.sqlite3")
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        pages, after, seen = 0, FIRST, []
        while after is not None:
            rows, after = history_page(ledger, after=after, limit=500, now=NOW)
            seen += [r.session_id for r in rows]
            pages += 1
        assert pages in (10, 11) and len(seen) == len(set(seen)) == 5000
    doc = json.loads(_run_cli("--json"))
    assert sum(len(r["sessions"]) for r in doc["runs"]) == 5000
    assert [s["gpu"] for s in doc["runs"][0]["by_gpu"]] == [
        "NVIDIA A100-SXM4-40GB", "NVIDIA L4", "Tesla T4"]
    assert len(_run_cli().splitlines()) > 5000


# --------------------------------------------------------------------------- the screen


def _app(tmp_path: Path) -> ColabTuiApp:
    return ColabTuiApp(tmp_path / "config.toml", tmp_path / "ledger.sqlite3",
                       clock=frozen_clock, poll=False)


async def _open_history(pilot) -> HistoryScreen:
    await pilot.press("h")
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    assert isinstance(pilot.app.screen, HistoryScreen)
    return pilot.app.screen


async def test_the_screen_pages_through_five_thousand_sessions(tmp_path):
    _sessions_5000(tmp_path / "ledger.sqlite3")
    write_config(tmp_path / "config.toml", [])
    app = _app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("escape")  # the welcome screen
        screen = await _open_history(pilot)
        table = screen.query_one("#history-sessions", DataTable)
        assert table.row_count == PAGE_SIZE
        for _ in range(3):
            table.move_cursor(row=table.row_count - 1)
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert table.row_count == 4 * PAGE_SIZE
        assert len(screen.query_one("#history-gpus", DataTable).rows) == 3
        await pilot.press("h")
        assert not isinstance(app.screen, HistoryScreen)


async def test_the_screen_shows_hostile_names_literally(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        _hostile(ledger)
    app = _app(tmp_path)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.press("escape")
        screen = await _open_history(pilot)
        table = screen.query_one("#history-sessions", DataTable)
        cells = table.get_row_at(0)
        assert all(isinstance(c, Text) for c in cells)
        plain = " ".join(c.plain for c in cells)
        assert "[/bold]x[/" in plain and "[red]T4[/]" in plain and "\x1b" not in plain


async def test_the_screen_says_when_nothing_was_recorded(tmp_path):
    app = _app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("escape")
        screen = await _open_history(pilot)
        empty = screen.query_one("#history-empty")
        assert empty.display and EMPTY in str(empty.render())
        assert not screen.query_one("#history-sessions").display


# --------------------------------------------------------------------------- a real session


async def test_a_real_session_polled_by_the_app_then_killed_is_in_the_history(
        tmp_path, digits_session):
    from test_ui_live import _app as live_app
    from test_ui_live import wait_for

    session = digits_session(name="hist", step_delay=0.01)
    app = live_app(tmp_path, [session])
    async with app.run_test(size=(120, 36)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: panel.status is not None and (panel.status.step or 0) > 50,
                       "steps")
        await pilot.press("s")
        await wait_for(pilot, lambda: panel.status.checkpoint.last is not None, "a checkpoint")
        first = panel.status.checkpoint.last.step
        await wait_for(pilot, lambda: panel.status.step > first + 50, "steps after it")
        session.kill()  # the runtime dies without a word
        await pilot.pause(0.3)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        rows = list(iter_history(ledger, now=time.time() + LOST_AFTER_S + 1))
    assert len(rows) == 1
    row = rows[0]
    assert row.run == "hist" and row.ended == "lost" and row.checkpoints == 1
    assert row.steps > 100 and row.median_steps_per_s > 0
    assert row.lost_steps >= 50 and row.lost_s is not None and row.lost_s > 0
