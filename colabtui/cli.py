"""The ``colabtui`` command: open the app, add a session, print status, run the demo.

Errors are printed as one message on stderr, never as a traceback. Exit codes: 0 success
(for ``status``: every session answered, or had ended and is gone since, as the history
says); 1 a session did not answer usably (unreachable, token refused, bad answer, other
protocol version) or the demo failed; 2 bad input (usage, a bad URL or token, a config file
that does not parse); 3 ``watch --exit-on-lost`` saw a session lost (:mod:`.cli_watch`); 130
interrupted. The app (no command, or ``demo``) exits 0 on ``q``, 130 on SIGINT, 143
on SIGTERM, 129 on SIGHUP, and 1 on a crash, its traceback written to a file in
``$COLABTUI_LOG_DIR`` (default: the user log folder) whose path is printed on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colabtui_remote.wire import clean_text

from colabtui import __version__, cli_colab, cli_drive, cli_history, cli_notebook, cli_watch
from colabtui.config import (
    Config,
    ConfigError,
    SessionConfig,
    default_config_path,
    default_ledger_path,
    is_colab_url,
    is_gdrive_url,
    load_config,
    mask_token,
    save_config,
    validate_token,
    validate_url,
)

if TYPE_CHECKING:
    from colabtui_remote.schema import Status

    from colabtui.ledger import Ledger

EXIT_OK, EXIT_SESSION, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

def plain(text: Any) -> str:
    """Text from a session made safe for a terminal, on one line: control characters (ANSI
    escapes), bidirectional controls and line breaks replaced by visible symbols
    (:func:`colabtui_remote.wire.clean_text`)."""
    return clean_text(str(text), None)


def _protocol_version() -> int:
    from colabtui_remote.schema import PROTOCOL_VERSION

    return PROTOCOL_VERSION


def version_line() -> str:
    """``colabtui 0.1.0 (colabtui-remote 0.1.0, protocol v1)``; says so when the two differ
    (colabtui requires its own version of colabtui-remote: a mixed install)."""
    from colabtui_remote import __version__ as remote_version

    line = f"colabtui {__version__} (colabtui-remote {remote_version}, protocol " \
           f"v{_protocol_version()})"
    if remote_version != __version__:
        line += " -- the versions differ: install both from one checkout or release"
    return line


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with its sub-commands (exposed for tests and docs)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="colabtui",
        formatter_class=fmt,
        description="Watch and control training sessions on Colab, Kaggle and VMs from one "
                    "terminal.\nWith no command, opens the app on the saved sessions.",
        epilog="examples:\n"
               "  colabtui                                   open the app\n"
               "  colabtui connect http://127.0.0.1:8765 --token TOKEN --label 'resnet lr=3e-4'\n"
               "  colabtui status --json                     one poll of every session, as JSON\n"
               "  colabtui history                           every session recorded, GPUs ranked\n"
               "  colabtui demo --sessions 2                 two local training runs, live\n"
               "  colabtui connect gdrive://FOLDER_ID/run/mailbox   a run's mailbox on Drive\n"
               "  colabtui checkpoints gdrive://FOLDER_ID/run  its checkpoints, verified or not\n"
               "  colabtui watch --exit-on-lost              alerts as lines, no UI\n"
               "  colabtui notebook --drive gdrive://root/colabtui   the notebook's install cell\n"
               "  colabtui colab list                        your Colab runtimes (Google's Colab CLI)\n"
               "\nexit codes: 0 ok, 1 a session did not answer usably (or the app crashed: the "
               "traceback's file is named), 2 bad input or config, 3 a session was lost (watch "
               "--exit-on-lost), 130 interrupted (SIGINT), 143 SIGTERM, 129 SIGHUP",
    )
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--config", type=Path, default=None, metavar="PATH",
                        help=f"config file (default: {default_config_path()})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "connect", formatter_class=fmt, help="check a session answers, then save it",
        description="Ask the session for its status with the token; if it answers, save it to "
                    "the config file (mode 600). The token is never printed in full.",
        epilog="examples:\n"
               "  colabtui connect http://127.0.0.1:8765 --token 3q9X...Zk\n"
               "  colabtui connect https://abc.trycloudflare.com --token 3q9X...Zk "
               "--label 'colab T4'\n"
               "  colabtui connect ~/GoogleDrive/MyDrive/colabtui/RUN     (a mailbox folder)\n"
               "  colabtui connect gdrive://1AbC.../RUN   (the same mailbox through the Drive API;\n"
               "                                          needs `colabtui drive login` once)\n"
               "  colabtui connect colab://ENDPOINT       (a Colab runtime's mailbox, through\n"
               "                                          Colab's proxy: `colabtui colab list`)\n"
               "The exact line to paste is printed by the notebook when it calls mon.serve();\n"
               "a folder is the run's mailbox (mon.serve_mailbox()) as synced to this machine.")
    p.add_argument("url", help="the session's URL (http:// or https://), a mailbox folder synced "
                               "here, a mailbox on Drive (gdrive://FOLDER_ID/path), or one on a "
                               "Colab runtime (colab://ENDPOINT[/path])")
    p.add_argument("--token", default=None,
                   help="bearer token the session printed (an http(s) URL needs one)")
    p.add_argument("--label", default="", help="name shown in the app (default: the session's)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for an answer (default 10)")

    p = sub.add_parser(
        "status", formatter_class=fmt, help="poll every saved session once and print a table",
        description="Poll every saved session once, without the app, and print state, step, "
                    "loss, GPU and last checkpoint, or why it did not answer. A session that "
                    "finished, stopped or failed and whose server is gone since is shown as it "
                    "ended, from the history. Exits 1 if any other session did not answer.",
        epilog="examples:\n"
               "  colabtui status\n"
               "  colabtui status --json | jq '.sessions[] | {label, state, step}'")
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for each session (default 5)")

    p = sub.add_parser(
        "demo", formatter_class=fmt, help="train N small models locally and watch them",
        description="Start N local sessions that train a small network on scikit-learn's "
                    "digits on the CPU, at different learning rates, and open the app on them. "
                    "Quitting ends them; running the demo again resumes each run from its "
                    "checkpoints. Needs: pip install 'colabtui[demo]'.",
        epilog="examples:\n  colabtui demo\n  colabtui demo --sessions 2\n"
               "  colabtui demo --fresh       the runs start over from step 0")
    p.add_argument("--sessions", type=int, default=3, metavar="N",
                   help="number of sessions, 1 to 9 (default 3)")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="training steps per run (default: a run of a few minutes)")
    p.add_argument("--fresh", action="store_true",
                   help="start the demo runs over: delete their checkpoints and the demo's "
                        "history first (it says what it deletes)")
    cli_watch.add_parser(sub, fmt)
    cli_history.add_parser(sub, fmt)
    cli_drive.add_parsers(sub, fmt)
    cli_notebook.add_parser(sub, fmt)
    cli_colab.add_parser(sub, fmt)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config_path = args.config or default_config_path()
    try:
        if args.command == "connect":
            return asyncio.run(_connect(config_path, args))
        if args.command == "status":
            return asyncio.run(_status(config_path, args))
        if args.command == "demo":
            return _demo(args)
        if args.command == "watch":
            return cli_watch.run(args, config_path)
        if args.command == "history":
            return cli_history.run(args)
        if args.command in ("drive", "checkpoints"):
            return cli_drive.run(args)
        if args.command == "notebook":
            return cli_notebook.run(args)
        if args.command in ("colab", "launch"):
            return cli_colab.run(args, config_path, _open_app)
        return _open_app(config_path)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED


def _err(message: str) -> None:
    print(f"colabtui: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- app, demo


def _open_app(config_path: Path) -> int:
    try:
        from colabtui.app import ColabTuiApp, run_app
    except ImportError as exc:
        _err(f"cannot load the app: {exc}")
        return EXIT_SESSION
    return run_app(ColabTuiApp(config_path, default_ledger_path()))


def _demo(args: argparse.Namespace) -> int:
    from colabtui.demo import DemoError, run_demo

    if not 1 <= args.sessions <= 9:
        _err("--sessions must be from 1 to 9")
        return EXIT_USAGE
    if args.steps is not None and args.steps < 1:
        _err("--steps must be at least 1")
        return EXIT_USAGE
    try:
        return run_demo(args.sessions, steps=args.steps, fresh=args.fresh)
    except DemoError as exc:
        _err(str(exc))
        return EXIT_SESSION


# --------------------------------------------------------------------------- connect


async def _connect(config_path: Path, args: argparse.Namespace) -> int:
    from colabtui.client import RemoteClient, SessionError

    if "://" not in args.url:
        return await _connect_mailbox(config_path, args)
    if is_gdrive_url(args.url.strip()):
        return await _connect_drive(config_path, args)
    if is_colab_url(args.url):
        return await _connect_colab(config_path, args)
    try:
        url = validate_url(args.url)
        if args.token is None:
            _err("--token is required for an http(s) URL (the notebook printed it)")
            return EXIT_USAGE
        validate_token(args.token)
    except ConfigError as exc:
        _err(exc.reason)
        return EXIT_USAGE
    config = load_config(config_path)  # a file that does not parse stops us before any change
    async with RemoteClient(url, args.token, timeout_s=args.timeout) as client:
        try:
            status = await client.status()
        except SessionError as exc:
            if exc.kind == "token_refused":
                _err(f"token refused by {url}")
            elif exc.kind == "protocol":
                _err(exc.message)
            else:
                _err(f"{url} did not answer as a colabtui session: {plain(exc.message)}")
            return EXIT_SESSION
    saved = config.find(url)  # a new token for it: its label stays unless one is given
    label = args.label or (saved.label if saved is not None else "") or status.label
    session = SessionConfig(url=url, token=args.token, label=label)
    replaced = saved is not None
    save_config(config.with_session(session), config_path)
    step = "-" if status.step is None else status.step
    print(f"{'updated' if replaced else 'saved'} {plain(session.display_label)} ({url}, token "
          f"{mask_token(args.token)}): run {plain(status.run)}, {status.state}, step {step}")
    print(f"config: {config_path}")
    return EXIT_OK


async def _connect_mailbox(config_path: Path, args: argparse.Namespace) -> int:
    """``colabtui connect PATH``: a mailbox folder (``mailbox:/abs/path`` in the config)."""
    from colabtui.config import mailbox_path, mailbox_url
    from colabtui.mailbox_client import MailboxClient

    text = args.url.strip()
    url = validate_url(text) if mailbox_path(text) is not None else mailbox_url(text)
    folder = mailbox_path(url)
    assert folder is not None
    if not folder.is_dir():
        looks_like_host = "://" not in text and ":" in text and not text.startswith(("/", "~", "."))
        hint = f"; did you mean http://{text}?" if looks_like_host else ""
        _err(f"{text!r} is not an http:// or https:// URL, nor an existing folder (a run's "
             f"mailbox, mon.serve_mailbox(), as synced to this machine){hint}")
        return EXIT_USAGE
    return await _save_mailbox(config_path, args, url, MailboxClient(folder), f"mailbox {folder}")


async def _connect_drive(config_path: Path, args: argparse.Namespace) -> int:
    """``colabtui connect gdrive://FOLDER_ID[/path]``: a mailbox on Drive, through the API."""
    from colabtui.drive_mailbox import drive_mailbox_client

    try:
        url = validate_url(args.url)
    except ConfigError as exc:
        _err(exc.reason)
        return EXIT_USAGE
    client = drive_mailbox_client(url)
    try:  # credentials and the folder itself must be there; a status may come later
        await asyncio.to_thread(client.storage.check)
    except (OSError, ImportError) as exc:
        _err(f"{url}: {plain(exc)}")
        return EXIT_SESSION
    return await _save_mailbox(config_path, args, url, client, f"Drive mailbox {url}")


