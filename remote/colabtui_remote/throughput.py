"""Throughput from step boundaries: steps/s over the last few seconds."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["HORIZON_S", "MARKS", "steps_per_s"]

MARKS = 120
"""Step boundaries kept for the figure (the training thread appends ``(monotonic s, step)``)."""

HORIZON_S = 30.0
"""How far back the figure looks, seconds."""


def steps_per_s(marks: Iterable[tuple[float, int]]) -> float | None:
    """Steps per second between the oldest mark at most :data:`HORIZON_S` before the newest and
    the newest; None with fewer than two marks or no time between them.

    Args:
        marks: ``(time.monotonic() seconds, steps completed)``, oldest first.
    """
    marks = list(marks)
    if len(marks) < 2:
        return None
    t_last, s_last = marks[-1]
    horizon = t_last - HORIZON_S
    first = next((m for m in marks if m[0] >= horizon), marks[0])
    if first[0] >= t_last:
        return None
    return (s_last - first[1]) / (t_last - first[0])
