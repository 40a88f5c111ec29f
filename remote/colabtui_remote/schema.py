"""Wire protocol v1: the one definition of what crosses between a runtime and the laptop.

The notebook-side server builds its responses with these types and :func:`.wire.dumps`; the laptop
parses every response with the ``parse_*`` functions, which raise :class:`SchemaError` on
anything malformed, so a bad answer becomes an error on one panel and never a traceback.

Rules kept here (see DESIGN.md, "The wire protocol"):

* JSON, UTF-8. Non-finite floats travel as ``null``; a metric point carries a marker
  (``"nan"``, ``"inf"``, ``"-inf"``) beside the ``null`` so the client can tell NaN from missing.
  :func:`.wire.dumps` never emits ``NaN``/``Infinity`` tokens.
* Units are in the field names: ``_bytes``, ``_s`` (seconds), ``_c`` (°C), ``_w`` (watts),
  ``_pct`` (percent, 0–100). Times (``_at``) are Unix seconds (float, UTC).
* A change to the wire format bumps :data:`PROTOCOL_VERSION`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from .wire import (
    MAX_TEXT,
    NONFINITE_MARKERS,
    NUM,
    OPT_INT,
    OPT_NUM,
    OPT_STR,
    SchemaError,
    expect_object,
    get_field,
    marker_value,
    nonfinite_marker,
)

PROTOCOL_VERSION = 2
"""Bumped on every incompatible change to the JSON below (2: the state ``interrupted``)."""

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


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class GpuStats:
    """One GPU as NVML reports it. Any field may be ``None``; ``unsupported`` says why.

    ``unsupported`` maps a field name (e.g. ``"power_w"``) to the reason NVML gave
    (e.g. ``"NVML_ERROR_NOT_SUPPORTED"``).
    """

    index: int
    name: str | None = None
    uuid: str | None = None
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    unsupported: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointInfo:
    """A durable checkpoint: written, fsynced, renamed, verified and listed in the manifest."""

    step: int
    path: str
    bytes: int
    sha256: str
    saved_at: float
    seconds: float | None = None
    """Wall time the writer took (copy excluded), seconds."""
    epoch: int | None = None


@dataclass(frozen=True)
class SaveProgress:
    """A checkpoint being written. ``phase``: copying, writing, verifying, publishing."""

    step: int
    phase: str
    bytes_written: int = 0
    bytes_total: int | None = None
    started_at: float | None = None


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

    step: int
    name: str
    bytes: int
    md5: str | None
    """md5 hex of the copy; ``None`` for a checkpoint written straight onto a reachable
    mount (verified by its sha256 read-back instead)."""
    verified_at: float
    file_id: str | None = None
    """Drive's file id (``drive`` replicas), ``None`` for a mount."""
    saved_at: float | None = None
    """When the checkpoint itself was saved (its ``saved_at``), Unix seconds: work after it is
    at risk until a newer copy is verified."""


@dataclass(frozen=True)
class UploadProgress:
    """A copy to the replica in flight: bytes the destination acknowledged so far."""

    step: int
    bytes_sent: int
    bytes_total: int
    started_at: float | None = None


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
    pending: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    next_retry_at: float | None = None


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
    count: int = 0
    replica: ReplicaStatus | None = None


@dataclass(frozen=True)
class HostInfo:
    python: str | None = None
    torch: str | None = None
    platform: str | None = None
    hostname: str | None = None


@dataclass(frozen=True)
class Status:
    """``GET /v1/status``: one snapshot of a session.

    ``metrics`` maps a series name to its latest value (``None`` for non-finite; the marker is
    in ``metrics_nonfinite``). ``last_seq`` is the newest metric sequence number, so a client
    knows whether to fetch ``/v1/metrics``.
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
    """

    after: int
    next_after: int
    last_seq: int
    more: bool
    thinned: bool
    series: dict[str, list[MetricPoint]]

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
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    checkpoint: CheckpointInfo | None = None
    error: str | None = None


@dataclass(frozen=True)
class CheckpointList:
    """``GET /v1/checkpoints``: the manifest, newest last."""

    dir: str | None
    checkpoints: list[CheckpointInfo]


def error_body(code: str, message: str) -> dict:
    """The body of every 4xx/5xx: ``{"error": {"code": ..., "message": ...}}``."""
    return {"error": {"code": code, "message": message}}


# --------------------------------------------------------------------------- parsing

