"""The checkpoint block of a panel: last durable save, a save in progress, the last error,
and the work at risk (time since the last durable checkpoint, computed by
:func:`colabtui.figures.work_at_risk`).

Times from the session are on the session's clock; the panel passes ``offset`` (local clock
minus session clock, seconds) so ages are right even when the two clocks disagree.
"""

from __future__ import annotations

from collections.abc import Callable

from colabtui_remote.schema import Status
from rich.text import Text

from colabtui.figures import age_s, until_s, work_at_risk
from colabtui.formatting import (
    fmt_age,
    fmt_bytes,
    fmt_duration,
    fmt_field,
    fmt_minutes,
    short_count,
)
from colabtui.widgets.progress_view import COMPACT_BELOW
from colabtui.widgets.text_block import TextBlock

_REPLICA_NAMES = {"drive": "Drive", "mount": "Drive mount"}

RISK_SYMBOL = "⚠"
"""Marks work at risk past ``risk_warning_min``, with the words "past 30m"."""


def _ago(obj: object, name: str, now: float, offset: float, *, compact: bool = False) -> str:
    """How long ago field ``name`` (a time on the session's clock) of ``obj`` was."""
    if compact:
        return fmt_field(obj, name, lambda t: fmt_duration(age_s(t, now, offset)))
    return fmt_field(obj, name, lambda t: fmt_age(t + offset, now))


def _step(obj: object, compact: bool) -> str:
    """Field ``step`` of ``obj``: ``s8.0k`` when ``compact``, else ``step 8,000``."""
    if compact:
        return f"s{fmt_field(obj, 'step', short_count)}"
    return f"step {fmt_field(obj, 'step', '{:,}'.format)}"


