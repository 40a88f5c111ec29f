"""CPU of the running app: three sessions training (polled once a second), then three idle.

The real app runs as its own process in a real terminal (tmux, 160x48): ``python -m colabtui
--config CONFIG``, with ``COLABTUI_CONFIG_DIR``/``COLABTUI_DATA_DIR`` in a temporary folder.

* training: three ``colabtui_remote.examples.digits`` children started by :class:`Demo` (its
  default pace, about 30 steps/s each), so every poll brings new points and a chart redraw;
* idle: three servers with a :class:`Monitor` that logged a 1,000-point curve and then only
  serve: polled every second, nothing new.

Once every panel says "connected" and a settling pause has passed, the app's CPU time
(utime + stime of all its threads, from ``/proc/<pid>/stat``) is read over the window. The
reference, measured over the same windows in a second tmux session of the same size, is a
trivial Textual app (a Static and a Footer, no timers): the floor any Textual app pays.
Targets (issue 13): training ≤ 2 % of one core; idle ≤ 0.5 %.

    python bench/bench_app_cpu.py [--seconds 60] [--settle 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from colabtui.config import Config, SessionConfig, save_config
from colabtui.demo import Demo, parse_connect_line

TARGET_TRAINING_PCT = 2.0
TARGET_IDLE_PCT = 0.5
COLUMNS, ROWS = 160, 48
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTED = "● connected"

FLOOR_APP = textwrap.dedent("""
    from textual.app import App
    from textual.widgets import Footer, Static

    class Floor(App):
        BINDINGS = [("q", "quit", "Quit")]

        def compose(self):
            yield Static("a trivial Textual app: the floor")
            yield Footer()

    Floor().run()
""")

IDLE_SERVER = textwrap.dedent("""
    import math, sys, time
    from colabtui_remote import Monitor

    run, token = sys.argv[1], sys.argv[2]
    mon = Monitor(run=run, autosave_every=None, handle_sigterm=False)
    for i in range(1000):
        mon.log(step=i, loss=2.3 * math.exp(-i / 250) + 0.05 + 0.02 * math.sin(i))
    mon.step = 1000
    mon.serve(port=0, token=token, quiet=True)
    print(f"colabtui connect {mon.url} --token {token} --label {run}", flush=True)
    while True:
        time.sleep(3600)
""")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


class Tmux:
    """A private tmux server (its own socket), so nothing else's sessions are touched."""

    def __init__(self) -> None:
        self.socket = f"colabtui-bench-{os.getpid()}-{secrets.token_hex(3)}"

    def _run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def start(self, name: str, command: str) -> int:
        """Run ``command`` in a new detached session; returns its process id."""
        self._run("new-session", "-d", "-s", name, "-x", str(COLUMNS), "-y", str(ROWS),
                  f"exec {command}")
        return int(self._run("display-message", "-p", "-t", name, "#{pane_pid}").strip())

    def screen(self, name: str) -> str:
        return self._run("capture-pane", "-p", "-t", name)

    def kill_session(self, name: str) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("kill-session", "-t", name)

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("kill-server")


def app_command(config: Path, root: Path) -> str:
    env = {"COLABTUI_CONFIG_DIR": str(root / "config"), "COLABTUI_DATA_DIR": str(root / "data")}
    words = ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "colabtui",
             "--config", str(config)]
    return shlex.join(words)


