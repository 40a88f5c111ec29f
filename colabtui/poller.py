"""One poll of one session: its status, the metric points logged since the last poll, both
recorded in the ledger. No Textual here: the panel posts what :meth:`Poller.poll` returns.

A poll never raises (but for cancellation): whatever fails on the way (the session's answer,
a parse that blows up, the ledger, a bug) is the outcome's error, with what the poll got before
it, so the panel says so and polls again with back-off. SQLite work runs on a thread, and
writes that find the file locked by another process wait in :class:`QueuedWrites`, so a locked
or huge ledger never stalls the UI nor loses a point.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from colabtui_remote.schema import MetricPoint, Status

from colabtui.client import SessionError
from colabtui.config import SessionConfig
from colabtui.curves import ResumeMark, run_curves
from colabtui.ledger import Ledger
from colabtui.ledger_writes import QueuedWrites
from colabtui.session_client import SessionClient

MAX_PAGES_PER_POLL = 20
"""Metric pages fetched in one poll; the rest follow on the next (keeps a poll short)."""

MAX_ERROR_CHARS = 300
"""Longest description of an internal error, characters."""


def internal_error(stage: str, exc: BaseException) -> SessionError:
    """A :class:`SessionError` of kind ``"internal"`` for an exception raised inside a poll.

    Args:
        stage: what the poll was doing (``"reading the status"``), in words.
        exc: the exception. Its words may quote what a session sent, so characters that are
            not printable (control characters, bidi overrides) are shown escaped (``\\x1b``),
            and the whole is cut to :data:`MAX_ERROR_CHARS`.
    """
    words = f"{stage}: {type(exc).__name__}"
    detail = str(exc)
    if detail:
        words += f": {detail}"
    words = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                    for c in words[:MAX_ERROR_CHARS])
    return SessionError("internal", words[:MAX_ERROR_CHARS])


@dataclass
class PollOutcome:
    """What one poll got.

    Attributes:
        status: the status, or ``None`` when the session could not be asked.
        new_points: points logged since the previous poll, by series.
        history: on a new session, the run's whole curve from the ledger (replacing what is
            shown; ``new_points`` then holds only points the ledger could not take yet).
        resumes: with ``history``, where each later session of the run took over its curve.
        error: why the poll ended early (``status`` and points got before it are kept).
        note: a remark for the panel: history writes wait for a locked ledger file.
        stage: what the poll was doing when it ended, in words.
    """

    status: Status | None = None
    new_points: dict[str, list[MetricPoint]] = field(default_factory=dict)
    history: dict[str, list[MetricPoint]] | None = None
    resumes: tuple[ResumeMark, ...] = ()
    error: SessionError | None = None
    note: str | None = None
    stage: str = "asking for the status"


class Poller:
    """Polls one session and records what it brings. One poll at a time (the panel's poll
    worker is exclusive): the cursor (session id, last sequence number) is its own.

    Args:
        client: the session's client.
        session: the saved session (key, url, label recorded with each status).
        ledger: where statuses and points are recorded; ``None`` keeps no history.
        clock: local Unix time, seconds (the ``last_seen`` recorded).
    """

    def __init__(self, client: SessionClient, session: SessionConfig, ledger: Ledger | None,
                 clock: Callable[[], float]) -> None:
        self.client = client
        self.session = session
        self.ledger = ledger
        self.writes = QueuedWrites(ledger) if ledger is not None else None
        self._clock = clock
        self.session_id: str | None = None
        self.after = 0

    def restart(self) -> None:
        """Forget where the polls are: the next one reads the history from the ledger again
        (after a result could not be shown, so that nothing it brought is missing)."""
        self.session_id = None

    async def poll(self) -> PollOutcome:
        """One poll; never raises :class:`Exception` (see the module docstring)."""
        got = PollOutcome()
        try:
            got.error = await self._poll(got)
        except Exception as exc:  # noqa: BLE001 - anything: an error on the panel, polls go on
            got.error = internal_error(got.stage, exc)
        got.note = self.writes.note if self.writes is not None else None
        return got

    def flush_kept(self) -> bool:
        """Try once more, now, to write what a locked history file kept (the app is quitting).

        Returns:
            Whether nothing is kept any more (``False`` also when the ledger is closed).
        """
        if self.writes is None:
            return True
        try:
            return self.writes.flush()
        except sqlite3.Error:  # closed or broken: nothing more can be done
            return False

    async def _poll(self, got: PollOutcome) -> SessionError | None:
        client, ledger, writes = self.client, self.ledger, self.writes
        if writes is not None and writes.pending:  # even if the session does not answer now
            got.stage = "writing kept points to the history file"
            await asyncio.to_thread(writes.flush)
            got.stage = "asking for the status"
        try:
            status = await client.status()
        except SessionError as exc:
            return exc
        got.status = status
        now = self._clock()
        fresh = status.session_id != self.session_id
        if fresh:  # continue after what the ledger holds (the session id is taken at the end)
            got.stage = "reading the history file"
            self.after = await asyncio.to_thread(writes.last_seq, status.session_id) if writes else 0
        if writes is not None:
            got.stage = "writing the status to the history file"
            await asyncio.to_thread(writes.record_status, self.session.key, self.session.url,
                                    self.session.display_label, status, now)
        error = None
        kept = False  # points of this poll wait for a locked history file
        try:
            for _ in range(MAX_PAGES_PER_POLL):
                if status.last_seq <= self.after or (writes is not None and writes.full):
                    break  # a full queue: the session keeps the points until the file is free
                got.stage = "fetching metrics"
                page = await client.metrics(self.after)
                if writes is not None:
                    got.stage = "writing metrics to the history file"
                    written = await asyncio.to_thread(writes.add_points, status.run,
                                                      status.session_id, page)
                    kept = kept or not written
                for name, pts in page.series.items():
                    got.new_points.setdefault(name, []).extend(pts)
                self.after = max(self.after, page.next_after)
                if not page.more:
                    break
        except SessionError as exc:
            error = exc
        if fresh and ledger is not None:
            got.stage = "reading the history file"
            got.history, got.resumes = await asyncio.to_thread(run_curves, ledger, status.run)
            if not kept:  # the history holds them
                got.new_points = {}
        self.session_id = status.session_id
        return error
