"""Asks before relaunching a session on a new Colab runtime, saying what it costs; No is the
default (focused, and Escape/n/q answer No)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from colabtui.screens.dialog import ConfirmScreen


class ConfirmRelaunchScreen(ConfirmScreen):
    """Dismisses with ``True`` only when the user chooses Yes.

    Args:
        label: the session's label (untrusted: shown literally).
        command: the command that runs again (``python train.py --steps 6000``; untrusted).
        gpu: the accelerator asked for (``T4``), ``None`` for a CPU runtime.
    """

    def __init__(self, label: str, command: str, gpu: str | None) -> None:
        super().__init__()
        self._label, self._command, self._gpu = label, command, gpu

    def compose(self) -> ComposeResult:
        with Vertical(id="relaunch-box", classes="dialog"):
            yield Static("Relaunch session", classes="dialog-title")
            with Horizontal(classes="buttons"):  # docked to the bottom: always on screen
                yield Button("No", id="no", variant="primary")
                yield Button("Yes, relaunch", id="yes", variant="warning")
            yield Static(self.question(), id="question")

    def question(self) -> Text:
        """The dialog's words, as plain text."""
        text = Text()
        text.append("Relaunch ")
        text.append(self._label, style="bold")
        text.append(f" on a new {self._gpu or 'CPU'} runtime?\n")
        text.append(self._command, style="dim")
        text.append("\n\nColab assigns a runtime, which burns compute units until it is "
                    "released; the script resumes from its checkpoint folder.")
        return text
