"""Alerts: conditions evaluated per session on every poll, each firing once until it clears.

Pure logic, no UI: :class:`AlertBook` takes what each poll of a session got (the status, the
new metric points, the error) and returns the alerts that fire now and those that clear. The
app (toasts, bell, desktop notification, command) and ``colabtui watch`` (one line per alert)
deliver them alike (:mod:`colabtui.alert_delivery`).

Conditions, per session (the kind in brackets):

- ``nonfinite``: a watched series (``loss`` by default) turned NaN or ±inf: a new point of this
  poll is not finite, or, with no new point, the status's latest value is not. Clears once the
  latest value is finite again. One alert per series.
- ``lost``: the session has not answered for more than ``lost_after_s`` (a mailbox whose status
  the runtime stopped refreshing counts as not answering; a session that had finished or
  stopped may go away: that is not lost), or its state became ``failed`` or
  ``interrupted``. Clears when it answers with a live state.
- ``work_at_risk``: work at risk reached its warning threshold
  (:func:`colabtui.figures.work_at_risk` gives ``warning``). Clears below it.
- ``save_failed``: ``checkpoint.last_error`` is newly set (a new ``last_error_at``), or a
  command failed (:meth:`AlertBook.command_failed`). Clears when a later checkpoint is saved
  or the error is gone; a new failure fires again.
- ``ended``: the run finished or stopped. Clears if the session trains again (a new session).
- ``gpu_memory``: a GPU's memory stayed at or above ``gpu_memory_pct`` for
  ``gpu_memory_polls`` polls in a row (out-of-memory risk). Clears at the first poll below.

Text in an alert comes from the parsed (sanitised) status and the cleaned session label, so
it is plain text; it is never markup.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from colabtui_remote.schema import MetricPoint, Status

from colabtui.figures import work_at_risk

KINDS = ("nonfinite", "lost", "work_at_risk", "save_failed", "ended", "gpu_memory")
"""Every alert kind, as named in :class:`Alert` and in the alert command's JSON."""

SEVERITY = {"nonfinite": "error", "lost": "error", "work_at_risk": "warning",
            "save_failed": "error", "ended": "information", "gpu_memory": "warning"}
"""The toast severity of each kind (Textual's ``information``, ``warning``, ``error``)."""

LOST_STATES = ("failed", "interrupted")
"""States in which a session counts as lost although it answers."""

DONE_STATES = ("finished", "stopped")
"""States that fire ``ended``; a session in one may stop answering without being lost."""

MAX_KEPT = 500
"""Most alerts an :class:`AlertBook` keeps for the Alerts screen (the oldest go first)."""


@dataclass(frozen=True)
class Alert:
    """One alert.

    Attributes:
        session: the session's label as shown (plain text).
        key: the session's key (:attr:`colabtui.config.SessionConfig.key`).
        kind: one of :data:`KINDS`.
        message: what happened, one line of plain text (never markup).
        at: local Unix time it fired, seconds.
        subject: what within the kind it is about (a series name for ``nonfinite``), else "".
        cleared_at: local Unix time it cleared, seconds; ``None`` while it holds.
    """

    session: str
    key: str
    kind: str
    message: str
    at: float
    subject: str = ""
    cleared_at: float | None = None

    @property
    def severity(self) -> str:
        """``"information"``, ``"warning"`` or ``"error"`` (:data:`SEVERITY`)."""
        return SEVERITY.get(self.kind, "warning")

    def to_json(self) -> dict[str, object]:
        """The alert as a JSON-ready dict (what ``colabtui watch --json`` prints and the
        alert command reads): ``session``, ``key``, ``kind``, ``severity``, ``message``,
        ``at`` (Unix seconds), ``subject``, ``cleared_at`` (Unix seconds or ``null``)."""
        return {"session": self.session, "key": self.key, "kind": self.kind,
                "severity": self.severity, "message": self.message, "at": self.at,
                "subject": self.subject, "cleared_at": self.cleared_at}


@dataclass(frozen=True)
class AlertRules:
    """The thresholds of the conditions (from the config's settings).

    Attributes:
        watch: the series whose values must stay finite.
        lost_after_s: seconds without an answer after which a session is lost.
        risk_warning_s: seconds of work at risk from which ``work_at_risk`` fires.
        gpu_memory_pct: GPU memory in use, % of total, from which a poll counts as full.
        gpu_memory_polls: polls in a row at or above it before ``gpu_memory`` fires.
    """

    watch: tuple[str, ...] = ("loss",)
    lost_after_s: float = 60.0
    risk_warning_s: float = 30 * 60.0
    gpu_memory_pct: float = 98.0
    gpu_memory_polls: int = 3


