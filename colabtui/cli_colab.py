"""``colabtui colab login``, ``list`` and ``release``: the Colab account through Google's own
Colab CLI (``google-colab-cli``, used as a library; see :mod:`colabtui.colab`).

Errors are one line on stderr; exit codes as in :mod:`colabtui.cli` (1: Colab or the sign-in
failed, 2: usage).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add ``colab`` and ``launch`` (:mod:`colabtui.cli_launch`) to the sub-command parsers."""
    from colabtui import cli_launch

    cli_launch.add_parser(sub, fmt)
    p = sub.add_parser(
        "colab", formatter_class=fmt,
        help="your Colab runtimes, through Google's Colab CLI (login, list, release, "
             "relaunch)",
        description="Colab through Google's own Colab CLI (pip install 'colabtui[colab]'). "
                    "`login` signs in with the CLI's own Google sign-in (a URL to open, a code "
                    "to paste; stored in ~/.config/colab-cli/token.json, shared with the "
                    "`colab` command). `list` shows the runtimes assigned to your account: "
                    "accelerator, age, and whether a colabtui Monitor answers in each "
                    "(its mailbox at /content/colabtui unless --path says otherwise). "
                    "`release ENDPOINT` gives a runtime back to Colab (it stops, its disk is "
                    "lost; it asks first unless --yes). `relaunch URL` starts a session "
                    "that `colabtui launch` started, and whose runtime died, on a new runtime "
                    "(the app's R key does the same).",
        epilog="examples:\n"
               "  colabtui colab login\n"
               "  colabtui colab list\n"
               "  colabtui connect colab://ENDPOINT          # a runtime from the list\n"
               "  colabtui colab release ENDPOINT            # stop paying for an idle one\n"
               "  colabtui colab relaunch colab://ENDPOINT/content/colabtui\n"
               "\nin the notebook: mon.serve_mailbox('/content/colabtui', interval_s=1)")
    p.add_argument("action", choices=("login", "list", "release", "relaunch"),
                   help="sign in, list your runtimes, release one, or relaunch a session")
    p.add_argument("endpoint", nargs="?", default=None,
                   help="release: the runtime's endpoint (from `colabtui colab list`); "
                        "relaunch: the session's colab:// URL")
    p.add_argument("--yes", action="store_true", help="release: do not ask first")
    p.add_argument("--json", action="store_true", help="list: one JSON document")
    p.add_argument("--path", default=None, metavar="FOLDER",
                   help="list: the mailbox folder on each runtime (default /content/colabtui)")


def run(args: argparse.Namespace, config_path: Any, open_app: Any = None) -> int:
    """Run ``launch`` (then ``open_app(config_path)``, unless told not to), or ``colab
    login``, ``list``, ``release``, ``relaunch``; returns the exit code."""
    from colabtui import cli_launch
    from colabtui.colab.errors import ColabError

    try:
        if args.command == "launch":
            return cli_launch.run(args, config_path, open_app)
        if args.action == "relaunch":
            if not args.endpoint:
                print("colabtui: relaunch needs the session's colab:// URL", file=sys.stderr)
                return EXIT_USAGE
            return cli_launch.relaunch(args.endpoint, config_path)
        if args.action == "login":
            return _login()
        if args.action == "release":
            return _release(args)
        return _list(args)
    except ColabError as exc:
        from colabtui_remote.wire import clean_text

        print(f"colabtui: {clean_text(str(exc), 500)}", file=sys.stderr)
        return EXIT_FAILED


def _login() -> int:
    from colabtui.colab import account

    account.login()
    acct = account.Account()
    runtimes = acct.runtimes()
    print(f"signed in to Colab (stored in {account.token_path()}); "
          f"{len(runtimes)} runtime{'s' if len(runtimes) != 1 else ''} assigned")
    return EXIT_OK