async def _connect_colab(config_path: Path, args: argparse.Namespace) -> int:
    """``colabtui connect colab://ENDPOINT[/path]``: a mailbox on a Colab runtime's disk,
    through Colab's runtime proxy, with the Colab CLI's sign-in."""
    from colabtui.colab.client import ColabMailboxClient

    try:
        url = validate_url(args.url)
    except ConfigError as exc:
        _err(exc.reason)
        return EXIT_USAGE
    client = ColabMailboxClient(url)
    try:  # signed in, and the runtime is assigned to the account; a status may come later
        await asyncio.to_thread(client.storage.proxy.current)
    except OSError as exc:
        await client.aclose()
        _err(f"{url}: {plain(exc)}")
        return EXIT_SESSION
    return await _save_mailbox(config_path, args, url, client,
                               f"Colab runtime {client.endpoint}")


async def _save_mailbox(config_path: Path, args: argparse.Namespace, url: str, client: Any,
                        where: str) -> int:
    """Read the mailbox's status once, then save the session (no status yet is fine, a run
    folder given for its mailbox is not)."""
    from colabtui.client import SessionError

    inner = await asyncio.to_thread(client.run_folder_mailbox)
    if inner is not None:
        _err(f"{client.folder} is a run folder; its mailbox is {inner}")
        return EXIT_USAGE
    config = load_config(config_path)
    status = None
    async with client:
        try:
            status = await client.status()
        except SessionError as exc:
            if exc.kind != "unreachable":  # garbage or another protocol: not saved
                _err(f"{where}: {plain(exc.message)}")
                return EXIT_SESSION
            print(f"note: {plain(exc.message)}; saving it anyway, the session shows up once the "
                  "runtime writes there")
    session = SessionConfig(url=url, token="", label=args.label or (status.label if status else ""))
    replaced = config.find(url) is not None
    save_config(config.with_session(session), config_path)
    what = "no status yet" if status is None else \
        f"run {plain(status.run)}, {status.state}, step {'-' if status.step is None else status.step}"
    print(f"{'updated' if replaced else 'saved'} {plain(session.display_label)} ({where}): {what}")
    print(f"config: {config_path}")
    return EXIT_OK


