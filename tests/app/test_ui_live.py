"""Pilot tests of the app against real digits training sessions on loopback.

No timed assertions: every wait is a bounded loop of ``pilot.pause()`` on a condition.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from colabtui_remote import Monitor
from textual.css.query import NoMatches

from colabtui.app import ColabTuiApp
from colabtui.client import RemoteClient
from colabtui.config import Config, SessionConfig, Settings, load_config, save_config
from colabtui.screens.add_session import AddSessionScreen
from colabtui.screens.confirm_stop import ConfirmStopScreen
from colabtui.widgets.session_panel import SessionPanel

WAIT_S = 60.0
"""Bound on each wait for a condition (a bound, not an assertion about speed)."""


async def wait_for(pilot, condition, what: str, limit_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await pilot.pause(0.05)


def _config(tmp_path: Path, sessions) -> Path:
    path = tmp_path / "config.toml"
    save_config(Config([SessionConfig(s.url, s.token, s.checkpoint_dir.name) for s in sessions],
                       Settings(poll_interval_s=0.1)), path)
    return path


def _app(tmp_path: Path, sessions, **kwargs) -> ColabTuiApp:
    return ColabTuiApp(_config(tmp_path, sessions), tmp_path / "ledger.sqlite3",
                       backoff_max_s=0.4, **kwargs)


async def _checkpoints(session) -> int:
    async with RemoteClient(session.url, session.token) as client:
        return len((await client.checkpoints()).checkpoints)


def _panel(app: ColabTuiApp) -> SessionPanel:
    return app.panels[0]


async def test_s_sends_one_save_and_the_panel_shows_the_new_checkpoint(tmp_path, digits_session):
    session = digits_session(name="save", step_delay=0.01)
    app = _app(tmp_path, [session])
    async with app.run_test(size=(160, 48)) as pilot:
        panel = _panel(app)
        await wait_for(pilot, lambda: panel.conn_kind == "connected" and panel.status.step,
                       "first status")
        assert panel.status.checkpoint.last is None
        await pilot.press("s")
        await wait_for(pilot, lambda: panel.status.checkpoint.last is not None,
                       "the checkpoint to show")
        last = panel.status.checkpoint.last
        shown = panel.query_one("#checkpoint").render().plain
        assert f"step {last.step:,}" in shown
        await wait_for(pilot, lambda: any("saved" in n.message for n in app._notifications),
                       "the done notification")
        assert await _checkpoints(session) == 1
        assert panel.series.get("loss"), "the loss curve arrived"


async def test_x_asks_first_and_no_sends_nothing(tmp_path, digits_session):
    session = digits_session(name="stop", step_delay=0.01)
    app = _app(tmp_path, [session])
    async with app.run_test(size=(120, 36)) as pilot:
        panel = _panel(app)
        await wait_for(pilot, lambda: panel.conn_kind == "connected", "connected")
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmStopScreen)
        await pilot.press("enter")  # the default answer is No
        assert not isinstance(app.screen, ConfirmStopScreen)
        step = panel.status.step
        await wait_for(pilot, lambda: panel.status.step > step + 20, "training to go on")
        assert panel.status.state == "running"
        assert await _checkpoints(session) == 0
        await pilot.press("x", "y")
        await wait_for(pilot, lambda: session.proc.poll() is not None
                       or panel.status.state == "stopped", "the stop")
        assert await asyncio.to_thread(session.wait, 60) == 0
        assert any(p.name.endswith(".pt") for p in session.checkpoint_dir.iterdir())


async def test_a_adds_after_checking_and_d_removes(tmp_path, digits_session):
    session = digits_session(name="addme", step_delay=0.01)
    config = tmp_path / "config.toml"
    app = ColabTuiApp(config, tmp_path / "ledger.sqlite3")
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("a")
        assert isinstance(app.screen, AddSessionScreen)
        form = app.screen
        form.query_one("#url").value = session.url
        form.query_one("#token").value = "wrong-token-0123456789"
        form.query_one("#label").value = "[bold]x[/"
        await pilot.click("#add")
        await wait_for(pilot, lambda: "token refused" in str(form.query_one("#form-error").render()),
                       "the refusal in the form")
        assert not config.exists(), "nothing saved for a refused token"
        form.query_one("#token").value = session.token
        form.query_one("#label").focus()
        await pilot.pause()
        await pilot.press("enter")  # the keyboard's way: Enter in the last field checks again

        def form_says() -> str:
            try:
                return str(form.query_one("#form-error").render())
            except NoMatches:  # dismissed: the app is saving the session
                return "asking"

        # the first refusal stays on the form until this click's check shows "asking …"
        await wait_for(pilot, lambda: config.exists() or "token refused" not in form_says(),
                       "the second check to start")
        await wait_for(pilot, lambda: config.exists() or "asking" not in form_says(),
                       "the check to end")
        assert config.exists(), form_says()
        saved = load_config(config)
        assert [(s.url, s.label) for s in saved.sessions] == [(session.url, "[bold]x[/")]
        await wait_for(pilot, lambda: app.panels and app.panels[0].conn_kind == "connected",
                       "the new panel to connect")
        header = app.panels[0].query_one("#header").render().plain
        assert "[bold]x[/" in header
        await pilot.press("d", "y")  # it asks first
        await wait_for(pilot, lambda: not app.panels, "the panel to go")
        assert load_config(config).sessions == []
        assert app.ledger.sessions(), "the ledger keeps the history"


async def test_a_killed_session_turns_unreachable_and_comes_back(tmp_path, digits_session):
    session = digits_session(name="phoenix", step_delay=0.01, autosave_every=0)
    app = _app(tmp_path, [session])
    async with app.run_test(size=(120, 36)) as pilot:
        panel = _panel(app)
        await wait_for(pilot, lambda: panel.conn_kind == "connected"
                       and len(panel.series.get("loss", [])) > 20, "points")
        await pilot.press("s")
        await wait_for(pilot, lambda: panel.status.checkpoint.last is not None, "a checkpoint")
        first_id = panel.status.session_id
        await asyncio.to_thread(session.kill)
        await wait_for(pilot, lambda: panel.conn_kind == "unreachable", "unreachable")
        assert panel.has_class("-stale") and panel.status is not None, "last values kept"
        assert "unreachable for" in panel.query_one("#header").render().plain
        await asyncio.to_thread(session.start)  # same port, resumes from the checkpoint
        await wait_for(pilot, lambda: panel.conn_kind == "connected"
                       and panel.status.session_id != first_id, "back")
        assert not panel.has_class("-stale")
        steps = [p.step for p in panel.series["loss"]]
        assert steps == sorted(steps), "a resumed run continues its curve"


async def test_a_stop_accepted_then_silence_reads_as_the_end(tmp_path):
    """A session that accepted a stop and then stopped answering has ended: a warning that
    says so, not "could not stop"."""
    mon = Monitor(run="quiet", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    token = "stop-token-0123456789abcdef"
    mon.serve(port=0, token=token, quiet=True)
    mon.log(0, loss=1.0)
    mon.at_step_boundary(1)
    config = tmp_path / "config.toml"
    save_config(Config([SessionConfig(mon.url, token, "quiet")], Settings(poll_interval_s=0.1)),
                config)
    app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            panel = _panel(app)
            await wait_for(pilot, lambda: panel.conn_kind == "connected", "connected")
            await pilot.press("x", "y")
            # nothing trains, so the stop stays pending until the session goes away
            await wait_for(pilot, lambda: any("stop requested" in n.message
                                              for n in app._notifications), "the request")
            await asyncio.to_thread(mon.close)
            await wait_for(pilot, lambda: any("the session has ended" in n.message
                                              for n in app._notifications), "the end")
            ended = [n for n in app._notifications if "the session has ended" in n.message]
            assert ended[0].severity == "warning"
            assert not any("could not stop" in n.message for n in app._notifications)
    finally:
        mon.close()