def _release(args: argparse.Namespace) -> int:
    """Unassign one runtime, after a yes on the terminal (or ``--yes``)."""
    from colabtui_remote.wire import clean_text

    from colabtui.colab.account import Account
    from colabtui.colab.url import parse_colab_url

    if args.endpoint is None:
        print("colabtui: release needs the runtime's endpoint (see `colabtui colab list`)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        endpoint, _ = parse_colab_url(f"colab://{args.endpoint}")
    except ValueError as exc:
        print(f"colabtui: {clean_text(str(exc), 300)}", file=sys.stderr)
        return EXIT_USAGE
    acct = Account()
    runtime = next((r for r in acct.runtimes() if r.endpoint == endpoint), None)
    if runtime is None:
        print(f"colabtui: no runtime {endpoint} is assigned to your account (see `colabtui "
              "colab list`)", file=sys.stderr)
        return EXIT_FAILED
    gpu = "CPU" if runtime.accelerator == "NONE" else runtime.accelerator
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"colabtui: releasing {endpoint} stops it and loses its disk: say --yes to "
                  "do it without a terminal to ask on", file=sys.stderr)
            return EXIT_USAGE
        answer = input(f"release runtime {endpoint} ({gpu})? It stops, and everything on its "
                       "disk is lost (a run's Drive checkpoints stay). [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not released")
            return EXIT_OK
    acct.release(endpoint)
    print(f"released {endpoint} ({gpu})")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from colabtui.colab.account import Account
    from colabtui.colab.url import DEFAULT_MAILBOX, parse_colab_url

    path = DEFAULT_MAILBOX
    if args.path is not None:
        try:
            _, path = parse_colab_url(f"colab://x/{args.path.strip('/')}")
        except ValueError as exc:
            print(f"colabtui: --path: {exc}", file=sys.stderr)
            return EXIT_USAGE
    acct = Account()
    runtimes = acct.runtimes()
    units = acct.compute_units()
    rows = [_probe(acct, rt, path) for rt in runtimes]
    if args.json:
        print(json.dumps({"runtimes": rows, "compute_units": None if units is None else
                          {"balance": units[0], "per_hour": units[1]}}, indent=2))
        return EXIT_OK
    if not rows:
        print("no runtimes assigned to your account (start one in the browser, or with "
              "`colab new`)")
    else:
        _print_table(rows)
    if units is not None:
        print(f"compute units: {units[0]:.2f} left, using {units[1]:.2f} an hour")
    return EXIT_OK


def _probe(acct: Any, rt: Any, path: str) -> dict[str, Any]:
    """One runtime's row: its age from its Jupyter server, and the Monitor in its mailbox."""
    from colabtui_remote import schema, wire

    from colabtui.colab.contents import ContentsMailbox
    from colabtui.colab.proxy import RuntimeProxy
    from colabtui.colab.url import colab_url

    storage = ContentsMailbox(RuntimeProxy(rt.endpoint, lambda: acct, runtime=rt), path)
    row: dict[str, Any] = {"endpoint": rt.endpoint, "accelerator": rt.accelerator,
                           "variant": rt.variant, "shape": rt.shape,
                           "url": colab_url(rt.endpoint, path), "started_at": None,
                           "monitor": None, "error": None}
    try:
        row["started_at"] = storage.server_started_at()
        status = schema.parse_status(wire.loads(storage.read("status.json")))
        row["monitor"] = {"run": status.run, "label": status.label, "state": status.state,
                          "step": status.step, "server_time": status.server_time}
    except FileNotFoundError:
        row["error"] = f"no Monitor at /{path}"
    except (OSError, schema.SchemaError) as exc:
        row["error"] = str(exc)[:200]
    finally:
        storage.close()
    return row


def _print_table(rows: list[dict[str, Any]]) -> None:
    from colabtui_remote.wire import clean_text

    from colabtui.formatting import fmt_duration

    now = time.time()
    table = [["ENDPOINT", "GPU", "SHAPE", "UP", "MONITOR"]]
    for r in rows:
        up = "-" if r["started_at"] is None else fmt_duration(max(0.0, now - r["started_at"]))
        m = r["monitor"]
        if m is not None:
            step = "-" if m["step"] is None else m["step"]
            monitor = clean_text(f"{m['label'] or m['run']} · {m['state']} · step {step}", 80)
        else:
            monitor = clean_text(r["error"] or "-", 80)
        gpu = "CPU" if r["accelerator"] == "NONE" else r["accelerator"]
        table.append([clean_text(r["endpoint"], 80), clean_text(gpu, 12),
                      clean_text(r["shape"].replace("_", "-").lower(), 12), up, monitor])
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    print("\nwatch one: colabtui connect colab://ENDPOINT")
