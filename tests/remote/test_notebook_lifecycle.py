"""A run's life in a real notebook kernel (ipykernel driven by jupyter_client, as Colab runs
cells): interrupt inside ``steps()`` and inside the explicit form, re-run after an interrupt,
re-run after a stop from the laptop, an exception in the loop, a re-created Monitor, and a
kernel restart with run-all; the state seen over HTTP at each point."""

from __future__ import annotations

import queue
import textwrap
import time

import httpx
import pytest
from jupyter_client.manager import KernelManager
from ports import free_port

TOKEN = "lifecycle-token-0123456789"

SETUP = """
import time, torch
from colabtui_remote import Monitor
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
def train_step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    time.sleep(0.01)
    return loss.detach()
mon = Monitor(run="nb", checkpoint_dir={folder!r}, autosave_every=None)
mon.track(model=model, optimizer=opt)
mon.serve(port={port}, token={token!r}, quiet=True)
"""

STEPS_CELL = """
seen = []
for step in mon.steps(100000):
    seen.append(step)
    mon.log(loss=train_step())
"""

EXPLICIT_CELL = """
mon.resume()
while True:
    mon.log(loss=train_step())
    if mon.at_step_boundary(mon.step + 1):
        break
"""


class Notebook:
    """One kernel and its client; cells run asynchronously, replies awaited by id."""

    def __init__(self) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def start(self, code: str) -> str:
        return self.kc.execute(textwrap.dedent(code))

    def reply(self, msg_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_shell_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                if msg["content"]["status"] == "error":
                    self.run("pass")  # past ipykernel's abort window (see run) before going on
                return msg["content"]
        raise AssertionError("the cell did not end")

    def run(self, code: str, timeout: float = 60) -> dict:
        """Run a cell and wait for its reply. Right after a cell that raised, ipykernel aborts
        the requests that reach it within a short window (``stop_on_error``), longer on a
        loaded machine: such a cell is sent again, as a user would run it again."""
        for _ in range(5):
            reply = self.reply(self.start(code), timeout)
            if reply["status"] != "aborted":
                return reply
            time.sleep(0.5)
        return reply

    def output(self) -> str:
        """What the cells printed since the last call."""
        text = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                return "".join(text)
            if msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])

    def restart(self) -> None:
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=60)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def notebook():
    nb = Notebook()
    yield nb
    nb.close()


def status(port: int) -> dict:
    r = httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=5,
                  headers={"Authorization": f"Bearer {TOKEN}"})
    r.raise_for_status()
    return r.json()


def wait_status(port: int, check, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = status(port)
            if check(last):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"status never matched; last: {last}")


def stop(port: int, cid: str) -> None:
    r = httpx.post(f"http://127.0.0.1:{port}/v1/commands", timeout=5,
                   headers={"Authorization": f"Bearer {TOKEN}"}, json={"id": cid, "action": "stop"})
    assert r.status_code == 202, r.text