@dataclass(frozen=True)
class AlertChange:
    """What one observation changed: alerts that fired, alerts that cleared (with
    ``cleared_at`` set)."""

    fired: list[Alert] = field(default_factory=list)
    cleared: list[Alert] = field(default_factory=list)


@dataclass
class _Session:
    """What the book remembers of one session between polls."""

    active: dict[tuple[str, str], Alert] = field(default_factory=dict)
    silent_since: float | None = None  # local time of the first poll in a row without a status
    last_state: str | None = None
    save_error_at: float | None = None  # last_error_at already alerted
    gpu_full_polls: int = 0


def _nonfinite(value: float | None) -> bool:
    return value is not None and not math.isfinite(value)


def _full_gpu(status: Status, pct: float) -> str | None:
    """The first GPU at or above ``pct`` % memory, in words; ``None`` when none is."""
    for n, gpu in enumerate(status.gpus):
        used, total = gpu.memory_used_bytes, gpu.memory_total_bytes
        if used is not None and total:
            share = 100.0 * used / total
            if share >= pct:
                which = gpu.index if gpu.index is not None else n
                return f"GPU {which} memory at {share:.0f}%"
    return None


class AlertBook:
    """Evaluates the conditions of every session on each poll and keeps the alerts.

    Args:
        rules: the thresholds; may be replaced later (:attr:`rules`), e.g. when the config
            file changes.
    """

    def __init__(self, rules: AlertRules | None = None) -> None:
        self.rules = rules or AlertRules()
        self._sessions: dict[str, _Session] = {}
        self._kept: deque[Alert] = deque(maxlen=MAX_KEPT)
        self.version = 0
        """Bumped whenever :meth:`alerts` changes (the Alerts screen redraws on a change)."""

    def alerts(self) -> list[Alert]:
        """Every alert kept (at most :data:`MAX_KEPT`), newest first, with ``cleared_at``
        set on those that cleared."""
        return list(reversed(self._kept))

    def active(self, key: str | None = None) -> list[Alert]:
        """The alerts that hold now (of session ``key``, or of all), oldest first."""
        sessions = [self._sessions.get(key)] if key is not None else self._sessions.values()
        return sorted((a for s in sessions if s is not None for a in s.active.values()),
                      key=lambda a: a.at)

    def forget(self, key: str) -> None:
        """Drop what is remembered of a session (removed from the config); kept alerts stay."""
        self._sessions.pop(key, None)

    def observe(self, key: str, label: str, at: float, status: Status | None,
                new_points: Mapping[str, Sequence[MetricPoint]] | None = None,
                error_words: str | None = None, offset: float = 0.0,
                stale: bool = False) -> AlertChange:
        """Take one poll of session ``key`` and evaluate every condition.

        Args:
            key: the session's key.
            label: its label as shown (plain text).
            at: local Unix time the poll ended, seconds.
            status: the status it got, or ``None`` when the session did not answer.
            new_points: the points logged since the previous poll, by series.
            error_words: why the session did not answer (for the ``lost`` message).
            offset: local − session clock, seconds (for work at risk).
            stale: the status is an old one the runtime stopped refreshing (a mailbox's
                :attr:`~colabtui.session_client.SessionClient.stale`): it counts as no answer
                (unless the run had ended).

        Returns:
            The alerts that fired and those that cleared with this poll.
        """
        s = self._sessions.setdefault(key, _Session())
        want: dict[tuple[str, str], str] = {}  # conditions holding now → message
        keep: set[tuple[str, str]] = set()  # conditions not evaluated this poll: unchanged
        rules = self.rules
        fresh = status is not None and not (stale and status.state not in DONE_STATES)
        if not fresh:
            if s.silent_since is None:
                s.silent_since = at
            silent = at - s.silent_since
            gone_quietly = s.last_state in DONE_STATES
            if silent > rules.lost_after_s and not gone_quietly:
                why = f": {error_words}" if error_words else ""
                what = "no answer" if status is None else "no fresh status"
                want[("lost", "")] = f"{label}: {what} for {silent:.0f} s{why}"
            # what only a fresh status tells stays as it was while the session is silent
            keep.update(k for k in s.active if k[0] != "lost")
        else:
            assert status is not None
            s.silent_since = None
            self._evaluate(s, label, at, status, new_points or {}, offset, want)
            s.last_state = status.state
        return self._settle(s, key, label, at, want, keep)

    def command_failed(self, key: str, label: str, at: float, action: str,
                       why: str) -> AlertChange:
        """A ``save`` or ``stop`` command of session ``key`` failed: fire ``save_failed``
        (again, if one holds; it clears as a status's failed save does).

        Args:
            at: local Unix time, seconds.
            why: the reason, plain text.
        """
        s = self._sessions.setdefault(key, _Session())
        cond = ("save_failed", "command")
        fired = Alert(label, key, "save_failed", f"{label}: {action} failed: {why}", at,
                      subject="command")
        s.active[cond] = fired
        self._kept.append(fired)
        self.version += 1
        return AlertChange(fired=[fired])

    # ----------------------------------------------------------------- the conditions

    def _evaluate(self, s: _Session, label: str, at: float, status: Status,
                  new_points: Mapping[str, Sequence[MetricPoint]], offset: float,
                  want: dict[tuple[str, str], str]) -> None:
        rules = self.rules
        for name in rules.watch:
            pts = new_points.get(name)
            if pts:
                bad = next((p for p in pts if _nonfinite(p.value)), None)
                if bad is not None:
                    want[("nonfinite", name)] = (f"{label}: {name} is {bad.value} at step "
                                                 f"{bad.step:,}")
            elif name in status.metrics_nonfinite:
                at_step = f" at step {status.step:,}" if status.step is not None else ""
                want[("nonfinite", name)] = (f"{label}: {name} is "
                                             f"{status.metrics_nonfinite[name]}{at_step}")
        if status.state in LOST_STATES:
            why = f": {status.error}" if status.error else ""
            want[("lost", "")] = f"{label}: the run is {status.state}{why}"
        risk = work_at_risk(status, at, offset, warning_after_s=rules.risk_warning_s)
        if risk.warning and risk.seconds is not None:
            want[("work_at_risk", "")] = (f"{label}: {risk.seconds / 60:.0f} min of work not "
                                          "in a durable checkpoint")
        ck = status.checkpoint
        superseded = (ck.last is not None and ck.last.saved_at is not None
                      and ck.last_error_at is not None and ck.last.saved_at > ck.last_error_at)
        if ck.last_error and not superseded:
            cond = ("save_failed", "")
            if ck.last_error_at != s.save_error_at:  # a new failure fires again
                if (old := s.active.pop(cond, None)) is not None:
                    self._mark_cleared(old, dataclasses.replace(old, cleared_at=at))
                s.save_error_at = ck.last_error_at
            want[cond] = f"{label}: a save failed: {ck.last_error}"
        failed_command = s.active.get(("save_failed", "command"))
        if failed_command is not None and not (
                ck.last is not None and ck.last.saved_at is not None
                and ck.last.saved_at + offset > failed_command.at):
            want[("save_failed", "command")] = failed_command.message  # no good save since
        if status.state in DONE_STATES:
            at_step = f" at step {status.step:,}" if status.step is not None else ""
            want[("ended", "")] = f"{label}: the run {status.state}{at_step}"
        full = _full_gpu(status, rules.gpu_memory_pct)
        s.gpu_full_polls = s.gpu_full_polls + 1 if full else 0
        if full and s.gpu_full_polls >= rules.gpu_memory_polls:
            want[("gpu_memory", "")] = (f"{label}: {full} for {s.gpu_full_polls} polls "
                                        "(out-of-memory risk)")

    def _settle(self, s: _Session, key: str, label: str, at: float,
                want: dict[tuple[str, str], str], keep: Iterable[tuple[str, str]]
                ) -> AlertChange:
        keep = set(keep)
        change = AlertChange()
        for cond in list(s.active):
            if cond not in want and cond not in keep:
                old = s.active.pop(cond)
                cleared = dataclasses.replace(old, cleared_at=at)
                self._mark_cleared(old, cleared)
                change.cleared.append(cleared)
        for cond, message in want.items():
            if cond not in s.active:
                alert = Alert(label, key, cond[0], message, at, subject=cond[1])
                s.active[cond] = alert
                self._kept.append(alert)
                change.fired.append(alert)
        if change.fired or change.cleared:
            self.version += 1
        return change

    def _mark_cleared(self, old: Alert, cleared: Alert) -> None:
        for i in range(len(self._kept) - 1, -1, -1):
            if self._kept[i] is old:
                self._kept[i] = cleared
                return
