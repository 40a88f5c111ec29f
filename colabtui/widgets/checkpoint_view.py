"""The checkpoint block of a panel: last durable save, a save in progress, the last error,
and the work at risk (time since the last durable checkpoint).

Times from the session are on the session's clock; the panel passes ``offset`` (local clock
minus session clock, seconds) so ages are right even when the two clocks disagree.
"""

from __future__ import annotations

from collections.abc import Callable

from colabtui_remote.schema import Status
from rich.text import Text
from textual.widget import Widget

from colabtui.formatting import fmt_age, fmt_bytes, fmt_duration

ENDED_STATES = ("stopped", "finished", "failed")


def at_risk_since(status: Status) -> float | None:
    """Session-clock time from which work is not yet in a durable checkpoint.

    The later of the last durable save and the session's start: a resumed session has lost
    nothing from before its start, and a fresh one has everything since its start at risk.
    ``None`` when neither is known.
    """
    times = [t for t in (status.checkpoint.last.saved_at if status.checkpoint.last else None,
                         status.started_at) if t is not None]
    return max(times) if times else None


def checkpoint_lines(status: Status, now: float, offset: float, risk_warning_min: float) -> Text:
    """The block as text. ``now`` is local Unix time; ``offset`` = local − session clock (s)."""
    ck = status.checkpoint
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("ckpt ", style="dim")
    if ck.last is None:
        text.append("none yet", style="yellow")
    else:
        text.append(fmt_age(ck.last.saved_at + offset, now), style="bold")
        text.append(f" · step {ck.last.step:,} · {fmt_bytes(ck.last.bytes)}")
    if ck.in_progress is not None:
        p = ck.in_progress
        text.append("\n")
        text.append(f"saving step {p.step:,}: ", style="bold yellow")
        text.append(p.phase)  # from the session: plain text
        done = fmt_bytes(p.bytes_written)
        text.append(f" {done}" + (f"/{fmt_bytes(p.bytes_total)}" if p.bytes_total else ""))
    if ck.last_error:
        text.append("\n")
        text.append("save failed", style="bold red")
        if ck.last_error_at is not None:
            text.append(f" {fmt_age(ck.last_error_at + offset, now)}", style="red")
        text.append(": ", style="bold red")
        text.append(ck.last_error)  # untrusted: plain text
    text.append("\n")
    text.append("at risk ", style="dim")
    if status.state in ENDED_STATES:
        text.append(f"none ({status.state})")
        return text
    since = at_risk_since(status)
    if since is None:
        text.append("n/a")
        return text
    minutes = max(0.0, now - (since + offset)) / 60
    style = "bold white on dark_red" if minutes >= risk_warning_min else "bold"
    text.append(f" {fmt_duration(minutes * 60)} ", style=style)
    if ck.next_autosave_at is not None:
        text.append("  autosave in ", style="dim")
        text.append(fmt_duration(ck.next_autosave_at + offset - now))
    return text


class CheckpointView(Widget):
    """Shows the checkpoint block of the latest status; ages follow ``clock``.

    Args:
        clock: returns local Unix time, seconds (the app's injected clock).
        risk_warning_min: minutes of work at risk from which the figure turns to warning style.
    """

    DEFAULT_CSS = "CheckpointView { height: auto; }"

    def __init__(self, clock: Callable[[], float], risk_warning_min: float, *,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self.risk_warning_min = risk_warning_min
        self.status: Status | None = None
        self.clock_offset = 0.0

    def show(self, status: Status, offset: float) -> None:
        self.status, self.clock_offset = status, offset
        self.refresh(layout=True)

    def render(self) -> Text:
        if self.status is None:
            return Text("checkpoint: waiting for the session", style="dim", no_wrap=True,
                        overflow="ellipsis")
        return checkpoint_lines(self.status, self._clock(), self.clock_offset, self.risk_warning_min)
