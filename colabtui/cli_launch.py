"""``colabtui launch [--gpu G] [--sessions N] SCRIPT [ARGS…]`` and ``colabtui colab relaunch
URL``: a training script started on new Colab runtimes (see :mod:`colabtui.colab.launch`), the
sessions saved to the config file, the app opened on them.

Errors are one line on stderr (a failed start: the end of the script's output too); exit
codes as in :mod:`colabtui.cli` (1: Colab, the sign-in or the script failed, 2: usage).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add ``launch`` to the ``colabtui`` sub-command parsers."""
    from colabtui.colab.account import GPUS
    from colabtui.colab.launch import MAX_SESSIONS

    p = sub.add_parser(
        "launch", formatter_class=fmt,
        help="start a training script on new Colab runtimes and watch them",
        description="Assign new Colab runtimes through Google's Colab CLI (sign in first: "
                    "`colabtui colab login`), upload SCRIPT and this version of "
                    "colabtui-remote to each, and start `python SCRIPT ARGS` there as its own "
                    "process (output in /content/colabtui-launch/train.log; the runtime's "
                    "kernels stay free). The script's Monitor serves /content/colabtui by "
                    "itself ($COLABTUI_MAILBOX): each session is saved as colab://ENDPOINT and "
                    "the app opens on them. Runtimes burn compute units until released "
                    "(`colabtui colab release ENDPOINT`). A launch that fails releases what "
                    "it assigned. When a runtime dies, R in the app (or `colabtui colab "
                    "relaunch URL`) starts the same command on a new one: give the script a "
                    "checkpoint folder that outlives a runtime (a gdrive:// folder) and it "
                    "resumes there; a script with a gdrive:// argument gets your Drive sign-in "
                    "(`colabtui drive login`) on its runtime.",
        epilog="examples:\n"
               "  colabtui launch --gpu T4 --sessions 2 remote/examples/train_digits.py \\\n"
               "      --port -1 --checkpoint-dir gdrive://FOLDER_ID/digits-{session} \\\n"
               "      --run digits-{session} --steps 6000\n"
               "  colabtui launch train.py --lr 3e-4          (a CPU runtime)\n"
               "  colabtui launch --no-open --gpu A100 train.py")
    p.add_argument("--gpu", type=str.upper, choices=GPUS, default=None,
                   help="the GPU of each runtime (default: a CPU runtime)")
    p.add_argument("--sessions", type=int, default=1, metavar="N",
                   help=f"runtimes to start, 1 to {MAX_SESSIONS} (default 1); each runs SCRIPT, "
                        "with {session} in an argument replaced by its number (needed for more "
                        "than one: each run its own name and checkpoint folder)")
    p.add_argument("--label", default=None,
                   help="name shown in the app (default: the script's name); a number is added "
                        "for more than one session")
    p.add_argument("--no-open", action="store_true",
                   help="do not open the app after (the sessions are saved either way)")
    p.add_argument("script", type=Path, help="the Python script to run (one file)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments, as given")


def run(args: argparse.Namespace, config_path: Path,
        open_app: Callable[[Path], int] | None = None) -> int:
    """Run ``colabtui launch``, then ``open_app(config_path)`` on a terminal unless
    ``--no-open``; returns the exit code."""
    from colabtui.colab.errors import ColabError
    from colabtui.colab.launch import LaunchSpec, gpu_name, launch, preflight
    from colabtui.colab.launches import remember, remote_wheel
    from colabtui.config import Config, SessionConfig, load_config, save_config

    spec = LaunchSpec(args.script, tuple(args.args), args.gpu)
    try:
        preflight(spec, args.sessions)  # said before a wheel is built
    except ValueError as exc:
        return _usage(str(exc))
    config = load_config(config_path) if config_path.exists() else Config()  # said before cost
    try:
        account = _ready()
        with tempfile.TemporaryDirectory(prefix="colabtui-launch-") as tmp:
            built = remote_wheel(tmp)
            started = launch(account, spec, built.path, built.version, args.sessions)
    except (ColabError, ValueError) as exc:
        return _failed(exc)
    base = args.label or spec.script.stem
    labels = [base if len(started) == 1 else f"{base} {i + 1}" for i in range(len(started))]
    for s, label in zip(started, labels, strict=True):
        config = config.with_session(SessionConfig(s.url, "", label))
    save_config(config, config_path)
    try:
        remember(started, spec, labels)
    except ColabError as exc:
        print(f"colabtui: {exc}: the sessions run, but R cannot relaunch them", file=sys.stderr)
    for s, label in zip(started, labels, strict=True):
        print(f"started {label!r} on {s.runtime.endpoint} ({gpu_name(s.runtime)}), "
              f"process {s.pid}; "
              f"watch: {s.url}; output: {s.log}")
    _say_units(account)
    if args.no_open or open_app is None or not sys.stdout.isatty():
        print("open the app with `colabtui`")
        return EXIT_OK
    return open_app(config_path)


def relaunch(url: str, config_path: Path) -> int:
    """Run ``colabtui colab relaunch URL``; returns the exit code."""
    from colabtui.colab.errors import ColabError
    from colabtui.colab.launches import relaunch_session

    try:
        account = _ready()
        started = relaunch_session(account, url, config_path)
    except (ColabError, ValueError) as exc:
        return _failed(exc)
    print(f"relaunched on {started.runtime.endpoint}, process {started.pid}; watch: "
          f"{started.url}")
    _say_units(account)
    return EXIT_OK


def _ready() -> Any:
    """The signed-in account; its balance is said before anything costs."""
    from colabtui.colab.account import Account

    account = Account()
    _say_units(account)
    return account


def _say_units(account: Any) -> None:
    from colabtui.colab.errors import ColabError

    try:
        units = account.compute_units()
    except ColabError:
        return
    if units is not None:
        print(f"compute units: {units[0]:.2f} left, using {units[1]:.2f} an hour")


def _usage(message: str) -> int:
    print(f"colabtui: {message}", file=sys.stderr)
    return EXIT_USAGE


def _failed(exc: Exception) -> int:
    from colabtui_remote.wire import clean_text

    lines = str(exc).splitlines() or [""]
    print(f"colabtui: {clean_text(lines[0], 500)}", file=sys.stderr)
    for line in lines[1:]:
        print(clean_text(line, 500), file=sys.stderr)
    return EXIT_FAILED
