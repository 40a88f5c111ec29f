"""The app in real terminals: how it ends (``q``, SIGTERM, SIGHUP, SIGINT, a crash) leaves the
terminal exactly as a fresh one (``stty -a`` and tmux's mode flags: alternate screen, cursor,
mouse tracking, keypad), with the documented exit code; and ``NO_COLOR=1`` draws the charts.

Each ending runs in its own window of one private tmux server (``tmux -L <name> -f /dev/null``,
killed at teardown), all five apps at once, so the module starts the app five times in all.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.filter import Monochrome
from ui_fixtures import feed, frozen_clock, three_sessions, write_config

from colabtui.app import CRASH_ENV, ColabTuiApp, run_app
from colabtui.widgets.loss_chart import LossChart

WAIT_S = 60.0
"""Bound on each wait for a terminal to show something (a bound, not a speed assertion)."""

FLAGS = ("alternate_on", "cursor_flag", "insert_flag", "keypad_cursor_flag", "keypad_flag",
         "mouse_all_flag", "mouse_any_flag", "mouse_button_flag", "mouse_sgr_flag",
         "mouse_standard_flag", "mouse_utf8_flag", "origin_flag", "wrap_flag")
"""tmux's flags for the modes an app may leave set in a terminal."""

ENDINGS = {"q": 0, "SIGTERM": 143, "SIGHUP": 129, "SIGINT": 130, "crash": 1}
"""How each app is ended, and the exit code it must give."""


