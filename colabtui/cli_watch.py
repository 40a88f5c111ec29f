"""``colabtui watch``: the app's polling and alerts with no UI, for a server or a tmux pane.

Every saved session is polled as the app polls it (:class:`colabtui.poller.Poller` on the
client :func:`colabtui.transport.make_client` gives, statuses and points recorded in the
history), each poll goes through the same :class:`colabtui.alerts.AlertBook`, and each alert
is one line on stdout (plain text, or a JSON object with ``--json``) and runs the config's
``alert_command``. No Textual is imported.

Exit codes: 130 on Ctrl-C (SIGINT), 143 on SIGTERM; with ``--exit-on-lost``,
:data:`EXIT_LOST` (3) once a session is lost (after the alert command of that alert ended);
2 bad input (no sessions saved, a config that does not parse).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colabtui_remote.wire import clean_text

from colabtui.alert_delivery import AlertCommand, rules_from
from colabtui.alerts import Alert, AlertBook
from colabtui.config import Config, SessionConfig, default_ledger_path, load_config
from colabtui.figures import clock_offset_s

EXIT_LOST = 3
"""Exit code of ``colabtui watch --exit-on-lost`` once a session is lost."""

EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143

CANCEL_AGAIN_S = 0.5
"""Seconds between cancellations of a watch that a signal asked to end and that goes on."""

BACKOFF_MAX_S = 30.0
"""Longest wait between polls of a session that fails, seconds (as in the app); shorter when
``lost_after_s`` is short, so a lost session is noticed within half of it after the threshold."""


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the ``watch`` sub-command to ``sub`` (the ``colabtui`` parser's sub-parsers)."""
    p = sub.add_parser(
        "watch", formatter_class=fmt, help="poll every saved session and print its alerts",
        description="Poll every saved session as the app does, without a UI, and print one "
                    "line per alert (NaN in a watched series, a lost session, work at risk past "
                    "its warning, a failed save, a run that finished or stopped, GPU memory "
                    "full), and one when it clears. Each alert also runs the config's "
                    "alert_command (the alert as JSON on stdin).",
        epilog="examples:\n"
               "  colabtui watch\n"
               "  colabtui watch --json | jq -r 'select(.event == \"fired\") | .message'\n"
               "  colabtui watch --exit-on-lost && echo done || echo \"lost: $?\"\n"
               f"\nexit codes: {EXIT_LOST} a session was lost (with --exit-on-lost), 2 bad "
               "input or config (no sessions saved), 130 interrupted (Ctrl-C), 143 SIGTERM")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line: the alert and \"event\": \"fired\" or "
                        "\"cleared\"")
    p.add_argument("--exit-on-lost", action="store_true",
                   help=f"exit with code {EXIT_LOST} once a session is lost (no answer for "
                        "lost_after_s, or its run failed or was interrupted)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for each answer (default 5)")


def alert_line(alert: Alert, event: str, as_json: bool) -> str:
    """One line for ``alert``: ``2026-12-02 17:40:01  lost  run-a: no answer for 61 s`` (local
    time; ``cleared`` before the kind when it cleared), or with ``as_json`` the alert's JSON
    with ``"event"``."""
    if as_json:
        return json.dumps({"event": event, **alert.to_json()}, allow_nan=False)
    at = alert.cleared_at if event == "cleared" and alert.cleared_at is not None else alert.at
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    what = f"cleared {alert.kind}" if event == "cleared" else alert.kind
    return clean_text(f"{when}  {what}  {alert.message}", None)


