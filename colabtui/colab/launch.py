"""Launching a training script on new Colab runtimes, and again on a fresh one when a runtime
dies (``colabtui launch``, the app's relaunch key).

For each session: a runtime is assigned (:meth:`~.account.Account.assign`); the script and
the wheel of the colabtui-remote this laptop runs are uploaded through the contents API to
``/content/colabtui-launch``; a kernel of our own (:func:`~.kernel.run_in_kernel`) installs
the wheel there (``pip install --target``, no network, nothing else on the runtime changed),
checks that this very version imports, and starts the script as a process of its own,
detached from the kernel (which is shut down: the runtime's kernels stay free), with its
output in ``/content/colabtui-launch/train.log``. The script's Monitor serves the mailbox
``/content/colabtui`` from its start (``$COLABTUI_MAILBOX``), polled every second: the laptop
watches it as ``colab://ENDPOINT``. A script with a ``gdrive://`` argument (its checkpoint
folder, which outlives the runtime) gets the laptop's Drive sign-in too (``colabtui drive
login``'s file, mode 600, through ``$COLABTUI_DRIVE_CREDENTIALS``): a process started this way
cannot call ``google.colab.auth.authenticate_user()``.

Never more runtimes than asked: each is assigned once, for a new notebook id. A launch that
fails after a runtime was assigned releases what this launch assigned, and says so.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colabtui_remote import schema, wire

from colabtui.colab.account import Account, Runtime
from colabtui.colab.contents import ContentsMailbox
from colabtui.colab.errors import ColabError, LaunchFailed
from colabtui.colab.kernel import run_in_kernel
from colabtui.colab.proxy import RuntimeProxy
from colabtui.colab.url import DEFAULT_MAILBOX, colab_url

LAUNCH_DIR = "content/colabtui-launch"
"""Where a launch puts the script, the wheel, its ``lib`` and ``train.log`` (from the Jupyter
root, which is ``/`` on Colab)."""
MAILBOX_INTERVAL_S = 1.0
"""The launched Monitor's mailbox interval, seconds (the colab client polls every second)."""
SETTLE_S = 3.0
"""Seconds the script must live after its start for the launch to count as started."""
KERNEL_TIMEOUT_S = 300.0
"""The most the kernel's part may take, seconds: the install, the import check, the start."""
MAX_SESSIONS = 3
"""Sessions one launch may start: a paid Colab plan runs up to three notebooks at once."""
MAX_SCRIPT_BYTES = 16 << 20
"""The largest script a launch uploads, bytes (a training script is one file of code; data
and weights belong on Drive)."""
SESSION_FIELD = "{session}"
"""In an argument, the session's number (1 to 3): two sessions of one command must not share
a run name or a checkpoint folder."""
MARK = "COLABTUI-LAUNCH "
LOG_NAME = "train.log"
"""The launched script's output (stdout and stderr), in :data:`LAUNCH_DIR`."""
OUTPUT_TAIL_BYTES = 64 * 1024
"""How much of the end of that output :func:`read_output` reads, bytes."""
DRIVE_CREDENTIALS = "drive-credentials.json"
"""The laptop's Drive sign-in as uploaded for a script with a ``gdrive://`` argument; the
script finds it through ``$COLABTUI_DRIVE_CREDENTIALS``."""

