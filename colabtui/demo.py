"""``colabtui demo``: N local sessions training for real, watched by the app.

Each session is a ``python -m colabtui_remote.examples.digits`` child process training a small
network on scikit-learn's digits on the CPU, each at its own learning rate, each with its own
checkpoint folder under ``data_dir()/"demo"/<run>``, so running the demo again resumes every run
from its checkpoints. The children die with the demo: on quit, Ctrl+C, SIGTERM or SIGHUP they
are asked to stop (save, then end), then terminated, then killed; they run in their own process
group, and on Linux the kernel also sends them SIGTERM if the demo process dies
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from colabtui.config import Config, SessionConfig, data_dir, save_config

LEARNING_RATES = (3e-3, 1e-3, 3e-4, 1e-2, 1e-4, 3e-2, 3e-5, 1e-5, 3e-1)
"""Adam learning rates of sessions 1 to 9: the first three bracket the usual 1e-3."""

DEFAULT_STEPS = 6000
DEFAULT_STEP_DELAY_S = 0.03
"""With about 1 ms of compute per step, 6000 steps last about 3–4 minutes: a live demo."""

AUTOSAVE_EVERY_S = 60.0
START_TIMEOUT_S = 60.0
"""Seconds to wait for a child's connect line; importing torch on a cold laptop takes a while."""

INSTALL_HINT = "pip install 'colabtui[demo]'"

_CONNECT_RE = re.compile(r"colabtui connect (\S+) .*")


class DemoError(Exception):
    """The demo could not start; the message says why and what to do."""


def format_lr(lr: float) -> str:
    """``3e-3`` rather than ``0.003`` or ``3e-03``."""
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def demo_dir() -> Path:
    return data_dir() / "demo"


@dataclass
class DemoSession:
    """One child: its run, label, URL and token once it serves."""

    run: str
    label: str
    lr: float
    checkpoint_dir: Path
    token: str
    proc: subprocess.Popen | None = None
    url: str | None = None
    log_dir: Path = field(default=Path("."))

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.run}.stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.run}.stderr.log"

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def parse_connect_line(line: str) -> tuple[str, str, str | None]:
    """``(url, token, label)`` from the line a session prints::

        colabtui connect http://127.0.0.1:41234 --token TOKEN --label 'digits lr=3e-3'

    ``--token=TOKEN`` and ``--label=LABEL`` are read too (the form for a token that starts
    with ``-``).

    Raises:
        ValueError: the line is not a connect line.
    """
    if not _CONNECT_RE.search(line):
        raise ValueError(f"not a connect line: {line[:200]!r}")
    words = shlex.split(line[line.index("colabtui connect"):])
    url, token, label = words[2], None, None
    for i, w in enumerate(words):
        name, eq, value = w.partition("=")
        if not eq:
            value = words[i + 1] if i + 1 < len(words) else None
        if name == "--token" and value is not None:
            token = value
        elif name == "--label" and value is not None:
            label = value
    if token is None:
        raise ValueError("connect line without --token")
    return url, token, label


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1 (linux/prctl.h)
        except Exception:  # noqa: BLE001 - best effort; the atexit and signal clean-up remain
            pass


