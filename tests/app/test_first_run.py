"""First-run papercuts: a run whose server is gone after it ended shows how it ended, with its
curve, in the app and in ``colabtui status``; a new token reaches the running app (the config
file changed, or a 401); the add form updates a saved session's token; "Unknown GPU" and
NVML's reasons; work at risk past its threshold in words.

Real notebook-side servers (in-process Monitors) on loopback, a real SQLite ledger, the real
CLI. No timed assertions: every wait is a bounded loop on a condition.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from colabtui_remote import Monitor
from colabtui_remote.schema import GpuStats

from colabtui.app import ColabTuiApp
from colabtui.cli import main
from colabtui.config import Config, SessionConfig, Settings, load_config, save_config
from colabtui.ledger import Ledger
from colabtui.screens.add_session import AddSessionScreen
from colabtui.widgets.gpu_view import gpu_lines
from colabtui.widgets.loss_chart import LossChart

WAIT_S = 30.0
"""Bound on each wait for a condition (a bound, not an assertion about speed)."""

TOKEN = "first-run-token-0123456789abcdef"
NEW_TOKEN = "second-token-0123456789abcdefgh"  # as long as TOKEN: the file keeps its size


async def wait_for(pilot, condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await pilot.pause(0.02)


def serve(run: str = "digits-done", steps: int = 40, token: str = TOKEN) -> Monitor:
    """A real session that logged ``steps`` points and waits at its last step boundary."""
    mon = Monitor(run=run, checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    mon.serve(port=0, token=token, quiet=True)
    for step in range(steps):
        mon.log(step, loss=2.0 / (step + 1))
        mon.at_step_boundary(step + 1)
    return mon


def end(mon: Monitor, how: str) -> None:
    if how == "finished":
        mon.finish()
    else:
        mon.commands.submit("stop-1", "stop")
        mon.at_step_boundary(mon.step + 1)
    assert mon.state == how


def write(path: Path, *sessions: SessionConfig) -> Path:
    save_config(Config(list(sessions), Settings(poll_interval_s=0.1)), path)
    return path


def shown(panel) -> dict[str, str]:
    parts = {part: panel.query_one(f"#{part}").render().plain
             for part in ("header", "progress", "checkpoint")}
    return {**parts, "chart-title": panel.query_one(LossChart).title.plain}


# --------------------------------------------------------------------------- ended runs


@pytest.mark.parametrize("how", ["finished", "stopped"])
async def test_a_run_gone_after_it_ended_shows_how_it_ended_with_its_curve(
        tmp_path, how, capsys, monkeypatch):
    mon = serve()
    config = write(tmp_path / "config.toml", SessionConfig(mon.url, TOKEN, "digits"))
    ledger = tmp_path / "ledger.sqlite3"
    try:
        end(mon, how)
        step = mon.step
        app = ColabTuiApp(config, ledger, backoff_max_s=0.4)
        async with app.run_test(size=(120, 36)) as pilot:
            panel = app.panels[0]
            await wait_for(pilot, lambda: panel.status is not None and panel.status.state == how
                           and len(panel.series.get("loss", [])) == 40, "the end, seen live")
    finally:
        mon.close(linger_s=0)
    # The next day: the app starts again, the server is gone.
    app = ColabTuiApp(config, ledger, backoff_max_s=0.4)
    async with app.run_test(size=(120, 36)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: panel.conn_message == "connection refused", "a poll")
        await pilot.pause(0.3)
        words = shown(panel)
        assert f"○ {how} at step {step:,}; server closed" in words["header"], words
        assert "unreachable" not in words["header"]
        assert words["progress"].startswith(how), words
        assert "at risk —" in words["checkpoint"]
        assert "no points logged yet" not in words["chart-title"]
        assert len(panel.series["loss"]) == 40
        assert not panel.has_class("-error") and not panel.has_class("-stale")
    # colabtui status says the same, and exits 0
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path))  # the app's history is here
    capsys.readouterr()
    status = ["--config", str(config), "status", "--timeout", "2"]
    assert await asyncio.to_thread(main, [*status, "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)["sessions"]
    assert await asyncio.to_thread(main, status) == 0
    table = capsys.readouterr().out.splitlines()
    assert entry["ok"] is True and entry["source"] == "history"
    assert (entry["state"], entry["step"]) == (how, step)
    assert entry["unreachable"] == {"kind": "unreachable", "message": "connection refused"}
    assert table[1].split()[:3] == ["digits", how, str(step)]
    assert f"{how} at step {step} (server gone since)" in table[1]


def test_status_records_what_it_sees_and_a_session_that_never_ended_stays_an_error(
        tmp_path, monkeypatch, capsys):
    """The CLI keeps the history too: a stop seen by ``colabtui status`` alone is known after
    the server went away. A session whose server went away while it ran is an error (exit 1):
    only an ended one is reported from the history."""
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path / "data"))
    stopped, running = serve("digits-stopped"), serve("digits-running")
    config = write(tmp_path / "config.toml", SessionConfig(stopped.url, TOKEN, "stopped"),
                   SessionConfig(running.url, TOKEN, "running"))
    try:
        end(stopped, "stopped")
        capsys.readouterr()  # what the notebook printed
        assert main(["--config", str(config), "status", "--json"]) == 0
        assert [e["state"] for e in json.loads(capsys.readouterr().out)["sessions"]] == [
            "stopped", "running"]
    finally:
        stopped.close(linger_s=0)
        running.close(linger_s=0)
    assert main(["--config", str(config), "status", "--json", "--timeout", "2"]) == 1
    gone_stopped, gone_running = json.loads(capsys.readouterr().out)["sessions"]
    assert gone_stopped["ok"] and gone_stopped["state"] == "stopped"
    assert not gone_running["ok"] and gone_running["error"]["kind"] == "unreachable"
    with Ledger(tmp_path / "data" / "ledger.sqlite3") as ledger:
        assert {r.run: r.ended for r in ledger.sessions()} == {
            "digits-stopped": "stopped", "digits-running": None}


def test_a_kept_status_that_no_longer_parses_is_no_final_word(tmp_path):
    mon = serve()
    try:
        end(mon, "stopped")
        with Ledger(tmp_path / "ledger.sqlite3") as ledger:
            ledger.record_status("k", mon.url, "l", mon.status(), time.time())
            assert ledger.ended_status("k")[1].state == "stopped"
            ledger._db.execute("UPDATE last_status SET status = '{\"protocol\": 99}'")
            assert ledger.ended_status("k") is None
            assert ledger.ended_status("unknown key") is None
    finally:
        mon.close(linger_s=0)


# --------------------------------------------------------------------------- new tokens


async def test_a_new_token_in_the_config_file_reaches_the_running_app(tmp_path):
    """The notebook printed a new token; ``colabtui connect`` saved it: the open app, told
    "token refused" until then, connects within a poll."""
    mon = serve(token=NEW_TOKEN)
    config = write(tmp_path / "config.toml", SessionConfig(mon.url, TOKEN, "digits"))
    try:
        app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
        async with app.run_test(size=(120, 36)) as pilot:
            panel = app.panels[0]
            await wait_for(pilot, lambda: panel.conn_kind == "token_refused", "the refusal")
            code = await asyncio.to_thread(main, ["--config", str(config), "connect", mon.url,
                                                  "--token", NEW_TOKEN])
            assert code == 0
            await wait_for(pilot, lambda: panel.conn_kind == "connected", "the new token used")
            assert panel.session.token == NEW_TOKEN and panel.session.label == "digits"
            assert app.config.sessions[0].token == NEW_TOKEN and len(app.panels) == 1
            # a second session added from another terminal gets its panel
            other = serve("digits-other")
            try:
                await asyncio.to_thread(main, ["--config", str(config), "connect", other.url,
                                               "--token", TOKEN, "--label", "other"])
                await wait_for(pilot, lambda: len(app.panels) == 2
                               and app.panels[1].conn_kind == "connected", "the new panel")
                assert [p.index for p in app.panels] == [1, 2]
            finally:
                other.close(linger_s=0)
    finally:
        mon.close(linger_s=0)


async def test_a_401_reads_the_config_again_even_when_the_file_looks_unchanged(tmp_path):
    """A file rewritten in place within the same mtime (a coarse clock, a copy that keeps
    times) shows no change to a stat; the session's refusal makes the app read it anyway."""
    mon = serve(token=NEW_TOKEN)
    config = write(tmp_path / "config.toml", SessionConfig(mon.url, TOKEN, "digits"))
    try:
        app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
        async with app.run_test(size=(120, 36)) as pilot:
            panel = app.panels[0]
            await wait_for(pilot, lambda: panel.conn_kind == "token_refused", "the refusal")
            before = config.stat()
            text = config.read_text().replace(TOKEN, NEW_TOKEN)
            with open(config, "r+", encoding="utf-8") as f:  # same inode, same size
                f.write(text)
            os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
            after = config.stat()
            assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
                before.st_ino, before.st_size, before.st_mtime_ns)
            await wait_for(pilot, lambda: panel.conn_kind == "connected", "the new token used")
    finally:
        mon.close(linger_s=0)


