"""A braille canvas: polylines drawn at 2×4 dots a cell, with text and markers on top, turned
into Textual :class:`~textual.strip.Strip` rows.

A cell is one character of the Unicode Braille Patterns block (U+2800–U+28FF): the pattern's
eight bits are its eight dots (Unicode's dot numbering, :data:`DOT_BITS`). Where several lines
pass through a cell their dots are merged and the cell takes the colour of the line drawn last.

Coordinates are in dots, x to the right and y *down*, both from 0 at the top-left dot; what
falls outside the canvas is clipped. Everything is NumPy: a 1,000-point line costs about as
much as a 10-point one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

BRAILLE_BASE = 0x2800
"""U+2800 BRAILLE PATTERN BLANK: the pattern with no dot raised."""

DOT_BITS = np.array([[0x01, 0x08],
                     [0x02, 0x10],
                     [0x04, 0x20],
                     [0x40, 0x80]], dtype=np.uint8)
"""The bit of each dot, indexed ``[row][column]`` inside a cell (rows 0–3 top to bottom,
columns 0–1): dots 1, 2, 3, 7 down the left, 4, 5, 6, 8 down the right (Unicode 3.0, ch. 'Braille
Patterns')."""

MAX_DOT_SPAN = 1 << 20
"""Dot coordinates are clipped to ±this before rasterising, so a point far off the canvas (a
value past 1e308 scaled to dots) costs no memory and no overflow."""


class BrailleCanvas:
    """``width`` × ``height`` cells (so ``2·width`` × ``4·height`` dots) of lines and text.

    Styles are Rich styles, given per call; a cell with nothing drawn in it is a space in the
    base style of :meth:`to_strips`.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = max(0, width), max(0, height)
        self._dots = np.zeros((self.height, self.width), dtype=np.uint8)
        self._dot_style = np.zeros((self.height, self.width), dtype=np.int16)
        self._chars: dict[tuple[int, int], tuple[str, int]] = {}
        self._styles: list[Style | None] = [None]
        self._style_index: dict[str | Style, int] = {}

    def _style(self, style: str | Style | None) -> int:
        if style is None:
            return 0
        index = self._style_index.get(style)
        if index is None:
            index = len(self._styles)
            self._styles.append(Style.parse(style) if isinstance(style, str) else style)
            self._style_index[style] = index
        return index

    def line(self, xs: Sequence[float] | np.ndarray, ys: Sequence[float] | np.ndarray,
             style: str | Style | None = None) -> None:
        """Draw the polyline through the points ``(xs[i], ys[i])``, in dots (floats allowed;
        each is rounded to the nearest dot). One point draws one dot; non-finite points are
        left out (the line goes on from the next finite one).

        Args:
            xs, ys: shape (n,), x and y of each point in dots, y down.
            style: the line's Rich style (its colour).
        """
        x = np.asarray(xs, dtype=np.float64)
        y = np.asarray(ys, dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if not len(x) or not self.width or not self.height:
            return
        # clipping before rasterising bounds the dots drawn by the canvas, not by the data
        x = np.clip(x, -2.0, 2.0 * self.width + 1)
        y = np.clip(y, -4.0, 4.0 * self.height + 3)
        if len(x) > 1:
            dx, dy = np.diff(x), np.diff(y)
            steps = np.maximum(np.ceil(np.maximum(np.abs(dx), np.abs(dy))), 1).astype(np.int64)
            seg = np.repeat(np.arange(len(dx)), steps)
            first = np.repeat(np.cumsum(steps) - steps, steps)
            t = (np.arange(int(steps.sum())) - first) / steps[seg]
            x = np.r_[x[seg] + dx[seg] * t, x[-1]]
            y = np.r_[y[seg] + dy[seg] * t, y[-1]]
        self._dots_at(np.rint(x).astype(np.int64), np.rint(y).astype(np.int64),
                      self._style(style))

    def _dots_at(self, ix: np.ndarray, iy: np.ndarray, style: int) -> None:
        inside = (ix >= 0) & (ix < 2 * self.width) & (iy >= 0) & (iy < 4 * self.height)
        ix, iy = ix[inside], iy[inside]
        rows, cols = iy // 4, ix // 2
        np.bitwise_or.at(self._dots, (rows, cols), DOT_BITS[iy % 4, ix % 2])
        self._dot_style[rows, cols] = style

    def text(self, row: int, column: int, text: str, style: str | Style | None = None) -> None:
        """Write ``text`` (one cell a character; plain text, never markup) from cell
        ``(row, column)`` rightwards, over any dots; what falls outside is clipped."""
        if not 0 <= row < self.height:
            return
        index = self._style(style)
        for offset, char in enumerate(text):
            col = column + offset
            if 0 <= col < self.width:
                self._chars[row, col] = (char, index)

    def to_strips(self, base: Style) -> list[Strip]:
        """The canvas as one :class:`Strip` a row, each exactly ``width`` cells wide.

        Args:
            base: the style under everything (the widget's own colours); every segment gets a
                style, so filters that read each segment's colour (``NO_COLOR``) never see None.
        """
        styles = [base if s is None else base + s for s in self._styles]
        chars = np.where(self._dots > 0, self._dots.astype(np.int64) + BRAILLE_BASE, 0x20)
        style_of = np.where(self._dots > 0, self._dot_style, 0)
        for (row, col), (char, index) in self._chars.items():
            chars[row, col] = ord(char)
            style_of[row, col] = index
        # the whole grid decoded at once; each row a slice of it
        grid = chars.astype("<u4").tobytes().decode("utf-32-le")
        cuts_at = style_of[:, 1:] != style_of[:, :-1]
        strips = []
        width = self.width
        for row in range(self.height):
            line = grid[row * width:(row + 1) * width]
            cuts = (np.flatnonzero(cuts_at[row]) + 1).tolist()
            row_styles = style_of[row]
            strips.append(Strip([Segment(line[a:b], styles[row_styles[a]])
                                 for a, b in zip([0, *cuts], [*cuts, width], strict=True)],
                                width))
        return strips
