"""Asks before removing a session from the config, saying that its token is forgotten; No is
the default (focused, and Escape/n/q answer No)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from colabtui.screens.dialog import ConfirmScreen


class ConfirmRemoveScreen(ConfirmScreen):
    """Dismisses with ``True`` only when the user chooses Yes.

    Args:
        label: the session's label (untrusted: shown literally).
        url: the session's URL, shown so the user sees which one goes.
        masked_token: the token as shown on screen (:func:`colabtui.config.mask_token`);
            empty for a session without one (a mailbox).
    """

    def __init__(self, label: str, url: str, masked_token: str = "") -> None:
        super().__init__()
        self._label = label
        self._url = url
        self._masked = masked_token

    def compose(self) -> ComposeResult:
        with Vertical(id="remove-box", classes="dialog"):
            yield Static("Remove session", classes="dialog-title")
            with Horizontal(classes="buttons"):  # docked to the bottom: always on screen
                yield Button("No", id="no", variant="primary")
                yield Button("Yes, remove", id="yes", variant="error")
            yield Static(self.question(), id="question")

    def question(self) -> Text:
        """The dialog's words, as plain text."""
        text = Text()
        text.append("Remove ")
        text.append(self._label, style="bold")
        text.append(" from the config?\n")
        text.append(self._url, style="dim")
        text.append("\n\n")
        if self._masked:
            text.append("Its token ")
            text.append(self._masked, style="bold")
            text.append(" is forgotten", style="bold")
            text.append(": to watch it again you need the connect line the notebook printed. ")
        text.append("The run goes on training; its history (curves, past sessions) stays.")
        return text
