"""The history of sessions, from the ledger: one row per session of each run, and per run a
summary by GPU type (a ranking of GPUs measured on the user's own runs). No UI here: the
``colabtui history`` command (:mod:`colabtui.cli_history`) and the History screen
(:mod:`colabtui.screens.history`) both read it.

Rows come in pages (keyset pagination on run, start, id: each page is one indexed query of at
most ``page_size`` rows), so thousands of sessions stream without being held in memory.

How a session ended: what the ledger recorded (finished, stopped, failed, lost), else its last
state if it ended (``interrupted`` included); a session last seen training is ``lost`` once a
later session of the same run started or it has not been seen for :data:`LOST_AFTER_S`, else
``running``. Median steps/s: see :mod:`colabtui.ledger_history`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from colabtui_remote import wire

from colabtui.formatting import fmt_duration, short_count
from colabtui.ledger import Ledger
from colabtui.ledger_history import median_rate

LOST_AFTER_S = 600.0
"""A session last seen training and not seen for this long (seconds) counts as lost."""

HOW_ENDED = ("finished", "stopped", "lost", "failed", "interrupted", "running")
"""Every value of :attr:`SessionHistory.ended`."""

EMPTY = "no sessions recorded yet"
"""What an empty history says."""

NA = "-"

_START = "COALESCE(s.started_at, s.first_seen, 0)"
_PAGE = f"""
SELECT s.id, {_START}, s.run, s.session_id, s.label, s.platform, s.gpu, s.started_at,
       s.first_seen, s.last_seen, s.state, s.step, s.ended,
       CASE WHEN s.first_step IS NULL OR s.min_step < s.first_step THEN s.min_step
            ELSE s.first_step END,
       s.uptime_s, s.server_time, s.checkpoints, s.durable_step, s.durable_at,
       EXISTS (SELECT 1 FROM sessions t WHERE t.run = s.run
               AND COALESCE(t.started_at, t.first_seen, 0) > {_START})
