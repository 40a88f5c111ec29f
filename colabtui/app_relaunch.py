"""The app's keys for sessions ``colabtui launch`` started: ``R``, a session whose runtime died
is launched again on a new runtime (:func:`colabtui.colab.launches.relaunch_session`), after a
yes; ``o``, the end of its output (:class:`~colabtui.screens.launch_output.LaunchOutputScreen`).

The launch records are read when the app starts and when the config file changes; a panel of
a recorded session says "R relaunches it" while it is not connected. The relaunch runs on a
worker thread (assigning a runtime and installing there take tens of seconds): each step is
the session's one "relaunch" toast, and when it is done the config file, which now holds the
new ``colab://`` URL, is read again, so the panel follows the new runtime. One relaunch per
session at a time; every failure is a toast with Colab's or the script's words, and whatever
runtime it assigned is released.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from colabtui.config import ConfigError, SessionConfig
from colabtui.screens.confirm_relaunch import ConfirmRelaunchScreen

RELAUNCH_TOAST_S = 30.0
"""Seconds a relaunch's toast stays (a failure's: twice as long)."""


class AppRelaunch:
    """The relaunches of one app.

    Args:
        app: the :class:`colabtui.app.ColabTuiApp` (its panels, config, toasts, workers).
        path: the launches file (default: :func:`~colabtui.colab.launches.launches_path`).
        account: returns the Colab account (default: the stored sign-in; called on the
            worker thread).
    """

    def __init__(self, app: Any, path: Path | None = None, account: Any = None) -> None:
        self.app = app
        self.path = path
        self._account = account
        self.records: dict[str, Any] = {}
        self.error: str | None = None
        """Why the launches file could not be read (``None`` when it could)."""
        self.running: set[str] = set()
        """URLs of the sessions being relaunched now."""

    def refresh(self) -> None:
        """Read the launch records again and mark each panel launched or not; never raises
        (an unreadable file means no session is launched, and is said on R and o)."""
        from colabtui.colab.launches import LaunchRecordError, load_launches

        try:
            self.records, self.error = load_launches(self.path), None
        except LaunchRecordError as exc:
            self.records, self.error = {}, str(exc)
        for panel in self.app.panels:
            panel.launched = panel.session.url in self.records
        self.app.refresh_bindings()  # R and o show in the footer only with a launched session

    def _record(self, session: SessionConfig, kind: str) -> Any:
        """The launch record of ``session``, or ``None`` after a toast saying why not."""
        record = self.records.get(session.url)
        if record is None:
            what = "relaunch" if kind == "relaunch" else "show"
            why = self.error or (f"{session.display_label} was not started by `colabtui launch`"
                                 f": there is nothing to {what}")
            self.app.toast(session.key, kind, why, severity="warning", timeout=8)
        return record

    def show_output(self, panel: Any) -> None:
        """Open the end of ``panel``'s script output (read through the runtime proxy)."""
        from colabtui.colab.launch import LAUNCH_DIR, LOG_NAME, read_output
        from colabtui.colab.url import parse_colab_url
        from colabtui.screens.launch_output import LaunchOutputScreen

        session: SessionConfig = panel.session
        if self._record(session, "output") is None:
            return
        endpoint, _ = parse_colab_url(session.url)
        self.app.push_screen(LaunchOutputScreen(
            session.display_label, f"/{LAUNCH_DIR}/{LOG_NAME} on runtime {endpoint}",
            lambda: read_output(endpoint)))

    def start(self, panel: Any) -> None:
        """Ask, then relaunch ``panel``'s session; says why not when it cannot be."""
        session: SessionConfig = panel.session
        record = self._record(session, "relaunch")
        if record is None:
            return
        if panel.conn_kind != "unreachable":  # alive (or a sign-in to renew): nothing to pay
            why = ("its runtime answers" if panel.conn_kind in ("connected", "waiting") else
                   "it is not unreachable but: " + (panel.conn_message or panel.conn_kind))
            self.app.toast(session.key, "relaunch", f"{session.display_label}: {why}; R "
                           "relaunches a session whose runtime died", severity="warning",
                           timeout=8)
            return
        if session.url in self.running:
            self.app.toast(session.key, "relaunch",
                           f"{session.display_label}: a relaunch is already under way", timeout=5)
            return

        def answered(yes: bool | None) -> None:
            if yes and session.url not in self.running:
                self.running.add(session.url)
                self.app.run_worker(lambda: self._relaunch(session), thread=True,
                                    group="relaunch", exit_on_error=False)

        self.app.push_screen(ConfirmRelaunchScreen(session.display_label, record.spec.command,
                                                   record.gpu), answered)

    def _relaunch(self, session: SessionConfig) -> None:
        """On a worker thread: the relaunch itself; its steps and its end go to the UI."""
        from colabtui.colab.account import Account
        from colabtui.colab.errors import ColabError
        from colabtui.colab.launches import relaunch_session

        def say(line: str) -> None:
            self.app.call_from_thread(self.app.toast, session.key, "relaunch", line,
                                      title=f"relaunching {session.display_label}",
                                      timeout=RELAUNCH_TOAST_S)

        try:
            account = (self._account or Account)()
            started = relaunch_session(account, session.url, self.app.config_path, say=say,
                                       path=self.path)
        except (ColabError, ValueError, ConfigError) as exc:
            self.app.call_from_thread(self._ended, session, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a worker's failure is a toast, not a crash
            self.app.call_from_thread(self._ended, session, None,
                                      f"{type(exc).__name__}: {exc}")
        else:
            self.app.call_from_thread(self._ended, session, started, None)

    def _ended(self, session: SessionConfig, started: Any, error: str | None) -> None:
        self.running.discard(session.url)
        if started is None:
            self.app.toast(session.key, "relaunch", error or "failed",
                           title=f"{session.display_label} was not relaunched",
                           severity="error", timeout=2 * RELAUNCH_TOAST_S)
            return
        self.app.check_config(force=True)  # the session's URL changed in the file
        self.refresh()
        gpu = "CPU" if started.runtime.accelerator == "NONE" else started.runtime.accelerator
        self.app.toast("app", f"relaunch {started.url}",
                       f"{session.display_label} relaunched on runtime "
                       f"{started.runtime.endpoint} ({gpu}), process {started.pid}: it resumes "
                       "from its checkpoint folder", title="relaunched",
                       timeout=RELAUNCH_TOAST_S)


class LaunchedActions:
    """The app's actions for launched sessions (mixed into :class:`colabtui.app.ColabTuiApp`,
    whose ``relaunches`` is an :class:`AppRelaunch`)."""

    def action_relaunch(self: Any) -> None:
        """Relaunch the focused session on a new Colab runtime, after a yes."""
        panel = self.focused_panel()
        if panel is not None:
            self.relaunches.start(panel)

    def action_output(self: Any) -> None:
        """Show the end of the focused launched session's output."""
        panel = self.focused_panel()
        if panel is not None:
            self.relaunches.show_output(panel)
