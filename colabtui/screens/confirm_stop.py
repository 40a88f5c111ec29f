"""Asks before stopping a session; No is the default (focused, and Escape/n/q answer No)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from colabtui.screens.dialog import DialogScreen


class ConfirmStopScreen(DialogScreen[bool]):
    """Dismisses with ``True`` only when the user chooses Yes.

    Args:
        label: the session's label (untrusted: shown literally).
        step: the step it is at, if known.
    """

    BINDINGS = [
        Binding("escape,n,q", "answer(False)", "No", show=True),
        Binding("y", "answer(True)", "Yes", show=True),
    ]

    def __init__(self, label: str, step: int | None = None) -> None:
        super().__init__()
        self._label = label
        self._step = step

    def compose(self) -> ComposeResult:
        question = Text()
        question.append("Stop ")
        question.append(self._label, style="bold")
        question.append("?\n\n")
        question.append("It saves a checkpoint")
        if self._step is not None:
            question.append(f" (step {self._step:,})")
        question.append(", then ends the run. A later session resumes from that checkpoint.")
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static("Stop session", classes="dialog-title")
            # composed before the question: docked to the bottom, they stay on screen
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button("Yes, stop", id="yes", variant="error")
            yield Static(question, id="question")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def close(self) -> None:
        self.dismiss(False)
