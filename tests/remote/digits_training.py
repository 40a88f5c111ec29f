"""In-process training on scikit-learn's digits data, for tests that need a Monitor in the test
process (the subprocess form is the ``digits_session`` fixture)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import torch
from colabtui_remote import Monitor, schema
from colabtui_remote.examples.digits import load_digits_data

_DATA: tuple[torch.Tensor, torch.Tensor] | None = None


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    global _DATA
    if _DATA is None:
        data, target = load_digits_data()  # scikit-learn's copy of the UCI digits
        _DATA = (torch.tensor(data, dtype=torch.float32) / 16.0,
                 torch.tensor(target, dtype=torch.long))
    return _DATA


@dataclass
class DigitsTraining:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def step(self) -> torch.Tensor:
        x, y = digits_data()
        idx = torch.randint(0, len(x), (32,))
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.model(x[idx]), y[idx])
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()


def make_training(seed: int = 0, lr: float = 1e-3) -> DigitsTraining:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.999)
    return DigitsTraining(model, opt, sched)


class TrainingThread(threading.Thread):
    """Runs ``for step in mon.steps(total)`` on a thread, as a notebook's loop would."""

    def __init__(self, mon: Monitor, training: DigitsTraining, total: int, delay: float = 0.002):
        super().__init__(daemon=True)
        self.mon, self.training, self.total, self.delay = mon, training, total, delay
        self.steps_run: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for step in self.mon.steps(self.total):
                self.mon.log(loss=self.training.step())
                self.steps_run.append(step)
                if self.delay:
                    time.sleep(self.delay)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def save_over_http(client) -> schema.CommandRecord:
    """Send a save command through ``client`` (an ``httpx.Client`` on the session) and return
    its final record."""
    cid = str(uuid.uuid4())
    assert client.post("/v1/commands", json={"id": cid, "action": "save"}).status_code == 202

    def done():
        record = schema.parse_command(client.get(f"/v1/commands/{cid}").json())
        return record if record.state in ("done", "failed") else None

    return wait_for(done, timeout=60)


def status_over_http(client) -> schema.Status:
    """``GET /v1/status`` through ``client``, parsed."""
    return schema.parse_status(client.get("/v1/status").json())
