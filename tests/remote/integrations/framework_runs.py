"""What the framework tests share: the examples run as real processes on loopback (a new
process is a new runtime), and the helpers that talk to them over HTTP."""

from __future__ import annotations

import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from colabtui_remote import schema

EXAMPLES = Path(__file__).resolve().parents[3] / "remote" / "examples"
# "--token=-x" for a token that starts with a dash (a shell would read "--token -x" as two)
CONNECT_LINE = re.compile(r"^colabtui connect (http://\S+):(\d+) --token[ =](\S+)")


@dataclass
class Example:
    """``python remote/examples/<script> ...`` as a subprocess serving on loopback."""

    script: str
    args: list[str]
    env: dict[str, str]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    proc: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)
    port: int = 0

    def start(self, *, serve: bool = True, timeout: float = 120.0) -> Example:
        cmd = [sys.executable, "-u", str(EXAMPLES / self.script), "--port",
               str(0 if serve else -1), f"--token={self.token}", *self.args]
        self.lines = []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True,
                                     env={**os.environ, **self.env})
        seen: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                seen.put(line)
            seen.put(None)

        threading.Thread(target=pump, daemon=True).start()
        if not serve:
            return self
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = seen.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.kill()
                raise RuntimeError(f"{self.script} did not start:\n{self.output()}")
            m = CONNECT_LINE.match(line)
            if m:
                self.port = int(m.group(2))
                return self

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10,
                            headers={"Authorization": f"Bearer {self.token}"})

    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 300.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.1)  # the pump's last lines
        return code

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def send(client: httpx.Client, action: str, cid: str | None = None) -> schema.CommandRecord:
    """POST a command; returns the record the server answered with."""
    cid = cid or str(uuid.uuid4())
    r = client.post("/v1/commands", json={"id": cid, "action": action})
    assert r.status_code == 202, r.text
    return schema.parse_command(r.json())


def outcome(client: httpx.Client, cid: str, timeout: float = 120.0) -> schema.CommandRecord:
    """The command's record once it is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = schema.parse_command(client.get(f"/v1/commands/{cid}").json())
        except httpx.TransportError:  # the process ended after answering
            raise AssertionError(f"the session ended before command {cid} was seen done") from None
        if record.state in ("done", "failed"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"command {cid} not done within {timeout} s")


def status(client: httpx.Client) -> schema.Status:
    return schema.parse_status(client.get("/v1/status").json())


def wait_step(client: httpx.Client, step: int, timeout: float = 120.0) -> schema.Status:
    """The status once the run reached ``step``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status(client)
        if s.step >= step:
            return s
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached within {timeout} s")


def metrics(client: httpx.Client) -> dict[str, list[schema.MetricPoint]]:
    """Every metric series ``GET /v1/metrics`` holds, parsed."""
    return schema.parse_metrics(client.get("/v1/metrics", params={"after": 0}).json()).series
