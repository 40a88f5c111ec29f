"""A widget showing one block of rich text that repaints only when that text changes.

The panel's blocks (GPU, progress, checkpoint) are asked to show every poll result and, for
their ages, every second; most of the time the text comes out the same. Repainting it anyway,
with a layout pass, was most of an idle app's CPU. :meth:`TextBlock.sync` builds the text,
compares it with what is on screen, and repaints only on a difference, with a layout pass only
when the number of lines changed (the blocks are ``height: auto``, one row per line).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widget import Widget


def text_key(text: Text) -> tuple[object, ...]:
    """What makes two texts look the same: characters, spans and base style.

    (``Text.__eq__`` ignores the base style, so a dimmed and a plain line would compare equal.)
    """
    return text.plain, tuple(text.spans), str(text.style)


class TextBlock(Widget):
    """Base of the panel's text blocks.

    Args:
        build: returns the text to show now, for the current width (``self.size.width``,
            in cells); called on every :meth:`sync` and render.
        id: the widget id.
    """

    def __init__(self, build: Callable[[], Text], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._build = build
        self._shown: tuple[object, ...] | None = None
        self._lines: int | None = None
        self._synced: tuple[int, Text] | None = None  # (width, text) built by the last sync

    def render(self) -> Text:
        width = self.size.width
        if self._synced is not None and self._synced[0] == width:
            text = self._synced[1]  # built by the sync that asked for this paint
        else:
            text = self._build()
        self._synced = None
        self._shown, self._lines = text_key(text), text.plain.count("\n") + 1
        return text

    def sync(self) -> bool:
        """Repaint if the text changed since it was last drawn; ``True`` when it did.

        A layout pass is asked for only when the number of lines changed.
        """
        text = self._build()
        key = text_key(text)
        if key == self._shown:
            return False
        lines = text.plain.count("\n") + 1
        self.refresh(layout=lines != self._lines)
        self._shown, self._lines = key, lines
        self._synced = (self.size.width, text)
        return True