# --------------------------------------------------------------------------- status


async def poll_all(config: Config, timeout_s: float,
                   ledger: Ledger | None = None) -> list[dict[str, Any]]:
    """Ask every session in ``config`` for its status once, all at the same time.

    Args:
        config: the sessions and the work-at-risk threshold.
        timeout_s: per-request timeout, seconds.
        ledger: the history: each status that answers is recorded there, and a session that
            does not answer but whose last recorded status had ended (finished, stopped,
            failed) is reported from it.

    Returns:
        One JSON-ready dict per session, in config order (see ``colabtui status --json``);
        tokens masked, remote text cleaned (control characters shown as ``\ufffd``). ``ok`` is
        true when the session answered, or had ended and is gone since (then ``source`` is
        ``"history"`` and ``unreachable`` says why it did not answer; else ``source`` is
        ``"session"``). A field the session sent out of range is ``null`` and its path in
        ``/v1/status`` is listed in ``invalid`` (``["total_steps", "gpus[0].memory_used_bytes"]``).
        ``work_at_risk`` is the panel's figure: its state, seconds, and whether it reached the
        config's ``risk_warning_min`` (see :class:`colabtui.figures.WorkAtRisk`).
    """
    warning_after_s = config.settings.risk_warning_min * 60
    return list(await asyncio.gather(*(_poll_one(s, timeout_s, warning_after_s, ledger)
                                       for s in config.sessions)))


