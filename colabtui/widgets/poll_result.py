"""One poll's result as the panel applies it (:class:`PollResult`), and the rules around it:
when to poll next (:func:`poll_delay`), merging results that queued up (:func:`merge_results`),
and whether a result changes what is shown (:func:`result_news`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from colabtui_remote.schema import MetricPoint, Status
from textual.message import Message

from colabtui.client import SessionError
from colabtui.curves import ResumeMark

__all__ = ["IDLE_AFTER_POLLS", "IDLE_GROWTH", "IDLE_MAX_S", "PollResult", "merge_results",
           "poll_delay", "result_news", "same_but_clocks"]

IDLE_AFTER_POLLS = 3
"""Polls in a row with nothing new after which the poll interval starts to stretch."""

IDLE_GROWTH = 1.5
"""Factor by which each further poll with nothing new stretches the interval."""

IDLE_MAX_S = 5.0
"""Longest interval between polls of a session with nothing new, seconds (a stalled or
finished run is noticed within this; any key that acts on it polls at once)."""


@dataclass
class PollResult(Message):
    """One poll of one session, applied as a whole.

    Attributes:
        key: the panel's session key.
        at: local time the poll ended (the app's clock), seconds.
        status: the status, or ``None`` when the session could not be asked.
        new_points: points logged since the previous poll, by series.
        history: when set, the run's whole curve (from the ledger) replacing what is shown.
        resumes: with ``history``, where each later session of the run took over its curve.
        error: why the poll failed (with ``status`` still set when only metrics failed).
        note: a remark beside the connection state (history writes wait for a locked file).
    """

    key: str
    at: float
    status: Status | None = None
    new_points: dict[str, list[MetricPoint]] = field(default_factory=dict)
    history: dict[str, list[MetricPoint]] | None = None
    resumes: tuple[ResumeMark, ...] = ()
    error: SessionError | None = None
    note: str | None = None


def poll_delay(interval_s: float, failures: int, quiet: int, backoff_max_s: float) -> float:
    """Seconds until the next poll.

    Args:
        interval_s: the configured poll interval, seconds.
        failures: polls that failed in a row (the delay doubles each, up to ``backoff_max_s``).
        quiet: polls in a row that answered with nothing new: from :data:`IDLE_AFTER_POLLS`
            on, the delay grows by :data:`IDLE_GROWTH` each, up to :data:`IDLE_MAX_S` (never
            below ``interval_s``).
        backoff_max_s: longest delay while failing, seconds.
    """
    if failures:
        return min(backoff_max_s, interval_s * 2 ** min(failures - 1, 16))
    if quiet >= IDLE_AFTER_POLLS:
        stretched = interval_s * IDLE_GROWTH ** min(quiet - IDLE_AFTER_POLLS + 1, 32)
        return min(max(interval_s, IDLE_MAX_S), stretched)
    return interval_s


def merge_results(old: PollResult, new: PollResult) -> PollResult:
    """One result with the effect of applying ``old`` then ``new``.

    Only for results of one connection state with a status each, or with none each (the
    panel applies the others at once): ``new``'s status, time and error win; points are
    concatenated per series, a repeated step (a resume) replacing the earlier ones.

    Raises:
        ValueError: when the two cannot be merged (different keys, a history, or only
            ``old`` has a status).
    """
    if (old.key != new.key or old.history is not None or new.history is not None
            or (old.status is not None and new.status is None)):
        raise ValueError(f"cannot merge poll results of {old.key!r} and {new.key!r}")
    points = {name: list(pts) for name, pts in old.new_points.items()}
    for name, pts in new.new_points.items():
        if not pts:
            continue
        current = points.setdefault(name, [])
        while current and current[-1].step >= pts[0].step:
            current.pop()
        current.extend(pts)
    return dataclasses.replace(new, new_points=points)


def result_news(result: PollResult, status: Status | None, conn_kind: str,
                conn_message: str) -> bool:
    """Whether ``result`` brings news against a panel showing ``status`` in ``conn_kind``:
    points, another connection state or error, or a status that differs in more than the
    session's clock fields."""
    news = bool(result.new_points) or result.history is not None
    news = news or (result.error is None) != (conn_kind == "connected")
    if result.error is not None:
        news = news or (result.error.kind, result.error.message) != (conn_kind, conn_message)
    if result.status is not None:
        news = news or not same_but_clocks(result.status, status)
    return news


def same_but_clocks(a: Status | None, b: Status | None) -> bool:
    """Whether two statuses differ at most in the session's clock fields (``server_time``,
    ``uptime_s``, ``runtime.age_s``), which move with every answer."""
    if a is None or b is None:
        return a is b
    runtime = a.runtime
    if runtime is not None and b.runtime is not None:
        runtime = dataclasses.replace(runtime, age_s=b.runtime.age_s)
    return dataclasses.replace(a, server_time=b.server_time, uptime_s=b.uptime_s,
                               runtime=runtime) == b
