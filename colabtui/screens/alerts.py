"""The Alerts screen: every alert of this run of the app, newest first, in a table.

It reads the app's :class:`colabtui.alerts.AlertBook` and redraws when the book changes
(checked every :data:`REFRESH_S`). Text from a session is shown literally (never markup).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from colabtui.alerts import Alert, AlertBook
from colabtui.screens.dialog import DialogScreen

REFRESH_S = 1.0
"""Seconds between checks of the book for new alerts while the screen is open."""

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "information": "green"}
"""How each severity's kind is drawn (the kind is a word too, never only a colour)."""

EMPTY = "No alerts yet. They show here, and as toasts, when a condition fires."

CLOSE_HINT = "escape, ! or q closes this screen"


def when(at: float) -> str:
    """``at`` (Unix seconds) as local ``MM-DD HH:MM:SS``."""
    return time.strftime("%m-%d %H:%M:%S", time.localtime(at))


def alert_row(alert: Alert) -> tuple[Text, Text, Text, Text, Text]:
    """The table row of ``alert``: time, session, kind, cleared, message (plain text)."""
    cleared = "holds" if alert.cleared_at is None else f"cleared {when(alert.cleared_at)[6:]}"
    return (Text(when(alert.at)), Text(alert.session),
            Text(alert.kind, style=SEVERITY_STYLE.get(alert.severity, "")),
            Text(cleared, style="bold" if alert.cleared_at is None else "dim"),
            Text(alert.message))


class AlertsScreen(DialogScreen[None]):
    """Lists the alerts of ``book``, newest first; escape, ``!`` or ``q`` closes it.

    Args:
        book: the app's alert book (read, never changed).
        refresh_s: seconds between checks for new alerts.
    """

    BINDINGS = [Binding("escape,exclamation_mark,q", "close", "Close", show=True)]

    def __init__(self, book: AlertBook, refresh_s: float = REFRESH_S) -> None:
        super().__init__()
        self._book = book
        self._refresh_s = refresh_s
        self._shown = -1

    def compose(self) -> ComposeResult:
        with Vertical(id="alerts-box", classes="dialog"):
            yield Static("colabtui — alerts, newest first", classes="dialog-title")
            yield Static(Text(EMPTY, style="dim"), id="alerts-empty")
            table: DataTable = DataTable(id="alerts-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("time", "session", "alert", "now", "what")
            yield table
            yield Static(Text(CLOSE_HINT, style="dim"), id="alerts-close")

    def on_mount(self) -> None:
        self.reload()
        self.query_one(DataTable).focus()
        self.set_interval(self._refresh_s, self.reload)

    def reload(self) -> None:
        """Redraw the table if the book changed since it was drawn."""
        if self._book.version == self._shown:
            return
        self._shown = self._book.version
        alerts = self._book.alerts()
        table = self.query_one(DataTable)
        table.clear()
        for alert in alerts:
            table.add_row(*alert_row(alert))
        self.query_one("#alerts-empty").display = not alerts
        table.display = bool(alerts)

    def close(self) -> None:
        self.dismiss(None)