class Demo:
    """Starts and ends the demo's children. Use as a context manager, or call :meth:`start`
    and :meth:`stop` (which is also registered with ``atexit``).

    Args:
        n: number of sessions, 1–9.
        root: folder for checkpoints, logs and the demo config (default ``data_dir()/"demo"``).
        steps: training steps per run.
        step_delay_s: sleep after each step, seconds.
        autosave_every_s: seconds between automatic checkpoints.
        start_timeout_s: seconds to wait for all children to print their connect line.
        python: interpreter for the children, with any options (``[sys.executable, "-X", …]``).
        env: extra environment variables for the children.

    Raises:
        ValueError: ``n`` is outside 1–9.
    """

    def __init__(self, n: int = 3, *, root: Path | None = None, steps: int = DEFAULT_STEPS,
                 step_delay_s: float = DEFAULT_STEP_DELAY_S,
                 autosave_every_s: float = AUTOSAVE_EVERY_S,
                 start_timeout_s: float = START_TIMEOUT_S,
                 python: str | Sequence[str] = sys.executable,
                 env: Mapping[str, str] | None = None) -> None:
        if not 1 <= n <= 9:
            raise ValueError("the demo runs 1 to 9 sessions")
        self.root = Path(root) if root is not None else demo_dir()
        self.steps, self.step_delay_s = steps, step_delay_s
        self.autosave_every_s, self.start_timeout_s = autosave_every_s, start_timeout_s
        self.python = [python] if isinstance(python, str) else list(python)
        self.env = dict(env or {})
        self.sessions = [
            DemoSession(run=f"digits-lr{format_lr(lr)}", label=f"digits lr={format_lr(lr)}", lr=lr,
                        checkpoint_dir=self.root / f"digits-lr{format_lr(lr)}",
                        token=secrets.token_urlsafe(24), log_dir=self.root / "logs")
            for lr in LEARNING_RATES[:n]
        ]
        self._stopped = False

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def ledger_path(self) -> Path:
        return self.root / "ledger.sqlite3"

    @property
    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.sessions if s.proc is not None]

    def __enter__(self) -> Demo:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- start

    def start(self) -> list[DemoSession]:
        """Start every child, wait for their connect lines and write the demo config.

        Raises:
            DemoError: torch or scikit-learn missing, a child exited or stayed silent (the
                message carries the end of its stderr); every child started is ended first.
        """
        missing = [m for m in ("torch", "sklearn") if importlib.util.find_spec(m) is None]
        if missing:
            raise DemoError(f"the demo trains for real and needs {' and '.join(missing)}: "
                            f"{INSTALL_HINT}")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for s in self.sessions:
            s.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            for s in self.sessions:
                self._spawn(s)
            self._wait_for_urls()
            save_config(self.config(), self.config_path)
        except BaseException:
            self.stop(graceful=False)
            raise
        return self.sessions

    def _spawn(self, s: DemoSession) -> None:
        # Every value as --opt=value: a value that starts with "-" (a token can) would
        # otherwise be read by argparse as an option of its own.
        options = {"port": 0, "host": "127.0.0.1", "token": s.token,
                   "checkpoint-dir": s.checkpoint_dir, "steps": self.steps, "lr": repr(s.lr),
                   "run": s.run, "label": s.label, "autosave-every": self.autosave_every_s,
                   "step-delay": self.step_delay_s}
        cmd = [*self.python, "-m", "colabtui_remote.examples.digits",
               *(f"--{name}={value}" for name, value in options.items())]
        # Output goes to files, not pipes: nobody has to drain them while the app runs, and
        # the stderr of a child that failed to start is there to show.
        with open(s.stdout_path, "wb") as out, open(s.stderr_path, "wb") as err:
            s.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,  # Ctrl+C in the terminal reaches the demo, which ends them
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )

    def _wait_for_urls(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        waiting = list(self.sessions)
        while waiting:
            for s in list(waiting):
                line = self._connect_line(s)
                if line is not None:
                    try:
                        s.url, _token, _label = parse_connect_line(line)
                    except ValueError as exc:
                        raise DemoError(f"{s.label}: {exc}") from None
                    waiting.remove(s)
                elif s.proc.poll() is not None:
                    raise DemoError(self._failure(s, f"exited with code {s.proc.returncode}"))
            if waiting and time.monotonic() > deadline:
                raise DemoError(self._failure(
                    waiting[0], f"printed no connect line within {self.start_timeout_s:g} s"))
            if waiting:
                time.sleep(0.05)

    @staticmethod
    def _connect_line(s: DemoSession) -> str | None:
        try:
            text = s.stdout_path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if "colabtui connect " in line and text.endswith("\n"):
                return line
        return None

    def _failure(self, s: DemoSession, what: str) -> str:
        tail = s.stderr_tail()
        hint = ""
        if re.search(r"No module named '?(torch|sklearn|numpy)", tail) or INSTALL_HINT in tail:
            hint = f"\nthe demo needs torch and scikit-learn: {INSTALL_HINT}"
        shown = f"\n--- its stderr ({s.stderr_path}):\n{tail}" if tail else ""
        return f"demo session {s.label!r} {what}{hint}{shown}"

    def config(self) -> Config:
        """The demo's sessions as a :class:`Config` (children must have started)."""
        return Config(sessions=[SessionConfig(url=s.url, token=s.token, label=s.label)
                                for s in self.sessions if s.url])

    # ----------------------------------------------------------------- stop

    def stop(self, *, graceful: bool = True, grace_s: float = 5.0, term_s: float = 3.0) -> None:
        """End every child; safe to call twice and from ``atexit``.

        Graceful: ask each to stop (it saves a checkpoint, then ends) and wait up to ``grace_s``
        seconds; then SIGTERM its process group and wait ``term_s``; then SIGKILL.
        """
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        alive = [s for s in self.sessions if s.proc is not None and s.proc.poll() is None]
        if graceful and alive:
            with contextlib.suppress(Exception):
                asyncio.run(self._ask_to_stop([s for s in alive if s.url]))
            _wait_all(alive, grace_s)
        for sig, wait_s in ((signal.SIGTERM, term_s), (signal.SIGKILL, 5.0)):
            alive = [s for s in alive if s.proc.poll() is None]
            for s in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(s.proc.pid, sig)
            _wait_all(alive, wait_s)

    @staticmethod
    async def _ask_to_stop(sessions: list[DemoSession]) -> None:
        from colabtui.client import RemoteClient, SessionError

        async def one(s: DemoSession) -> None:
            async with RemoteClient(s.url, s.token, timeout_s=2.0) as client:
                with contextlib.suppress(SessionError):
                    await client.send_command("stop")

        await asyncio.gather(*(one(s) for s in sessions))


def _wait_all(sessions: list[DemoSession], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for s in sessions:
        with contextlib.suppress(subprocess.TimeoutExpired):
            s.proc.wait(timeout=max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def _signals_end(demo: Demo):
    """SIGTERM and SIGHUP end the demo like a quit: ``SystemExit`` runs the clean-up."""

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        raise SystemExit(128 + signum)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError, AttributeError):
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, h)
        demo.stop()


def run_demo(n: int = 3, *, steps: int | None = None, root: Path | None = None) -> int:
    """Start the demo, run the app on it, and end the children when the app quits.

    Returns:
        The app's exit code (:func:`colabtui.app.run_app`).

    Raises:
        DemoError: the sessions could not start (see :meth:`Demo.start`).
    """
    demo = Demo(n, root=root, steps=steps or DEFAULT_STEPS)
    with _signals_end(demo):
        print(f"starting {n} demo session{'s' if n > 1 else ''} (logs in {demo.root / 'logs'})…",
              file=sys.stderr)
        demo.start()
        from colabtui.app import ColabTuiApp, run_app

        return run_app(ColabTuiApp(demo.config_path, demo.ledger_path))
