"""Shared fixtures: real notebook-side sessions training on the digits data, on loopback."""

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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# "--token=-x" for a token that starts with a dash (a shell would read "--token -x" as two)
CONNECT_LINE = re.compile(r"^colabtui connect (http://\S+):(\d+) --token[ =](\S+)")
START_TIMEOUT_S = 120.0


@dataclass
class DigitsSession:
    """A ``python -m colabtui_remote.examples.digits`` subprocess serving on loopback.

    ``restart()`` starts it again on the same port and checkpoint folder (a new session of the
    same run, resuming from its checkpoints).
    """

    checkpoint_dir: Path
    args: list[str]
    token: str
    port: int = 0
    proc: subprocess.Popen | None = None
    stdout_lines: list[str] = field(default_factory=list)
    stderr_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DigitsSession:
        cmd = [sys.executable, "-u", "-m", "colabtui_remote.examples.digits",
               "--port", str(self.port), f"--token={self.token}",
               "--checkpoint-dir", str(self.checkpoint_dir), *self.args]
        self.stdout_lines = []  # this process's output only
        self.stderr_path = self.checkpoint_dir.parent / f"{self.checkpoint_dir.name}.stderr.log"
        stderr = open(self.stderr_path, "wb")  # noqa: SIM115 — the child owns it
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                     start_new_session=True)
        stderr.close()
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(stream):
            for line in stream:
                self.stdout_lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.kill()
                raise RuntimeError(f"digits session did not start: {self.stderr()}")
            match = CONNECT_LINE.match(line)
            if match:
                self.port = int(match.group(2))
                return self

    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""

    def wait(self, timeout: float = 120.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the runtime dies without a chance to save."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def restart(self) -> DigitsSession:
        self.kill()
        return self.start()


@pytest.fixture
def digits_session(tmp_path):
    """Factory: ``digits_session(steps=..., lr=..., step_delay=..., port=0, name=...)`` starts a
    real training session; every session started is killed at teardown."""
    started: list[DigitsSession] = []

    def start(steps: int = 100_000, lr: float = 1e-3, step_delay: float = 0.01, port: int = 0,
              name: str = "run", autosave_every: float = 0, label: str | None = None,
              extra: list[str] | None = None) -> DigitsSession:
        args = ["--steps", str(steps), "--lr", str(lr), "--step-delay", str(step_delay),
                "--autosave-every", str(autosave_every), "--run", name,
                "--label", label or name, *(extra or [])]
        session = DigitsSession(checkpoint_dir=tmp_path / name, args=args,
                                token=secrets.token_urlsafe(16), port=port)
        started.append(session)
        return session.start()

    yield start
    for session in started:
        session.kill()


# --------------------------------------------------------------------------- Google Drive

sys.path.insert(0, str(Path(__file__).resolve().parent / "remote"))  # drive_standin & co.


@pytest.fixture
def standin():
    """The Drive v2 stand-in (tests/remote/drive_standin.py) on a loopback port."""
    from drive_standin import DriveStandin

    s = DriveStandin().start()
    yield s
    s.stop()


@pytest.fixture
def creds(standin, tmp_path, monkeypatch):
    """The stand-in's login in a credentials file; the env points our code at both (the way a
    user configures it: COLABTUI_DRIVE_API, COLABTUI_DRIVE_CREDENTIALS)."""
    from colabtui_remote.drive import API_ENDPOINT_ENV, CREDENTIALS_ENV

    path = standin.make_credentials_file(tmp_path / "drive-credentials.json")
    monkeypatch.setenv(API_ENDPOINT_ENV, standin.api_endpoint)
    monkeypatch.setenv(CREDENTIALS_ENV, str(path))
    return path


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for this test (screens that show local times, in snapshots)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