class Tmux:
    """A private tmux server: its own socket and no config, so nothing else is touched."""

    def __init__(self) -> None:
        self.name = f"colabtui-test-{os.getpid()}-{secrets.token_hex(4)}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.name, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True).stdout

    def flags(self, target: str) -> dict[str, str]:
        out = self("display-message", "-p", "-t", target, " ".join(f"#{{{f}}}" for f in FLAGS))
        return dict(zip(FLAGS, out.split(), strict=True))

    def screen(self, target: str) -> str:
        """What the pane shows, wrapped lines joined, with its scrollback."""
        return self("capture-pane", "-p", "-J", "-S", "-200", "-t", target)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def child_pid(parent: int) -> int | None:
    """The process whose parent is ``parent`` (the app, started by the pane's shell)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:  # field 4 of proc(5): ppid
            return int(stat.parent.name)
    return None


@dataclass
class Ended:
    rc: int
    flags: dict[str, str]
    stty: str
    screen: str


@dataclass
class Terminals:
    reference_flags: dict[str, str]
    reference_stty: str
    ended: dict[str, Ended]
    log_dir: Path


@pytest.fixture(scope="module")
def terminals(tmp_path_factory) -> Terminals:
    """Start an app in each window, end each one its way, and read each terminal after."""
    root = tmp_path_factory.mktemp("terminal")
    tmux = Tmux()
    shell = ("env -i TERM=\"$TERM\" PATH=/usr/bin:/bin LANG=C.UTF-8 "
             f"HOME={shlex.quote(str(root))} PS1='$ ' bash --norc --noprofile")
    try:
        tmux("new-session", "-d", "-s", "t", "-n", "reference", "-x", "200", "-y", "50", shell)
        for name in ENDINGS:
            tmux("new-window", "-d", "-t", "t", "-n", name, shell)
        for name in ENDINGS:
            env = {"COLABTUI_CONFIG_DIR": root / name / "config",
                   "COLABTUI_DATA_DIR": root / name / "data", "COLABTUI_LOG_DIR": root / "logs"}
            if name == "crash":
                env[CRASH_ENV] = "1"
            words = [*(f"{k}={shlex.quote(str(v))}" for k, v in env.items()),
                     shlex.quote(sys.executable), "-m", "colabtui"]
            tmux("send-keys", "-t", f"t:{name}", " ".join(words) + '; echo "rc=$?"', "Enter")
        tmux("send-keys", "-t", "t:reference", f"stty -a > {root / 'reference.stty'}", "Enter")
        for name in ENDINGS:
            if name != "crash":
                wait_until(lambda n=name: tmux.flags(f"t:{n}")["alternate_on"] == "1"
                           and "No sessions yet" in tmux.screen(f"t:{n}"), f"the app in {name}")
        for name in ENDINGS:
            pane_pid = int(tmux("display-message", "-p", "-t", f"t:{name}", "#{pane_pid}"))
            if name == "q":
                tmux("send-keys", "-t", "t:q", "q")
            elif name != "crash":
                pid = child_pid(pane_pid)
                assert pid is not None, f"no app under the shell of {name}"
                os.kill(pid, getattr(signal, name))
        ended = {}
        for name in ENDINGS:
            wait_until(lambda n=name: re.search(r"^rc=\d+", tmux.screen(f"t:{n}"), re.M),
                       f"the app in {name} to end")
            flags = tmux.flags(f"t:{name}")
            stty = root / f"{name}.stty"
            tmux("send-keys", "-t", f"t:{name}", f"stty -a > {stty}", "Enter")
            wait_until(lambda s=stty: s.exists() and s.read_text(), f"stty in {name}")
            screen = tmux.screen(f"t:{name}")
            rc = int(re.search(r"^rc=(\d+)", screen, re.M).group(1))
            ended[name] = Ended(rc, flags, stty.read_text(), screen)
        reference = root / "reference.stty"
        wait_until(lambda: reference.exists() and reference.read_text(), "the reference stty")
        return Terminals(tmux.flags("t:reference"), reference.read_text(), ended, root / "logs")
    finally:
        tmux.kill()


@pytest.mark.parametrize("how", list(ENDINGS))
def test_the_terminal_is_left_as_a_fresh_one_with_the_exit_code(terminals, how):
    ended = terminals.ended[how]
    assert ended.rc == ENDINGS[how], ended.screen[-2000:]
    assert ended.flags == terminals.reference_flags, "modes left set (mouse, cursor, screen…)"
    assert ended.stty == terminals.reference_stty, "the tty's settings are not restored"
    assert "No sessions yet" not in ended.screen, "the app's screen is left behind"


def test_a_crash_says_where_its_traceback_went(terminals):
    screen = terminals.ended["crash"].screen
    found = re.search(r"colabtui: crashed with RuntimeError; the traceback is in (\S+)", screen)
    assert found, screen[-2000:]
    log = Path(found.group(1))
    assert log.parent == terminals.log_dir
    text = log.read_text()
    assert f"RuntimeError: crash asked for by {CRASH_ENV}" in text
    assert "Traceback (most recent call last)" in text


def test_a_crash_log_that_cannot_be_written_still_shows_the_traceback(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("COLABTUI_LOG_DIR", str(tmp_path / "not-a-folder"))
    app = ColabTuiApp(tmp_path / "config.toml", tmp_path / "ledger.sqlite3", poll=False)

    def boom() -> None:
        raise RuntimeError("failed before the first frame")

    monkeypatch.setattr(app, "run", boom)
    assert run_app(app) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: failed before the first frame" in err
    assert "colabtui: crashed with RuntimeError; could not write the crash log" in err


async def test_no_color_draws_the_charts(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    sessions = three_sessions()
    write_config(tmp_path / "config.toml", sessions)
    app = ColabTuiApp(tmp_path / "config.toml", tmp_path / "ledger.sqlite3",
                      clock=frozen_clock, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        assert app.no_color and any(isinstance(f, Monochrome) for f in app._filters)
        feed(app, sessions)
        await pilot.pause(0.3)
        shown = app.export_screenshot()
        for panel in app.panels:
            assert panel.query_one(LossChart).title.plain.startswith("━ loss")
        assert re.search("[\u2801-\u28ff]", shown), "the loss lines are drawn (braille)"
