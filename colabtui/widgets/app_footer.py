"""The main screen's footer: every binding when the terminal is wide, fewer when it is not.

Hidden bindings still work, and the help screen (``?``) and the command palette list them all.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

HIDDEN_BY_TIER: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"focus_panel(1)", "log_scale", "x_axis", "history", "compare", "output"}),
    frozenset({"focus_panel(1)", "log_scale", "x_axis", "save_all", "add", "remove", "history",
               "compare", "relaunch", "output"}),
)
"""Actions left out of the footer at each width tier (0 wide, 1 compact, 2 narrow)."""


def footer_tier(width: int) -> int:
    """The width tier of a terminal ``width`` cells wide: 0 from 130, 1 from 60, else 2."""
    return 0 if width >= 130 else 1 if width >= 60 else 2


class AppFooter(Footer):
    """A :class:`Footer` that drops the less used keys as the terminal narrows.

    Attributes:
        tier: 0 shows every binding; 1 (compact) drops focus, the chart keys and the history views; 2 (narrow) keeps
            save, stop, help and quit, without the command palette key.
    """

    tier = reactive(0, recompose=True)

    def watch_tier(self, tier: int) -> None:
        self.compact = tier > 0
        self.show_command_palette = tier < 2

    def compose(self) -> ComposeResult:
        hidden = HIDDEN_BY_TIER[min(self.tier, len(HIDDEN_BY_TIER) - 1)]
        for widget in super().compose():
            if isinstance(widget, FooterKey) and widget.action in hidden:
                continue
            yield widget