def test_interrupts_reruns_stops_and_failures_in_a_real_kernel(notebook, tmp_path):
    port = free_port()
    assert notebook.run(SETUP.format(folder=str(tmp_path), port=port, token=TOKEN))["status"] == "ok"

    # Colab's stop button inside steps(): saved on the way out, interrupted at once, re-raised.
    cell = notebook.start(STEPS_CELL)
    wait_status(port, lambda s: s["state"] == "running" and s["step"] >= 20)
    notebook.km.interrupt_kernel()
    reply = notebook.reply(cell)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    st = status(port)
    assert st["state"] == "interrupted"
    assert st["checkpoint"]["last"]["step"] == st["step"] >= 20
    assert "interrupted at step" in notebook.output()
    reached = st["step"]

    # Re-running the cell goes on from the step reached, no step applied twice.
    cell = notebook.start(STEPS_CELL)
    wait_status(port, lambda s: s["state"] == "running" and s["step"] >= reached + 10)
    stop(port, "stop-1")
    assert notebook.reply(cell)["status"] == "ok"
    assert notebook.run("print(seen[0])")["status"] == "ok"
    assert notebook.output().strip().splitlines()[-1] == str(reached)
    st = status(port)
    assert st["state"] == "stopped"

    # After a stop from the laptop, a re-run trains again and the laptop sees running.
    cell = notebook.start(STEPS_CELL)
    wait_status(port, lambda s: s["state"] == "running" and s["step"] > st["step"] + 5)

    # An interrupt while a stop is saving (a 100 MB ballast makes the save last) ends stopped
    # or interrupted, never stopping.
    notebook.km.interrupt_kernel()
    notebook.reply(cell)
    assert notebook.run("mon.track(ballast=torch.zeros(25_000_000))")["status"] == "ok"
    cell = notebook.start(STEPS_CELL)
    wait_status(port, lambda s: s["state"] == "running")
    stop(port, "stop-2")
    wait_status(port, lambda s: s["state"] == "stopping", timeout=30)
    notebook.km.interrupt_kernel()
    notebook.reply(cell)
    assert status(port)["state"] in ("stopped", "interrupted")
    assert notebook.run("mon._tracked.pop('ballast'); mon.extras.pop('ballast')")["status"] == "ok"

    # The explicit form: interrupted at a boundary too.
    cell = notebook.start(EXPLICIT_CELL)
    wait_status(port, lambda s: s["state"] == "running")
    time.sleep(0.3)
    notebook.km.interrupt_kernel()
    reply = notebook.reply(cell)
    assert reply["ename"] == "KeyboardInterrupt"
    st = status(port)
    assert st["state"] == "interrupted" and st["checkpoint"]["last"]["step"] == st["step"]

    # An exception in the loop: failed, with its type and message.
    cell = notebook.start(STEPS_CELL.replace("mon.log(loss=train_step())",
                                             "mon.log(loss=train_step())\n"
                                             "    if len(seen) == 5: raise ValueError('boom')"))
    assert notebook.reply(cell)["ename"] == "ValueError"
    st = wait_status(port, lambda s: s["state"] == "failed")
    assert st["error"] == "ValueError: boom"

    # The cell that makes the Monitor, run again with the same port=0-style call: the old
    # server is closed, the new one answers at the same address with the same token.
    old_session = st["session_id"]
    assert notebook.run(SETUP.format(folder=str(tmp_path), port=0, token=TOKEN))["status"] == "ok"
    st = status(port)
    assert st["session_id"] != old_session and st["state"] == "running"


def test_a_kernel_restart_and_run_all_resumes_from_the_checkpoint(notebook, tmp_path):
    port = free_port()
    setup = SETUP.format(folder=str(tmp_path), port=port, token=TOKEN)
    assert notebook.run(setup)["status"] == "ok"
    cell = notebook.start(STEPS_CELL)
    wait_status(port, lambda s: s["step"] >= 20)
    stop(port, "stop-before-restart")
    notebook.reply(cell)
    saved = status(port)["checkpoint"]["last"]["step"]
    notebook.restart()
    assert notebook.run(setup)["status"] == "ok"
    notebook.start(STEPS_CELL)
    st = wait_status(port, lambda s: s["state"] == "running" and s["step"] > saved)
    assert st["checkpoint"]["last"]["step"] == saved
    assert "resumed nb at step" in notebook.output()


def test_a_framework_loop_that_raises_is_failed(notebook, tmp_path):
    # The Trainer, Lightning and Keras callbacks drive the run through the bridge; an exception
    # out of the framework's loop ends the cell: failed, with its type and message.
    port = free_port()
    setup = SETUP.format(folder=str(tmp_path), port=port, token=TOKEN)
    assert notebook.run(setup)["status"] == "ok"
    reply = notebook.run("""
from colabtui_remote.integrations.bridge import FrameworkBridge
bridge = FrameworkBridge(mon, "transformers", "ColabTuiCallback")
bridge.start(total_steps=100, step=0, epoch=None)
bridge.boundary(1, None)
raise RuntimeError("the framework gave up")
""")
    assert reply["ename"] == "RuntimeError"
    st = wait_status(port, lambda s: s["state"] != "running", timeout=10)
    assert (st["state"], st["error"]) == ("failed", "RuntimeError: the framework gave up")
