"""The demo opens the app at once: ports, tokens and the config exist before the children
start, panels say "starting…" while the children import torch, a child that fails to start
is reported in the app, and ``--fresh`` starts the runs over.

Children that never serve stand in for a slow ``import torch``: the same interpreter, asked to
sleep instead of training. No timed assertions: waits are bounded loops on a condition.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import colabtui_remote
from textual.widgets import Static

from colabtui.app import ColabTuiApp
from colabtui.config import load_config
from colabtui.demo import Demo, free_port
from colabtui.ledger import Ledger
from colabtui.widgets.session_panel import PollResult

REMOTE_SRC = str(Path(colabtui_remote.__file__).resolve().parents[1])
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
"""A child that starts and never serves (the rest of its command line is its argv)."""

WAIT_S = 30.0


async def wait_for(pilot, condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await pilot.pause(0.05)


def header(panel) -> str:
    return panel.query_one("#header", Static).render().plain


async def test_the_app_opens_while_the_runs_start_and_says_so(tmp_path):
    demo = Demo(2, root=tmp_path / "demo", python=SLEEPER)
    try:
        demo.launch()  # returns without waiting for the children
        assert all(s.proc.poll() is None and not s.serving for s in demo.sessions)
        config = load_config(demo.config_path)
        assert [(c.url, c.token) for c in config.sessions] == [
            (s.url, s.token) for s in demo.sessions]
        app = ColabTuiApp(demo.config_path, demo.ledger_path, backoff_max_s=30.0,
                          starting=demo.is_starting)
        refused: list[PollResult] = []

        def hook(message) -> None:
            if isinstance(message, PollResult) and message.key == demo.sessions[0].key:
                refused.append(message)

        async with app.run_test(size=(120, 36), message_hook=hook) as pilot:
            first, second = app.panels
            await wait_for(pilot, lambda: len(refused) >= 3, "three refused polls")
            await pilot.pause(0.2)
            assert all(r.error is not None and r.error.kind == "unreachable" for r in refused)
            assert "◌ starting…" in header(first) and "unreachable" not in header(first)
            assert not first.has_class("-error")
            # no back-off while it starts (three failures would wait 4 s): it serves any moment
            assert first.poll_delay_s == app.config.settings.poll_interval_s
            # the second child dies: no longer starting, its panel says what is wrong
            demo.sessions[1].proc.kill()
            demo.sessions[1].proc.wait(timeout=30)
            await wait_for(pilot, lambda: "unreachable" in header(second), "the truth")
            assert "◌ starting…" in header(first)
    finally:
        demo.stop(graceful=False)


async def test_a_run_that_fails_to_start_is_reported_in_the_app(tmp_path):
    # -S leaves out site-packages: colabtui_remote (on PYTHONPATH) imports, torch does not
    demo = Demo(1, root=tmp_path / "demo", python=[sys.executable, "-S"],
                env={"PYTHONPATH": REMOTE_SRC})
    try:
        demo.launch()
        app = ColabTuiApp(demo.config_path, demo.ledger_path, backoff_max_s=0.4,
                          starting=demo.is_starting)
        async with app.run_test(size=(120, 36)) as pilot:
            demo.watch(lambda message: app.call_from_thread(app.notify, message,
                                                            markup=False))
            await wait_for(pilot, lambda: any("exited with code 2" in n.message
                                              for n in app._notifications), "the report")
            note = next(n.message for n in app._notifications if "exited" in n.message)
            assert "pip install 'colabtui[demo]'" in note and "its stderr" in note
            await wait_for(pilot, lambda: "unreachable" in header(app.panels[0]), "the panel")
    finally:
        demo.stop(graceful=False)


def test_each_run_keeps_its_port_from_one_demo_to_the_next(tmp_path):
    first = Demo(2, root=tmp_path / "demo", python=SLEEPER)
    try:
        first.launch()
    finally:
        first.stop(graceful=False)
    again = Demo(2, root=tmp_path / "demo", python=SLEEPER)
    try:
        again.launch()
        assert [s.url for s in again.sessions] == [s.url for s in first.sessions]
        assert [s.key for s in again.sessions] == [s.key for s in first.sessions]
    finally:
        again.stop(graceful=False)
    # a port taken meanwhile is given up for a free one
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert free_port(port) != port


def test_start_over_deletes_the_checkpoints_and_the_history_and_says_what(tmp_path):
    demo = Demo(2, root=tmp_path / "demo")
    for s in demo.sessions:
        s.checkpoint_dir.mkdir(parents=True)
        (s.checkpoint_dir / "ckpt-000000100.pt").write_bytes(b"x")
    with Ledger(demo.ledger_path):
        pass
    other = demo.root / "digits-lr3e-4"  # a run of a larger demo: not this one's to delete
    other.mkdir()
    gone = demo.start_over()
    assert set(gone) >= {demo.sessions[0].checkpoint_dir, demo.sessions[1].checkpoint_dir,
                         demo.ledger_path}
    assert not any(s.checkpoint_dir.exists() for s in demo.sessions)
    assert not demo.ledger_path.exists() and other.is_dir()
    assert demo.start_over() == []  # nothing left to delete: says nothing