def parse_checkpoint_info(obj: Any, where: str = "checkpoint") -> CheckpointInfo:
    o = expect_object(obj, where)
    return CheckpointInfo(
        step=get_field(o, "step", (int,), where),
        path=get_field(o, "path", (str,), where),
        bytes=get_field(o, "bytes", (int,), where),
        sha256=get_field(o, "sha256", (str,), where, ""),
        saved_at=float(get_field(o, "saved_at", NUM, where)),
        seconds=get_field(o, "seconds", OPT_NUM, where, None),
        epoch=get_field(o, "epoch", OPT_INT, where, None),
    )


def _parse_gpu(obj: Any, where: str) -> GpuStats:
    o = expect_object(obj, where)
    unsupported = get_field(o, "unsupported", (dict,), where, {})
    return GpuStats(
        index=get_field(o, "index", (int,), where, 0),
        name=get_field(o, "name", OPT_STR, where, None),
        uuid=get_field(o, "uuid", OPT_STR, where, None),
        utilization_pct=get_field(o, "utilization_pct", OPT_NUM, where, None),
        memory_used_bytes=get_field(o, "memory_used_bytes", OPT_INT, where, None),
        memory_total_bytes=get_field(o, "memory_total_bytes", OPT_INT, where, None),
        temperature_c=get_field(o, "temperature_c", OPT_NUM, where, None),
        power_w=get_field(o, "power_w", OPT_NUM, where, None),
        power_limit_w=get_field(o, "power_limit_w", OPT_NUM, where, None),
        unsupported={str(k)[:64]: str(v)[:MAX_TEXT] for k, v in list(unsupported.items())[:16]},
    )


def _parse_progress(obj: Any, where: str) -> SaveProgress | None:
    if obj is None:
        return None
    o = expect_object(obj, where)
    return SaveProgress(
        step=get_field(o, "step", (int,), where),
        phase=get_field(o, "phase", (str,), where),
        bytes_written=get_field(o, "bytes_written", (int,), where, 0),
        bytes_total=get_field(o, "bytes_total", OPT_INT, where, None),
        started_at=get_field(o, "started_at", OPT_NUM, where, None),
    )


def _parse_checkpoint_status(obj: Any, where: str) -> CheckpointStatus:
    if obj is None:
        return CheckpointStatus()
    o = expect_object(obj, where)
    last = o.get("last")
    return CheckpointStatus(
        dir=get_field(o, "dir", OPT_STR, where, None),
        last=None if last is None else parse_checkpoint_info(last, f"{where}.last"),
        in_progress=_parse_progress(o.get("in_progress"), f"{where}.in_progress"),
        last_error=get_field(o, "last_error", OPT_STR, where, None),
        last_error_at=get_field(o, "last_error_at", OPT_NUM, where, None),
        next_autosave_at=get_field(o, "next_autosave_at", OPT_NUM, where, None),
        autosave_every_s=get_field(o, "autosave_every_s", OPT_NUM, where, None),
        count=get_field(o, "count", (int,), where, 0),
        replica=_parse_replica(o.get("replica"), f"{where}.replica"),
    )


def _parse_replica(obj: Any, where: str) -> ReplicaStatus | None:
    if obj is None:
        return None
    o = expect_object(obj, where)
    kind = get_field(o, "kind", (str,), where)
    state = get_field(o, "state", (str,), where)
    if kind not in REPLICA_KINDS:
        raise SchemaError(f"{where}.kind: unknown kind {kind[:40]!r}")
    if state not in REPLICA_STATES:
        raise SchemaError(f"{where}.state: unknown state {state[:40]!r}")
    verified = o.get("verified")
    if verified is not None:
        v, vw = expect_object(verified, f"{where}.verified"), f"{where}.verified"
        verified = ReplicaCopy(
            step=get_field(v, "step", (int,), vw), name=get_field(v, "name", (str,), vw)[:MAX_TEXT],
            bytes=get_field(v, "bytes", (int,), vw),
            md5=(get_field(v, "md5", OPT_STR, vw, None) or None),
            verified_at=float(get_field(v, "verified_at", NUM, vw)),
            file_id=get_field(v, "file_id", OPT_STR, vw, None),
            saved_at=get_field(v, "saved_at", OPT_NUM, vw, None))
    uploading = o.get("uploading")
    if uploading is not None:
        u, uw = expect_object(uploading, f"{where}.uploading"), f"{where}.uploading"
        uploading = UploadProgress(
            step=get_field(u, "step", (int,), uw), bytes_sent=get_field(u, "bytes_sent", (int,), uw),
            bytes_total=get_field(u, "bytes_total", (int,), uw),
            started_at=get_field(u, "started_at", OPT_NUM, uw, None))
    error = get_field(o, "last_error", OPT_STR, where, None)
    return ReplicaStatus(
        dest=get_field(o, "dest", (str,), where)[:MAX_TEXT], kind=kind, state=state,
        verified=verified, uploading=uploading, pending=get_field(o, "pending", (int,), where, 0),
        last_error=None if error is None else error[:MAX_TEXT],
        last_error_at=get_field(o, "last_error_at", OPT_NUM, where, None),
        next_retry_at=get_field(o, "next_retry_at", OPT_NUM, where, None))


