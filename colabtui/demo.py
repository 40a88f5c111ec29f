"""``colabtui demo``: N local sessions training for real, watched by the app.

Each session is a ``python -m colabtui_remote.examples.digits`` child process training a small
network on scikit-learn's digits on the CPU, each at its own learning rate, each with its own
checkpoint folder under ``data_dir()/"demo"/<run>``, so running the demo again resumes every run
from its checkpoints (``--fresh`` deletes them and the demo's history first). Each run keeps its
port from one demo to the next when it is free, so its panel finds its history: a run that
finished shows "finished at step N" with its curves. The children die with the demo: on quit,
Ctrl+C, SIGTERM or SIGHUP they are asked to stop (save, then end), then terminated, then killed;
they run in their own process group, and on Linux the kernel also sends them SIGTERM if the demo
process dies (``PR_SET_PDEATHSIG``).

The app opens at once: the ports and tokens are chosen and the config is written first, the
children start once the app has drawn its first frame (at the lowest CPU priority), and the panels
say "starting…" while each child imports torch (seconds on a laptop); a child that fails to
start is reported in the app, with the end of its stderr.
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
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from colabtui.config import Config, ConfigError, SessionConfig, data_dir, load_config, save_config

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
    port: int = 0
    serving: bool = False
    """It printed its connect line: it answers."""

    @property
    def key(self) -> str:
        """Its session key in the demo config (:attr:`SessionConfig.key`)."""
        return SessionConfig(self.url or "", self.token).key

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


def free_port(preferred: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that is free now: ``preferred`` when it is, else one the
    system picks. Another program could take it before the child binds it; the child then
    fails to start with "port … is in use", and the demo says so."""
    for port in ((preferred,) if preferred else ()) + (0,):
        with socket.socket() as sock:
            # as the child's server will: a port in TIME_WAIT from the last demo is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free TCP port on 127.0.0.1")


CHILD_NICENESS = 19
"""Added to the children's niceness (19: the lowest priority): the app, not three ``import
torch``, gets the CPU first (its first frame), and stays responsive while they train."""


