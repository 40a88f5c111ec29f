"""The colabtui app: one panel per saved session, side by side, and the keys that act on them.

Keys (also in the footer and the command palette): ``s`` save the focused session, ``S`` save
all, ``x`` stop the focused one after a confirmation, ``a`` add, ``d`` remove (config only; the
ledger keeps the history), ``1``-``9`` focus, ``l`` log scale, ``?`` help, ``q`` quit.

SIGINT, SIGTERM and SIGHUP end the app as ``q`` does (the terminal restored), with exit code
128 + the signal's number; :func:`run_app` runs it, writes a crash's traceback to a file and
returns the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen, Screen
from textual.widgets import Header
from textual.worker import Worker, WorkerState

from colabtui.config import (
    Config,
    ConfigError,
    SessionConfig,
    load_config,
    log_dir,
    save_config,
)
from colabtui.formatting import fmt_bytes
from colabtui.ledger import Ledger
from colabtui.screens.add_session import AddSessionScreen
from colabtui.screens.confirm_stop import ConfirmStopScreen
from colabtui.screens.help import HelpScreen
from colabtui.screens.welcome import WelcomeScreen
from colabtui.widgets.app_footer import AppFooter, footer_tier
from colabtui.widgets.session_panel import CommandUpdate, SessionPanel

COMPACT_BELOW_ROWS = 36
"""Terminals shorter than this get panels without blank lines between blocks."""

PANEL_ACTIONS = {"save", "save_all", "stop", "remove", "focus_panel", "log_scale"}
"""Actions that need the main screen with at least one panel."""

EXIT_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
"""Signals that end the app as ``q`` does, and the exit code of each (128 + its number)."""

EXIT_CRASH = 1

CRASH_ENV = "COLABTUI_TEST_CRASH_AFTER_S"
"""A test hook: the app raises ``RuntimeError`` this many seconds after it starts."""


class ColabTuiApp(App):
    """Watch and control training sessions.

    Args:
        config_path: the TOML config (sessions and settings); a missing file means no sessions.
            An unreadable one is reported and never overwritten during this run.
        ledger_path: the SQLite ledger of status and metric history.
        clock: local Unix time in seconds; every age and ETA uses it (tests freeze it).
        poll: poll the sessions (``False``: no network workers; panels take data from
            :meth:`SessionPanel.apply`).
        backoff_max_s: longest wait between polls of a session that fails, seconds.
    """

    CSS_PATH = "app.tcss"
    TITLE = "colabtui"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("s", "save", "Save"),
        Binding("S", "save_all", "Save all"),
        Binding("x", "stop", "Stop"),
        Binding("a", "add", "Add"),
        Binding("d", "remove", "Remove"),
        Binding("l", "log_scale", "Log"),
        Binding("1", "focus_panel(1)", "Focus", key_display="1-9"),
        *[Binding(str(n), f"focus_panel({n})", f"Focus {n}", show=False) for n in range(2, 10)],
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, config_path: Path, ledger_path: Path, *,
                 clock: Callable[[], float] = time.time, poll: bool = True,
                 backoff_max_s: float = 30.0) -> None:
        super().__init__()
        self.config_path = Path(config_path)
        self.ledger_path = Path(ledger_path)
        self.clock = clock
        self.poll = poll
        self.backoff_max_s = backoff_max_s
        self.config_error: ConfigError | None = None
        try:
            self.config = load_config(self.config_path)
        except ConfigError as exc:
            self.config_error = exc
            self.config = Config()
        self.ledger_error: str | None = None
        self._shared_runs_warned: set[str] = set()
        try:
            self.ledger: Ledger | None = Ledger(self.ledger_path)
        except Exception as exc:  # noqa: BLE001 - any failure: run without history, say why
            self.ledger = None
            self.ledger_error = f"history is off: cannot open {self.ledger_path}: {exc}"
        self.log_scale = self.config.settings.log_scale
        self._signals_before: dict[int, object] = {}  # handlers to put back on exit

    # ----------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Header()
        yield Horizontal(id="panels")
        yield AppFooter()

    def on_mount(self) -> None:
        for n, session in enumerate(self.config.sessions, start=1):
            self._mount_panel(session, n)
        if self.config_error is not None:
            self.notify(f"{self.config_error}\nStarting with no sessions; the file is left as "
                        "it is: fix it and start colabtui again.", title="config error",
                        severity="error", timeout=30, markup=False)
        if self.ledger_error is not None:
            self.notify(self.ledger_error, severity="warning", timeout=20, markup=False)
        if not self.config.sessions:
            self.push_screen(WelcomeScreen())
        else:
            self.call_after_refresh(self._focus_first)
        if self.poll:
            self.set_interval(1.0, self._tick)
        if not self.is_headless:
            self._catch_signals()
        if (crash_after := os.environ.get(CRASH_ENV)) is not None:
            self.set_timer(_seconds(crash_after), self._crash_for_test)

    def _catch_signals(self) -> None:
        """SIGINT, SIGTERM, SIGHUP: exit as ``q`` does (Python's default for SIGTERM and
        SIGHUP ends the process at once, leaving the terminal raw, on the alternate screen)."""
        loop = asyncio.get_running_loop()
        for signum, code in EXIT_SIGNALS.items():
            try:
                before = signal.getsignal(signum)
                loop.add_signal_handler(signum, self.exit, None, code)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                continue
            self._signals_before[signum] = before

    def _restore_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum, before in self._signals_before.items():
            loop.remove_signal_handler(signum)
            with contextlib.suppress(ValueError, TypeError, OSError):
                signal.signal(signum, before)

    def _crash_for_test(self) -> None:
        raise RuntimeError(f"crash asked for by {CRASH_ENV}")

    def on_resize(self, event) -> None:
        compact = event.size.height < COMPACT_BELOW_ROWS
        self.query_one("#panels").set_class(compact, "-compact")
        self.query_one(AppFooter).tier = footer_tier(event.size.width)

    def _focus_first(self) -> None:
        panels = self.panels
        if panels and self.focused is None:
            panels[0].focus()

    def on_unmount(self) -> None:
        self._restore_signals()
        if self.ledger is not None:
            self.ledger.close()

    @property
    def panels(self) -> list[SessionPanel]:
        """The session panels, in config order."""
        return list(self.query(SessionPanel))

    def panel(self, key: str) -> SessionPanel:
        """The panel of the session with this key."""
        return self.query_one(f"#{key}", SessionPanel)

    def _mount_panel(self, session: SessionConfig, index: int) -> SessionPanel:
        panel = SessionPanel(session, index, clock=self.clock, settings=self.config.settings,
                             ledger=self.ledger, poll=self.poll, backoff_max_s=self.backoff_max_s,
                             log_scale=self.log_scale)
        self.query_one("#panels", Horizontal).mount(panel)
        return panel

    def _tick(self) -> None:
        # one frame a second for every panel's changes: pending poll results, ages, charts
        with self.batch_update():
            for panel in self.panels:
                panel.tick()
        self._warn_shared_runs()

    def _warn_shared_runs(self) -> None:
        """Say once per run name when two live sessions report the same run: history is kept
        per run (so a resumed run continues its curve), and two runs under one name would draw
        into one chart."""
        live: dict[str, set[str]] = {}
        for panel in self.panels:
            status = panel.status
            if status is not None and panel.ended is None:
                live.setdefault(status.run, set()).add(status.session_id)
        for run, sessions in live.items():
            if len(sessions) > 1 and run not in self._shared_runs_warned:
                self._shared_runs_warned.add(run)
                self.notify(f"{len(sessions)} sessions report the same run {run!r}: their loss "
                            "curves share one history. Give each run its own name "
                            "(Monitor(run=...)).", title="one run name, two runs",
                            severity="warning", timeout=20, markup=False)

    def focused_panel(self) -> SessionPanel | None:
        """The panel holding the focus, else the first one, else ``None``."""
        node = self.focused
        while node is not None:
            if isinstance(node, SessionPanel):
                return node
            node = node.parent
        panels = self.panels
        return panels[0] if panels else None

    # ----------------------------------------------------------------- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in PANEL_ACTIONS:
            if isinstance(self.screen, (ModalScreen, WelcomeScreen)):
                return False
            if action != "log_scale" and not self.config.sessions:
                return False
        return not (action == "add" and isinstance(self.screen, ModalScreen))

    def action_save(self) -> None:
        """Save a checkpoint of the focused session now."""
        panel = self.focused_panel()
        if panel is not None:
            panel.send("save")

    def action_save_all(self) -> None:
        """Save a checkpoint of every session now."""
        for panel in self.panels:
            panel.send("save")

    def action_stop(self) -> None:
        """Stop the focused session after a confirmation (No is the default)."""
        panel = self.focused_panel()
        if panel is None:
            return
        step = panel.status.step if panel.status is not None else None

        def answered(yes: bool | None) -> None:
            if yes:
                panel.send("stop")

        self.push_screen(ConfirmStopScreen(panel.session.display_label, step), answered)

    def action_add(self) -> None:
        """Open the add-session form; the session is saved once it answers."""
        if self.config_error is not None:
            self.notify("The config file could not be read, so it is not changed: fix it "
                        f"first.\n{self.config_error}", severity="error", markup=False)
            return
        known = [s.url for s in self.config.sessions]
        self.push_screen(AddSessionScreen(known), self._added)

    def _added(self, session: SessionConfig | None) -> None:
        if session is None:
            return
        if not self._save_config(self.config.with_session(session)):
            return
        if isinstance(self.screen, WelcomeScreen):
            self.pop_screen()
        panel = self._mount_panel(session, len(self.config.sessions))
        self.call_after_refresh(panel.focus)
        self.notify(f"added {session.display_label}", markup=False)

    def _save_config(self, config: Config) -> bool:
        """Write ``config`` to the file and make it current; on failure say why, keep the old."""
        try:
            save_config(config, self.config_path)
        except (OSError, ConfigError) as exc:
            self.notify(f"could not save {self.config_path}: {exc}", severity="error",
                        markup=False)
            return False
        self.config = config
        return True

    def action_remove(self) -> None:
        """Remove the focused session from the config (the ledger keeps its history)."""
        if self.config_error is not None:
            return
        panel = self.focused_panel()
        if panel is None:
            return
        if not self._save_config(self.config.without(panel.session.key)):
            return
        label = panel.session.display_label
        panel.remove()
        self.call_after_refresh(self._after_remove)
        self.notify(f"removed {label} from the config (its history is kept)", markup=False)

    def _after_remove(self) -> None:
        panels = self.panels
        for n, p in enumerate(panels, start=1):
            p.set_index(n)
        if panels:
            panels[0].focus()
        else:
            self.push_screen(WelcomeScreen())

    def action_focus_panel(self, number: int) -> None:
        """Focus panel ``number`` (1-based)."""
        panels = self.panels
        if 1 <= number <= len(panels):
            panels[number - 1].focus()

    def action_log_scale(self) -> None:
        """Toggle the log scale of every loss chart."""
        self.log_scale = not self.log_scale
        for panel in self.panels:
            panel.set_log_scale(self.log_scale)
        self.notify(f"log scale {'on' if self.log_scale else 'off'}", timeout=2, markup=False)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        commands = [
            ("Save focused session", "Write a checkpoint of the focused session now (s)",
             "save"),
            ("Save all sessions", "Write a checkpoint of every session now (S)", "save_all"),
            ("Stop focused session", "Save, then end the focused run; asks first (x)", "stop"),
            ("Add session", "Add a session by URL and token (a)", "add"),
            ("Remove focused session", "Remove it from the config; history stays (d)",
             "remove"),
            ("Toggle log scale", "Loss charts on a log scale (l)", "log_scale"),
            ("Help", "Every key (?)", "help"),
        ]
        for title, help_text, action in commands:
            if self.check_action(action, ()):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))

    # ----------------------------------------------------------------- messages

    @on(CommandUpdate)
    def _command_update(self, message: CommandUpdate) -> None:
        what = message.action
        if message.ended:
            self.notify(f"{message.label}: stop sent; the session has ended", title="stop",
                        severity="warning", timeout=10, markup=False)
            return
        if message.error is not None:
            self.notify(f"{message.label}: could not {what}: {message.error.message}",
                        severity="error", timeout=10, markup=False)
            return
        record = message.record
        assert record is not None
        if record.state in ("pending", "running"):
            self.notify(f"{message.label}: {what} requested", timeout=3, markup=False)
        elif record.state == "done":
            ck = record.checkpoint
            where = (f"checkpoint at step {ck.step:,} written ({fmt_bytes(ck.bytes)})"
                     if ck is not None else "done")
            verb = "saved" if what == "save" else "stopped"
            self.notify(f"{message.label}: {verb} — {where}", title=f"{what} done",
                        timeout=8, markup=False)
        else:
            self.notify(f"{message.label}: {what} failed: {record.error or 'no reason given'}",
                        title=f"{what} failed", severity="error", timeout=15, markup=False)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        worker = event.worker
        error = worker.error
        self.notify(f"{worker.description or worker.name}: {error!r}", title="internal error",
                    severity="error", timeout=15, markup=False)
        node = worker.node
        if isinstance(node, SessionPanel) and worker.group.startswith("poll-"):
            node.poll_failed(error if error is not None else RuntimeError("unknown"))


def _seconds(text: str) -> float:
    try:
        return max(0.0, float(text))
    except ValueError:
        return 0.0


def run_app(app: ColabTuiApp) -> int:
    """Run ``app`` in this terminal until it ends, and say how it ended.

    Returns:
        The exit code: 0 after ``q``; 130, 143 or 129 after SIGINT, SIGTERM or SIGHUP
        (:data:`EXIT_SIGNALS`; the terminal restored as on ``q``); :data:`EXIT_CRASH` (1) after
        a crash, whose traceback is written to a new file in :func:`colabtui.config.log_dir`,
        named on stderr (Textual prints the traceback on stderr too).
    """
    try:
        app.run()
        error = app._exception  # Textual keeps the exception that ended the app (if any)
    except Exception as exc:  # noqa: BLE001 - whatever ends the app early is a crash
        error = exc
    if error is None:
        return app.return_code or 0
    try:
        path = write_crash_log(error)
    except OSError as exc:
        traceback.print_exception(error, file=sys.stderr)
        print(f"colabtui: crashed with {type(error).__name__}; could not write the crash log: "
              f"{exc}", file=sys.stderr)
    else:
        print(f"colabtui: crashed with {type(error).__name__}; the traceback is in {path}",
              file=sys.stderr)
    return EXIT_CRASH


def write_crash_log(error: BaseException) -> Path:
    """Write ``error``'s traceback to a new file in :func:`colabtui.config.log_dir` (created,
    mode 0o700) and return its path.

    Raises:
        OSError: the folder or the file could not be written.
    """
    from colabtui import __version__

    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"crash-{stamp}-{os.getpid()}.log"
    text = (f"colabtui {__version__} crashed at {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
            f"python {sys.version.split()[0]} on {sys.platform}\n\n"
            + "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    path.write_text(text, encoding="utf-8")
    return path
