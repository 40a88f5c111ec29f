"""A ``torchrun --nproc_per_node=2`` job of one of remote/examples' distributed examples
(gloo on the CPU), serving on a loopback port below the ephemeral range, with a client for it.
Shared by tests/remote/test_distributed.py and tests/app/test_ui_distributed.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from ports import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "remote" / "examples"
TOKEN = "test-token-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--monitor_interval=0.2"]
"""``torchrun``, as the interpreter running the tests runs it (its agent checks its workers
every 0.2 s, not 5)."""


class Job:
    """A torchrun job of one example, its port and its output."""

    def __init__(self, example: str, folder: Path, *extra: str, nproc: int = 2,
                 steps: int = 60, step_delay: float = 0.0,
                 checkpoint_dir: Path | None = None) -> None:
        self.port = free_port()
        self.folder = folder
        rdzv = free_port()
        cmd = [*TORCHRUN, f"--nproc_per_node={nproc}", f"--master_port={rdzv}",
               str(EXAMPLES / example),
               "--port", str(self.port), "--token", TOKEN, "--steps", str(steps),
               "--checkpoint-dir", str(checkpoint_dir or folder / "ckpt"),
               "--autosave-every", "0",
               "--dump-params", str(folder / "params.pt"), *extra]
        if step_delay:
            cmd += ["--step-delay", str(step_delay)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, start_new_session=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=HEADERS,
                                   timeout=5)

    def status(self) -> dict | None:
        try:
            return self.client.get("/v1/status").json()
        except httpx.HTTPError:
            return None

    def wait_for(self, ok, what: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and ok(st or {}) is False:
                break
            st = self.status()
            if st is not None and ok(st):
                return st
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"never {what} (last status {st}):\n{self.output()}")

    def command(self, action: str) -> dict:
        r = self.client.post("/v1/commands", json={"id": f"{action}-{time.monotonic_ns()}",
                                                    "action": action})
        assert r.status_code == 202, r.text
        return r.json()

    def wait_command(self, cid: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.client.get(f"/v1/commands/{cid}").json()
            if rec["state"] in ("done", "failed"):
                return rec
            time.sleep(0.05)
        raise AssertionError(f"command {cid} never ended:\n{self.output()}")

    def finish(self, timeout: float = 240.0) -> str:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        finally:
            self.kill()
        self._out = out
        return out

    def output(self) -> str:
        if getattr(self, "_out", None) is None:
            self.kill()
            self._out = self.proc.communicate()[0]
        return self._out

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.client.close()