_START = r'''
import json, os, subprocess, sys, time
def _colabtui_launch(p):
    base = next((b for b in (os.getcwd(), "/")
                 if os.path.isfile(os.path.join(b, p["dir"], p["script"]))), None)
    if base is None:
        return {"error": "the uploaded files are not under %s or /" % os.getcwd()}
    d = os.path.join(base, p["dir"])
    lib = os.path.join(d, "lib")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-index", "--upgrade", "--target", lib, os.path.join(d, p["wheel"])],
                       capture_output=True, text=True, timeout=240)
    if r.returncode:
        return {"error": "pip could not install %s: %s" % (p["wheel"], (r.stderr or r.stdout)[-1500:])}
    env = dict(os.environ)
    env["PYTHONPATH"] = lib + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["COLABTUI_MAILBOX"] = os.path.join(base, p["mailbox"])
    env["COLABTUI_MAILBOX_INTERVAL"] = str(p["interval"])
    env["PYTHONUNBUFFERED"] = "1"
    if p["drive_credentials"]:
        creds = os.path.join(d, p["drive_credentials"])
        os.chmod(creds, 0o600)
        env["COLABTUI_DRIVE_CREDENTIALS"] = creds
    v = subprocess.run([sys.executable, "-c", "import colabtui_remote as m; print(m.__version__);"
                        " print(m.__file__)"], env=env, cwd=d, capture_output=True, text=True,
                       timeout=120)
    found = v.stdout.split()
    if v.returncode or found[:1] != [p["version"]]:
        return {"error": "colabtui-remote %s does not import on the runtime: %s" % (
            p["version"], (v.stderr or v.stdout)[-1500:])}
    log = os.path.join(d, p["log"])
    detach = ("import subprocess, sys; f = open(sys.argv[1], 'ab'); p = subprocess.Popen("
              "sys.argv[2:], stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, "
              "start_new_session=True); print(p.pid)")
    s = subprocess.run([sys.executable, "-c", detach, log, sys.executable,
                        os.path.join(d, p["script"])] + p["args"], env=env, cwd=d,
                       capture_output=True, text=True, timeout=60)
    if s.returncode or not s.stdout.strip().isdigit():
        return {"error": "the script could not be started: " + (s.stderr or s.stdout)[-1500:]}
    pid = int(s.stdout.strip())
    time.sleep(p["settle"])
    try:
        with open("/proc/%d/stat" % pid) as f:
            alive = f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        alive = False
    with open(log, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 3000))
        tail = f.read().decode("utf-8", "replace")
    return {"pid": pid, "alive": alive, "log": log, "tail": tail, "module": found[1]}
print("COLABTUI-LAUNCH " + json.dumps(_colabtui_launch(json.loads(PARAMS))))
'''


@dataclass(frozen=True)
class LaunchSpec:
    """What to run: ``python SCRIPT ARGS…`` on a runtime with accelerator ``gpu`` (``None``: a
    CPU runtime). The script must construct a ``Monitor`` (it then serves the mailbox)."""

    script: Path
    args: tuple[str, ...] = ()
    gpu: str | None = None

    @property
    def command(self) -> str:
        """``python SCRIPT ARGS…`` for messages: one line, cleaned for a terminal."""
        return wire.clean_text(shlex.join(["python", self.script.name, *self.args]), 1000)

    def for_session(self, number: int) -> LaunchSpec:
        """This spec for session ``number`` (1-based): each :data:`SESSION_FIELD` in an
        argument becomes the number (``--run digits-{session}`` → ``--run digits-2``)."""
        return LaunchSpec(self.script, tuple(a.replace(SESSION_FIELD, str(number))
                                             for a in self.args), self.gpu)

    @property
    def uses_drive(self) -> bool:
        """An argument names a ``gdrive://`` folder: the runtime needs the Drive sign-in."""
        return any(a.startswith("gdrive://") or "=gdrive://" in a for a in self.args)


@dataclass(frozen=True)
class Started:
    """A script running on a runtime.

    Attributes:
        runtime: the runtime (its endpoint, accelerator).
        url: the session to watch, ``colab://ENDPOINT/content/colabtui``.
        pid: the script's process id on the runtime.
        log: its output file on the runtime.
        module: where colabtui_remote was imported from there (the uploaded version's).
        args: the script's arguments there (:data:`SESSION_FIELD` replaced).
    """

    runtime: Runtime
    url: str
    pid: int
    log: str
    module: str
    args: tuple[str, ...] = ()


def launch(account: Account, spec: LaunchSpec, wheel: Path, version: str, sessions: int, *,
           say: Callable[[str], None] = print, what_for: str = "") -> list[Started]:
    """Assign ``sessions`` runtimes and start ``spec`` on each (see the module's text).

    Args:
        account: the signed-in account.
        spec: the script, its arguments, the accelerator.
        wheel: colabtui-remote's wheel (``colabtui.notebook_wheel.build_remote_wheel``).
        version: the version that wheel holds (checked on the runtime).
        sessions: 1 to :data:`MAX_SESSIONS`.
        say: gets a line for each step, and for each runtime released after a failure.
        what_for: named in the line that asks for a runtime (a relaunch: the session).

    Raises:
        ValueError: ``sessions`` out of range, or the script is not a readable file.
        AssignRefused, NotSignedIn, ColabError: from Colab; :class:`~.errors.LaunchFailed`
            when the script did not start (with the runtime's words). Before any of these
            is raised, every runtime this call assigned is released (or the message says
            which could not be).
    """
    script = preflight(spec, sessions)
    what = (spec.gpu.upper() if spec.gpu else "CPU") + " runtime" + \
        (f" for {what_for}" if what_for else "")
    assigned: list[Runtime] = []
    started: list[Started] = []
    try:
        for i in range(sessions):
            say(f"[{i + 1}/{sessions}] asking Colab for a {what}…")
            runtime, interrupted = assign_whole(account, spec.gpu)
            assigned.append(runtime)
            if interrupted:
                raise KeyboardInterrupt
            say(f"[{i + 1}/{sessions}] runtime {runtime.endpoint} ({gpu_name(runtime)}): "
                f"uploading {spec.script.name} and colabtui-remote {version}…")
            started.append(start_on(account, runtime, spec.for_session(i + 1), script, wheel,
                                    version, say=say))
    except BaseException as exc:
        release_all(account, assigned, exc, say)
        raise
    return started


