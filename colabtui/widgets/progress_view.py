"""The progress block of a panel: step (of total), epoch, throughput and ETA."""

from __future__ import annotations

from colabtui_remote.schema import Status
from rich.text import Text
from textual.widget import Widget

from colabtui.formatting import NA, fmt_duration, fmt_eta, fmt_number, fmt_rate

STATE_STYLES = {
    "running": "bold green",
    "saving": "bold yellow",
    "stopping": "bold yellow",
    "stopped": "bold blue",
    "finished": "bold blue",
    "failed": "bold red",
}


def progress_lines(status: Status, width: int) -> Text:
    """Two or three lines: state and step; throughput and ETA; the latest loss."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(status.state, style=STATE_STYLES.get(status.state, "bold"))
    step = NA if status.step is None else f"{status.step:,}"
    text.append("  step ", style="dim")
    text.append(step, style="bold")
    if status.total_steps is not None:
        text.append(f"/{status.total_steps:,}")
        if status.step is not None and status.total_steps > 0:
            text.append(f" {100 * status.step / status.total_steps:.0f}%", style="dim")
    if status.epoch is not None:
        text.append("  ep ", style="dim")
        text.append(str(status.epoch))
    text.append("\n")
    text.append(fmt_rate(status.steps_per_s))
    text.append("  ETA ", style="dim")
    if status.state in ("running", "saving", "stopping"):
        text.append(fmt_eta(status.step, status.total_steps, status.steps_per_s))
    else:
        text.append("—")
    if width >= 40 and status.uptime_s is not None:
        text.append("  up ", style="dim")
        text.append(fmt_duration(status.uptime_s))
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


class ProgressView(Widget):
    """Shows the progress of the latest status (``None`` until the first one)."""

    DEFAULT_CSS = "ProgressView { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.status: Status | None = None

    def show(self, status: Status) -> None:
        self.status = status
        self.refresh(layout=True)

    def render(self) -> Text:
        if self.status is None:
            return Text("progress: waiting for the session", style="dim", no_wrap=True,
                        overflow="ellipsis")
        return progress_lines(self.status, self.size.width)