def wait_connected(tmux: Tmux, name: str, pid: int, n: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            raise SystemExit(f"the app exited before connecting; its screen:\n{tmux.screen(name)}")
        if tmux.screen(name).count(CONNECTED) >= n:
            return
        time.sleep(0.5)
    raise SystemExit(f"the app did not show {n} connected panels in {timeout_s:g} s; "
                     f"its screen:\n{tmux.screen(name)}")


def measure(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU of each process over the next ``seconds``, % of one core."""
    start_wall = time.monotonic()
    start = {k: cpu_seconds(p) for k, p in pids.items()}
    time.sleep(seconds)
    wall = time.monotonic() - start_wall
    return {k: 100 * (cpu_seconds(p) - start[k]) / wall for k, p in pids.items()}


def run_phase(tmux: Tmux, name: str, config: Path, root: Path, floor_pid: int, n: int,
              args: argparse.Namespace) -> tuple[dict[str, float], str]:
    pid = tmux.start(name, app_command(config, root))
    try:
        wait_connected(tmux, name, pid, n)
        time.sleep(args.settle)  # first history load and first full frames are start-up, not steady
        result = measure({"app": pid, "floor": floor_pid}, args.seconds)
        screen = tmux.screen(name)
        if screen.count(CONNECTED) < n:
            raise SystemExit(f"a panel lost its session during the window; the screen:\n{screen}")
        return result, screen
    finally:
        tmux.kill_session(name)


def start_idle_servers(root: Path, n: int) -> tuple[list[subprocess.Popen], Config]:
    script = root / "idle_server.py"
    script.write_text(IDLE_SERVER)
    procs, sessions = [], []
    try:
        for i in range(n):
            token = secrets.token_urlsafe(24)
            proc = subprocess.Popen([sys.executable, str(script), f"idle-{i + 1}", token],
                                    stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            procs.append(proc)
            url, _token, label = parse_connect_line(proc.stdout.readline())
            sessions.append(SessionConfig(url=url, token=token, label=label or ""))
    except BaseException:
        stop_all(procs)
        raise
    return procs, Config(sessions=sessions)


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def verdict(pct: float, target: float) -> str:
    return "PASS" if pct <= target else "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measuring window (default 60)")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds after all panels connect before measuring (default 5)")
    ap.add_argument("--sessions", type=int, default=3)
    args = ap.parse_args()
    n = args.sessions
    tmux = Tmux()
    demo: Demo | None = None
    idle: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="colabtui-bench-cpu-") as tmp:
        root = Path(tmp)
        try:
            floor_script = root / "floor_app.py"
            floor_script.write_text(FLOOR_APP)
            floor_pid = tmux.start("floor", shlex.join([sys.executable, str(floor_script)]))

            # about 30 steps/s each at the demo's pace: long enough to outlast the window
            steps = int(40 * (args.seconds + args.settle + 120))
            demo = Demo(n, root=root / "demo", steps=steps, env={"OMP_NUM_THREADS": "1"})
            demo.start()
            training, _ = run_phase(tmux, "training", demo.config_path, root / "training",
                                    floor_pid, n, args)
            if any(p.poll() is not None for p in (s.proc for s in demo.sessions)):
                raise SystemExit("a demo session ended during the window: raise --steps")
            demo.stop()
            demo = None

            idle, config = start_idle_servers(root, n)
            config_path = root / "idle.toml"
            save_config(config, config_path)
            idle_pct, _ = run_phase(tmux, "idle", config_path, root / "idle", floor_pid, n, args)
        finally:
            if demo is not None:
                demo.stop(graceful=False)
            stop_all(idle)
            tmux.close()

    print(f"bench_app_cpu: the app (python -m colabtui) in tmux {COLUMNS}x{ROWS}, {n} sessions "
          f"polled every 1 s; CPU (utime+stime, all threads) over {args.seconds:g} s windows, "
          "% of one core")
    ok = True
    for what, res, target in (
            (f"training ({n} digits sessions, new points every poll)", training,
             TARGET_TRAINING_PCT),
            (f"idle ({n} sessions connected, nothing new)", idle_pct, TARGET_IDLE_PCT)):
        ratio = res["app"] / res["floor"] if res["floor"] > 0 else float("inf")
        print(f"  {what}")
        print(f"    app   {res['app']:6.2f} %   reference: trivial Textual app {res['floor']:5.2f} %"
              f"   ratio {ratio:5.1f}x")
        print(f"    target ≤ {target:g} %   {verdict(res['app'], target)}")
        ok = ok and res["app"] <= target
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
