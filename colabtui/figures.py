"""The figures computed from a session's status: ages, throughput, ETA and work at risk.

One place for the rules, used by the panel's widgets and by ``colabtui status``. Every function
is pure: the caller says what "now" is (local Unix time, seconds) and how far the session's
clock is from ours (``offset`` = local − session clock, seconds), so tests can freeze both. No
Textual and no Rich here (the CLI uses these without the app). A figure that cannot be known
is ``None``, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from colabtui_remote.schema import Status

ENDED_STATES = ("stopped", "finished", "failed", "interrupted")
"""States after which a session trains no more (its server may still answer a while)."""

LIVE_STATES = ("running", "saving", "stopping")
"""States in which a session trains (or is about to save or stop)."""


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


# --------------------------------------------------------------------------- ages


def age_s(then: float | None, now: float, offset: float = 0.0) -> float | None:
    """How long ago ``then`` was.

    Args:
        then: a time on the session's clock, Unix seconds (``None`` when not reported).
        now: local Unix time, seconds.
        offset: local − session clock, seconds (0 when ``then`` is on our clock).

    Returns:
        Seconds, at least 0: a ``then`` after ``now`` (clock skew the offset does not cover)
        is 0.0. ``None`` when ``then`` is ``None`` or an input is not finite.
    """
    if not _finite(then, now, offset):
        return None
    return max(0.0, now - (then + offset))


def until_s(then: float | None, now: float, offset: float = 0.0) -> float | None:
    """How long until ``then`` (the next autosave, the next retry).

    Args:
        then: a time on the session's clock, Unix seconds (``None`` when not reported).
        now: local Unix time, seconds.
        offset: local − session clock, seconds.

    Returns:
        Seconds, at least 0 (0.0 once ``then`` has passed); ``None`` when ``then`` is
        ``None`` or an input is not finite.
    """
    if not _finite(then, now, offset):
        return None
    return max(0.0, then + offset - now)


def clock_offset_s(server_time: float | None, received_at: float, transport: str) -> float | None:
    """Local − session clock, seconds, from a status's ``server_time``.

    Args:
        server_time: the session's clock when it made the status, Unix seconds.
        received_at: local Unix time the status arrived, seconds.
        transport: ``"http"``, ``"mailbox"`` or ``"drive"``.

    Returns:
        The offset over HTTP (the answer is fresh, so the difference is the clocks' skew plus
        the request's latency). ``None`` when the status does not tell: no ``server_time``, or
        a mailbox, whose status may be a file written minutes ago (the difference is mostly its
        age, not skew); the caller keeps its previous offset, or 0.
    """
    if transport != "http" or not _finite(server_time, received_at):
        return None
    return received_at - server_time


# --------------------------------------------------------------------------- progress


def throughput(steps_per_s: float | None) -> float | None:
    """The session's throughput as a usable figure.

    Args:
        steps_per_s: as reported, steps per second.

    Returns:
        Steps per second; ``None`` when not reported, not finite, or not positive (a run
        that has not measured it yet, or has stalled).
    """
    if not _finite(steps_per_s) or steps_per_s <= 0:
        return None
    return float(steps_per_s)


def fraction_done(step: int | None, total_steps: int | None) -> float | None:
    """``step / total_steps``: 0.42 for 42 %; not clamped (a run past its total shows > 1).

    Returns:
        ``None`` when either is unknown or the total is not positive.
    """
    if step is None or total_steps is None or total_steps <= 0:
        return None
    return step / total_steps


def eta_s(step: int | None, total_steps: int | None, steps_per_s: float | None) -> float | None:
    """Time until ``total_steps`` at the current throughput.

    Args:
        step: the current step.
        total_steps: the step the run ends at.
        steps_per_s: the throughput, steps per second.

    Returns:
        Seconds, at least 0 (0.0 once the step reached the total); ``None`` when the step or
        the total is unknown, or the throughput is not usable (see :func:`throughput`).
    """
    rate = throughput(steps_per_s)
    if step is None or total_steps is None or rate is None:
        return None
    return max(0, total_steps - step) / rate


# --------------------------------------------------------------------------- work at risk


@dataclass(frozen=True)
class WorkAtRisk:
    """Work not yet in a durable checkpoint: what a runtime dying now would cost.

    Attributes:
        state: ``"at_risk"`` (the run trains; ``seconds`` says how much is exposed),
            ``"unknown"`` (it trains, but neither a durable checkpoint nor the session's start
            is known, or a time was not finite), ``"saved"`` (stopped or finished, with no
            failed save after its last checkpoint: nothing is at risk), ``"ended"`` (stopped
            or finished without a checkpoint, or a save failed after the last one: nothing more
            can be lost, but not everything was saved), ``"lost"`` (the run failed: what came
            after its last checkpoint is gone).
        seconds: for ``"at_risk"``, seconds since ``since`` by our clock, at least 0 (a
            checkpoint that looks newer than now, clock skew, gives 0.0); else ``None``.
        since: for ``"at_risk"``, the session-clock Unix time (seconds) from which work is
            exposed; else ``None``.
        counted_from: for ``"at_risk"``, what ``since`` is: ``"replica"`` (the newest
            checkpoint verified on the replica), ``"checkpoint"`` (the newest local durable
            checkpoint; the session has no replica) or ``"start"`` (the session's start:
            nothing durable since); else ``None``.
        warning: ``seconds`` reached the warning threshold.
    """

    state: str
    seconds: float | None = None
    since: float | None = None
    counted_from: str | None = None
    warning: bool = False


def at_risk_since(status: Status) -> tuple[float, str] | None:
    """Session-clock time from which work is not yet in a durable checkpoint, and what it is
    (``"replica"``, ``"checkpoint"`` or ``"start"``, as in :class:`WorkAtRisk`).

    The runtime's part of the rule: ``checkpoint.last`` is listed only once it is written,
    fsynced and verified; with a replica (Drive, or a Drive mount taken over after a failed
    save), ``replica.verified`` is the newest copy whose checksum matched there, and its
    ``saved_at`` is when that checkpoint was saved (older runtimes send only ``verified_at``);
    ``started_at`` is when this session's Monitor started. This part: with a replica, durable
    means *verified there* (a copy only on the runtime's disk dies with the runtime), else the
    last local checkpoint; and the later of that and the session's start, since a resumed
    session has lost nothing from before its start and a fresh one has everything since.

    Returns:
        ``(since, counted_from)``; ``None`` when neither a durable checkpoint nor the start
        is known. A time that is not finite counts as not known.
    """
    ck = status.checkpoint
    if ck.replica is not None:
        v = ck.replica.verified
        saved = None if v is None else (v.saved_at if v.saved_at is not None else v.verified_at)
        source = "replica"
    else:
        saved = ck.last.saved_at if ck.last else None
        source = "checkpoint"
    started = status.started_at if _finite(status.started_at) else None
    if not _finite(saved):  # not reported (or not a time): counts as nothing saved
        saved = None
    if saved is not None and (started is None or saved >= started):
        return saved, source
    if started is not None:
        return started, "start"
    return None


def work_at_risk(status: Status, now: float, offset: float = 0.0, *,
                 warning_after_s: float) -> WorkAtRisk:
    """The work-at-risk figure of ``status`` at ``now``.

    Args:
        status: the latest status the session sent.
        now: local Unix time, seconds.
        offset: local − session clock, seconds (see :func:`clock_offset_s`).
        warning_after_s: seconds at risk from which the figure is a warning (the setting
            ``risk_warning_min`` × 60).

    Returns:
        See :class:`WorkAtRisk`. After the end: nothing at risk once stopped or finished (the
        final checkpoint holds everything, unless a save failed after it); after a failure,
        what came after the last checkpoint is lost.
    """
    ck = status.checkpoint
    if status.state == "failed":
        return WorkAtRisk("lost")
    if status.state in ENDED_STATES:
        failed_after = (ck.last_error_at is not None and ck.last is not None
                        and ck.last.saved_at is not None and ck.last_error_at > ck.last.saved_at)
        return WorkAtRisk("saved" if ck.last is not None and not failed_after else "ended")
    found = at_risk_since(status)
    seconds = None if found is None else age_s(found[0], now, offset)
    if found is None or seconds is None:
        return WorkAtRisk("unknown")
    since, counted_from = found
    return WorkAtRisk("at_risk", seconds=seconds, since=since, counted_from=counted_from,
                      warning=seconds >= warning_after_s)
