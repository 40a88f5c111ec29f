"""The app's views of its curves and history: the main screen's chart settings (log scale,
x by step or wall time) and the History (``h``) and Compare (``c``) screens.

A mixin of :class:`colabtui.app.ColabTuiApp` (it uses the app's ``panels``, ``toast``,
``ledger``, ``clock`` and ``_allowed``; not imported here: the app imports this).
"""

from __future__ import annotations

from typing import Any

from colabtui.screens.compare import CompareScreen
from colabtui.screens.help import HelpScreen
from colabtui.screens.history import HistoryScreen

VIEW_SCREENS = (HistoryScreen, CompareScreen)
"""Full screens over the panels: the panels' keys wait until they close."""


class AppViews:
    """Chart settings and the history views, for the app."""

    log_scale: bool
    x_axis: str

    def action_log_scale(self: Any) -> None:
        """Toggle the log scale of every loss chart."""
        self.log_scale = not self.log_scale
        for panel in self.panels:
            panel.set_log_scale(self.log_scale)
        self.toast("app", "log_scale", f"log scale {'on' if self.log_scale else 'off'}",
                   timeout=2)

    def action_x_axis(self: Any) -> None:
        """Draw every loss chart by step or by wall time (since its first point)."""
        self.x_axis = "time" if self.x_axis == "step" else "step"
        for panel in self.panels:
            panel.set_x_axis(self.x_axis)
        self.toast("app", "x_axis", f"x by {'wall time' if self.x_axis == 'time' else 'step'}",
                   timeout=2)

    def action_help(self: Any) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_history(self: Any) -> None:
        """Open the History screen: every recorded session, GPUs ranked per run."""
        if self._allowed("history", self.screen):
            self.push_screen(HistoryScreen(self.ledger, self.clock,
                                           why_off=self.ledger_error or "history is off"))

    def action_compare(self: Any) -> None:
        """Open the Compare screen: one metric of the runs ticked, on one chart."""
        if self._allowed("compare", self.screen):
            self.push_screen(CompareScreen(self.ledger,
                                           why_off=self.ledger_error or "history is off",
                                           log_scale=self.log_scale, x_axis=self.x_axis))
