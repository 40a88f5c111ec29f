"""Asks before stopping a session; No is the default (focused, and Escape/n/q answer No).

The step it names is live: read again while the dialog is open, so the user sees where the run
stands when answering, not where it stood when the dialog opened."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from colabtui.screens.dialog import ConfirmScreen

STEP_REFRESH_S = 0.5
"""Seconds between reads of the step while the dialog is open."""


class ConfirmStopScreen(ConfirmScreen):
    """Dismisses with ``True`` only when the user chooses Yes.

    Args:
        label: the session's label (untrusted: shown literally).
        step: the step it is at, if known; or a function returning it, called every
            :data:`STEP_REFRESH_S` seconds while the dialog is open.
    """

    def __init__(self, label: str,
                 step: int | None | Callable[[], int | None] = None) -> None:
        super().__init__()
        self._label = label
        self._step_of = step if callable(step) else (lambda: step)
        self._step = self._step_of()

    def question(self) -> Text:
        """The dialog's words for the step as last read, as plain text."""
        question = Text()
        question.append("Stop ")
        question.append(self._label, style="bold")
        question.append("?\n\n")
        question.append("It saves a checkpoint")
        if self._step is not None:
            question.append(f" (now at step {self._step:,})")
        question.append(", then ends the run. A later session resumes from that checkpoint.")
        return question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static("Stop session", classes="dialog-title")
            # composed before the question: docked to the bottom, they stay on screen
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button("Yes, stop", id="yes", variant="error")
            yield Static(self.question(), id="question")

    def on_mount(self) -> None:  # (the #no button is focused by ConfirmScreen's)
        self.set_interval(STEP_REFRESH_S, self._refresh_step)

    def _refresh_step(self) -> None:
        step = self._step_of()
        if step != self._step:
            self._step = step
            self.query_one("#question", Static).update(self.question())
