"""The base of the app's dialogs: they fit small terminals, and ``q`` closes them.

In a terminal under 24 rows or 60 columns (an 80x24 split, a 40x12 pane) a dialog loses its
padding and its buttons turn one row high, and the buttons are docked to the dialog's bottom,
so they stay on screen even when the text has to be cut.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual import events, on
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Button

ResultType = TypeVar("ResultType")

SMALL_BELOW = (60, 24)
"""(columns, rows): a terminal narrower or shorter than this gets the small dialog form."""


class DialogScreen(ModalScreen[ResultType]):
    """A modal dialog that :meth:`close` ends with its "cancel" answer.

    Subclasses define :meth:`close`; ``escape`` and ``q`` call it (``q`` does not quit the
    app from inside a dialog). In a text field ``q`` is typed as usual.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", show=True),
    ]

    def close(self) -> None:
        """Dismiss with the answer that changes nothing."""
        self.dismiss()

    def action_close(self) -> None:
        self.close()

    def on_resize(self, event: events.Resize) -> None:
        width, height = event.size
        small = width < SMALL_BELOW[0] or height < SMALL_BELOW[1]
        self.set_class(small, "-small")
        for button in self.query(Button):
            button.compact = small


class ConfirmScreen(DialogScreen[bool]):
    """A yes/no question that dismisses with ``True`` only when the user chooses Yes: No is
    the default (the ``#no`` button is focused; Escape, ``n`` and ``q`` answer No). Subclasses
    compose the text and a ``#no`` and a ``#yes`` button."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n,q", "answer(False)", "No", show=True),
        Binding("y", "answer(True)", "Yes", show=True),
    ]

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def close(self) -> None:
        self.dismiss(False)