def preflight(spec: LaunchSpec, sessions: int) -> bytes:
    """Everything about a launch that can be refused before it costs anything (the session
    count, :func:`check_sessions`, :func:`read_script`, :func:`drive_credentials`); returns
    the script's bytes. Raises ``ValueError`` saying what to do."""
    if not 1 <= sessions <= MAX_SESSIONS:
        raise ValueError(f"--sessions {sessions}: from 1 to {MAX_SESSIONS}")
    check_sessions(spec, sessions)
    script = read_script(spec.script)
    drive_credentials(spec)
    return script


def check_sessions(spec: LaunchSpec, sessions: int) -> None:
    """Refuse (``ValueError``, what to do) more than one session of a command in which no
    argument holds :data:`SESSION_FIELD`: they would train one run into one folder."""
    if sessions > 1 and not any(SESSION_FIELD in a for a in spec.args):
        raise ValueError(f"--sessions {sessions} starts `{spec.command}` {sessions} times: "
                         f"put {SESSION_FIELD} in the arguments that must differ (each session "
                         "gets its number), e.g. --run digits-{session} --checkpoint-dir "
                         "gdrive://FOLDER_ID/digits-{session}")


def gpu_name(runtime: Runtime) -> str:
    """The runtime's accelerator as the user names it (``CPU`` for ``NONE``)."""
    return "CPU" if runtime.accelerator == "NONE" else runtime.accelerator


def assign_whole(account: Account, gpu: str | None) -> tuple[Runtime, bool]:
    """:meth:`~.account.Account.assign`, with Ctrl-C held until Colab has answered (on the
    main thread): an interrupt in the middle would leave a runtime assigned that this launch
    never heard of, burning units. Returns (the runtime, whether Ctrl-C came meanwhile); the
    caller releases it then."""
    if threading.current_thread() is not threading.main_thread():
        return account.assign(gpu), False
    pressed: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if not pressed:
            print("\ninterrupted: waiting for Colab's answer, to release the runtime it "
                  "assigns…", file=sys.stderr, flush=True)
        pressed.append(signum)

    before = signal.signal(signal.SIGINT, hold)
    try:
        runtime = account.assign(gpu)
    finally:
        signal.signal(signal.SIGINT, before)
    return runtime, bool(pressed)


def start_on(account: Account, runtime: Runtime, spec: LaunchSpec, script: bytes, wheel: Path,
             version: str, *, say: Callable[[str], None] = print) -> Started:
    """Upload and start ``spec`` on ``runtime`` (assigned already). Raises as :func:`launch`,
    releasing nothing (the caller owns the runtime)."""
    proxy = RuntimeProxy(runtime.endpoint, lambda: account, runtime=runtime)
    files = ContentsMailbox(proxy, LAUNCH_DIR, timeout_s=120.0)
    credentials = drive_credentials(spec)
    try:
        files.make_folder()
        files.write(spec.script.name, script)
        files.write(wheel.name, wheel.read_bytes())
        if credentials is not None:
            say(f"    uploading your Drive sign-in ({credentials.name}, mode 600 there) for "
                "the script's gdrive:// folder…")
            files.write(DRIVE_CREDENTIALS, credentials.read_bytes())
    finally:
        files.close()
    say(f"    starting `{spec.command}` as its own process…")
    params = {"dir": LAUNCH_DIR, "script": spec.script.name, "wheel": wheel.name,
              "version": version, "args": list(spec.args), "mailbox": DEFAULT_MAILBOX,
              "interval": MAILBOX_INTERVAL_S, "settle": SETTLE_S, "log": LOG_NAME,
              "drive_credentials": DRIVE_CREDENTIALS if credentials is not None else None}
    code = _START.replace("PARAMS", repr(json.dumps(params)))
    out = run_in_kernel(proxy.current(), code, timeout_s=KERNEL_TIMEOUT_S)
    answer = _answer(runtime, out)
    if not answer.get("alive"):
        raise LaunchFailed(f"runtime {runtime.endpoint}: `{spec.command}` ended within "
                           f"{SETTLE_S:g} s; the end of its output:\n"
                           + tail_lines(str(answer.get("tail", ""))))
    return Started(runtime, colab_url(runtime.endpoint), int(answer["pid"]),
                   wire.clean_text(str(answer.get("log", "")), 500),
                   wire.clean_text(str(answer.get("module", "")), 500), spec.args)