def _child_setup() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    _die_with_parent()


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
        say: where to tell the user what the demo does meanwhile (a line at a time), e.g.
            "stopping 3 demo runs…"; ``None`` says nothing.

    Raises:
        ValueError: ``n`` is outside 1–9.
    """

    def __init__(self, n: int = 3, *, root: Path | None = None, steps: int = DEFAULT_STEPS,
                 step_delay_s: float = DEFAULT_STEP_DELAY_S,
                 autosave_every_s: float = AUTOSAVE_EVERY_S,
                 start_timeout_s: float = START_TIMEOUT_S,
                 python: str | Sequence[str] = sys.executable,
                 env: Mapping[str, str] | None = None,
                 say: Callable[[str], object] | None = None) -> None:
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
        self._say = say or (lambda line: None)

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
        """Start every child and wait until each serves (:meth:`launch`, then wait).

        Raises:
            DemoError: torch or scikit-learn missing, a child exited or stayed silent (the
                message carries the end of its stderr); every child started is ended first,
                and the demo config is removed.
        """
        self.launch()
        try:
            self._wait_for_urls()
        except BaseException:
            self.stop(graceful=False)
            self.config_path.unlink(missing_ok=True)
            raise
        return self.sessions

    def launch(self) -> list[DemoSession]:
        """:meth:`prepare`, then :meth:`spawn`: every child started, none waited for.

        Raises:
            DemoError: torch or scikit-learn missing, or a child could not be started; every
                child started is ended first.
        """
        self.prepare()
        self.spawn()
        return self.sessions

    def prepare(self) -> None:
        """Choose each run's port (its port of the last demo when it is free) and write the
        demo config, so the app can open before any child starts.

        Raises:
            DemoError: torch or scikit-learn missing.
        """
        missing = [m for m in ("torch", "sklearn") if importlib.util.find_spec(m) is None]
        if missing:
            raise DemoError(f"the demo trains for real and needs {' and '.join(missing)}: "
                            f"{INSTALL_HINT}")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        previous = self._previous_ports()
        for s in self.sessions:
            s.log_dir.mkdir(parents=True, exist_ok=True)
            s.port = free_port(previous.get(s.label))
            s.url = f"http://127.0.0.1:{s.port}"
        save_config(self.config(), self.config_path)

    def spawn(self) -> None:
        """Start every child (:meth:`prepare` first); :meth:`watch` follows their start.

        Raises:
            OSError: a child could not be started; every child started is ended first.
        """
        atexit.register(self.stop)
        try:
            for s in self.sessions:
                self._spawn(s)
        except BaseException:
            self.stop(graceful=False)
            raise

    def _previous_ports(self) -> dict[str, int]:
        """Each run's port in the last demo's config, by label (none if there is no usable
        config)."""
        try:
            config = load_config(self.config_path)
        except ConfigError:
            return {}
        ports = {}
        for c in config.sessions:
            port = c.url.rpartition(":")[2]
            if c.url.startswith("http://127.0.0.1:") and port.isdigit():
                ports[c.label] = int(port)
        return ports

    def is_starting(self, key: str) -> bool:
        """Whether the session with this key (:attr:`DemoSession.key`) is still starting:
        its child is about to start, or runs and has not printed its connect line yet."""
        for s in self.sessions:
            if s.key == key:
                return not s.serving and not self._stopped and (
                    s.proc is None or s.proc.poll() is None)
        return False

    def watch(self, failed: Callable[[str], object],
              served: Callable[[str], object] = lambda key: None) -> threading.Thread:
        """Follow the children's start on a daemon thread: mark each one serving once it
        printed its connect line and call ``served(key)``; call ``failed(message)`` for one
        that exited first or stayed silent past ``start_timeout_s``. Both are called from
        that thread."""
        thread = threading.Thread(target=self._watch, args=(failed, served), name="demo-watch",
                                  daemon=True)
        thread.start()
        return thread

    def _watch(self, failed: Callable[[str], object], served: Callable[[str], object]) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        waiting = [s for s in self.sessions if not s.serving]
        while waiting and not self._stopped:
            for s in list(waiting):
                if self._connect_line(s) is not None:
                    s.serving = True
                    waiting.remove(s)
                    served(s.key)
                elif s.proc.poll() is not None:
                    waiting.remove(s)
                    failed(self._failure(s, f"exited with code {s.proc.returncode}"))
                elif time.monotonic() > deadline:
                    waiting.remove(s)
                    failed(self._failure(s, "printed no connect line within "
                                            f"{self.start_timeout_s:g} s"))
            time.sleep(0.1)

    def start_over(self) -> list[Path]:
        """Delete what earlier demos left: each run's checkpoint folder, the demo's history
        (its ledger) and its logs, so the runs train from step 0. Call before :meth:`launch`.

        Returns:
            The paths deleted (those that were there).
        """
        paths = [s.checkpoint_dir for s in self.sessions]
        paths += [self.ledger_path.with_name(self.ledger_path.name + suffix)
                  for suffix in ("", "-wal", "-shm")]
        paths += [s.stdout_path for s in self.sessions] + [s.stderr_path for s in self.sessions]
        gone = []
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            gone.append(path)
        return gone

    def _spawn(self, s: DemoSession) -> None:
        # Every value as --opt=value: a value that starts with "-" (a token can) would
        # otherwise be read by argparse as an option of its own.
        options = {"port": s.port, "host": "127.0.0.1", "token": s.token,
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
                preexec_fn=_child_setup,
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
                    s.serving = True
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
            runs = f"{len(alive)} demo run{'s' if len(alive) > 1 else ''}"
            self._say(f"stopping {runs} (each saves a checkpoint, then ends; up to "
                      f"{grace_s + term_s:g} s)…")
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


def _tell(line: str) -> None:
    print(f"colabtui demo: {line}", file=sys.stderr, flush=True)


def run_demo(n: int = 3, *, steps: int | None = None, root: Path | None = None,
             fresh: bool = False) -> int:
    """Start the demo, open the app on it at once (the panels say "starting…" until each run
    serves), and end the children when the app quits, saying so.

    Args:
        n: number of sessions, 1–9.
        steps: training steps per run.
        root: the demo's folder (default ``data_dir()/"demo"``).
        fresh: start the runs over: delete their checkpoints and the demo's history first
            (:meth:`Demo.start_over`), after saying what goes.

    Returns:
        The app's exit code (:func:`colabtui.app.run_app`).

    Raises:
        DemoError: the sessions could not start (see :meth:`Demo.launch`).
    """
    demo = Demo(n, root=root, steps=steps or DEFAULT_STEPS, say=_tell)
    if fresh:
        _tell(f"starting over: deleting the checkpoints of {n} demo run{'s' if n > 1 else ''} "
              f"and the demo's history, under {demo.root}")
        for path in demo.start_over():
            _tell(f"  deleted {path}")
    with _signals_end(demo):
        _tell(f"starting {n} session{'s' if n > 1 else ''} (logs in {demo.root / 'logs'})")
        demo.prepare()
        from colabtui.app import ColabTuiApp, run_app

        class DemoApp(ColabTuiApp):
            def on_ready(self) -> None:
                # once the first frame is out: three `import torch` would hold it back
                self.call_after_refresh(self.start_runs)

            def start_runs(self) -> None:
                demo.spawn()
                demo.watch(failed, served)

            def poll_session(self, key: str) -> None:
                for panel in self.panels:
                    if panel.session.key == key:
                        panel.poll_now()

        app = DemoApp(demo.config_path, demo.ledger_path, starting=demo.is_starting)

        def failed(message: str) -> None:
            try:
                app.call_from_thread(app.notify, message, title="demo run did not start",
                                     severity="error", timeout=60, markup=False)
            except RuntimeError:  # the app is not running (yet, or any more)
                _tell(message)

        def served(key: str) -> None:  # its panel asks at once, not at its next poll
            with contextlib.suppress(RuntimeError):
                app.call_from_thread(app.poll_session, key)

        return run_app(app)