def check_protocol(obj: Any) -> dict:
    """Check a decoded response is an object speaking this protocol version.

    Raises:
        ProtocolMismatch: the server speaks another version.
        SchemaError: not an object, or no ``protocol`` field.
    """
    o = expect_object(obj, "response")
    version = o.get("protocol")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaError("response.protocol: missing (is this a colabtui_remote server?)")
    if version != PROTOCOL_VERSION:
        raise ProtocolMismatch(version)
    return o


class ProtocolMismatch(SchemaError):
    """The server speaks another protocol version than this client."""

    def __init__(self, server_version: int):
        self.server_version = server_version
        super().__init__(
            f"protocol mismatch: the session speaks v{server_version}, this colabtui speaks "
            f"v{PROTOCOL_VERSION}; install the same version of colabtui-remote on both sides"
        )


def parse_status(obj: Any) -> Status:
    """Parse a decoded ``/v1/status`` body.

    Raises:
        ProtocolMismatch: another protocol version.
        SchemaError: a field is missing or of the wrong type.
    """
    o = check_protocol(obj)
    w = "status"
    state = get_field(o, "state", (str,), w)
    if state not in STATES:
        raise SchemaError(f"status.state: unknown state {state[:40]!r}")
    metrics_raw = get_field(o, "metrics", (dict,), w, {})
    metrics: dict[str, float | None] = {}
    for name, value in list(metrics_raw.items())[:MAX_METRIC_NAMES]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, NUM)):
            raise SchemaError(f"status.metrics.{str(name)[:40]}: expected a number or null")
        metrics[str(name)[:MAX_TEXT]] = None if value is None else float(value)
    nonfinite_raw = get_field(o, "metrics_nonfinite", (dict,), w, {})
    nonfinite = {str(k)[:MAX_TEXT]: str(v) for k, v in list(nonfinite_raw.items())[:MAX_METRIC_NAMES]
                 if v in NONFINITE_MARKERS}
    gpus_raw = get_field(o, "gpus", (list,), w, [])
    host = expect_object(o.get("host") or {}, "status.host")
    return Status(
        protocol=o["protocol"],
        run=get_field(o, "run", (str,), w),
        session_id=get_field(o, "session_id", (str,), w),
        label=get_field(o, "label", (str,), w, ""),
        state=state,
        step=get_field(o, "step", OPT_INT, w, None),
        total_steps=get_field(o, "total_steps", OPT_INT, w, None),
        epoch=get_field(o, "epoch", OPT_INT, w, None),
        steps_per_s=get_field(o, "steps_per_s", OPT_NUM, w, None),
        metrics=metrics,
        metrics_nonfinite=nonfinite,
        last_seq=get_field(o, "last_seq", (int,), w, 0),
        started_at=get_field(o, "started_at", OPT_NUM, w, None),
        uptime_s=get_field(o, "uptime_s", OPT_NUM, w, None),
        server_time=get_field(o, "server_time", OPT_NUM, w, None),
        gpus=[_parse_gpu(g, f"status.gpus[{i}]") for i, g in enumerate(gpus_raw[:16])],
        gpu_error=get_field(o, "gpu_error", OPT_STR, w, None),
        checkpoint=_parse_checkpoint_status(o.get("checkpoint"), "status.checkpoint"),
        host=HostInfo(
            python=get_field(host, "python", OPT_STR, "status.host", None),
            torch=get_field(host, "torch", OPT_STR, "status.host", None),
            platform=get_field(host, "platform", OPT_STR, "status.host", None),
            hostname=get_field(host, "hostname", OPT_STR, "status.host", None),
        ),
        error=get_field(o, "error", OPT_STR, w, None),
    )