def read_script(path: Path) -> bytes:
    """The script's bytes. Raises ``ValueError`` (what and what to do) when it cannot be read."""
    if path.suffix != ".py":
        raise ValueError(f"{path}: a Python script (.py) is launched")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SCRIPT_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_SCRIPT_BYTES:
        raise ValueError(f"{path}: larger than {MAX_SCRIPT_BYTES >> 20} MiB; a launch uploads "
                         "one script (put data and weights on Drive)")
    return data


def read_output(endpoint: str, proxy: RuntimeProxy | None = None, *,
                max_bytes: int = OUTPUT_TAIL_BYTES) -> list[str]:
    """The end of a launched script's output (``train.log`` on runtime ``endpoint``), as a
    terminal shows it: one line per ``\\n`` (a progress bar's ``\\r`` rewrites keep only
    their last state), each cleaned of escape sequences (the text is the runtime's: hostile);
    a line cut by the ``max_bytes`` bound is left out.

    Raises:
        FileNotFoundError: no output there (the script was not started by ``colabtui
            launch``). OSError kinds otherwise, as :class:`~.contents.ContentsMailbox`
            (a runtime that is gone, a refused sign-in).
    """
    files = ContentsMailbox(proxy or RuntimeProxy(endpoint), LAUNCH_DIR)
    try:
        data = files.tail(LOG_NAME, max_bytes)
    finally:
        files.close()
    lines = data.decode("utf-8", "replace").split("\n")
    if len(data) >= max_bytes:
        lines = lines[1:]  # the first may be cut
    if lines and lines[-1] == "":
        lines.pop()
    return [wire.clean_text(line.rstrip("\r").rpartition("\r")[2], 1000) for line in lines]


def drive_credentials(spec: LaunchSpec) -> Path | None:
    """The laptop's Drive sign-in (``colabtui drive login``) a script with a ``gdrive://``
    argument needs on its runtime (a launched process cannot sign in to Drive by itself);
    ``None`` for a script without one.

    Raises:
        ValueError: the script names a ``gdrive://`` folder and there is no sign-in to send.
    """
    if not spec.uses_drive:
        return None
    from colabtui_remote.drive.auth import credentials_path_in_use

    path = credentials_path_in_use()
    if not path.is_file():
        raise ValueError(f"`{spec.command}` names a gdrive:// folder, and a launched script "
                         "cannot sign in to Drive by itself: run `colabtui drive login` first "
                         f"(its credentials, {path}, are then copied to each runtime for the "
                         "script alone)")
    return path


def tail_lines(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a runtime's output, each made safe for a terminal."""
    return "\n".join("    " + wire.clean_text(ln, 300) for ln in text.splitlines()[-lines:])


def _answer(runtime: Runtime, out: str) -> dict:
    line = next((ln for ln in out.splitlines() if ln.startswith(MARK)), None)
    try:
        answer = wire.loads(line[len(MARK):].encode()) if line is not None else None
    except schema.SchemaError:
        answer = None
    if not isinstance(answer, dict):
        raise ColabError(f"runtime {runtime.endpoint}: the kernel's answer to the launch could "
                         "not be read")
    if "error" in answer:
        raise LaunchFailed(f"runtime {runtime.endpoint}: "
                           + wire.clean_text(str(answer["error"]), 2000))
    pid = answer.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 1 << 31:
        raise ColabError(f"runtime {runtime.endpoint}: the launch's answer has no process id")
    return answer


def release_all(account: Account, assigned: Sequence[Runtime], exc: BaseException,
                 say: Callable[[str], None]) -> None:
    """Release every runtime of a launch that failed, saying which, and which could not be."""
    why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "the launch failed"
    for runtime in assigned:
        try:
            account.release(runtime.endpoint)
            say(f"{why}: released runtime {runtime.endpoint} (it burns no more units)")
        except ColabError as err:
            say(f"{why}, and runtime {runtime.endpoint} could NOT be released ({err}): "
                f"release it with `colabtui colab release {runtime.endpoint}`")