async def test_a_config_that_no_longer_parses_changes_nothing_and_is_said(tmp_path):
    mon = serve()
    config = write(tmp_path / "config.toml", SessionConfig(mon.url, TOKEN, "digits"))
    try:
        app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
        async with app.run_test(size=(120, 36)) as pilot:
            panel = app.panels[0]
            await wait_for(pilot, lambda: panel.conn_kind == "connected", "connected")
            config.write_text('[[sessions]]\nurl = "http://a:1"\ntoken = "abc\n')
            await wait_for(pilot, lambda: any(n.title == "config error"
                                              for n in app._notifications), "the error")
            assert "line 3" in next(n.message for n in app._notifications
                                    if n.title == "config error")
            await pilot.pause(0.3)
            assert len(app.panels) == 1 and panel.conn_kind == "connected"
            assert app.config.sessions[0].token == TOKEN
    finally:
        mon.close(linger_s=0)


async def test_a_config_fixed_while_the_app_runs_brings_its_sessions(tmp_path):
    mon = serve()
    config = tmp_path / "config.toml"
    config.write_text('[[sessions]]\nurl = "http://a:1"\ntoken = "abc\n')
    try:
        app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
        async with app.run_test(size=(120, 36)) as pilot:
            assert app.config_error is not None and not app.panels
            write(config, SessionConfig(mon.url, TOKEN, "digits"))
            await wait_for(pilot, lambda: app.panels and app.panels[0].conn_kind == "connected",
                           "the session of the fixed file")
            assert app.config_error is None
            assert "WelcomeScreen" not in type(app.screen).__name__
    finally:
        mon.close(linger_s=0)


