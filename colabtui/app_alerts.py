"""The app's side of alerts: every panel's poll result goes through one
:class:`colabtui.alerts.AlertBook`, and each alert that fires is delivered as a toast (its
severity by kind), the bell and a desktop notification (:class:`colabtui.alert_delivery.Delivery`)
and the alert command, run in a worker (never blocking the UI). A cleared alert gets a short
toast. The Alerts screen (``!``) lists them all.
"""

from __future__ import annotations

from typing import Any

from textual.screen import ModalScreen

from colabtui.alert_delivery import AlertCommand, Delivery, rules_from
from colabtui.alerts import Alert, AlertBook, AlertChange
from colabtui.config import SessionConfig
from colabtui.figures import clock_offset_s
from colabtui.poller import internal_error
from colabtui.screens.alerts import AlertsScreen
from colabtui.session_client import SessionClient
from colabtui.widgets.poll_result import PollResult

ALERT_TOAST_S = 20.0
"""Seconds an alert's toast stays (a cleared one: a third of it)."""


class AppAlerts:
    """The alerts of one app.

    Args:
        app: the :class:`colabtui.app.ColabTuiApp` (its ``config.settings``, ``clock``,
            ``toast``, bell, driver and workers; not imported here: it imports this).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        settings = app.config.settings
        self.book = AlertBook(rules_from(settings))
        self.delivery = Delivery(settings, self._write, app.bell)
        self.command = AlertCommand(settings)
        self._offsets: dict[str, float] = {}

    def observe(self, session: SessionConfig, result: PollResult,
                client: SessionClient | None) -> None:
        """Take one poll result of ``session`` got through ``client`` (``None``: a panel fed
        fixed data, taken as HTTP); never raises."""
        try:
            status = result.status
            transport = "http" if client is None else client.transport
            if status is not None:
                offset = clock_offset_s(status.server_time, result.at, transport)
                if offset is not None:
                    self._offsets[session.key] = offset
            self.book.rules = rules_from(self.app.config.settings)  # the file may have changed
            error = None if result.error is None else result.error.message
            self._deliver(self.book.observe(session.key, session.display_label, result.at,
                                            status, result.new_points, error,
                                            self._offsets.get(session.key, 0.0),
                                            stale=client is not None and client.stale))
        except Exception as exc:  # noqa: BLE001 - alerts must never break a panel's polls
            self.app.notify(internal_error("evaluating alerts", exc).message,
                            severity="error", markup=False)

    def command_failed(self, key: str, label: str, action: str, why: str) -> None:
        """A save or stop of session ``key`` failed (``why``: plain text): an alert (its toast
        is the app's own "save failed" one, so it gets none here)."""
        change = self.book.command_failed(key, label, self.app.clock(), action,
                                          why or "no reason given")
        self._deliver(change, toast=False)

    def show(self) -> None:
        """Open the Alerts screen (not over a dialog, nor over itself)."""
        if not isinstance(self.app.screen, ModalScreen):
            self.app.push_screen(AlertsScreen(self.book))

    def _deliver(self, change: AlertChange, *, toast: bool = True) -> None:
        app = self.app
        for alert in change.fired:
            if toast:
                app.toast(alert.key, f"alert-{alert.kind}-{alert.subject}", alert.message,
                          title=f"alert: {alert.kind}", severity=alert.severity,
                          timeout=ALERT_TOAST_S)
            # no terminal when headless (tests): nothing to ring, nothing to say about it
            note = None if app.is_headless else self.delivery.deliver(alert)
            if note is not None:
                app.notify(note, severity="warning", timeout=ALERT_TOAST_S, markup=False)
            if self.command.configured:
                app.run_worker(self._send(alert), group="alert-command", exit_on_error=False,
                               description=f"alert command ({alert.kind})")
        for alert in change.cleared:
            app.toast(alert.key, f"alert-{alert.kind}-{alert.subject}",
                      f"cleared: {alert.message}", title=f"alert cleared: {alert.kind}",
                      timeout=ALERT_TOAST_S / 3)

    async def _send(self, alert: Alert) -> None:
        problem = await self.command.run(alert)
        if problem is not None:
            self.app.notify(problem, severity="warning", timeout=ALERT_TOAST_S, markup=False)

    def _write(self, text: str) -> None:
        driver = self.app._driver  # Textual's own bell() writes through it likewise
        if driver is not None and not self.app.is_headless:
            driver.write(text)
