"""Keys act on what the user sees: a digit and a key typed in one burst, ``d`` asks first,
one save in flight per session, one toast per session and kind, the stop dialog's live step,
and the command palette listing every action while it is open.

The sessions are real notebook-side servers (in-process Monitors on loopback ports) that
never reach a step boundary, so a save sent to one stays pending: each test sees exactly which
session got which command. No timed assertions: every wait is a bounded loop on a condition.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from colabtui_remote import Monitor
from textual import events
from textual.command import CommandPalette
from textual.widgets import Input, OptionList

from colabtui.app import ColabTuiApp
from colabtui.config import Config, SessionConfig, Settings, load_config, save_config
from colabtui.screens.confirm_remove import ConfirmRemoveScreen
from colabtui.screens.confirm_stop import ConfirmStopScreen

WAIT_S = 30.0
"""Bound on each wait for a condition (a bound, not an assertion about speed)."""


async def wait_for(pilot, condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await pilot.pause(0.02)


def burst(app: ColabTuiApp, *keys: str) -> None:
    """Queue ``keys`` all at once, as a terminal delivers keys typed (or pasted) in one burst:
    none is handled before the next is queued. ``pilot.press`` instead lets the app settle
    between keys."""
    for key in keys:
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        app._driver.send_message(event)


@pytest.fixture
def monitors():
    """Three real sessions at steps 3, 13 and 23, serving on loopback; closed at teardown."""
    started = []
    for n in range(3):
        mon = Monitor(run=f"keys-{n + 1}", checkpoint_dir=None, autosave_every=None,
                      handle_sigterm=False)
        mon.serve(port=0, token=f"keys-token-{n + 1}-0123456789abcdef", quiet=True)
        for step in range(3 + 10 * n):
            mon.log(step, loss=1.0 / (step + 1))
            mon.at_step_boundary(step + 1)
        started.append(mon)
    yield started
    for mon in started:
        mon.close(linger_s=0)


def sent(mon: Monitor) -> int:
    """Commands a client sent to ``mon`` whose outcome no client fetched yet (none is carried
    out while no step boundary is reached)."""
    return len(mon.commands.undelivered())


def make_app(tmp_path: Path, monitors: list[Monitor]) -> ColabTuiApp:
    config = tmp_path / "config.toml"
    save_config(Config([SessionConfig(m.url, f"keys-token-{n + 1}-0123456789abcdef",
                                      f"session {n + 1}")
                        for n, m in enumerate(monitors)], Settings(poll_interval_s=0.1)),
                config)
    return ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)


async def connected(pilot, app: ColabTuiApp) -> None:
    await wait_for(pilot, lambda: len(app.panels) == 3 and all(
        p.conn_kind == "connected" and p.status is not None for p in app.panels), "connected")
    await wait_for(pilot, lambda: app.focused is app.panels[0], "the first panel focused")


def toasts(app: ColabTuiApp, words: str) -> list[str]:
    return [n.message for n in app._notifications if words in n.message]


# --------------------------------------------------------------------------- bursts


async def test_a_digit_and_a_key_in_one_burst_act_on_the_new_panel(tmp_path, monitors):
    app = make_app(tmp_path, monitors)
    async with app.run_test(size=(120, 36)) as pilot:
        await connected(pilot, app)
        burst(app, "2", "s")
        await wait_for(pilot, lambda: sum(map(sent, monitors)) == 1, "one save sent")
        assert [sent(m) for m in monitors] == [0, 1, 0]
        assert app.focused is app.panels[1]
        burst(app, "3", "s", "1", "s")
        await wait_for(pilot, lambda: sum(map(sent, monitors)) == 3, "two more saves")
        assert [sent(m) for m in monitors] == [1, 1, 1]
        await pilot.press("3", "x")  # the same through the pilot: the stop dialog names 3
        assert isinstance(app.screen, ConfirmStopScreen)
        assert "session 3" in app.screen.question().plain
        await pilot.press("n")


async def test_a_digit_with_no_panel_changes_nothing_and_7d_removes_nothing(tmp_path, monitors):
    app = make_app(tmp_path, monitors)
    before = app.config_path.read_bytes()
    async with app.run_test(size=(120, 36)) as pilot:
        await connected(pilot, app)
        burst(app, "2")
        await wait_for(pilot, lambda: app.focused is app.panels[1], "panel 2 focused")
        burst(app, "7", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmRemoveScreen), "the question")
        assert "session 2" in app.screen.question().plain  # still the one the user sees
        burst(app, "n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmRemoveScreen), "closed")
        assert len(app.panels) == 3 and app.focused is app.panels[1]
        await pilot.press("7", "s")
        await wait_for(pilot, lambda: sent(monitors[1]) == 1, "the save")
        assert [sent(m) for m in monitors] == [0, 1, 0]
    assert app.config_path.read_bytes() == before


# --------------------------------------------------------------------------- d asks first


async def test_d_asks_first_saying_the_token_is_forgotten(tmp_path, monitors):
    app = make_app(tmp_path, monitors)
    async with app.run_test(size=(120, 36)) as pilot:
        await connected(pilot, app)
        await pilot.press("2", "d")
        dialog = app.screen
        assert isinstance(dialog, ConfirmRemoveScreen)
        words = dialog.question().plain
        assert "Remove session 2 from the config?" in words
        assert monitors[1].url in words and "keys…ef" in words
        assert "is forgotten" in words and "history" in words
        await pilot.press("enter")  # No is the default
        assert not isinstance(app.screen, ConfirmRemoveScreen)
        assert len(load_config(app.config_path).sessions) == 3 and len(app.panels) == 3
        await pilot.press("d", "escape")
        assert len(load_config(app.config_path).sessions) == 3
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: len(app.panels) == 2, "the panel to go")
        assert [s.url for s in load_config(app.config_path).sessions] == [
            monitors[0].url, monitors[2].url]
        assert toasts(app, "removed session 2 from the config; its token is forgotten")
        assert [p.index for p in app.panels] == [1, 2]


# --------------------------------------------------------------------------- saves, toasts


async def test_one_save_in_flight_per_session_and_toasts_coalesce(tmp_path, monitors):
    app = make_app(tmp_path, monitors)
    async with app.run_test(size=(120, 36)) as pilot:
        await connected(pilot, app)
        step = app.panels[0].status.step
        await pilot.press("s")
        await wait_for(pilot, lambda: toasts(app, "save requested"), "the request")
        burst(app, *["s"] * 20)
        await wait_for(pilot, lambda: toasts(app, "already in progress"), "the refusal")
        await pilot.pause(0.3)
        assert [sent(m) for m in monitors] == [1, 0, 0], "one save, not 21"
        mine = [n.message for n in app._notifications if n.message.startswith("session 1:")]
        assert mine == [f"session 1: save already in progress at step {step:,}"], mine
        burst(app, *["S"] * 5)  # save all: one each, the first session's still in flight
        await wait_for(pilot, lambda: [sent(m) for m in monitors] == [1, 1, 1], "two more")
        await wait_for(pilot, lambda: len(app._notifications) == 3, "one toast each")
        assert sorted(n.message.split(":")[0] for n in app._notifications) == [
            "session 1", "session 2", "session 3"]
        burst(app, *["l"] * 6)
        await wait_for(pilot, lambda: toasts(app, "log scale"), "the log scale toast")
        await pilot.pause(0.2)
        assert len(toasts(app, "log scale")) == 1 and app.log_scale is False


async def test_a_save_that_ends_lets_the_next_one_go(tmp_path, monitors):
    app = make_app(tmp_path, monitors)
    async with app.run_test(size=(120, 36)) as pilot:
        await connected(pilot, app)
        await pilot.press("s")
        await wait_for(pilot, lambda: sent(monitors[0]) == 1, "the save")
        monitors[0].at_step_boundary(monitors[0].step + 1)  # carried out (nothing to write)
        await wait_for(pilot, lambda: not app.panels[0].in_flight, "the save to end")
        assert sent(monitors[0]) == 0  # its outcome was fetched
        await pilot.press("s")
        await wait_for(pilot, lambda: sent(monitors[0]) == 1, "a second save")


# --------------------------------------------------------------------------- the stop dialog


async def test_the_stop_dialog_shows_the_step_as_it_moves(tmp_path, monitors):
    app = make_app(tmp_path, monitors)
    async with app.run_test(size=(120, 36)) as pilot:
        await connected(pilot, app)
        await pilot.press("x")
        dialog = app.screen
        assert isinstance(dialog, ConfirmStopScreen)
        assert "now at step 3)" in dialog.question().plain
        mon = monitors[0]
        for step in range(3, 1234):
            mon.log(step, loss=0.5)
        mon.at_step_boundary(1234)
        await wait_for(pilot, lambda: "now at step 1,234)" in str(
            dialog.query_one("#question").render()), "the dialog to follow the run")
        await pilot.press("n")
        assert sent(mon) == 0


# --------------------------------------------------------------------------- the palette


def palette_titles(app: ColabTuiApp) -> list[str]:
    options = app.screen.query_one(OptionList)
    return [str(options.get_option_at_index(i).prompt).split("\n")[0]
            for i in range(options.option_count)]


PALETTE = [("save", "Save focused session"), ("save all", "Save all sessions"),
           ("stop", "Stop focused session"), ("add", "Add session"),
           ("remove", "Remove focused session"), ("log", "Toggle log scale"),
           ("focus", "Focus session 2: session 2"), ("help", "Help")]


async def test_the_palette_lists_every_action_while_it_is_open(tmp_path, monitors):
    app = make_app(tmp_path, monitors)
    async with app.run_test(size=(120, 36)) as pilot:
        await connected(pilot, app)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        for typed, title in PALETTE:
            app.screen.query_one(Input).value = ""
            await pilot.press(*typed)
            await wait_for(pilot, lambda title=title: any(title in t
                                                          for t in palette_titles(app)),
                           f"{title!r} in the palette after typing {typed!r}")


async def test_a_command_chosen_in_the_palette_acts_on_the_focused_session(tmp_path, monitors):
    app = make_app(tmp_path, monitors)
    async with app.run_test(size=(120, 36)) as pilot:
        await connected(pilot, app)
        await pilot.press("ctrl+p", *"focus session 3")
        await wait_for(pilot, lambda: any("Focus session 3" in t for t in palette_titles(app)),
                       "the focus command")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.focused is app.panels[2], "session 3 focused")
        await pilot.press("ctrl+p", *"save focused")
        await wait_for(pilot, lambda: palette_titles(app)[:1] == ["Save focused session"],
                       "the save command first")
        await pilot.press("enter")
        await wait_for(pilot, lambda: sent(monitors[2]) == 1, "the save")
        assert [sent(m) for m in monitors] == [0, 0, 1]
