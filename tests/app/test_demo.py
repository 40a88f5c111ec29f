"""The demo: real training children that answer, end cleanly, leave no orphans, resume, and
fail to start with a message that says why."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import colabtui_remote
import pytest

from colabtui.client import RemoteClient
from colabtui.config import load_config
from colabtui.demo import Demo, DemoError, format_lr, parse_connect_line

REMOTE_SRC = str(Path(colabtui_remote.__file__).resolve().parents[1])


def gone(pid: int) -> bool:
    """True once ``pid`` no longer exists (a zombie counts as gone: it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pids: list[int], limit_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if not gone(p)]


async def statuses(demo: Demo):
    async def one(s):
        async with RemoteClient(s.url, s.token) as client:
            return await client.status()

    return await asyncio.gather(*(one(s) for s in demo.sessions))


def test_two_sessions_answer_stop_cleanly_and_resume(tmp_path: Path) -> None:
    demo = Demo(2, root=tmp_path / "demo", steps=100_000, step_delay_s=0.01,
                autosave_every_s=60)
    # a token starting with "-" must reach the child as a value, not as an option
    demo.sessions[1].token = "-" + demo.sessions[1].token
    with demo:
        pids = demo.pids
        found = asyncio.run(statuses(demo))
        assert [(s.run, s.label, s.state) for s in found] == [
            ("digits-lr3e-3", "digits lr=3e-3", "running"),
            ("digits-lr1e-3", "digits lr=1e-3", "running")]
        config = load_config(demo.config_path)
        assert [(c.url, c.label) for c in config.sessions] == [
            (s.url, s.label) for s in demo.sessions]
        assert len({s.url for s in demo.sessions}) == 2
    assert wait_gone(pids, limit_s=0) == []  # stop() waited for them
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # nothing left in their process groups either
    # Asked to stop, each saved a checkpoint; started again, each resumes from it.
    saved = {d.name for d in (tmp_path / "demo").iterdir()
             if (d / "manifest.json").exists()}
    assert saved == {"digits-lr3e-3", "digits-lr1e-3"}
    with Demo(1, root=tmp_path / "demo", steps=100_000, step_delay_s=0.01) as again:
        [st] = asyncio.run(statuses(again))
        assert st.run == "digits-lr3e-3" and st.checkpoint.count >= 1
        assert st.step is not None and st.step > 0
    assert "resumed digits-lr3e-3" in again.sessions[0].stdout_path.read_text()


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from colabtui.demo import Demo
        demo = Demo(1, root=Path({str(tmp_path / 'demo')!r}), steps=100_000, step_delay_s=0.01)
        demo.start()
        print(*demo.pids, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 1 and not gone(pids[0])
    finally:
        parent.send_signal(signal.SIGKILL)  # no atexit, no handler: only the kernel can help
        parent.wait(timeout=30)
    assert wait_gone(pids) == []


def test_a_child_without_torch_says_what_to_install(tmp_path: Path) -> None:
    # -S leaves out site-packages: colabtui_remote (on PYTHONPATH) imports, torch does not.
    demo = Demo(2, root=tmp_path / "demo", python=[sys.executable, "-S"],
                env={"PYTHONPATH": REMOTE_SRC})
    with pytest.raises(DemoError) as info:
        demo.start()
    message = str(info.value)
    assert "exited with code 2" in message
    assert "pip install 'colabtui[demo]'" in message
    assert "its stderr" in message
    assert wait_gone(demo.pids, limit_s=0) == []


def test_a_silent_child_times_out_with_a_clear_error(tmp_path: Path) -> None:
    demo = Demo(1, root=tmp_path / "demo", start_timeout_s=0.05)
    with pytest.raises(DemoError, match="printed no connect line within 0.05 s"):
        demo.start()
    assert wait_gone(demo.pids, limit_s=0) == []
    assert not demo.config_path.exists()


def test_session_count_is_checked() -> None:
    for n in (0, 10):
        with pytest.raises(ValueError, match="1 to 9"):
            Demo(n)


def test_parse_connect_line_and_format_lr() -> None:
    line = "colabtui connect http://127.0.0.1:41234 --token Ab-_9 --label 'digits lr=3e-3'\n"
    assert parse_connect_line(line) == ("http://127.0.0.1:41234", "Ab-_9", "digits lr=3e-3")
    line = "colabtui connect http://127.0.0.1:41234 --token=-Ab_9 --label='digits lr=1e-3'\n"
    assert parse_connect_line(line) == ("http://127.0.0.1:41234", "-Ab_9", "digits lr=1e-3")
    with pytest.raises(ValueError):
        parse_connect_line("Serving on 127.0.0.1")
    assert [format_lr(x) for x in (3e-3, 1e-3, 3e-4, 1e-2)] == ["3e-3", "1e-3", "3e-4", "1e-2"]