FROM sessions s
WHERE (s.run, {_START}, s.id) > (?, ?, ?) {{run}}
ORDER BY s.run, {_START}, s.id LIMIT ?
"""


@dataclass(frozen=True)
class SessionHistory:
    """One session in the history. Text is cleaned (control characters shown as symbols).

    Attributes:
        run: its run.
        session_id: its id.
        label: its label, or ``None``.
        platform: the runtime's platform (``colab``, ``kaggle``, ``other``), or ``None`` when
            the session never said (an older colabtui_remote).
        gpu: its GPU name (``"2× Tesla T4"`` for several alike), or ``None``.
        started_at: when it started, Unix seconds (its own clock; else when first seen).
        lifetime_s: how long it lived, seconds: its uptime at its last status, else last
            minus first sighting; ``None`` when unknown.
        ended: how it ended, one of :data:`HOW_ENDED`.
        steps: steps done in it (its last step minus its first), or ``None``.
        median_steps_per_s: the median of the throughput its statuses reported, steps/s.
        checkpoints: checkpoints it wrote, as the polls saw them.
        lost_steps: for a lost session, steps after its last durable checkpoint (verified on
            the replica when it has one), else ``None``.
        lost_s: for a lost session, seconds of training after that checkpoint (its clock;
            else ``lost_steps`` at its median throughput), else ``None``.
    """

    run: str
    session_id: str
    label: str | None
    platform: str | None
    gpu: str | None
    started_at: float | None
    lifetime_s: float | None
    ended: str
    steps: int | None
    median_steps_per_s: float | None
    checkpoints: int
    lost_steps: int | None = None
    lost_s: float | None = None


@dataclass(frozen=True)
class GpuSummary:
    """One GPU type of a run.

    Attributes:
        gpu: its name (``"-"`` when not known).
        sessions: sessions on it.
        median_steps_per_s: the median of their median throughputs, steps/s (each session
            counts once), or ``None``.
        median_lifetime_s: the median lifetime of those that ended, seconds, or ``None``.
    """

    gpu: str
    sessions: int
    median_steps_per_s: float | None
    median_lifetime_s: float | None


def how_it_ended(ended: str | None, state: str | None, last_seen: float | None, later: bool,
                 now: float) -> str:
    """One of :data:`HOW_ENDED`, by the rule in the module docstring (``now``, ``last_seen``:
    local Unix seconds)."""
    if ended in ("finished", "stopped", "failed", "lost"):
        return ended
    if state in ("finished", "stopped", "failed", "interrupted"):
        return state
    if later or (last_seen is not None and now - last_seen > LOST_AFTER_S):
        return "lost"
    return "running"


def _row(r: tuple, rates: dict[str, list[tuple[int, int]]], now: float) -> SessionHistory:
    (_id, _k, run, sid, label, platform, gpu, started_at, first_seen, last_seen, state, step,
     ended, first_step, uptime_s, server_time, ckpts, durable_step, durable_at, later) = r
    how = how_it_ended(ended, state, last_seen, bool(later), now)
    lifetime = uptime_s
    if lifetime is None and first_seen is not None and last_seen is not None:
        lifetime = max(0.0, last_seen - first_seen)
    start = first_step if first_step is not None else step
    steps = None if step is None or start is None else max(0, step - start)
    rate = median_rate(rates.get(sid, []))
    lost_steps = lost_s = None
    if how == "lost" and step is not None:
        base = durable_step if durable_step is not None else start
        lost_steps = max(0, step - base) if base is not None else None
        since = [t for t in (durable_at if durable_step is not None else None, started_at)
                 if t is not None]
        if server_time is not None and since:
            lost_s = max(0.0, server_time - max(since))
        elif lost_steps is not None and rate:
            lost_s = lost_steps / rate
    clean = wire.clean_text
    return SessionHistory(
        run=clean(run), session_id=clean(sid), label=None if label is None else clean(label),
        platform=None if platform is None else clean(platform),
        gpu=None if gpu is None else clean(gpu), started_at=started_at or first_seen,
        lifetime_s=lifetime, ended=how, steps=steps, median_steps_per_s=rate,
        checkpoints=ckpts or 0, lost_steps=lost_steps, lost_s=lost_s)


Cursor = tuple[str, float, int]
"""Where a page ends: (run, start, id); :data:`FIRST` is before the first row."""

FIRST: Cursor = ("", -math.inf, -1)


def history_page(ledger: Ledger, *, run: str | None = None, after: Cursor = FIRST,
                 limit: int = 500, now: float | None = None
                 ) -> tuple[list[SessionHistory], Cursor | None]:
    """One page of the history: sessions ordered by run, then start.

    Args:
        ledger: the history file.
        run: only this run's sessions (``None``: every run).
        after: the cursor the previous page returned (:data:`FIRST` for the first page).
        limit: at most this many rows.
        now: local Unix time, seconds (default: the clock), for "lost" and "running".

    Returns:
        The rows, and the cursor of the next page (``None`` after the last page).
    """
    now = time.time() if now is None else now
    sql = _PAGE.format(run="AND s.run = ?" if run is not None else "")
    params: tuple = (*after, *((run,) if run is not None else ()), max(1, limit))
    raw = ledger.query(sql, params)
    if not raw:
        return [], None
    ids = [r[3] for r in raw]
    rates: dict[str, list[tuple[int, int]]] = {}
    marks = ",".join("?" * len(ids))
    for sid, bucket, n in ledger.query(
            f"SELECT session_id, bucket, n FROM session_rates WHERE session_id IN ({marks})",
            tuple(ids)):
        rates.setdefault(sid, []).append((bucket, n))
    rows = [_row(r, rates, now) for r in raw]
    last = raw[-1]
    return rows, ((last[2], last[1], last[0]) if len(raw) >= limit else None)


def iter_history(ledger: Ledger, *, run: str | None = None, page_size: int = 500,
                 now: float | None = None) -> Iterator[SessionHistory]:
    """Every session of the history (or of ``run``), page by page (see :func:`history_page`)."""
    after: Cursor | None = FIRST
    while after is not None:
        rows, after = history_page(ledger, run=run, after=after, limit=page_size, now=now)
        yield from rows


class GpuRanking:
    """Builds a run's :class:`GpuSummary` list from its sessions, one :meth:`add` at a time."""

    def __init__(self) -> None:
        self._rates: dict[str, list[float]] = {}
        self._lives: dict[str, list[float]] = {}
        self._count: dict[str, int] = {}

    def add(self, row: SessionHistory) -> None:
        gpu = row.gpu or NA
        self._count[gpu] = self._count.get(gpu, 0) + 1
        if row.median_steps_per_s is not None:
            self._rates.setdefault(gpu, []).append(row.median_steps_per_s)
        if row.lifetime_s is not None and row.ended != "running":
            self._lives.setdefault(gpu, []).append(row.lifetime_s)

    def result(self) -> list[GpuSummary]:
        """Fastest first (median steps/s), unknown throughput last."""
        out = [GpuSummary(gpu, n,
                          statistics.median(self._rates[gpu]) if gpu in self._rates else None,
                          statistics.median(self._lives[gpu]) if gpu in self._lives else None)
               for gpu, n in self._count.items()]
        out.sort(key=lambda s: (s.median_steps_per_s is None, -(s.median_steps_per_s or 0),
                                s.gpu))
        return out


