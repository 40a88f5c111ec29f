"""Exact resume in the loops people write: pytorch/examples' MNIST loop on the digits
(``remote/examples/mnist_digits.py``: a shuffled DataLoader, dropout, Adadelta, StepLR per
epoch, a test pass per epoch), stopped over HTTP mid-epoch, after an epoch's last batch and at
an epoch's end, resumed in a new process: every tensor equal to a straight run's, and every
sample seen exactly once per epoch. Also the ``steps()`` form over a shuffled loader, a loader
with its own generator, and a torchdata StatefulDataLoader, in one process."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from bitwise import assert_same
from colabtui_remote import Monitor
from ports import free_port
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "remote" / "examples" / "mnist_digits.py"
TOKEN = "test-token-0123456789abcdef"


def run_example(folder: Path, *extra: str, stop_at: int | None = None, epochs: int = 3,
                workers: int = 0) -> tuple[str, dict[int, int]]:
    """Run the example to its end (or until a stop sent once ``stop_at`` steps are done);
    returns its output and its per-epoch sample counts."""
    port = free_port()
    cmd = [sys.executable, str(EXAMPLE), "--epochs", str(epochs), "--seed", "3",
           "--checkpoint-dir", str(folder / "ckpt"), "--port", str(port), "--token", TOKEN,
           "--workers", str(workers), "--dump-params", str(folder / "params.pt"), *extra]
    if stop_at is not None:
        cmd += ["--step-delay", "0.2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    try:
        if stop_at is not None:
            send_stop_at(port, stop_at, proc)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    m = re.search(r"samples per epoch in this process (\{.*\})", out)
    assert m, out
    return out, ast.literal_eval(m.group(1))


def send_stop_at(port: int, step: int, proc: subprocess.Popen) -> None:
    """Once the run reports ``step`` steps done (it sleeps 0.2 s before the next batch or
    test pass), send a stop: it is carried out at the next boundary. A run that ended
    before it got there fails the test with its output."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 120
    st, failure = None, None
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended (exit {proc.returncode}) before step "
                                     f"{step} (last status: {st}; last failure: {failure!r}):\n"
                                     f"{proc.communicate()[0]}")
            try:
                st = c.get("/v1/status").json()
            except httpx.HTTPError as exc:
                failure = exc
                time.sleep(0.05)
                continue
            if st["step"] >= step:
                assert st["step"] == step, f"missed step {step}: at {st['step']}"
                r = c.post("/v1/commands", json={"id": f"stop-{step}", "action": "stop"})
                assert r.status_code == 202, r.text
                return
            time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the run never reached step {step} (last status: {st}; "
                         f"last failure: {failure!r}):\n"
                         f"{proc.communicate()[0]}")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    results = {}
    for workers in (0, 1):
        folder = tmp_path_factory.mktemp(f"straight{workers}")
        _, counts = run_example(folder, workers=workers)
        assert counts == {1: 1500, 2: 1500, 3: 1500}
        results[workers] = torch.load(folder / "params.pt", weights_only=True)
    return results


# 24 batches an epoch (1,500 samples, 64 a batch): 30 is mid epoch 2; 24 stops after the
# last batch of epoch 1 (before its test pass and scheduler step) or, sent while the test pass
# runs, at the end of epoch 1 (after them).
@pytest.mark.parametrize("workers,stop_at,where", [
    (0, 30, "mid-epoch"), (0, 23, "last batch"), (0, 24, "epoch end"),
    (1, 30, "mid-epoch"), (1, 24, "epoch end")])
def test_the_mnist_loop_stopped_and_resumed_equals_a_straight_run(
        tmp_path, straight, workers, stop_at, where):
    out1, first = run_example(tmp_path, stop_at=stop_at, workers=workers)
    assert "stopped at step" in out1
    assert not (tmp_path / "params.pt").exists()
    out2, second = run_example(tmp_path, workers=workers)
    assert "resumed" in out2
    totals = {e: first.get(e, 0) + second.get(e, 0) for e in (1, 2, 3)}
    assert totals == {1: 1500, 2: 1500, 3: 1500}, (where, first, second)
    resumed = torch.load(tmp_path / "params.pt", weights_only=True)
    assert_same(straight[workers], resumed, where)


def _loader(shuffle=True, generator=None, stateful=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 4, generator=g)
    y = torch.randint(0, 3, (100,), generator=g)
    cls = DataLoader
    if stateful:
        from torchdata.stateful_dataloader import StatefulDataLoader as cls
    return cls(TensorDataset(x, y), batch_size=8, shuffle=shuffle, generator=generator)


def _steps_run(folder: Path, total: int, stop_after: int | None, **loader_kw):
    """A steps() loop over a loader, re-iterating it at each epoch's end; a dropout model so
    that any shift of the global RNG shows in the weights. Returns (model, batches seen)."""
    torch.manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.5),
                                torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader_gen = loader_kw.pop("generator", None)
    loader = _loader(generator=loader_gen, **loader_kw)
    mon = Monitor(run=f"steps-{folder.name}", checkpoint_dir=folder, autosave_every=None,
                  handle_sigterm=False)
    mon.track(model=model, optimizer=opt, data=loader)
    seen = []
    it = None
    for step in mon.steps(total):
        if it is None:
            it = iter(loader)
        batch = next(it, None)
        if batch is None:
            it = iter(loader)
            batch = next(it)
        x, y = batch
        seen.append(x.sum().item())
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if stop_after is not None and step + 1 == stop_after:
            mon.commands.submit("stop-here", "stop")
    mon.close()
    return model, seen


@pytest.mark.parametrize("kind", ["shuffled", "generator", "stateful"])
@pytest.mark.parametrize("stop_after", [5, 13, 26])  # mid epoch 1, last batch, mid epoch 3
def test_a_steps_loop_over_a_loader_resumes_exactly(tmp_path, kind, stop_after):
    kw = {"generator": torch.Generator().manual_seed(5)} if kind == "generator" else {}
    if kind == "stateful":
        kw = {"stateful": True}
    straight_model, straight_seen = _steps_run(tmp_path / "a", 40, None, **dict(kw))
    if "generator" in kw:
        kw = {"generator": torch.Generator().manual_seed(5)}
    _, first = _steps_run(tmp_path / "b", 40, stop_after, **dict(kw))
    if "generator" in kw:
        kw = {"generator": torch.Generator().manual_seed(5)}
    resumed_model, second = _steps_run(tmp_path / "b", 40, None, **dict(kw))
    assert first + second == straight_seen
    assert_same(straight_model.state_dict(), resumed_model.state_dict())