async def test_the_add_form_updates_the_token_of_a_saved_session(tmp_path):
    mon = serve(token=NEW_TOKEN)
    config = write(tmp_path / "config.toml", SessionConfig(mon.url, TOKEN, "digits"))
    try:
        app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
        async with app.run_test(size=(120, 36)) as pilot:
            panel = app.panels[0]
            await wait_for(pilot, lambda: panel.conn_kind == "token_refused", "the refusal")
            await pilot.press("a")
            form = app.screen
            assert isinstance(form, AddSessionScreen)
            form.query_one("#url").value = mon.url
            form.query_one("#token").value = NEW_TOKEN
            await pilot.click("#add")
            await wait_for(pilot, lambda: panel.conn_kind == "connected", "the new token used")
            saved = load_config(config).sessions
            assert [(s.url, s.token, s.label) for s in saved] == [(mon.url, NEW_TOKEN, "digits")]
            assert len(app.panels) == 1
            assert any("updated digits" in n.message for n in app._notifications)
    finally:
        mon.close(linger_s=0)


# --------------------------------------------------------------------------- GPU, risk


def test_a_gpu_without_a_name_is_unknown_and_nvml_reasons_are_shown():
    gpu = GpuStats(0, None, "GPU-1", None, 2 * 2**30, 16 * 2**30, 50.0, None, None,
                   {"name": "NVML_ERROR_NOT_SUPPORTED", "power_w": "NVML_ERROR_NOT_SUPPORTED",
                    "utilization_pct": "NVML_ERROR_NO_PERMISSION"})
    lines = gpu_lines([gpu], None, 60).plain.splitlines()
    assert lines[0] == "Unknown GPU"
    assert "n/a util" in lines[1] and "n/a W" in lines[1]
    assert lines[-1] == "n/a: name, power not supported; util no permission"
    whole = GpuStats(0, "Tesla T4", "GPU-2", 90.0, 2 * 2**30, 16 * 2**30, 50.0, 60.0, 70.0)
    assert gpu_lines([whole], None, 60).plain.splitlines()[0] == "Tesla T4"
    assert "n/a" not in gpu_lines([whole], None, 60).plain