class Watch:
    """The sessions of ``config`` polled until stopped, their alerts printed and sent.

    Args:
        config: the sessions and the settings (thresholds, alert command).
        out: where lines go (``print`` to stdout).
        note: where one-time notes go (stderr).
        as_json: JSON lines instead of text.
        exit_on_lost: end at the first ``lost`` alert.
        timeout_s: per-request timeout, seconds.
        ledger_path: the history file (``None``: keep no history).
        clock: local Unix time, seconds.
    """

    def __init__(self, config: Config, *, out: Callable[[str], None],
                 note: Callable[[str], None], as_json: bool = False,
                 exit_on_lost: bool = False, timeout_s: float = 5.0,
                 ledger_path: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.book = AlertBook(rules_from(config.settings))
        self.command = AlertCommand(config.settings)
        self._out, self._note = out, note
        self._json, self._exit_on_lost = as_json, exit_on_lost
        self._timeout_s = timeout_s
        self._ledger_path = ledger_path
        self._clock = clock
        self._commands: set[asyncio.Task] = set()
        self._lost = asyncio.Event()

    async def run(self) -> int:
        """Poll until a session is lost (with ``exit_on_lost``) or cancelled.

        Returns:
            :data:`EXIT_LOST` after a lost session (``exit_on_lost``).
        """
        ledger = self._open_ledger()
        try:
            polls = [asyncio.create_task(self._watch(s, ledger)) for s in self.config.sessions]
            lost = asyncio.create_task(self._lost.wait())
            try:
                await asyncio.wait([*polls, lost], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (*polls, lost):
                    task.cancel()
                await asyncio.gather(*polls, lost, return_exceptions=True)
                if self._commands:  # the alert that ends the watch is sent before the exit
                    await asyncio.wait(list(self._commands))
            for task in polls:  # a poll loop that ended on a bug: say it
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            return EXIT_LOST
        finally:
            if ledger is not None:
                ledger.close()

    def _open_ledger(self) -> Any:
        if self._ledger_path is None:
            return None
        from colabtui.ledger import Ledger

        try:
            return Ledger(self._ledger_path)
        except Exception as exc:  # noqa: BLE001 - any failure: go on without history, say why
            self._note(f"history is off: cannot open {self._ledger_path}: {exc}")
            return None

    async def _watch(self, session: SessionConfig, ledger: Any) -> None:
        from colabtui.poller import Poller
        from colabtui.transport import make_client

        settings = self.config.settings
        backoff_max = min(BACKOFF_MAX_S, max(settings.poll_interval_s,
                                             settings.lost_after_s / 2))
        label = session.display_label
        offset = 0.0
        failures = 0
        async with make_client(session, timeout_s=self._timeout_s) as client:
            poller = Poller(client, session, ledger, self._clock)
            while True:
                got = await poller.poll()
                at = self._clock()
                if got.status is not None:
                    found = clock_offset_s(got.status.server_time, at, client.transport)
                    offset = offset if found is None else found
                change = self.book.observe(
                    session.key, label, at, got.status, got.new_points,
                    error_words=None if got.error is None else got.error.message, offset=offset,
                    stale=client.stale)
                for alert in change.fired:
                    self._emit(alert, "fired")
                for alert in change.cleared:
                    self._emit(alert, "cleared")
                failures = failures + 1 if got.status is None else 0
                interval = max(0.05, settings.poll_interval_s, client.min_poll_interval_s)
                delay = min(backoff_max, interval * 2 ** min(failures, 16)) if failures \
                    else interval
                await asyncio.sleep(delay)

    def _emit(self, alert: Alert, event: str) -> None:
        self._out(alert_line(alert, event, self._json))
        if event == "fired" and self.command.configured:
            task = asyncio.create_task(self._send(alert))
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)
        if event == "fired" and alert.kind == "lost" and self._exit_on_lost:
            self._lost.set()

    async def _send(self, alert: Alert) -> None:
        problem = await self.command.run(alert)
        if problem is not None:
            self._note(problem)


def run(args: argparse.Namespace, config_path: Path) -> int:
    """``colabtui watch``: returns the exit code (see the module docstring).

    Raises:
        ConfigError: the config file does not parse.
    """
    config = load_config(config_path)
    if not config.sessions:
        print(f"colabtui: no sessions saved in {config_path}; add one with: colabtui connect "
              "URL --token T", file=sys.stderr)
        return EXIT_USAGE

    def out(line: str) -> None:
        print(line, flush=True)

    def note(line: str) -> None:
        print(f"colabtui: {line}", file=sys.stderr, flush=True)

    watch = Watch(config, out=out, note=note, as_json=args.json,
                  exit_on_lost=args.exit_on_lost, timeout_s=args.timeout,
                  ledger_path=default_ledger_path())
    return asyncio.run(_until_signal(watch))


async def _until_signal(watch: Watch) -> int:
    """Run ``watch``; SIGTERM ends it with 143, SIGINT with KeyboardInterrupt (130).

    A signal cancels the watch and, should the cancellation be swallowed (Python 3.11's
    ``asyncio.wait_for`` can lose one when the call it waits for completes at the same
    moment), cancels it again every :data:`CANCEL_AGAIN_S` until it ends.
    """
    task = asyncio.create_task(watch.run())
    loop = asyncio.get_running_loop()
    code: int | None = None

    def on_signal(exit_code: int) -> None:
        nonlocal code
        code = exit_code
        task.cancel()

    for signum, exit_code in ((signal.SIGINT, EXIT_INTERRUPTED),
                              (signal.SIGTERM, EXIT_TERMINATED)):
        try:
            loop.add_signal_handler(signum, on_signal, exit_code)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # Windows, or not the main thread: Python's default handling stays
    while not task.done():
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_S)
        if code is not None and not task.done():
            task.cancel()
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if code is not None:
        return code
    return task.result()
