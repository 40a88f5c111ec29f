"""A run's curves as charts show them, read from the ledger: where each later session of a
run took over its curve (resume marks), and one metric of several runs side by side (the
compare view).

Every function here reads SQLite and may take tens of milliseconds on a long history: call it
from a thread (the app's thread workers), never on the UI thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from colabtui_remote import schema, wire

from colabtui.ledger import Ledger


@dataclass(frozen=True)
class ResumeMark:
    """Where a later session of a run took over its curve: its first step and the time of its
    first point (seconds, that session's clock)."""

    step: int
    time: float


COMPARE_MAX_POINTS = 4_000
"""Points read per run and metric for the compare view: at least two a dot column of any
terminal's width (the ledger's reduction keeps spikes and non-finite points)."""


def run_curves(ledger: Ledger, run: str
               ) -> tuple[dict[str, list[schema.MetricPoint]], tuple[ResumeMark, ...]]:
    """A run's series (:meth:`Ledger.load_series`) and its :func:`resume_marks`, for a panel."""
    return ledger.load_series(run), tuple(resume_marks(ledger, run))


def resume_marks(ledger: Ledger, run: str) -> list[ResumeMark]:
    """Where each later session of ``run`` took over its curve, in the order they started.

    A session counts only while some of its points are still on the curve: one that a later
    session resumed from before its first step (every point replaced) leaves no mark, as
    :meth:`Ledger.load_series` leaves none of its points.

    Returns:
        One mark per session after the first: its first step and the time of its first point
        (seconds, that session's clock); empty for a run of one session.
    """
    sessions = ledger.query(
        """SELECT id, min_step FROM sessions WHERE run = ? AND min_step IS NOT NULL
           ORDER BY COALESCE(started_at, first_seen, 0), id""", (run,))
    visible = []
    limit = math.inf
    for sess, first_step in reversed(sessions):
        if first_step < limit:
            visible.append((sess, first_step))
        limit = min(limit, first_step)
    marks = []
    for sess, first_step in reversed(visible[:-1] if visible else []):
        row = ledger.query(
            """SELECT min(p.time) FROM series_sessions s JOIN points p
                 ON p.series_id = s.series_id AND p.session = s.session AND p.step = s.min_step
               WHERE s.session = ? AND s.min_step = ?""", (sess, first_step))
        when = row[0][0] if row and row[0][0] is not None else math.nan
        marks.append(ResumeMark(int(first_step), float(when)))
    return marks


@dataclass(frozen=True)
class RunChoice:
    """One run the compare view can show.

    Attributes:
        run: the run's name as stored (the key to read it by).
        name: the same, cleaned for the screen (untrusted: plain text only).
        sessions: sessions seen of it.
        last_seen: when it was last seen (the laptop's clock, seconds), if ever.
        gpus: the GPU names its sessions ran on, cleaned, in order of first use.
        series: its series' names.
    """

    run: str
    name: str
    sessions: int
    last_seen: float | None
    gpus: tuple[str, ...]
    series: tuple[str, ...]


def run_choices(ledger: Ledger) -> list[RunChoice]:
    """Every run with stored points, last seen first (then by name)."""
    names: dict[str, list[str]] = {}
    for run, name in ledger.query("SELECT run, name FROM series ORDER BY run, name"):
        names.setdefault(run, []).append(wire.clean_text(name))
    seen: dict[str, tuple[int, float | None, list[str]]] = {}
    for run, gpu, last in ledger.query(
            """SELECT run, gpu, COALESCE(last_seen, first_seen) FROM sessions
               ORDER BY COALESCE(started_at, first_seen, 0), id"""):
        n, latest, gpus = seen.get(run, (0, None, []))
        if gpu and (clean := wire.clean_text(gpu)) not in gpus:
            gpus.append(clean)
        latest = last if latest is None or (last is not None and last > latest) else latest
        seen[run] = (n + 1, latest, gpus)
    choices = []
    for run, series in names.items():
        n, latest, gpus = seen.get(run, (0, None, []))
        choices.append(RunChoice(run, wire.clean_text(run), n, latest, tuple(gpus),
                                 tuple(series)))
    choices.sort(key=lambda c: c.name)
    choices.sort(key=lambda c: -(c.last_seen or 0.0))
    return choices


def compare_metric(choices: list[RunChoice]) -> str | None:
    """The metric to compare first: ``loss`` when every run has it, else the series name
    the most runs share (then the first by name); ``None`` when there is none."""
    counts: dict[str, int] = {}
    for choice in choices:
        for name in choice.series:
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        return None
    if counts.get("loss") == len(choices):
        return "loss"
    return min(counts, key=lambda n: (-counts[n], n != "loss", n))


def load_metric(ledger: Ledger, runs: list[str], metric: str,
                max_points: int = COMPARE_MAX_POINTS) -> dict[str, list[schema.MetricPoint]]:
    """One metric of each run: run → its points across sessions, by step (a run without the
    metric is left out). See :meth:`Ledger.load_series` for how sessions are joined."""
    out = {}
    for run in runs:
        points = ledger.load_series(run, max_points, names=(metric,)).get(metric)
        if points:
            out[run] = points
    return out
