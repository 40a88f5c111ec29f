"""The History screen (key ``h``): every session the ledger recorded, and for the run of the
highlighted row its GPU types ranked by median steps/s (see :mod:`colabtui.history`).

Rows are read in pages on a worker thread, the next page when the cursor nears the end, so a
history of thousands of sessions opens at once. Every cell is a :class:`rich.text.Text`: text
from sessions (labels, GPU names) is shown literally, never parsed as markup.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from colabtui.history import (
    EMPTY,
    FIRST,
    GPU_COLUMNS,
    SESSION_COLUMNS,
    Cursor,
    SessionHistory,
    gpu_cells,
    gpu_summary,
    history_page,
    iter_history,
    session_cells,
)
from colabtui.ledger import Ledger

PAGE_SIZE = 200
"""Rows read at a time."""

LOAD_AHEAD = 40
"""The next page is read when the cursor is this many rows from the end."""

ENDED_STYLE = {"lost": "bold red", "failed": "red", "interrupted": "yellow",
               "running": "green", "finished": "", "stopped": ""}


class HistoryScreen(Screen[None]):
    """Every recorded session, one row each, and the highlighted run's GPU ranking.

    Args:
        ledger: the history file, or ``None`` when it could not be opened.
        clock: local Unix time, seconds (decides "lost" and "running").
        why_off: what to say when ``ledger`` is ``None``.
    """

    DEFAULT_CSS = """
    HistoryScreen { layout: vertical; }
    HistoryScreen #history-title { height: 1; padding: 0 1; text-style: bold; }
    HistoryScreen #history-sessions { height: 1fr; }
    HistoryScreen #history-gpu-title { height: 1; padding: 0 1; margin-top: 1;
                                       text-style: bold; }
    HistoryScreen #history-gpus { height: auto; max-height: 8; }
    HistoryScreen #history-empty { padding: 1 2; }
    """

    BINDINGS = [Binding("escape,h,q", "close", "Close")]

    def __init__(self, ledger: Ledger | None, clock: Callable[[], float], *,
                 why_off: str = "history is off") -> None:
        super().__init__()
        self.ledger = ledger
        self.clock = clock
        self.why_off = why_off
        self._next: Cursor | None = FIRST
        self._loading = False
        self._summary_run: str | None = None
        self._runs: dict[str, str] = {}  # row key → run
        self.rows = 0

    def compose(self) -> ComposeResult:
        yield Static("History", id="history-title")
        table = DataTable(id="history-sessions", cursor_type="row", zebra_stripes=True)
        table.add_columns("RUN", *SESSION_COLUMNS)
        yield table
        yield Static("", id="history-gpu-title")
        gpus = DataTable(id="history-gpus", cursor_type="none", show_cursor=False)
        gpus.add_columns(*GPU_COLUMNS)
        yield gpus
        yield Static(Text(EMPTY), id="history-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#history-empty").display = False
        if self.ledger is None:
            self._show_empty(self.why_off)
            return
        self._load_page()

    def _show_empty(self, words: str) -> None:
        for wid in ("#history-sessions", "#history-gpu-title", "#history-gpus"):
            self.query_one(wid).display = False
        empty = self.query_one("#history-empty", Static)
        empty.update(Text(words))
        empty.display = True

    # ----------------------------------------------------------------- pages

    def _load_page(self) -> None:
        if self._loading or self._next is None:
            return
        self._loading = True
        self._read_page(self._next)

    @work(thread=True, group="history-page", exit_on_error=False)
    def _read_page(self, after: Cursor) -> None:
        rows, following = history_page(self.ledger, after=after, limit=PAGE_SIZE,
                                       now=self.clock())
        self.app.call_from_thread(self._add_page, rows, following)

    def _add_page(self, rows: list[SessionHistory], following: Cursor | None) -> None:
        self._loading = False
        self._next = following
        table = self.query_one("#history-sessions", DataTable)
        for row in rows:
            cells = [Text(c) for c in [row.run, *session_cells(row)]]
            cells[6].stylize(ENDED_STYLE.get(row.ended, ""))
            key = table.add_row(*cells, key=row.session_id)
            self._runs[key.value] = row.run
        self.rows = table.row_count
        more = "+" if following is not None else ""
        title = f"History — {self.rows:,}{more} sessions" if self.rows else "History"
        self.query_one("#history-title", Static).update(Text(title))
        if not self.rows:
            self._show_empty(f"{EMPTY} (the app records every session it polls)")
            return
        if self._summary_run is None:
            self._show_summary(rows[0].run)

    @on(DataTable.RowHighlighted, "#history-sessions")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if event.cursor_row >= table.row_count - LOAD_AHEAD:
            self._load_page()
        run = self._runs.get(event.row_key.value) if event.row_key is not None else None
        if run is not None and run != self._summary_run:
            self._show_summary(run)

    # ----------------------------------------------------------------- the GPU ranking

    def _show_summary(self, run: str) -> None:
        self._summary_run = run
        self._read_summary(run)

    @work(thread=True, exclusive=True, group="history-summary", exit_on_error=False)
    def _read_summary(self, run: str) -> None:
        summary = gpu_summary(iter_history(self.ledger, run=run, now=self.clock()))
        self.app.call_from_thread(self._set_summary, run, summary)

    def _set_summary(self, run: str, summary) -> None:
        if run != self._summary_run:
            return
        self.query_one("#history-gpu-title", Static).update(
            Text(f"{run}: GPUs by median steps/s"))
        gpus = self.query_one("#history-gpus", DataTable)
        gpus.clear()
        for s in summary:
            gpus.add_row(*[Text(c) for c in gpu_cells(s)])

    def action_close(self) -> None:
        self.dismiss(None)
