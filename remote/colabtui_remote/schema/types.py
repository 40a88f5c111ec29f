"""Wire protocol v1, its types: what crosses between a runtime and the laptop, with the
constants and the wire form (``*_to_wire``; an object's ``invalid`` never goes on the wire).
The rules are in :mod:`colabtui_remote.schema`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, NamedTuple

from ..wire import nonfinite_marker

PROTOCOL_VERSION = 3
"""Bumped on every incompatible change to the JSON below (2: the state ``interrupted``;
3: a distributed job's ``world`` and each GPU's ``rank`` and ``host``)."""

STATES = ("running", "saving", "stopping", "stopped", "finished", "failed", "interrupted")
"""Run states reported by ``GET /v1/status``. ``interrupted``: the loop ended on an interrupt
(the kernel's stop button) or left early; the runtime lives and a re-run goes on."""

ACTIONS = ("save", "stop")
"""Actions accepted by ``POST /v1/commands``."""

COMMAND_STATES = ("pending", "running", "done", "failed")
"""Life of a command: pending → running → done | failed."""

MAX_REQUEST_BYTES = 64 * 1024
"""Largest request body the server reads; larger gets 413."""

MAX_METRICS_POINTS = 3000
"""Most points in one ``/v1/metrics`` response. A worst-case point is about 75 bytes of JSON,
so a response stays well under 256 KB (the limit set in the notebook-side issue)."""

MAX_METRIC_NAMES = 64
"""Most metric series a status or a metrics response may carry."""

MAX_INVALID_NAMED = 16
"""Most out-of-range points a :class:`MetricsPage` names in ``invalid``."""


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class GpuStats:
    """One GPU as NVML reports it. Any field may be ``None``; ``unsupported`` says why.

    ``unsupported`` maps a field name (e.g. ``"power_w"``) to the reason NVML gave
    (e.g. ``"NVML_ERROR_NOT_SUPPORTED"``). ``invalid`` names the fields sent out of range.
    """

    index: int | None
    name: str | None = None
    uuid: str | None = None
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    unsupported: dict[str, str] = field(default_factory=dict)
    rank: int | None = None
    """The global rank of a distributed job that uses this GPU, when known."""
    host: str | None = None
    """The host of a distributed job's node the GPU is on (set on a job of several nodes)."""
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointInfo:
    """A durable checkpoint: written, fsynced, renamed, verified and listed in the manifest.
    ``step``, ``bytes`` and ``saved_at`` are ``None`` only when named in ``invalid``."""

    step: int | None
    path: str
    bytes: int | None
    sha256: str
    saved_at: float | None
    seconds: float | None = None
    """Wall time the writer took (copy excluded), seconds."""
    epoch: int | None = None
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class SaveProgress:
    """A checkpoint being written. ``phase``: copying, writing, verifying, publishing."""

    step: int | None
    phase: str
    bytes_written: int | None = 0
    bytes_total: int | None = None
    started_at: float | None = None
    invalid: tuple[str, ...] = ()


REPLICA_KINDS = ("drive", "mount")
"""Where a replica lives: ``drive`` (Google Drive through its API, ``gdrive://FOLDER_ID``) or
``mount`` (a mounted Drive folder, used as a replica after the mount failed under a save)."""

REPLICA_STATES = ("ok", "uploading", "waiting", "offline", "error")
"""``ok``: every kept checkpoint is verified there; ``uploading``: a copy is in flight;
``waiting``: copies are queued; ``offline``: the destination cannot be reached (network, mount
gone, rate limit) and copies are retried; ``error``: it answers but refuses (expired credentials,
folder not shared): retried too, but it needs the user."""


@dataclass(frozen=True)
class ReplicaCopy:
    """A checkpoint verified at the replica: its md5 there matched the local file's."""

    step: int | None
    name: str
    bytes: int | None
    md5: str | None
    """md5 hex of the copy; ``None`` for a checkpoint written straight onto a reachable
    mount (verified by its sha256 read-back instead)."""
    verified_at: float | None
    file_id: str | None = None
    """Drive's file id (``drive`` replicas), ``None`` for a mount."""
    saved_at: float | None = None
    """When the checkpoint itself was saved (its ``saved_at``), Unix seconds: work after it is
    at risk until a newer copy is verified."""
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class UploadProgress:
    """A copy to the replica in flight: bytes the destination acknowledged so far."""

    step: int | None
    bytes_sent: int | None
    bytes_total: int | None
    started_at: float | None = None
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplicaStatus:
    """The ``checkpoint.replica`` block: checkpoints copied beyond the runtime's disk.

    ``checkpoint.last`` is what is *written locally*; ``verified`` is what is *verified on Drive*.
    ``pending`` counts local checkpoints not yet verified there.
    """

    dest: str
    kind: str
    state: str
    verified: ReplicaCopy | None = None
    uploading: UploadProgress | None = None
    pending: int | None = 0
    last_error: str | None = None
    last_error_at: float | None = None
    next_retry_at: float | None = None
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointStatus:
    """The ``checkpoint`` block of ``/v1/status``. ``replica`` is ``None`` when checkpoints are
    kept only in ``dir``."""

    dir: str | None = None
    last: CheckpointInfo | None = None
    in_progress: SaveProgress | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    next_autosave_at: float | None = None
    autosave_every_s: float | None = None
    count: int | None = 0
    replica: ReplicaStatus | None = None
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostInfo:
    python: str | None = None
    torch: str | None = None
    platform: str | None = None
    hostname: str | None = None


@dataclass(frozen=True)
class RankInfo:
    """One process of a distributed job: its global and local rank, where it runs, its GPU
    (uuid, when it uses CUDA), the step its last heartbeat carried, and why it was lost
    (``None`` while it lives)."""

    rank: int | None
    local_rank: int | None = None
    host: str | None = None
    pid: int | None = None
    gpu_uuid: str | None = None
    step: int | None = None
    lost: str | None = None
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorldStatus:
    """A distributed job (``torchrun``): its world size, its nodes, every rank."""

    size: int | None
    nodes: int | None = None
    ranks: list[RankInfo] = field(default_factory=list)
    checkpoint_kind: str | None = None
    """``"replicated"`` (rank 0 writes one file) or ``"sharded"`` (DCP folders)."""
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuntimeInfo:
    """The runtime a session is on (see ``colabtui_remote.runtime``): its platform
    (``colab``, ``kaggle``, ``other``), its age, the maximum its platform documents (or
    ``COLABTUI_RUNTIME_MAX_S`` sets) and its idle timeout, seconds (``None``: unknown or none),
    and a short note naming the limits. ``age_s`` is ``None`` where the runtime's start is
    unknown (no ``/proc``)."""

    platform: str
    age_s: float | None = None
    max_s: float | None = None
    idle_timeout_s: float | None = None
    limit_note: str | None = None
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class Status:
    """``GET /v1/status``: one snapshot of a session.

    ``metrics`` maps a series name to its latest value (``None`` for non-finite; the marker is
    in ``metrics_nonfinite``). ``last_seq`` is the newest metric sequence number, so a client
    knows whether to fetch ``/v1/metrics``. ``invalid`` names the fields of this object the
    session sent out of range (``None`` here); nested objects carry their own.
    """

    protocol: int
    run: str
    session_id: str
    label: str
    state: str
    step: int | None
    total_steps: int | None = None
    epoch: int | None = None
    steps_per_s: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    metrics_nonfinite: dict[str, str] = field(default_factory=dict)
    last_seq: int = 0
    started_at: float | None = None
    uptime_s: float | None = None
    server_time: float | None = None
    gpus: list[GpuStats] = field(default_factory=list)
    gpu_error: str | None = None
    checkpoint: CheckpointStatus = field(default_factory=CheckpointStatus)
    host: HostInfo = field(default_factory=HostInfo)
    error: str | None = None
    """Why the run failed, when ``state == "failed"``."""
    world: WorldStatus | None = None
    """A distributed job's ranks; ``None`` for one process."""
    runtime: RuntimeInfo | None = None
    """The runtime's platform, age and limits; ``None`` from a session that does not say."""
    invalid: tuple[str, ...] = ()


class MetricPoint(NamedTuple):
    """One logged value. ``value`` is a float, NaN or ±inf in memory; on the wire it is
    ``[seq, step, time, value_or_null, marker_or_null]``. A named tuple: pages hold thousands."""

    seq: int
    step: int
    time: float
    value: float

    def to_wire(self) -> list:
        value = self.value
        if value - value == 0.0:  # finite (NaN - NaN and inf - inf are NaN)
            return [self.seq, self.step, round(self.time, 3), value, None]
        return [self.seq, self.step, round(self.time, 3), None, nonfinite_marker(value)]


@dataclass(frozen=True)
class MetricsPage:
    """``GET /v1/metrics?after=SEQ``.

    Attributes:
        after: the ``after`` the client sent.
        next_after: the value to send next time (the last seq included, or ``after``).
        last_seq: the newest seq the server holds.
        more: ``True`` when the page was cut at :data:`MAX_METRICS_POINTS`; ask again at once.
        thinned: ``True`` when some points logged after ``after`` were dropped by thinning
            (min/max kept per bucket), so the client's history has a gap at lower resolution.
        series: name → points in seq order.
        invalid: the points left out as out of range, e.g. ``"series.loss[3]"`` (at most
            :data:`MAX_INVALID_NAMED`).
    """

    after: int
    next_after: int
    last_seq: int
    more: bool
    thinned: bool
    series: dict[str, list[MetricPoint]]
    invalid: tuple[str, ...] = ()

    def to_wire(self) -> dict:
        return {
            "protocol": PROTOCOL_VERSION,
            "after": self.after,
            "next_after": self.next_after,
            "last_seq": self.last_seq,
            "more": self.more,
            "thinned": self.thinned,
            "series": {name: [p.to_wire() for p in pts] for name, pts in self.series.items()},
        }


@dataclass(frozen=True)
class CommandRecord:
    """A command and where it stands. ``checkpoint`` is set when a save is done; ``error``
    when it failed."""

    id: str
    action: str
    state: str
    created_at: float | None
    started_at: float | None = None
    finished_at: float | None = None
    checkpoint: CheckpointInfo | None = None
    error: str | None = None
    invalid: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointList:
    """``GET /v1/checkpoints``: the manifest, newest last."""

    dir: str | None
    checkpoints: list[CheckpointInfo]


def error_body(code: str, message: str) -> dict:
    """The body of every 4xx/5xx: ``{"error": {"code": ..., "message": ...}}``."""
    return {"error": {"code": code, "message": message}}


# --------------------------------------------------------------------------- wire form


def _wire_fields(items: list[tuple[str, Any]]) -> dict:
    return {k: v for k, v in items if k != "invalid"}  # the laptop's own finding


def _to_wire(obj: Any) -> dict:
    return asdict(obj, dict_factory=_wire_fields)


def gpu_to_wire(gpu: GpuStats) -> dict:
    """The JSON object for one :class:`GpuStats` (as in a status's ``gpus``)."""
    return _to_wire(gpu)


def invalid_paths(obj: Any) -> list[str]:
    """Every field named invalid in ``obj`` and the objects in it, as dotted paths:
    ``["total_steps", "gpus[0].memory_used_bytes", "checkpoint.last.bytes"]``."""
    if not is_dataclass(obj):
        return []
    paths: list[str] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name == "invalid":
            paths.extend(value)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                paths.extend(f"{f.name}[{i}].{p}" for p in invalid_paths(item))
        else:
            paths.extend(f"{f.name}.{p}" for p in invalid_paths(value))
    return paths


def status_to_wire(status: Status) -> dict:
    """The JSON object for a :class:`Status` (``protocol`` included)."""
    return _to_wire(status)


def command_to_wire(record: CommandRecord) -> dict:
    return {"protocol": PROTOCOL_VERSION, **_to_wire(record)}


def checkpoint_list_to_wire(listing: CheckpointList) -> dict:
    return {"protocol": PROTOCOL_VERSION, **_to_wire(listing)}
