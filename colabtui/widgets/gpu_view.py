"""The GPU block of a panel: name, utilization, memory bar, temperature and power.

Every field NVML could not give is shown as ``n/a``, with the reason NVML gave on a dim line
below (``n/a: power not supported``); a GPU without a name is "Unknown GPU"; a session with no
GPU says so with the reason the runtime gave. A distributed job (``torchrun``) gets a first
line with its ranks (and which were lost), and each GPU the rank that uses it. All text from the session is appended as plain
text (never markup).
"""

from __future__ import annotations

from colabtui_remote.schema import GpuStats, WorldStatus
from rich.text import Text

from colabtui.formatting import NA, bar, fmt_field, fmt_gib
from colabtui.widgets.text_block import TextBlock

MAX_GPUS_SHOWN = 2
"""Beyond this many GPUs the block says "+N more" (panels are narrow)."""

HOT_C = 85.0
"""Temperature shown in warning style, °C (T4/A100 slow down from about 85-90 °C)."""

UNKNOWN_GPU = "Unknown GPU"

FIELD_WORDS = {"name": "name", "utilization_pct": "util", "memory_used_bytes": "memory",
               "memory_total_bytes": "memory", "temperature_c": "temperature",
               "power_w": "power", "power_limit_w": "power limit"}
"""How a field of :class:`GpuStats` is named in the note on NVML's reasons."""


def reason_words(reason: str) -> str:
    """NVML's reason in a few words: ``NVML_ERROR_NOT_SUPPORTED`` → ``not supported``."""
    words = reason.removeprefix("NVML_ERROR_").replace("_", " ").strip().lower()
    return words or "unavailable"


def unsupported_note(gpu: GpuStats) -> str | None:
    """``"n/a: power not supported; util no permission"``: why fields are missing, one
    phrase per reason (fields that share one are named together); ``None`` when none is."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in gpu.unsupported.items():
        what = FIELD_WORDS.get(name, name)
        fields = by_reason.setdefault(reason_words(str(reason)), [])
        if what not in fields:
            fields.append(what)
    if not by_reason:
        return None
    return "n/a: " + "; ".join(f"{', '.join(f)} {why}" for why, f in by_reason.items())


def world_line(world: WorldStatus) -> Text:
    """A distributed job in one line: ``torchrun: 4 ranks on 2 nodes · rank 3 lost``."""
    text = Text(no_wrap=True, overflow="ellipsis")
    size = NA if world.size is None else str(world.size)
    text.append("torchrun: ", style="dim")
    text.append(f"{size} ranks", style="bold")
    if world.nodes and world.nodes > 1:
        text.append(f" on {world.nodes} nodes")
    if world.checkpoint_kind == "sharded":
        text.append(" · sharded", style="dim")
    lost = [r for r in world.ranks if r.lost]
    if lost:
        text.append(" · ")
        text.append("lost: " + ", ".join(f"rank {fmt_field(r, 'rank')}" for r in lost),
                    style="bold red")
    return text


def gpu_lines(gpus: list[GpuStats], gpu_error: str | None, width: int,
              world: WorldStatus | None = None) -> Text:
    """The block as text for a panel ``width`` cells wide (one GPU: 3 lines; a distributed
    job: a line about its ranks first)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if world is not None:
        text.append_text(world_line(world))
        text.append("\n")
    if not gpus:
        text.append("no GPU", style="bold")
        text.append(f" ({gpu_error})" if gpu_error else " (none reported)", style="dim")
        return text
    for n, gpu in enumerate(gpus[:MAX_GPUS_SHOWN]):
        if n:
            text.append("\n")
        _one_gpu(text, gpu, width, numbered=len(gpus) > 1)
    if len(gpus) > MAX_GPUS_SHOWN:
        text.append(f"\n+{len(gpus) - MAX_GPUS_SHOWN} more GPUs", style="dim")
    return text


def _one_gpu(text: Text, gpu: GpuStats, width: int, numbered: bool) -> None:
    if numbered or gpu.rank is not None:
        text.append(f"GPU{fmt_field(gpu, 'index')} ", style="dim")
    if gpu.rank is not None:
        text.append(f"rank {gpu.rank} ", style="dim")
    if gpu.host:
        text.append(f"{gpu.host} ", style="dim")  # from the session: plain text
    text.append(gpu.name or UNKNOWN_GPU, style="bold")
    text.append("\n")
    util = fmt_field(gpu, "utilization_pct", "{:.0f}%".format)
    text.append(util, style="bold")
    text.append(" util", style="dim")
    if gpu.temperature_c is None:
        text.append(f"  {fmt_field(gpu, 'temperature_c')} °C")
    else:
        style = "bold red" if gpu.temperature_c >= HOT_C else ""
        text.append(f"  {gpu.temperature_c:.0f}°C", style=style)
    if gpu.power_w is None:
        text.append(f"  {fmt_field(gpu, 'power_w')} W")
    else:
        limit = fmt_field(gpu, "power_limit_w", "{:.0f}".format)
        limit = "" if limit == NA else f"/{limit}"
        text.append(f"  {gpu.power_w:.0f}{limit} W")
    text.append("\n")
    used, total = gpu.memory_used_bytes, gpu.memory_total_bytes
    figures = (f" {fmt_field(gpu, 'memory_used_bytes', fmt_gib)}"
               f"/{fmt_field(gpu, 'memory_total_bytes', fmt_gib)} GiB")
    fraction = used / total if used is not None and total else None
    bar_width = max(3, min(24, width - len(figures) - 4))
    text.append("mem ", style="dim")
    style = "red" if fraction is not None and fraction > 0.95 else "green"
    text.append(bar(fraction, bar_width), style=f"{style} on grey23")
    text.append(figures)
    note = unsupported_note(gpu)
    if note is not None:
        text.append("\n")
        text.append(note, style="dim")  # reasons come from the session: plain text


class GpuView(TextBlock):
    """Shows the GPUs of the latest status (see :meth:`show`)."""

    DEFAULT_CSS = "GpuView { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(self.build, id=id)
        self.gpus: list[GpuStats] | None = None
        self.gpu_error: str | None = None
        self.world: WorldStatus | None = None

    def show(self, gpus: list[GpuStats], gpu_error: str | None,
             world: WorldStatus | None = None) -> None:
        """Replace what is shown; resizes itself when the number of lines changes."""
        self.gpus, self.gpu_error, self.world = list(gpus), gpu_error, world
        self.sync()

    def build(self) -> Text:
        if self.gpus is None:
            return Text("GPU: waiting for the session", style="dim", no_wrap=True,
                        overflow="ellipsis")
        return gpu_lines(self.gpus, self.gpu_error, self.size.width, self.world)
