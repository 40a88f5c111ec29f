"""The app in a real terminal (a private tmux server) on a session that sends terminal escapes
in every string: the pane's title and the clipboard stay untouched, the screen shows the
placeholders, and the layout holds. One app start for the module."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from colabtui_remote.wire import LINE_BREAK, PLACEHOLDER
from hostile_session import LABEL, TOKEN, HostileSession

from colabtui.config import Config, SessionConfig, save_config

WIDTH, HEIGHT = 160, 45
TITLE = "colabtui-hostile-test"
WINDOW = "hostile-window"
READY_WITHIN_S = 90.0  # a wait, not an assertion on speed: two shared cores, a cold start


@dataclass
class Terminal:
    name: str

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.name, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self, *flags: str) -> str:
        return self.tmux("capture-pane", "-p", *flags, "-t", "t")


@pytest.fixture(scope="module")
def terminal(tmp_path_factory):
    assert shutil.which("tmux"), "tmux is needed (.ci/run installs it)"
    tmp = tmp_path_factory.mktemp("hostile-terminal")
    session = HostileSession()
    save_config(Config(sessions=[SessionConfig(url=session.url, token=TOKEN, label=LABEL)]),
                tmp / "config" / "config.toml")
    colabtui = Path(sys.executable).parent / "colabtui"
    script = tmp / "app.sh"
    script.write_text("#!/bin/sh\nunset COLUMNS LINES\n"  # the pane's size, not the runner's
                      f"export COLABTUI_CONFIG_DIR={tmp / 'config'} "
                      f"COLABTUI_DATA_DIR={tmp / 'data'}\nexec {colabtui}\n")
    script.chmod(0o755)
    term = Terminal(f"colabtui-test-{secrets.token_hex(6)}")
    try:
        term.tmux("new-session", "-d", "-s", "t", "-n", WINDOW, "-x", str(WIDTH),
                  "-y", str(HEIGHT), "sleep 600", ";",
                  "set", "-g", "set-clipboard", "on", ";",
                  "set", "-g", "allow-rename", "on", ";",
                  "set", "-g", "allow-passthrough", "off", ";",
                  "select-pane", "-t", "t", "-T", TITLE)
        term.tmux("respawn-pane", "-k", "-t", "t", str(script))
        deadline = time.monotonic() + READY_WITHIN_S
        screen = ""
        while time.monotonic() < deadline:  # the first poll drawn, header to chart, full size
            screen = term.screen()
            lines = screen.splitlines()
            if ("RUNMARK" in screen and "━ loss" in screen and "PHASEMARK" in screen
                    and len(lines) == HEIGHT and lines[-2].startswith("╰")):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the panel never showed the run:\n{screen}")
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.name, "-f", "/dev/null", "kill-server"],
                       capture_output=True, timeout=30)
        session.close()


def test_the_pane_title_and_window_name_are_unchanged(terminal: Terminal) -> None:
    assert terminal.tmux("display", "-p", "-t", "t", "#{pane_title}").strip() == TITLE
    assert terminal.tmux("display", "-p", "-t", "t", "#{window_name}").strip() == WINDOW


def test_nothing_reached_the_clipboard(terminal: Terminal) -> None:
    assert terminal.tmux("list-buffers") == ""  # an OSC 52 write makes a buffer


def test_the_screen_shows_placeholders_and_one_connection_row(terminal: Terminal) -> None:
    lines = terminal.screen().splitlines()
    header = next(line for line in lines if "LABELMARK" in line)
    assert f"LABELMARK{PLACEHOLDER}[2J{PLACEHOLDER}[5m" in header
    assert f"{PLACEHOLDER}]52;c;aGVsbG8={PLACEHOLDER}" in header
    assert f"pwned{PLACEHOLDER}r{LINE_BREAK}● connected" in header  # the spoof, on its own row
    rows = [line.strip("│ ") for line in lines]
    assert sum(row.startswith("● connected") for row in rows) == 1  # the real one only
    assert lines.index(header) + 1 == next(i for i, r in enumerate(rows)
                                           if r.startswith("● connected"))
    assert any(f"ERRMARK disk{PLACEHOLDER}]0;pwned{PLACEHOLDER}{LINE_BREAK}full" in r
               for r in rows)
    assert any("step invalid/invalid" in r for r in rows)  # 1e30 of 10**400
    assert any("invalid/16.0 GiB" in r for r in rows)  # memory used: 10**400 bytes


def _sgr_attributes(screen: str) -> set[int]:
    """Every SGR attribute set in ``capture-pane -e`` output (colour arguments skipped)."""
    found: set[int] = set()
    for params in re.findall(r"\x1b\[([0-9;:]*)m", screen):
        codes = [int(p or 0) for p in params.replace(":", ";").split(";")]
        i = 0
        while i < len(codes):
            if codes[i] in (38, 48, 58):  # 38;5;N or 38;2;R;G;B
                i += 3 if codes[i + 1:i + 2] == [5] else 5
                continue
            found.add(codes[i])
            i += 1
    return found


def test_nothing_blinks_and_the_layout_holds(terminal: Terminal) -> None:
    assert 5 not in _sgr_attributes(terminal.screen("-e"))  # SGR 5: blink
    lines = terminal.screen().splitlines()
    assert len(lines) == HEIGHT and "colabtui" in lines[0]
    assert lines[1].startswith("╭") and lines[1].endswith("╮") and len(lines[1]) == WIDTH
    assert lines[-2].startswith("╰") and lines[-2].endswith("╯")
    assert all(line.startswith("│") and line.endswith("│") for line in lines[2:-2]), \
        "\n".join(lines)  # nothing moved a border: no clear, no cursor move, no reordering
    assert "Quit" in lines[-1]