def status_to_wire(status: Status) -> dict:
    """The JSON object for a :class:`Status` (``protocol`` included)."""
    return asdict(status)


def parse_metrics(obj: Any) -> MetricsPage:
    """Parse a decoded ``/v1/metrics`` body. Non-finite points come back as NaN/±inf floats.

    Raises:
        ProtocolMismatch, SchemaError: as :func:`parse_status`.
    """
    o = check_protocol(obj)
    w = "metrics"
    series_raw = get_field(o, "series", (dict,), w, {})
    if len(series_raw) > MAX_METRIC_NAMES:
        raise SchemaError(f"metrics.series: {len(series_raw)} series, at most {MAX_METRIC_NAMES}")
    series: dict[str, list[MetricPoint]] = {}
    total = 0
    for name, pts in series_raw.items():
        if not isinstance(pts, list):
            raise SchemaError(f"metrics.series.{str(name)[:40]}: expected a list")
        total += len(pts)
        if total > MAX_METRICS_POINTS * 4:
            raise SchemaError("metrics.series: too many points in one response")
        parsed = []
        for i, p in enumerate(pts):
            if not isinstance(p, list) or len(p) != 5:
                raise SchemaError(f"metrics.series.{str(name)[:40]}[{i}]: expected "
                                  "[seq, step, time, value, marker]")
            seq, step, t, value, marker = p
            if (not isinstance(seq, int) or not isinstance(step, int)
                    or isinstance(t, bool) or not isinstance(t, NUM)
                    or (value is not None and (isinstance(value, bool) or not isinstance(value, NUM)))
                    or (marker is not None and marker not in NONFINITE_MARKERS)
                    or (value is None and marker is None)):
                raise SchemaError(f"metrics.series.{str(name)[:40]}[{i}]: bad point")
            parsed.append(MetricPoint(seq, step, float(t), marker_value(marker, None if value is None else float(value))))
        series[str(name)[:MAX_TEXT]] = parsed
    return MetricsPage(
        after=get_field(o, "after", (int,), w, 0),
        next_after=get_field(o, "next_after", (int,), w),
        last_seq=get_field(o, "last_seq", (int,), w),
        more=bool(get_field(o, "more", (bool,), w, False)),
        thinned=bool(get_field(o, "thinned", (bool,), w, False)),
        series=series,
    )


def parse_command(obj: Any) -> CommandRecord:
    """Parse a command record (``POST /v1/commands`` or ``GET /v1/commands/<id>``).

    Raises:
        ProtocolMismatch, SchemaError: as :func:`parse_status`.
    """
    o = check_protocol(obj)
    w = "command"
    state = get_field(o, "state", (str,), w)
    if state not in COMMAND_STATES:
        raise SchemaError(f"command.state: unknown state {state[:40]!r}")
    ckpt = o.get("checkpoint")
    return CommandRecord(
        id=get_field(o, "id", (str,), w),
        action=get_field(o, "action", (str,), w),
        state=state,
        created_at=float(get_field(o, "created_at", NUM, w)),
        started_at=get_field(o, "started_at", OPT_NUM, w, None),
        finished_at=get_field(o, "finished_at", OPT_NUM, w, None),
        checkpoint=None if ckpt is None else parse_checkpoint_info(ckpt, "command.checkpoint"),
        error=get_field(o, "error", OPT_STR, w, None),
    )


def command_to_wire(record: CommandRecord) -> dict:
    return {"protocol": PROTOCOL_VERSION, **asdict(record)}


def parse_checkpoint_list(obj: Any) -> CheckpointList:
    """Parse ``GET /v1/checkpoints``.

    Raises:
        ProtocolMismatch, SchemaError: as :func:`parse_status`.
    """
    o = check_protocol(obj)
    items = get_field(o, "checkpoints", (list,), "checkpoints", [])
    return CheckpointList(
        dir=get_field(o, "dir", OPT_STR, "checkpoints", None),
        checkpoints=[parse_checkpoint_info(c, f"checkpoints[{i}]") for i, c in enumerate(items)],
    )


def checkpoint_list_to_wire(listing: CheckpointList) -> dict:
    return {"protocol": PROTOCOL_VERSION, **asdict(listing)}


def parse_error(obj: Any) -> str | None:
    """The message of an error body, or ``None`` if ``obj`` is not one."""
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        msg = obj["error"].get("message")
        if isinstance(msg, str):
            return msg[:MAX_TEXT]
    return None
