"""The Compare screen (key ``c``): one metric of the runs the user picks, overlaid on one
braille chart, by step or by wall time (``t``), on a log scale or not (``l``).

The list of runs and each chart's points are read from the ledger on a worker thread
(:mod:`colabtui.curves`), so a long history never holds up the UI. Runs are listed last seen
first; the newest :data:`PRESELECTED` are ticked when the screen opens. Each run keeps its own
colour for as long as it stays ticked. Run and series names come from sessions: they are shown
as plain :class:`rich.text.Text`, never parsed as markup.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from colabtui.curves import RunChoice, compare_metric, load_metric, run_choices
from colabtui.formatting import short_count
from colabtui.ledger import Ledger
from colabtui.widgets.chart_data import COMPARE_STYLES, ChartLine
from colabtui.widgets.loss_chart import LossChart

PRESELECTED = 3
"""Runs ticked when the screen opens: the newest, as many as a paid plan runs at once."""

EMPTY = "no runs recorded yet: the app records the curves of every session it polls"


class CompareScreen(Screen[None]):
    """One metric of several runs on one chart.

    Args:
        ledger: the history file, or ``None`` when it could not be opened.
        why_off: what to say when ``ledger`` is ``None``.
        log_scale, x_axis: how the chart starts (the main screen's settings).
    """

    DEFAULT_CSS = """
    CompareScreen { layout: vertical; }
    CompareScreen #compare-title { height: 1; padding: 0 1; text-style: bold; }
    CompareScreen #compare-body { height: 1fr; }
    CompareScreen #compare-side { width: 34; }
    CompareScreen #compare-runs { height: 1fr; }
    CompareScreen #compare-metric { width: 100%; }
    CompareScreen #compare-chart { width: 1fr; padding: 0 1; }
    CompareScreen #compare-empty { padding: 1 2; }
    """

    BINDINGS = [
        Binding("escape,c,q", "close", "Close"),
        Binding("t", "x_axis", "Step/time"),
        Binding("l", "log_scale", "Log"),
    ]

    def __init__(self, ledger: Ledger | None, *, why_off: str = "history is off",
                 log_scale: bool = False, x_axis: str = "step") -> None:
        super().__init__()
        self.ledger = ledger
        self.why_off = why_off
        self._log_scale = log_scale
        self._x_axis = x_axis
        self.choices: dict[str, RunChoice] = {}
        self.metric: str | None = None
        self._colours: dict[str, str] = {}  # run → its colour while ticked
        self._asked = 0  # the newest chart read asked for; older answers are dropped

    def compose(self) -> ComposeResult:
        yield Static("Compare runs", id="compare-title")
        with Horizontal(id="compare-body"):
            with Vertical(id="compare-side"):
                yield Select[str]([], prompt="metric", allow_blank=True, id="compare-metric")
                yield SelectionList[str](id="compare-runs")
            chart = LossChart(id="compare-chart", empty_text="tick runs to compare (space)")
            chart.log_scale = self._log_scale
            chart.x_axis = self._x_axis
            yield chart
        yield Static(Text(EMPTY), id="compare-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-empty").display = False
        if self.ledger is None:
            self._show_empty(self.why_off)
            return
        self._read_choices()

    def _show_empty(self, words: str) -> None:
        self.query_one("#compare-body").display = False
        empty = self.query_one("#compare-empty", Static)
        empty.update(Text(words))
        empty.display = True

    # ----------------------------------------------------------------- the runs

    @work(thread=True, group="compare-runs", exit_on_error=False)
    def _read_choices(self) -> None:
        choices = run_choices(self.ledger)
        self.app.call_from_thread(self._show_choices, choices)

    def _show_choices(self, choices: list[RunChoice]) -> None:
        if not choices:
            self._show_empty(EMPTY)
            return
        self.choices = {c.run: c for c in choices}
        runs = self.query_one("#compare-runs", SelectionList)
        runs.add_options([Selection(self._run_label(c), c.run, i < PRESELECTED)
                          for i, c in enumerate(choices)])
        self._set_metrics()
        runs.highlighted = 0
        runs.focus()
        self._redraw()

    @staticmethod
    def _run_label(choice: RunChoice) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(choice.name)  # untrusted: plain text
        detail = f"  {short_count(choice.sessions)} session{'s' * (choice.sessions != 1)}"
        if choice.gpus:
            detail += " · " + ", ".join(choice.gpus)
        text.append(detail, style="dim")
        return text

    @property
    def selected(self) -> list[str]:
        """The ticked runs, in list order."""
        return list(self.query_one("#compare-runs", SelectionList).selected)

    def _set_metrics(self) -> None:
        """Offer the metrics of the ticked runs (every run's when none is ticked), keeping the
        one shown when it is still there."""
        ticked = [self.choices[r] for r in self.selected] or list(self.choices.values())
        names = sorted({n for c in ticked for n in c.series})
        keep = self.metric if self.metric in names else compare_metric(ticked)
        select = self.query_one("#compare-metric", Select)
        with self.prevent(Select.Changed):
            select.set_options([(Text(n), n) for n in names])
            if keep is not None:
                select.value = keep
        self.metric = keep

    @on(SelectionList.SelectedChanged, "#compare-runs")
    def _ticked(self) -> None:
        self._set_metrics()
        self._redraw()

    @on(Select.Changed, "#compare-metric")
    def _metric_changed(self, event: Select.Changed) -> None:
        self.metric = event.value if isinstance(event.value, str) else None
        self._redraw()

    # ----------------------------------------------------------------- the chart

    def _redraw(self) -> None:
        runs = self.selected
        for run in list(self._colours):
            if run not in runs:
                del self._colours[run]
        for run in runs:
            if run not in self._colours:
                free = [c for c in COMPARE_STYLES if c not in self._colours.values()]
                self._colours[run] = free[0] if free else COMPARE_STYLES[len(self._colours)
                                                                         % len(COMPARE_STYLES)]
        self._asked += 1
        self._read_chart(self._asked, runs, self.metric)

    @work(thread=True, exclusive=True, group="compare-chart", exit_on_error=False)
    def _read_chart(self, asked: int, runs: list[str], metric: str | None) -> None:
        points = load_metric(self.ledger, runs, metric) if metric is not None else {}
        self.app.call_from_thread(self._show_chart, asked, runs, metric, points)

    def _show_chart(self, asked: int, runs: list[str], metric: str | None, points) -> None:
        if asked != self._asked:
            return
        lines = [ChartLine(self.choices[run].name, points[run], self._colours[run],
                           origin=min(p.time for p in points[run]))
                 for run in runs if run in points]
        self.query_one(LossChart).set_lines(lines)
        title = Text("Compare runs", style="bold")
        if metric is not None and runs:
            title.append(" — ")
            title.append(metric)  # untrusted: plain text
            title.append(f" of {len(lines)} run{'s' * (len(lines) != 1)}, by "
                         f"{'wall time' if self.query_one(LossChart).x_axis == 'time' else 'step'}",
                         style="dim")
        self.query_one("#compare-title", Static).update(title)

    def action_x_axis(self) -> None:
        chart = self.query_one(LossChart)
        chart.x_axis = "time" if chart.x_axis == "step" else "step"
        self._redraw()

    def action_log_scale(self) -> None:
        chart = self.query_one(LossChart)
        chart.log_scale = not chart.log_scale

    def action_close(self) -> None:
        self.dismiss(None)
