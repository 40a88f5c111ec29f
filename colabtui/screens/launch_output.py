"""The output of a script ``colabtui launch`` started: the end of its ``train.log`` on the
runtime (:func:`colabtui.colab.launch.read_output`), read on a worker thread when the screen
opens and again on ``r``. The text is the runtime's: cleaned of escape sequences, and drawn as
plain text (never markup)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Log, Static

from colabtui.screens.dialog import DialogScreen

CLOSE_HINT = "r reads it again · escape, o or q closes this screen"


class LaunchOutputScreen(DialogScreen[None]):
    """The end of a launched session's output.

    Args:
        label: the session's label (shown literally).
        where: where the output is, for the title (``train.log on runtime gpu-t4-s-…``).
        read: returns the lines (called on a worker thread); an ``OSError`` it raises is
            shown in place of them, with what to do.
    """

    BINDINGS = [
        Binding("escape,o,q", "close", "Close", show=True),
        Binding("r", "reload", "Read again", show=True),
    ]

    def __init__(self, label: str, where: str, read: Callable[[], list[str]]) -> None:
        super().__init__()
        self._label, self._where, self._read = label, where, read
        self.lines: list[str] | None = None
        """The lines shown (``None`` before the first read, or after a failed one)."""
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="output-box", classes="dialog"):
            title = Text("Output of ", style="bold")
            title.append(self._label)
            yield Static(title, classes="dialog-title")
            yield Static(Text(f"{self._where}: reading…", style="dim"), id="output-where")
            yield Log(id="output-log", max_lines=5000)
            yield Static(Text(CLOSE_HINT, style="dim"), id="output-close")

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one(Log).focus()

    def action_reload(self) -> None:
        """Read the output again (on a worker thread; the last read's lines stay meanwhile)."""
        self.query_one("#output-where", Static).update(
            Text(f"{self._where}: reading…", style="dim"))
        self.run_worker(self._fetch, thread=True, exclusive=True, group="output",
                        exit_on_error=False)

    def _fetch(self) -> None:
        try:
            lines, error = self._read(), None
        except OSError as exc:
            lines, error = None, str(exc) or type(exc).__name__
        self.app.call_from_thread(self._show, lines, error)

    def _show(self, lines: list[str] | None, error: str | None) -> None:
        self.lines, self.error = lines, error
        where = self.query_one("#output-where", Static)
        if lines is None:
            where.update(Text(f"{self._where}: {error}", style="bold red"))
            return
        read_at = time.strftime("%H:%M:%S")
        where.update(Text(f"{self._where}: the last {len(lines):,} lines, read at {read_at}",
                          style="dim"))
        log = self.query_one(Log)
        log.clear()
        log.write_lines(lines or ["(no output yet)"])

    def close(self) -> None:
        self.dismiss(None)