def _round1(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


async def _poll_one(session: SessionConfig, timeout_s: float, warning_after_s: float,
                    ledger: Ledger | None) -> dict[str, Any]:
    from colabtui.client import SessionError
    from colabtui.figures import ENDED_STATES, clock_offset_s
    from colabtui.transport import make_client

    entry: dict[str, Any] = {"label": plain(session.display_label), "url": session.url,
                             "key": session.key, "token": mask_token(session.token)}
    async with make_client(session, timeout_s=timeout_s) as client:
        try:
            st = await client.status()
        except SessionError as exc:
            error = {"kind": exc.kind, "message": plain(exc.message)}
            ended = ledger.ended_status(session.key) \
                if ledger is not None and exc.kind == "unreachable" else None
            if ended is None:
                entry.update(ok=False, error=error)
                return entry
            row, st = ended
            entry.update(source="history", unreachable=error, ended_at=row.ended_at)
            # its clock then is not comparable with ours now: ages on our clock
            return _entry(entry, st, time.time(), 0.0, None, False, warning_after_s)
        now = time.time()
        if ledger is not None:
            ledger.record_status(session.key, session.url, session.display_label, st, now)
        stale = client.stale and st.state not in ENDED_STATES
        # ages on the session's clock over HTTP (its answer is fresh); a mailbox's status may
        # be old (a stopped run's last file), so there our own clock is the reference
        offset = clock_offset_s(st.server_time, now, client.transport)
        entry.update(source="session")
        return _entry(entry, st, now, 0.0 if offset is None else offset,
                      client.status_age_s, stale, warning_after_s)


def _entry(entry: dict[str, Any], st: Status, now: float, offset: float,
           status_age: float | None, stale: bool, warning_after_s: float) -> dict[str, Any]:
    """``entry`` filled from the status ``st``: its ages at ``now`` (local Unix seconds),
    with ``offset`` = local − session clock (seconds)."""
    from colabtui_remote.schema import invalid_paths

    from colabtui.figures import age_s, work_at_risk

    loss = st.metrics.get("loss")
    gpu = st.gpus[0] if st.gpus else None
    last = st.checkpoint.last
    risk = work_at_risk(st, now, offset, warning_after_s=warning_after_s)
    rep = st.checkpoint.replica
    entry.update(
        ok=True, run=plain(st.run), session_id=plain(st.session_id), state=st.state,
        step=st.step, total_steps=st.total_steps, epoch=st.epoch, steps_per_s=st.steps_per_s,
        loss=loss, loss_nonfinite=st.metrics_nonfinite.get("loss"),
        gpu=None if gpu is None else {
            "name": plain(gpu.name) if gpu.name else None,
            "utilization_pct": gpu.utilization_pct,
            "memory_used_bytes": gpu.memory_used_bytes,
            "memory_total_bytes": gpu.memory_total_bytes,
            "temperature_c": gpu.temperature_c,
        },
        checkpoint=None if last is None else {
            "step": last.step, "bytes": last.bytes, "saved_at": last.saved_at,
            "age_s": _round1(age_s(last.saved_at, now, offset)),
            "path": plain(last.path),
        },
        replica=None if rep is None else {
            "dest": plain(rep.dest), "kind": rep.kind, "state": rep.state,
            "verified_step": rep.verified.step if rep.verified else None,
            "verified_age_s": _round1(age_s(rep.verified.verified_at, now, offset))
            if rep.verified else None,
            "pending": rep.pending,
            "uploading": None if rep.uploading is None else {
                "step": rep.uploading.step, "bytes_sent": rep.uploading.bytes_sent,
                "bytes_total": rep.uploading.bytes_total},
            "last_error": plain(rep.last_error) if rep.last_error else None,
        },
        work_at_risk={
            "state": risk.state, "seconds": _round1(risk.seconds), "since": risk.since,
            "counted_from": risk.counted_from, "warning": risk.warning,
            "warning_after_s": warning_after_s,
        },
        error=None if st.error is None else {"kind": "run_failed", "message": plain(st.error)},
        world=None if st.world is None else {
            "size": st.world.size, "nodes": st.world.nodes,
            "checkpoint_kind": st.world.checkpoint_kind,
            "gpus": len(st.gpus),
            "lost": [{"rank": r.rank, "why": plain(r.lost)} for r in st.world.ranks if r.lost],
        },
        runtime=None if st.runtime is None else {
            "platform": plain(st.runtime.platform), "age_s": _round1(st.runtime.age_s),
            "max_s": st.runtime.max_s, "idle_timeout_s": st.runtime.idle_timeout_s,
            "limit_note": plain(st.runtime.limit_note) if st.runtime.limit_note else None,
        },
        status_age_s=_round1(status_age),
        stale=stale,
        invalid=invalid_paths(st),
    )
    return entry


def _open_ledger() -> Ledger | None:
    """The history the app keeps, or ``None`` (said on stderr) when it cannot be opened."""
    from colabtui.ledger import Ledger

    path = default_ledger_path()
    try:
        return Ledger(path)
    except Exception as exc:  # noqa: BLE001 - any failure: go on without history, say why
        _err(f"history is off: cannot open {path}: {exc}")
        return None


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "-"


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _row(e: dict[str, Any]) -> list[str]:
    from colabtui.formatting import fmt_limit, fmt_minutes

    if not e["ok"]:
        return [e["label"], "error", "", "", "", e["error"]["message"]]
    ended = e.get("source") == "history"  # its server is gone since it ended
    invalid = e.get("invalid", ())

    def shown(path: str, value: Any, fmt=str) -> str:  # "invalid": out of range as sent
        return "invalid" if path in invalid else "-" if value is None else fmt(value)

    step = shown("step", e["step"])
    if e["total_steps"] or "total_steps" in invalid:
        step += f"/{shown('total_steps', e['total_steps'])}"
    loss = e["loss_nonfinite"] or ("-" if e["loss"] is None else f"{e['loss']:.4g}")
    gpu = "none"
    if e["gpu"]:
        g = e["gpu"]
        gpu = g["name"] or "Unknown GPU"
        if g["utilization_pct"] is not None or "gpus[0].utilization_pct" in invalid:
            gpu += f" {shown('gpus[0].utilization_pct', g['utilization_pct'], '{:.0f}%'.format)}"
    world = e.get("world")
    if world:  # a torchrun job: its size, and every GPU it uses
        gpu = (f"{shown('world.size', world['size'])} ranks"
               + (f" ({world['gpus']} GPUs)" if world["gpus"] > 1 else "") + f"; {gpu}")
        if world["lost"]:
            gpu += "; lost: " + ", ".join(f"rank {r['rank']}" for r in world["lost"])
    ck = e["checkpoint"]
    ckpt = "none yet" if ck is None else (
        f"step {shown('checkpoint.last.step', ck['step'])}, "
        f"{shown('checkpoint.last.bytes', ck['bytes'], _fmt_bytes)}, "
        f"{shown('checkpoint.last.saved_at', ck['age_s'], _fmt_age)}")
    rep = e.get("replica")
    if rep is not None:  # what survives the runtime: verified on Drive
        where = "Drive" if rep["kind"] == "drive" else "Drive mount"
        if rep["state"] in ("offline", "error"):
            ckpt += f"; {where} {rep['state']}"
        elif rep["verified_step"] is not None:
            ckpt += f"; on {where} step {rep['verified_step']}"
        else:
            ckpt += f"; nothing on {where} yet"
        if rep["pending"]:
            ckpt += f" ({rep['pending']} local only)"
    risk = e["work_at_risk"]
    if risk["state"] == "at_risk":  # as the panel words it: to the minute, ≥ when stale
        ckpt += f"; at risk {'≥' if e.get('stale') else ''}{fmt_minutes(risk['seconds'])}"
        if risk["warning"]:
            ckpt += f" (past {fmt_minutes(risk['warning_after_s'])})"
    rt = e.get("runtime")
    if rt and (rt["max_s"] is not None or "runtime.max_s" in invalid):  # as the panel says it
        ckpt += (f"; runtime {shown('runtime.age_s', rt['age_s'], fmt_minutes)}"
                 f" of ≤ {shown('runtime.max_s', rt['max_s'], fmt_limit)}")
    state = e["state"]
    if ended:
        ckpt = f"{state} at step {step.split('/')[0]} (server gone since); " + ckpt
    if e.get("stale"):  # a mailbox the runtime stopped writing to: it may be dead
        state += f"? (status {e['status_age_s']:.0f} s old)"
    return [e["label"], state, step, loss, gpu, ckpt]


async def _status(config_path: Path, args: argparse.Namespace) -> int:
    config = load_config(config_path)
    ledger = _open_ledger() if config.sessions else None
    try:
        entries = await poll_all(config, args.timeout, ledger)
    finally:
        if ledger is not None:
            ledger.close()
    if args.json:
        print(json.dumps({"config": str(config_path), "sessions": entries}, indent=2,
                         allow_nan=False))
    elif not entries:
        print(f"no sessions saved in {config_path}; add one with: colabtui connect URL --token T")
    else:
        rows = [["SESSION", "STATE", "STEP", "LOSS", "GPU", "CHECKPOINT / ERROR"]]
        rows += [_row(e) for e in entries]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return EXIT_OK if all(e["ok"] for e in entries) else EXIT_SESSION
