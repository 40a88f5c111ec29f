"""In a real terminal (a private tmux server): keys typed in one burst act on the panel the
digit chose, ``d`` asks first, and ``colabtui demo --fresh`` says what it deletes, starts the
runs over, and says what it waits for on ``q``.

``tmux send-keys 2s`` writes both characters to the terminal at once, as fast typing or a paste
does: the app reads them in one read. Every wait is a bounded loop on what the pane shows.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from colabtui_remote import Monitor
from colabtui_remote.schema import PROTOCOL_VERSION, Status

from colabtui.config import Config, SessionConfig, Settings, save_config
from colabtui.ledger import Ledger


class Tmux:
    """A tmux server of our own (``-L``, no config file), one window; killed by :meth:`kill`.

    The program runs under ``sh``, which writes its exit status to a file: tmux (3.3a here)
    now and then leaves an ended pane's process a zombie and the pane not dead, so its own
    ``pane_dead_status`` cannot be waited for.
    """

    def __init__(self, folder: Path) -> None:
        self.base = ["tmux", "-L", f"colabtui-test-{secrets.token_hex(4)}", "-f", "/dev/null"]
        self.rc = folder / "exit-status"

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], check=True, capture_output=True,
                              text=True).stdout

    def start(self, command: list[str], env: dict[str, str], size=(120, 36)) -> None:
        program = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), *command])
        line = f"{program}; echo $? > {shlex.quote(str(self.rc))}"
        self("start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
             "new-session", "-d", "-s", "main", "-x", str(size[0]), "-y", str(size[1]),
             f"sh -c {shlex.quote(line)}")

    def screen(self) -> str:
        # -J: wrapped lines joined; -S -: from the start of the history
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", "main")

    def wait_for(self, words: str, limit_s: float = 60.0) -> str:
        deadline = time.monotonic() + limit_s
        while True:
            shown = self.screen()
            if words in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {words!r}; the pane shows:\n{shown}")
            time.sleep(0.1)

    def exit_status(self, limit_s: float = 60.0) -> int:
        """The program's exit status once it ended."""
        deadline = time.monotonic() + limit_s
        while not (self.rc.exists() and self.rc.read_text().strip()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the program did not end; the pane shows:\n"
                                     f"{self.screen()}")
            time.sleep(0.1)
        return int(self.rc.read_text())

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path)
    yield t
    t.kill()


def _env(tmp_path: Path) -> dict[str, str]:
    return {"COLABTUI_CONFIG_DIR": str(tmp_path / "config"),
            "COLABTUI_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": os.pathsep.join(sys.path)}


def test_keys_typed_in_one_burst_act_on_the_panel_the_digit_chose(tmp_path, tmux):
    monitors = []
    try:
        for n in range(3):
            mon = Monitor(run=f"burst-{n + 1}", checkpoint_dir=None, autosave_every=None,
                          handle_sigterm=False)
            mon.serve(port=0, token=f"burst-token-{n + 1}-0123456789abcdef", quiet=True)
            mon.log(0, loss=1.0)
            mon.at_step_boundary(1)
            monitors.append(mon)
        config = tmp_path / "config.toml"
        save_config(Config([SessionConfig(m.url, f"burst-token-{n + 1}-0123456789abcdef",
                                          f"session {n + 1}") for n, m in enumerate(monitors)],
                           Settings(poll_interval_s=0.2)), config)
        tmux.start([sys.executable, "-m", "colabtui", "--config", str(config)], _env(tmp_path))
        deadline = time.monotonic() + 60
        while tmux.screen().count("● connected") < 3:
            assert time.monotonic() < deadline, tmux.screen()
            time.sleep(0.1)
        tmux("send-keys", "-t", "main", "2s")
        tmux.wait_for("session 2: save requested")
        assert [len(m.commands.undelivered()) for m in monitors] == [0, 1, 0]
        tmux("send-keys", "-t", "main", "7d")
        shown = tmux.wait_for("Remove session")
        assert "Remove session 2 from the config?" in shown and "is forgotten" in shown
        tmux("send-keys", "-t", "main", "n")
        deadline = time.monotonic() + 30
        while "Remove session" in tmux.screen():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        tmux("send-keys", "-t", "main", "q")
        assert tmux.exit_status() == 0
        assert len([line for line in config.read_text().splitlines()
                    if line.startswith("url")]) == 3, "nothing removed"
    finally:
        for mon in monitors:
            mon.close(linger_s=0)


def test_demo_fresh_says_what_it_deletes_starts_over_and_says_what_q_waits_for(tmp_path, tmux):
    env = _env(tmp_path)
    demo_root = tmp_path / "data" / "demo"
    old_run = demo_root / "digits-lr3e-3"
    old_run.mkdir(parents=True)
    (old_run / "ckpt-000004000.pt").write_bytes(b"an old checkpoint")
    with Ledger(demo_root / "ledger.sqlite3") as ledger:  # an earlier demo's history
        ledger.record_status("s-old", "http://127.0.0.1:1", "old", Status(
            PROTOCOL_VERSION, "old-run", "old", "old", "finished", 4000), time.time())
    tmux.start([sys.executable, "-m", "colabtui", "demo", "--fresh", "--sessions", "1",
                "--steps", "100000"], env)
    tmux.wait_for("digits lr=3e-3")  # the app is open
    assert not (old_run / "ckpt-000004000.pt").exists()
    tmux.wait_for("● connected", limit_s=120)  # the child imported torch and serves
    with Ledger(demo_root / "ledger.sqlite3") as ledger:
        assert "old-run" not in {r.run for r in ledger.sessions()}
    tmux("send-keys", "-t", "main", "q")
    assert tmux.exit_status(limit_s=60) == 0
    shown = tmux.screen()
    assert "starting over: deleting the checkpoints of 1 demo run" in shown, shown
    assert f"deleted {old_run}" in shown
    assert "stopping 1 demo run (each saves a checkpoint, then ends" in shown
    assert (old_run / "manifest.json").exists(), "the stop saved a checkpoint of the new run"
    assert not (old_run / "ckpt-000004000.pt").exists()