def gpu_summary(rows: Iterable[SessionHistory]) -> list[GpuSummary]:
    """The summary by GPU type of ``rows`` (one run's sessions), fastest first."""
    ranking = GpuRanking()
    for row in rows:
        ranking.add(row)
    return ranking.result()


# --------------------------------------------------------------------------- words


SESSION_COLUMNS = ("SESSION", "PLATFORM", "GPU", "STARTED", "LIFETIME", "ENDED", "STEPS",
                   "STEPS/S", "CKPTS", "WORK LOST")
GPU_COLUMNS = ("GPU", "SESSIONS", "MEDIAN STEPS/S", "MEDIAN LIFETIME")


def fmt_started(t: float | None) -> str:
    """A start time, local: ``"2025-10-09 08:53"``."""
    if t is None or not math.isfinite(t):
        return NA
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def fmt_steps_per_s(rate: float | None) -> str:
    """A throughput, steps/s, in three significant digits."""
    return NA if rate is None else f"{rate:.3g}"


def fmt_lost(row: SessionHistory) -> str:
    """``"1.2k steps, 14m"`` for a lost session, else ``"-"``."""
    if row.ended != "lost" or row.lost_steps is None:
        return NA
    words = f"{short_count(row.lost_steps)} steps"
    return words + (f", {fmt_duration(row.lost_s)}" if row.lost_s is not None else "")


def session_cells(row: SessionHistory) -> list[str]:
    """The row's cells, in :data:`SESSION_COLUMNS` order (plain text, never markup)."""
    return [row.label or row.session_id, row.platform or NA, row.gpu or NA,
            fmt_started(row.started_at),
            NA if row.lifetime_s is None else fmt_duration(row.lifetime_s), row.ended,
            NA if row.steps is None else f"{row.steps:,}", fmt_steps_per_s(row.median_steps_per_s),
            str(row.checkpoints), fmt_lost(row)]


def gpu_cells(s: GpuSummary) -> list[str]:
    """The summary's cells, in :data:`GPU_COLUMNS` order."""
    return [s.gpu, str(s.sessions), fmt_steps_per_s(s.median_steps_per_s),
            NA if s.median_lifetime_s is None else fmt_duration(s.median_lifetime_s)]


def session_json(row: SessionHistory) -> dict:
    """The row as JSON (times in Unix seconds, durations in seconds)."""
    return {"session_id": row.session_id, "label": row.label, "platform": row.platform,
            "gpu": row.gpu, "started_at": row.started_at, "lifetime_s": row.lifetime_s,
            "ended": row.ended, "steps": row.steps,
            "median_steps_per_s": row.median_steps_per_s, "checkpoints": row.checkpoints,
            "lost_steps": row.lost_steps, "lost_s": row.lost_s}


def gpu_json(s: GpuSummary) -> dict:
    """The summary as JSON (seconds, steps/s)."""
    return {"gpu": s.gpu, "sessions": s.sessions, "median_steps_per_s": s.median_steps_per_s,
            "median_lifetime_s": s.median_lifetime_s}
