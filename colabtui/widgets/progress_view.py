"""The progress block of a panel: step (of total), epoch, throughput and ETA."""

from __future__ import annotations

import time
from collections.abc import Callable

from colabtui_remote.schema import Status
from rich.text import Text

from colabtui.figures import ENDED_STATES, LIVE_STATES, age_s, fraction_done
from colabtui.formatting import (
    INVALID,
    fmt_duration,
    fmt_eta,
    fmt_field,
    fmt_limit,
    fmt_minutes,
    fmt_number,
    fmt_rate,
    short_count,
)
from colabtui.widgets.text_block import TextBlock

COMPACT_BELOW = 34
"""Panels narrower than this (cells) get the compact wording (``running  8,420/20k 42%``)."""

STATE_STYLES = {
    "running": "bold green",
    "saving": "bold yellow",
    "stopping": "bold yellow",
    "stopped": "bold blue",
    "finished": "bold blue",
    "failed": "bold red",
    "interrupted": "bold yellow",
}


def progress_lines(status: Status, width: int, *, live: bool = True,
                   seen_ago_s: float | None = None) -> Text:
    """Two or three lines: state and step; throughput and ETA; the latest loss.

    Args:
        status: the latest status the session sent.
        width: cells available (compact wording below :data:`COMPACT_BELOW`; the uptime,
            to the minute, shows from 40). Where the runtime has a known maximum (see
            ``colabtui_remote.runtime``) the uptime is the runtime's age and the maximum
            follows it: ``up 10h20m · ≤ 12h``; otherwise it is the session's.
        live: the status is from the latest poll. When not (the session does not answer),
            a training state reads ``last known: running · 3m ago`` and there is no ETA;
            an ended state (stopped, finished, failed) still reads as itself.
        seen_ago_s: seconds since the session last answered (shown when not ``live``).
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    ended = status.state in ENDED_STATES
    if live or ended:
        text.append(status.state, style=STATE_STYLES.get(status.state, "bold"))
    else:
        text.append("last known: ", style="dim")
        text.append(status.state, style="dim bold")
    if not live and seen_ago_s is not None:
        text.append(f" · {fmt_duration(seen_ago_s)} ago", style="dim")
    compact = width < COMPACT_BELOW
    step = fmt_field(status, "step", "{:,}".format)
    text.append("  " if compact else "  step ", style="dim")
    text.append(step, style="bold")
    if status.total_steps is not None or "total_steps" in status.invalid:
        total = fmt_field(status, "total_steps", short_count if compact else "{:,}".format)
        text.append(f"/{total}")
        done = fraction_done(status.step, status.total_steps)
        if done is not None:
            text.append(f" {100 * done:.0f}%", style="dim")
    if (status.epoch is not None or "epoch" in status.invalid) and not compact:
        text.append("  ep ", style="dim")
        text.append(fmt_field(status, "epoch"))
    text.append("\n")
    text.append(INVALID if "steps_per_s" in status.invalid else fmt_rate(status.steps_per_s))
    text.append("  ETA ", style="dim")
    if live and status.state in LIVE_STATES:
        text.append(fmt_eta(status.step, status.total_steps, status.steps_per_s))
    else:
        text.append("—")
    rt = status.runtime
    limited = rt is not None and (rt.max_s is not None or "max_s" in rt.invalid)
    if limited and (rt.age_s is not None or "age_s" in rt.invalid):
        up = fmt_field(rt, "age_s", fmt_minutes)  # the runtime's age: what its limit counts
    elif status.uptime_s is not None or "uptime_s" in status.invalid:
        up = fmt_field(status, "uptime_s", fmt_minutes)  # to the minute: moves every poll
    else:
        up = None
    if width >= 40 and up is not None:
        text.append("  up ", style="dim")
        text.append(up)
        if limited:
            text.append(" · ≤ ", style="dim")
            text.append(fmt_field(rt, "max_s", fmt_limit), style="dim")
    if "loss" in status.metrics:
        value = status.metrics["loss"]
        marker = status.metrics_nonfinite.get("loss")
        text.append("\n")
        text.append("loss ", style="dim")
        shown = {"nan": "NaN", "inf": "inf", "-inf": "-inf"}.get(marker or "", fmt_number(value))
        text.append(shown, style="bold red" if marker else "bold")
    if status.state == "failed" and status.error:
        text.append("\n")
        text.append("failed: ", style="bold red")
        text.append(status.error)  # untrusted text from the session: plain, never markup
    return text


class ProgressView(TextBlock):
    """Shows the progress of the latest status (``None`` until the first one).

    Args:
        clock: local Unix time, seconds (the app's injected clock), for "3m ago".
    """

    DEFAULT_CSS = "ProgressView { height: auto; }"

    def __init__(self, clock: Callable[[], float] = time.time, *, id: str | None = None) -> None:
        super().__init__(self.build, id=id)
        self._clock = clock
        self.status: Status | None = None
        self.live = True
        self.seen_at: float | None = None

    def show(self, status: Status, *, live: bool = True, seen_at: float | None = None) -> None:
        """Show ``status``; ``live`` is false while the session does not answer, and
        ``seen_at`` (local Unix time, seconds) is when it last did."""
        self.status, self.live, self.seen_at = status, live, seen_at
        self.sync()

    def build(self) -> Text:
        if self.status is None:
            return Text("progress: waiting for the session", style="dim", no_wrap=True,
                        overflow="ellipsis")
        seen_ago = age_s(self.seen_at, self._clock())
        return progress_lines(self.status, self.size.width, live=self.live, seen_ago_s=seen_ago)
