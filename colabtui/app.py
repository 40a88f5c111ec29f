"""The colabtui app: one panel per saved session, side by side, and the keys that act on them.

Keys (also in the footer and the command palette): ``s`` save the focused session, ``S`` save
all, ``x`` stop the focused one after a confirmation, ``a`` add, ``d`` remove (config only; the
ledger keeps the history; asks first), ``1``-``9`` focus, ``l`` log scale, ``h`` history,
``!`` alerts, ``?`` help, ``q`` quit; for a session ``colabtui launch`` started, ``o`` shows
its output and ``R`` relaunches it on a new Colab runtime, after a yes
(:mod:`colabtui.app_relaunch`).

Keys act on what the user sees: a digit moves the focus at once, so a key typed right after it
in one burst acts on the newly focused panel; one save (and one stop) is in flight per session;
each session has one toast per kind of message, which a newer one replaces. The config file is
read again when it changes (or a session refuses its token), so a token given to ``colabtui
connect`` reaches the running app within a second.

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
from functools import partial
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.notifications import Notification, Notify, SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.widgets import Header
from textual.worker import Worker, WorkerState

from colabtui.app_alerts import AppAlerts
from colabtui.app_relaunch import AppRelaunch, LaunchedActions
from colabtui.app_views import VIEW_SCREENS, AppViews
from colabtui.config import (
    LIVE_SETTINGS,
    Config,
    ConfigError,
    SessionConfig,
    load_config,
    save_config,
)
from colabtui.crash_log import write_crash_log
from colabtui.formatting import fmt_bytes, fmt_field
from colabtui.ledger import Ledger
from colabtui.screens.add_session import AddSessionScreen
from colabtui.screens.confirm_remove import ConfirmRemoveScreen
from colabtui.screens.confirm_stop import ConfirmStopScreen
from colabtui.screens.help import PALETTE_COMMANDS
from colabtui.screens.welcome import WelcomeScreen
from colabtui.widgets.app_footer import AppFooter, footer_tier
from colabtui.widgets.panel_commands import CommandUpdate, TokenRefused
from colabtui.widgets.session_panel import SessionPanel

COMPACT_BELOW_ROWS = 36
"""Terminals shorter than this get panels without blank lines between blocks."""

PANEL_ACTIONS = {"save", "save_all", "stop", "remove", "focus_panel", "log_scale", "x_axis",
                 "relaunch", "output"}
"""Actions that need the main screen with at least one panel."""

EXIT_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
"""Signals that end the app as ``q`` does, and the exit code of each (128 + its number)."""

EXIT_CRASH = 1

CRASH_ENV = "COLABTUI_TEST_CRASH_AFTER_S"
"""A test hook: the app raises ``RuntimeError`` this many seconds after it starts."""


class ColabTuiApp(AppViews, LaunchedActions, App):
    """Watch and control training sessions.

    Args:
        config_path: the TOML config (sessions and settings); a missing file means no sessions.
            An unreadable one is reported and never overwritten during this run.
        ledger_path: the SQLite ledger of status and metric history.
        clock: local Unix time in seconds; every age and ETA uses it (tests freeze it).
        poll: poll the sessions (``False``: no network workers; panels take data from
            :meth:`SessionPanel.apply`).
        backoff_max_s: longest wait between polls of a session that fails, seconds.
        starting: for a session key, whether that session is still starting (the demo's runs
            while they import torch): its panel says "starting…" until it answers.
    """

    CSS_PATH = "app.tcss"
    TITLE = "colabtui"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("s", "save", "Save"),
        Binding("S", "save_all", "Save all"),
        Binding("x", "stop", "Stop"),
        Binding("R", "relaunch", "Relaunch"),
        Binding("o", "output", "Output"),
        Binding("a", "add", "Add"),
        Binding("d", "remove", "Remove"),
        Binding("l", "log_scale", "Log"),
        Binding("t", "x_axis", "Step/time"),
        Binding("1", "focus_panel(1)", "Focus", key_display="1-9"),
        *[Binding(str(n), f"focus_panel({n})", f"Focus {n}", show=False) for n in range(2, 10)],
        Binding("h", "history", "History"),
        Binding("c", "compare", "Compare"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("exclamation_mark", "alerts", "Alerts", key_display="!", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, config_path: Path, ledger_path: Path, *,
                 clock: Callable[[], float] = time.time, poll: bool = True,
                 backoff_max_s: float = 30.0,
                 starting: Callable[[str], bool] | None = None,
                 launches_path: Path | None = None) -> None:
        super().__init__()
        self.config_path = Path(config_path)
        self.ledger_path = Path(ledger_path)
        self.clock = clock
        self.poll = poll
        self.backoff_max_s = backoff_max_s
        self.starting = starting
        self._toasts: dict[tuple[str, str], Notification] = {}
        self._config_stamp = self._stat_config()
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
        self.x_axis = "step"
        self._signals_before: dict[int, object] = {}  # handlers to put back on exit
        self.alerts = AppAlerts(self)
        self.relaunches = AppRelaunch(self, launches_path)

    # ----------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Header()
        yield Horizontal(id="panels")
        yield AppFooter()

    def on_mount(self) -> None:
        for n, session in enumerate(self.config.sessions, start=1):
            self._mount_panel(session, n)
        self.relaunches.refresh()
        if self.config_error is not None:
            self.notify(f"{self.config_error}\nStarting with no sessions; the file is left as "
                        "it is: fix it, and its sessions show up here.", title="config error",
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
        """The session panels, in config order (the children of ``#panels``: read every
        second, so not a query of the whole DOM)."""
        try:
            row = self.screen_stack[0].query_one("#panels", Horizontal)
        except (NoMatches, IndexError):  # not composed yet, or torn down
            return []
        return [child for child in row.children if isinstance(child, SessionPanel)]

    def panel(self, key: str) -> SessionPanel:
        """The panel of the session with this key."""
        return self.query_one(f"#{key}", SessionPanel)

    def _mount_panel(self, session: SessionConfig, index: int) -> SessionPanel:
        starting = None if self.starting is None else partial(self.starting, session.key)
        panel = SessionPanel(session, index, clock=self.clock, settings=self.config.settings,
                             ledger=self.ledger, poll=self.poll, backoff_max_s=self.backoff_max_s,
                             log_scale=self.log_scale, x_axis=self.x_axis, starting=starting,
                             observe=self.alerts.observe)
        self.query_one("#panels", Horizontal).mount(panel)
        return panel

    def _tick(self) -> None:
        # one frame a second for every panel's changes: pending poll results, ages, charts
        with self.batch_update():
            for panel in self.panels:
                panel.tick()
        self._warn_shared_runs()
        self.check_config()

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
        """The panel holding the focus on the main screen (also while a dialog or the command
        palette is on top), else the first one, else ``None``."""
        panels = self.panels
        if not panels:
            return None
        node = panels[0].screen.focused
        while node is not None:
            if isinstance(node, SessionPanel):
                return node
            node = node.parent
        return panels[0]

    # ----------------------------------------------------------------- toasts

    def toast(self, key: str, kind: str, message: str, *, title: str = "",
              severity: SeverityLevel = "information", timeout: float | None = None) -> None:
        """Show ``message`` (plain text, never markup) as the one toast of ``kind`` for
        ``key`` (a session's key, or ``"app"``): it replaces the previous one, so a burst of
        keys never piles up toasts.

        Args:
            key: whose toast it is.
            kind: what it is about (``"save"``, ``"stop"``, ``"config"``…).
            message: the text (may hold text from a session).
            title: a title line above it.
            severity: ``"information"``, ``"warning"`` or ``"error"``.
            timeout: seconds on screen; ``None`` for the app's default.
        """
        note = Notification(message, title, severity,
                            self.NOTIFICATION_TIMEOUT if timeout is None else timeout,
                            markup=False)
        old = self._toasts.pop((key, kind), None)
        self._toasts[(key, kind)] = note
        # Textual has no public call to replace a toast. notify() posts a message, so a toast
        # replaced before that message is handled would still appear: swap them at once.
        if old is not None:
            self._unnotify(old, refresh=False)
        self._on_notify(Notify(note))

    # ----------------------------------------------------------------- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self._allowed(action, self.screen)

    def _allowed(self, action: str, screen: Screen) -> bool:
        """Whether ``action`` can run with ``screen`` on top (the command palette asks for the
        screen it was opened from, not for itself)."""
        if action in PANEL_ACTIONS:
            if isinstance(screen, (ModalScreen, WelcomeScreen, *VIEW_SCREENS)):
                return False
            if action not in ("log_scale", "x_axis") and not self.config.sessions:
                return False
            if action in ("relaunch", "output") and not any(p.launched for p in self.panels):
                return False
        return not (action in ("add", "history", "compare")
                    and isinstance(screen, (ModalScreen, *VIEW_SCREENS)))

    def _send(self, panel: SessionPanel, action: str) -> None:
        """Send ``action`` to ``panel``'s session, unless one is still in flight: then say so."""
        if panel.send(action):
            return
        step = panel.in_flight.get(action)
        saving = panel.status.checkpoint.in_progress if panel.status is not None else None
        if action == "save" and saving is not None:
            step = saving.step
        at = f" at step {step:,}" if step is not None else ""
        self.toast(panel.session.key, action,
                   f"{panel.session.display_label}: {action} already in progress{at}",
                   timeout=3)

    def action_save(self) -> None:
        """Save a checkpoint of the focused session now."""
        panel = self.focused_panel()
        if panel is not None:
            self._send(panel, "save")

    def action_save_all(self) -> None:
        """Save a checkpoint of every session now."""
        for panel in self.panels:
            self._send(panel, "save")

    def action_stop(self) -> None:
        """Stop the focused session after a confirmation (No is the default); the dialog
        shows the step the run is at while it is open."""
        panel = self.focused_panel()
        if panel is None:
            return
        key = panel.session.key

        def step() -> int | None:
            status = panel.status
            return status.step if status is not None else None

        def answered(yes: bool | None) -> None:
            if yes and panel.is_attached and panel.session.key == key:
                self._send(panel, "stop")

        self.push_screen(ConfirmStopScreen(panel.session.display_label, step), answered)

    def action_add(self) -> None:
        """Open the add-session form; the session is saved once it answers."""
        if self.config_error is not None:
            self.notify("The config file could not be read, so it is not changed: fix it "
                        f"first.\n{self.config_error}", severity="error", markup=False)
            return
        self.push_screen(AddSessionScreen(self.config.sessions), self._added)

    def _added(self, session: SessionConfig | None) -> None:
        if session is None:
            return
        known = self.config.find(session.url)
        if not self._save_config(self.config.with_session(session)):
            return
        if known is not None:  # a new token (or label) for a saved session
            panel = self.panel(session.key)
            panel.set_session(session)
            panel.screen.set_focus(panel)
            self.toast(session.key, "config", f"updated {session.display_label} "
                       f"(token {session.masked_token or 'none'})")
            return
        if isinstance(self.screen, WelcomeScreen):
            self.pop_screen()
        panel = self._mount_panel(session, len(self.config.sessions))
        self.call_after_refresh(panel.focus)
        self.toast(session.key, "config", f"added {session.display_label}")

    def _save_config(self, config: Config) -> bool:
        """Write ``config`` to the file and make it current; on failure say why, keep the old."""
        try:
            save_config(config, self.config_path)
        except (OSError, ConfigError) as exc:
            self.notify(f"could not save {self.config_path}: {exc}", severity="error",
                        markup=False)
            return False
        self.config = config
        self._config_stamp = self._stat_config()  # our own write is no news
        return True

    # ----------------------------------------------------------------- the config file

    def _stat_config(self) -> tuple[int, int, int] | None:
        try:
            st = self.config_path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def check_config(self, *, force: bool = False) -> None:
        """Read the config file again if it changed since it was last read (``force``: even
        if it looks unchanged), and follow it: a new token or label goes to its panel, a new
        session gets a panel, a removed one loses its panel. A file that does not parse is
        said once per change and changes nothing; so does a file that is gone."""
        stamp = self._stat_config()
        if stamp is None or (stamp == self._config_stamp and not force):
            return
        self._config_stamp = stamp
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.toast("app", "config", f"{exc}\nThe sessions shown stay as they were.",
                       title="config error", severity="error", timeout=15)
            return
        self.config_error = None
        for name in LIVE_SETTINGS:
            setattr(self.config.settings, name, getattr(config.settings, name))  # panels read it
        self.config = Config(config.sessions, self.config.settings)
        self._follow_config()
        self.relaunches.refresh()

    def _follow_config(self) -> None:
        panels = {p.session.key: p for p in self.panels}
        wanted = {s.key: s for s in self.config.sessions}
        for key, panel in panels.items():
            if key not in wanted:
                panel.remove()
            elif wanted[key] != panel.session:
                panel.set_session(wanted[key])
        for n, session in enumerate(self.config.sessions, start=1):
            if session.key not in panels:
                if isinstance(self.screen, WelcomeScreen):
                    self.pop_screen()
                self._mount_panel(session, n)
        if any(key not in wanted for key in panels):  # (a relaunch: a URL changed)
            self.call_after_refresh(self._after_remove)  # reorders, renumbers, moves the focus

    @on(TokenRefused)
    def _token_refused(self, message: TokenRefused) -> None:
        self.check_config(force=True)  # the file may hold a newer token

    def action_remove(self) -> None:
        """Remove the focused session from the config after a confirmation that says its
        token is forgotten (No is the default); the ledger keeps its history."""
        if self.config_error is not None:
            return
        panel = self.focused_panel()
        if panel is None:
            return
        session = panel.session

        def answered(yes: bool | None) -> None:
            if yes:
                self._remove(session)

        self.push_screen(ConfirmRemoveScreen(session.display_label, session.url,
                                             session.masked_token), answered)

    def _remove(self, session: SessionConfig) -> None:
        if self.config.find(session.key) is None:  # gone meanwhile (the file changed)
            return
        if not self._save_config(self.config.without(session.key)):
            return
        self.panel(session.key).remove()
        self.call_after_refresh(self._after_remove)
        self.toast(session.key, "config", f"removed {session.display_label} from the config; "
                   "its token is forgotten, its history kept")

    def _after_remove(self) -> None:
        order = {s.key: i for i, s in enumerate(self.config.sessions)}  # digits = the file's
        self.query_one("#panels", Horizontal).sort_children(
            key=lambda p: order.get(p.session.key, len(order)))
        panels = self.panels
        for n, p in enumerate(panels, start=1):
            p.set_index(n)
        if panels:
            panels[0].focus()
        else:
            self.push_screen(WelcomeScreen())

    def action_focus_panel(self, number: int) -> None:
        """Focus panel ``number`` (1-based) at once, so that a key typed right after the digit
        (one burst: ``2s``) acts on it; with no such panel, nothing changes (a bell)."""
        panels = self.panels
        if not 1 <= number <= len(panels):
            self.bell()
            return
        panel = panels[number - 1]
        # Widget.focus() would wait for the next idle moment, after keys already queued
        panel.screen.set_focus(panel)

    def action_alerts(self) -> None:
        """Open the Alerts screen: every alert, newest first."""
        self.alerts.show()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in PALETTE_COMMANDS:
            if self._allowed(action, screen):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))
        if self._allowed("focus_panel", screen):
            for n, panel in enumerate(self.panels[:9], start=1):
                yield SystemCommand(f"Focus session {n}: {panel.session.display_label}",
                                    f"Move the focus to session {n} ({n})",
                                    partial(self.action_focus_panel, n))

    # ----------------------------------------------------------------- messages

    @on(CommandUpdate)
    def _command_update(self, message: CommandUpdate) -> None:
        what = message.action
        toast = partial(self.toast, message.key, what)
        if message.ended:
            toast(f"{message.label}: stop sent; the session has ended", title="stop",
                  severity="warning", timeout=10)
            return
        if message.error is not None:
            toast(f"{message.label}: could not {what}: {message.error.message}",
                  severity="error", timeout=10)
            return
        record = message.record
        assert record is not None
        if record.state in ("pending", "running"):
            toast(f"{message.label}: {what} requested", timeout=3)
        elif record.state == "done":
            ck = record.checkpoint
            where = (f"checkpoint at step {fmt_field(ck, 'step', '{:,}'.format)} written "
                     f"({fmt_field(ck, 'bytes', fmt_bytes)})" if ck is not None else "done")
            verb = "saved" if what == "save" else "stopped"
            toast(f"{message.label}: {verb} — {where}", title=f"{what} done", timeout=8)
        else:
            toast(f"{message.label}: {what} failed: {record.error or 'no reason given'}",
                  title=f"{what} failed", severity="error", timeout=15)
            self.alerts.command_failed(message.key, message.label, what, record.error or "")

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