def replica_lines(status: Status, now: float, offset: float, *, compact: bool = False) -> Text:
    """The replica part of the block: what is verified on Drive, an upload in flight, and
    whether Drive is offline. Empty when the session keeps checkpoints in one place only.

    Args:
        status: the latest status.
        now: local Unix time, seconds.
        offset: local − session clock, seconds.
        compact: short wording for narrow panels.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    r = status.checkpoint.replica
    if r is None:
        return text
    name = _REPLICA_NAMES.get(r.kind, r.kind)
    down = r.state in ("offline", "error")
    if down:  # first what is wrong and what is exposed, then what is safe
        text.append("\n")
        text.append(f"{name} {r.state}", style="bold white on dark_red" if r.state == "offline"
                    else "bold red")
        if r.pending or "pending" in r.invalid:
            text.append(f" · {fmt_field(r, 'pending')} local only", style="yellow")
        if r.next_retry_at is not None:
            left = until_s(r.next_retry_at, now, offset)
            text.append(f" · retry in {fmt_duration(left)}", style="dim")
    text.append("\n")
    text.append("drive " if compact else "on Drive ", style="dim")
    v = r.verified
    if v is None:
        text.append("nothing verified yet", style="yellow")
    else:
        text.append(f"✓ {_step(v, compact)}", style="bold green")
        if not compact:
            text.append(f" verified {_ago(v, 'verified_at', now, offset)}")
    if not down and (r.pending or "pending" in r.invalid) and r.uploading is None:
        pending = fmt_field(r, "pending")
        text.append(f" +{pending}" if compact else f" · {pending} local only", style="yellow")
    if r.uploading is not None:
        u = r.uploading
        text.append("\n")
        text.append(f"uploading {_step(u, compact)}: ", style="bold yellow")
        text.append(f"{fmt_field(u, 'bytes_sent', fmt_bytes)}/"
                    f"{fmt_field(u, 'bytes_total', fmt_bytes)}")
        if u.bytes_total and u.bytes_sent is not None:
            text.append(f" ({100 * u.bytes_sent / u.bytes_total:.0f}%)")
    if r.last_error and r.state != "ok":
        text.append("\n")
        text.append(r.last_error)  # untrusted: plain text
    return text


def checkpoint_lines(status: Status, now: float, offset: float, risk_warning_min: float, *,
                     live: bool = True, compact: bool = False) -> Text:
    """The block as text.

    Args:
        status: the latest status the session sent.
        now: local Unix time, seconds.
        offset: local − session clock, seconds.
        risk_warning_min: minutes at risk from which the figure is a warning: marked
            ``⚠ 34m  past 30m`` on a dark red ground.
        live: the status is from the latest poll. When not, the next autosave is not shown
            (it may never come) and the time at risk reads as a lower bound (``≥ 4m``).
            Time at risk and to the next autosave are to the minute (``<1m``, ``4m``).
        compact: short wording for narrow panels (``ckpt 4m · s8.0k 180MB``).

    Work at risk after the end: none once stopped or finished (the final checkpoint holds
    everything, unless a save failed after it); after a failure, what came after the last
    checkpoint is lost, and the block says so.
    """
    ck = status.checkpoint
    text = Text(no_wrap=True, overflow="ellipsis")
    on_drive = ck.replica is not None and ck.replica.kind == "drive"
    text.append("local " if on_drive else "ckpt ", style="dim")  # written locally
    if ck.last is None:
        text.append("none yet", style="yellow")
    elif compact:
        text.append(_ago(ck.last, "saved_at", now, offset, compact=True), style="bold")
        size = fmt_field(ck.last, "bytes", fmt_bytes).replace(" ", "")
        text.append(f" · {_step(ck.last, compact)} {size}")
    else:
        text.append(_ago(ck.last, "saved_at", now, offset), style="bold")
        text.append(f" · {_step(ck.last, compact)} · {fmt_field(ck.last, 'bytes', fmt_bytes)}")
    if ck.in_progress is not None:
        p = ck.in_progress
        text.append("\n")
        text.append(f"saving {_step(p, compact)}: ", style="bold yellow")
        text.append(p.phase)  # from the session: plain text
        done = fmt_field(p, "bytes_written", fmt_bytes)
        # bytes_total is the tensor data's size while writing: the file's framing can pass it
        known = p.bytes_total and p.bytes_written is not None and p.bytes_written <= p.bytes_total
        text.append(f" {done}" + (f"/{fmt_bytes(p.bytes_total)}" if known else ""))
    text.append_text(replica_lines(status, now, offset, compact=compact))
    failed_since_last = ck.last_error is not None and (
        ck.last is None or ck.last_error_at is None or ck.last.saved_at is None
        or ck.last_error_at > ck.last.saved_at)
    if failed_since_last:  # a later good save makes an old failure history, not news
        text.append("\n")
        text.append("save failed", style="bold red")
        if ck.last_error_at is not None:
            ago = fmt_duration(age_s(ck.last_error_at, now, offset)) if compact \
                else fmt_age(ck.last_error_at + offset, now)
            text.append(f" {ago}", style="red")
        text.append(": ", style="bold red")
        text.append(ck.last_error)  # untrusted: plain text
    text.append("\n")
    risk = work_at_risk(status, now, offset, warning_after_s=risk_warning_min * 60)
    if risk.state == "lost":
        text.append("lost ", style="dim")
        if ck.last is None:
            text.append("all work (no checkpoint)", style="bold red")
        else:
            text.append(f"work after {_step(ck.last, False)}", style="bold red")
        return text
    text.append("at risk ", style="dim")
    if risk.state in ("saved", "ended"):
        text.append("—", style="bold")
        if risk.state == "saved":
            text.append(f" (all saved, {status.state})", style="dim")
        return text
    if risk.seconds is None:
        text.append("n/a")
        return text
    # to the minute (fmt_minutes): a figure ticking every second repaints every second
    figure = f"{'' if live else '≥'}{fmt_minutes(risk.seconds)}"
    if risk.warning:  # a symbol and a word, not only a colour (NO_COLOR, colour blindness)
        text.append(f" {RISK_SYMBOL} {figure} ", style="bold white on dark_red")
        text.append(f" past {fmt_minutes(risk_warning_min * 60)}", style="bold red")
    else:
        text.append(f" {figure} ", style="bold")
    if live and ck.next_autosave_at is not None:
        text.append("  autosave in ", style="dim")
        text.append(fmt_minutes(until_s(ck.next_autosave_at, now, offset)))
    return text


class CheckpointView(TextBlock):
    """Shows the checkpoint block of the latest status; ages follow ``clock``.

    Args:
        clock: returns local Unix time, seconds (the app's injected clock).
        risk_warning_min: minutes of work at risk from which the figure turns to warning style.
    """

    DEFAULT_CSS = "CheckpointView { height: auto; }"

    def __init__(self, clock: Callable[[], float], risk_warning_min: float, *,
                 id: str | None = None) -> None:
        super().__init__(self.build, id=id)
        self._clock = clock
        self.risk_warning_min = risk_warning_min
        self.status: Status | None = None
        self.clock_offset = 0.0
        self.live = True

    def show(self, status: Status, offset: float, *, live: bool = True) -> None:
        """Show ``status``; ``offset`` = local − session clock (s); ``live`` is false while
        the session does not answer."""
        self.status, self.clock_offset, self.live = status, offset, live
        self.sync()

    def build(self) -> Text:
        if self.status is None:
            return Text("checkpoint: waiting for the session", style="dim", no_wrap=True,
                        overflow="ellipsis")
        return checkpoint_lines(self.status, self._clock(), self.clock_offset,
                                self.risk_warning_min, live=self.live,
                                compact=self.size.width < COMPACT_BELOW)
