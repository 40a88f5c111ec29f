"""One session's history writes, kept in order while the history file is locked.

Another process may hold the SQLite file's write lock (a second colabtui, a backup, someone's
``sqlite3`` shell) for seconds or minutes. A poll must neither wait for it nor lose what it
fetched: a write that finds the file locked (:class:`~colabtui.ledger.LedgerBusy`) is kept here,
and every later write first retries what is kept, in order (a page's points are stored only
after every earlier page's, since the ledger skips sequence numbers it has passed).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from colabtui_remote import schema

from colabtui.ledger import Ledger, LedgerBusy

MAX_QUEUED_POINTS = 200_000
"""Points kept unwritten before :attr:`QueuedWrites.full` asks the poller to fetch no more
(they wait on the session, which keeps them, until the file is free)."""


class QueuedWrites:
    """The ledger writes of one poller, retried in order while the file is locked.

    Thread-safe: calls take one lock (a poll's thread and the app's last flush at exit may
    meet). Every call first writes what is kept, then its own write; a write that finds the
    file locked is kept, with everything after it.

    Args:
        ledger: the history file.
        max_points: points kept before :attr:`full` turns true.

    Raises (every write method):
        Any error of the ledger other than :class:`~colabtui.ledger.LedgerBusy` (a full disk,
        a value SQLite refuses): the failing write is not kept when it was the new one (the
        caller has not moved past it and makes it again), and stays first in line when it was
        a kept one (so nothing after it is written out of order).
    """

    def __init__(self, ledger: Ledger, *, max_points: int = MAX_QUEUED_POINTS) -> None:
        self.ledger = ledger
        self.max_points = max_points
        self._queue: deque[tuple[str, tuple[Any, ...]]] = deque()
        self.queued_points = 0
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- writes

    def record_status(self, session_key: str, url: str, label: str, status: schema.Status,
                      now: float) -> bool:
        """:meth:`Ledger.record_status`, after what is kept. A status kept for later replaces
        an older kept status of the same session (a row is upserted: the latest wins).

        Returns:
            Whether it was written now (``False``: kept for later).
        """
        args = (session_key, url, label, status, now)
        with self._lock:
            if self._write_after_kept("status", args):
                return True
            self._queue = deque(item for item in self._queue if not (
                item[0] == "status" and item[1][3].session_id == status.session_id))
            self._queue.append(("status", args))
            return False

    def add_points(self, run: str, session_id: str, page: schema.MetricsPage) -> bool:
        """:meth:`Ledger.add_points`, after what is kept.

        Returns:
            Whether it was written now (``False``: kept for later).
        """
        args = (run, session_id, page)
        with self._lock:
            if self._write_after_kept("points", args):
                return True
            self._queue.append(("points", args))
            self.queued_points += _count(page)
            return False

    def flush(self) -> bool:
        """Write what is kept, oldest first, until done or the file is locked.

        Returns:
            Whether nothing is kept any more.
        """
        with self._lock:
            while self._queue:
                kind, args = self._queue[0]
                try:
                    self._write(kind, args)
                except LedgerBusy:
                    return False
                self._queue.popleft()
                if kind == "points":
                    self.queued_points -= _count(args[2])
            return True

    def _write_after_kept(self, kind: str, args: tuple[Any, ...]) -> bool:
        if not self.flush():
            return False
        try:
            self._write(kind, args)
        except LedgerBusy:
            return False
        return True

    def _write(self, kind: str, args: tuple[Any, ...]) -> None:
        if kind == "status":
            self.ledger.record_status(*args)
        else:
            self.ledger.add_points(*args)

    # ----------------------------------------------------------------- reads

    def last_seq(self, session_id: str) -> int:
        """:meth:`Ledger.last_seq`, counting kept pages: where to continue fetching."""
        with self._lock:
            kept = [args[2].next_after for kind, args in self._queue
                    if kind == "points" and args[1] == session_id]
        return max(self.ledger.last_seq(session_id), *kept, 0)

    @property
    def pending(self) -> int:
        """Writes kept for later."""
        return len(self._queue)

    @property
    def full(self) -> bool:
        """Whether :attr:`queued_points` reached ``max_points``: fetch no more until written."""
        return self.queued_points >= self.max_points

    @property
    def note(self) -> str | None:
        """What a panel says while writes are kept (``None`` when none are)."""
        if not self._queue:
            return None
        held = f"{self.queued_points:,} points" if self.queued_points else "the status"
        return f"history file locked: {held} kept, retrying"


def _count(page: schema.MetricsPage) -> int:
    return sum(len(points) for points in page.series.values())
