"""The help screen: every key and what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from colabtui.screens.dialog import DialogScreen

KEYS = (
    ("s", "save a checkpoint of the focused session now (one at a time)"),
    ("S", "save a checkpoint of every session"),
    ("x", "stop the focused session (asks first; it saves, then ends)"),
    ("R", "relaunch a dead `colabtui launch` session on a new runtime (asks)"),
    ("o", "a `colabtui launch` session's output: the end of its train.log"),
    ("a", "add a session, or give a saved URL its new token"),
    ("d", "remove the focused session (asks first; forgets its token)"),
    ("1-9", "focus a session's panel"),
    ("tab", "focus the next panel"),
    ("l", "loss chart: log scale on/off"),
    ("t", "loss chart: x by step or by wall time"),
    ("!", "alerts: every alert, newest first (NaN loss, lost session, failed save…)"),
    ("h", "history: every session recorded, GPUs ranked per run"),
    ("c", "compare: one metric of the runs you tick, on one chart (t, l work there too)"),
    ("ctrl+p", "command palette (every action above)"),
    ("?", "this help (escape, ? or q closes it)"),
    ("q", "quit (in a dialog: close the dialog)"),
)


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", justify="right")
    table.add_column()
    for key, what in KEYS:
        table.add_row(key, what)
    return table


CLOSE_HINT = "escape, ? or q closes this help"


class HelpScreen(DialogScreen[None]):
    """Lists the keys; any of escape, ?, q closes it."""

    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", show=True),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static("colabtui — keys", classes="dialog-title")
            yield Static(help_table())
            yield Static(Text(CLOSE_HINT, style="dim"), id="help-close")

    def close(self) -> None:
        self.dismiss(None)


# The app's actions in the command palette: (title, help, action name); their keys are in KEYS.
PALETTE_COMMANDS = (
    ("Save focused session", "Write a checkpoint of the focused session now (s)",
     "save"),
    ("Save all sessions", "Write a checkpoint of every session now (S)", "save_all"),
    ("Stop focused session", "Save, then end the focused run; asks first (x)", "stop"),
    ("Relaunch focused session", "Start it again on a new Colab runtime; asks first (R)",
     "relaunch"),
    ("Show output", "The end of the focused launched session's train.log (o)", "output"),
    ("Add session", "Add a session by URL and token (a)", "add"),
    ("Remove focused session", "Remove it from the config; history stays (d)",
     "remove"),
    ("Toggle log scale", "Loss charts on a log scale (l)", "log_scale"),
    ("Toggle step / wall time", "Loss charts by step or by wall time (t)", "x_axis"),
    ("Alerts", "Every alert, newest first (!)", "alerts"),
    ("History", "Every session recorded; GPUs ranked per run (h)", "history"),
    ("Compare runs", "One metric of the runs you tick, on one chart (c)", "compare"),
    ("Help", "Every key (?)", "help"),
)
