"""Wire protocol v1: the one definition of what crosses between a runtime and the laptop.

The notebook-side server builds its responses with these types and :func:`dumps`; the laptop
parses every response with the ``parse_*`` functions, which raise :class:`SchemaError` on
anything malformed, so a bad answer becomes an error on one panel and never a traceback.

Rules kept here (see DESIGN.md, "The wire protocol"):

* JSON, UTF-8. Non-finite floats travel as ``null``; a metric point carries a marker
  (``"nan"``, ``"inf"``, ``"-inf"``) beside the ``null`` so the client can tell NaN from missing.
  :func:`dumps` never emits ``NaN``/``Infinity`` tokens.
* Units are in the field names: ``_bytes``, ``_s`` (seconds), ``_c`` (°C), ``_w`` (watts),
  ``_pct`` (percent, 0–100). Times (``_at``) are Unix seconds (float, UTC).
* A change to the wire format bumps :data:`PROTOCOL_VERSION`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

PROTOCOL_VERSION = 1
"""Bumped on every incompatible change to the JSON below."""

STATES = ("running", "saving", "stopping", "stopped", "finished", "failed")
"""Run states reported by ``GET /v1/status``."""

ACTIONS = ("save", "stop")
"""Actions accepted by ``POST /v1/commands``."""

COMMAND_STATES = ("pending", "running", "done", "failed")
"""Life of a command: pending → running → done | failed."""

NONFINITE_MARKERS = ("nan", "inf", "-inf")

MAX_REQUEST_BYTES = 64 * 1024
"""Largest request body the server reads; larger gets 413."""

MAX_METRICS_POINTS = 3000
"""Most points in one ``/v1/metrics`` response. A worst-case point is about 75 bytes of JSON,
so a response stays well under 256 KB (the limit set in the notebook-side issue)."""

MAX_TEXT = 512
"""Longest free-text field (label, error message) the laptop keeps; longer is cut."""

MAX_METRIC_NAMES = 64
"""Most metric series a status or a metrics response may carry."""


class SchemaError(ValueError):
    """A JSON document does not match protocol v1. The message says which field and why."""


# --------------------------------------------------------------------------- encoding


def finite_or_none(value: float | None) -> float | None:
    """Return ``value`` if it is a finite number, else ``None`` (the wire form of NaN/inf)."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def nonfinite_marker(value: float) -> str | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a non-finite float, ``None`` for a finite one."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def marker_value(marker: str | None, value: float | None) -> float | None:
    """Inverse of the wire encoding: rebuild the float a point stood for (NaN, ±inf or value)."""
    if marker == "nan":
        return math.nan
    if marker == "inf":
        return math.inf
    if marker == "-inf":
        return -math.inf
    return value


def _sanitize(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` (dataclasses allowed) as compact UTF-8 JSON with non-finite floats as null.

    Raises:
        TypeError: ``obj`` holds something JSON cannot carry.
    """
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    try:  # fast path: the C encoder alone, when nothing non-finite is inside
        text = json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        text = json.dumps(_sanitize(obj), allow_nan=False, separators=(",", ":"),
                          ensure_ascii=False)
    return text.encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Decode JSON, raising :class:`SchemaError` (not ``ValueError``/``UnicodeError``)."""
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        return json.loads(data, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise SchemaError(f"not valid JSON: bare {name} is not allowed")


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

_MISSING = object()


def _get(obj: dict, key: str, types: tuple, where: str, default: Any = _MISSING) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is not _MISSING:
            return default
        if value is None and type(None) in types:
            return None
        raise SchemaError(f"{where}.{key}: missing")
    if isinstance(value, bool) and bool not in types:
        raise SchemaError(f"{where}.{key}: expected {_names(types)}, got a boolean")
    if not isinstance(value, types):
        raise SchemaError(f"{where}.{key}: expected {_names(types)}, got {type(value).__name__}")
    if isinstance(value, str):
        value = value[:MAX_TEXT]
    return value


def _names(types: tuple) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_INT = (int, type(None))
_OPT_STR = (str, type(None))


def _obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def parse_checkpoint_info(obj: Any, where: str = "checkpoint") -> CheckpointInfo:
    o = _obj(obj, where)
    return CheckpointInfo(
        step=_get(o, "step", (int,), where),
        path=_get(o, "path", (str,), where),
        bytes=_get(o, "bytes", (int,), where),
        sha256=_get(o, "sha256", (str,), where, ""),
        saved_at=float(_get(o, "saved_at", _NUM, where)),
        seconds=_get(o, "seconds", _OPT_NUM, where, None),
        epoch=_get(o, "epoch", _OPT_INT, where, None),
    )


def _parse_gpu(obj: Any, where: str) -> GpuStats:
    o = _obj(obj, where)
    unsupported = _get(o, "unsupported", (dict,), where, {})
    return GpuStats(
        index=_get(o, "index", (int,), where, 0),
        name=_get(o, "name", _OPT_STR, where, None),
        uuid=_get(o, "uuid", _OPT_STR, where, None),
        utilization_pct=_get(o, "utilization_pct", _OPT_NUM, where, None),
        memory_used_bytes=_get(o, "memory_used_bytes", _OPT_INT, where, None),
        memory_total_bytes=_get(o, "memory_total_bytes", _OPT_INT, where, None),
        temperature_c=_get(o, "temperature_c", _OPT_NUM, where, None),
        power_w=_get(o, "power_w", _OPT_NUM, where, None),
        power_limit_w=_get(o, "power_limit_w", _OPT_NUM, where, None),
        unsupported={str(k)[:64]: str(v)[:MAX_TEXT] for k, v in list(unsupported.items())[:16]},
    )


def _parse_progress(obj: Any, where: str) -> SaveProgress | None:
    if obj is None:
        return None
    o = _obj(obj, where)
    return SaveProgress(
        step=_get(o, "step", (int,), where),
        phase=_get(o, "phase", (str,), where),
        bytes_written=_get(o, "bytes_written", (int,), where, 0),
        bytes_total=_get(o, "bytes_total", _OPT_INT, where, None),
        started_at=_get(o, "started_at", _OPT_NUM, where, None),
    )


def _parse_checkpoint_status(obj: Any, where: str) -> CheckpointStatus:
    if obj is None:
        return CheckpointStatus()
    o = _obj(obj, where)
    last = o.get("last")
    return CheckpointStatus(
        dir=_get(o, "dir", _OPT_STR, where, None),
        last=None if last is None else parse_checkpoint_info(last, f"{where}.last"),
        in_progress=_parse_progress(o.get("in_progress"), f"{where}.in_progress"),
        last_error=_get(o, "last_error", _OPT_STR, where, None),
        last_error_at=_get(o, "last_error_at", _OPT_NUM, where, None),
        next_autosave_at=_get(o, "next_autosave_at", _OPT_NUM, where, None),
        autosave_every_s=_get(o, "autosave_every_s", _OPT_NUM, where, None),
        count=_get(o, "count", (int,), where, 0),
        replica=_parse_replica(o.get("replica"), f"{where}.replica"),
    )


def _parse_replica(obj: Any, where: str) -> ReplicaStatus | None:
    if obj is None:
        return None
    o = _obj(obj, where)
    kind = _get(o, "kind", (str,), where)
    state = _get(o, "state", (str,), where)
    if kind not in REPLICA_KINDS:
        raise SchemaError(f"{where}.kind: unknown kind {kind[:40]!r}")
    if state not in REPLICA_STATES:
        raise SchemaError(f"{where}.state: unknown state {state[:40]!r}")
    verified = o.get("verified")
    if verified is not None:
        v, vw = _obj(verified, f"{where}.verified"), f"{where}.verified"
        verified = ReplicaCopy(
            step=_get(v, "step", (int,), vw), name=_get(v, "name", (str,), vw)[:MAX_TEXT],
            bytes=_get(v, "bytes", (int,), vw),
            md5=(_get(v, "md5", _OPT_STR, vw, None) or None),
            verified_at=float(_get(v, "verified_at", _NUM, vw)),
            file_id=_get(v, "file_id", _OPT_STR, vw, None),
            saved_at=_get(v, "saved_at", _OPT_NUM, vw, None))
    uploading = o.get("uploading")
    if uploading is not None:
        u, uw = _obj(uploading, f"{where}.uploading"), f"{where}.uploading"
        uploading = UploadProgress(
            step=_get(u, "step", (int,), uw), bytes_sent=_get(u, "bytes_sent", (int,), uw),
            bytes_total=_get(u, "bytes_total", (int,), uw),
            started_at=_get(u, "started_at", _OPT_NUM, uw, None))
    error = _get(o, "last_error", _OPT_STR, where, None)
    return ReplicaStatus(
        dest=_get(o, "dest", (str,), where)[:MAX_TEXT], kind=kind, state=state,
        verified=verified, uploading=uploading, pending=_get(o, "pending", (int,), where, 0),
        last_error=None if error is None else error[:MAX_TEXT],
        last_error_at=_get(o, "last_error_at", _OPT_NUM, where, None),
        next_retry_at=_get(o, "next_retry_at", _OPT_NUM, where, None))


def check_protocol(obj: Any) -> dict:
    """Check a decoded response is an object speaking this protocol version.

    Raises:
        ProtocolMismatch: the server speaks another version.
        SchemaError: not an object, or no ``protocol`` field.
    """
    o = _obj(obj, "response")
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
    state = _get(o, "state", (str,), w)
    if state not in STATES:
        raise SchemaError(f"status.state: unknown state {state[:40]!r}")
    metrics_raw = _get(o, "metrics", (dict,), w, {})
    metrics: dict[str, float | None] = {}
    for name, value in list(metrics_raw.items())[:MAX_METRIC_NAMES]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, _NUM)):
            raise SchemaError(f"status.metrics.{str(name)[:40]}: expected a number or null")
        metrics[str(name)[:MAX_TEXT]] = None if value is None else float(value)
    nonfinite_raw = _get(o, "metrics_nonfinite", (dict,), w, {})
    nonfinite = {str(k)[:MAX_TEXT]: str(v) for k, v in list(nonfinite_raw.items())[:MAX_METRIC_NAMES]
                 if v in NONFINITE_MARKERS}
    gpus_raw = _get(o, "gpus", (list,), w, [])
    host = _obj(o.get("host") or {}, "status.host")
    return Status(
        protocol=o["protocol"],
        run=_get(o, "run", (str,), w),
        session_id=_get(o, "session_id", (str,), w),
        label=_get(o, "label", (str,), w, ""),
        state=state,
        step=_get(o, "step", _OPT_INT, w, None),
        total_steps=_get(o, "total_steps", _OPT_INT, w, None),
        epoch=_get(o, "epoch", _OPT_INT, w, None),
        steps_per_s=_get(o, "steps_per_s", _OPT_NUM, w, None),
        metrics=metrics,
        metrics_nonfinite=nonfinite,
        last_seq=_get(o, "last_seq", (int,), w, 0),
        started_at=_get(o, "started_at", _OPT_NUM, w, None),
        uptime_s=_get(o, "uptime_s", _OPT_NUM, w, None),
        server_time=_get(o, "server_time", _OPT_NUM, w, None),
        gpus=[_parse_gpu(g, f"status.gpus[{i}]") for i, g in enumerate(gpus_raw[:16])],
        gpu_error=_get(o, "gpu_error", _OPT_STR, w, None),
        checkpoint=_parse_checkpoint_status(o.get("checkpoint"), "status.checkpoint"),
        host=HostInfo(
            python=_get(host, "python", _OPT_STR, "status.host", None),
            torch=_get(host, "torch", _OPT_STR, "status.host", None),
            platform=_get(host, "platform", _OPT_STR, "status.host", None),
            hostname=_get(host, "hostname", _OPT_STR, "status.host", None),
        ),
        error=_get(o, "error", _OPT_STR, w, None),
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
    series_raw = _get(o, "series", (dict,), w, {})
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
                    or isinstance(t, bool) or not isinstance(t, _NUM)
                    or (value is not None and (isinstance(value, bool) or not isinstance(value, _NUM)))
                    or (marker is not None and marker not in NONFINITE_MARKERS)
                    or (value is None and marker is None)):
                raise SchemaError(f"metrics.series.{str(name)[:40]}[{i}]: bad point")
            parsed.append(MetricPoint(seq, step, float(t), marker_value(marker, None if value is None else float(value))))
        series[str(name)[:MAX_TEXT]] = parsed
    return MetricsPage(
        after=_get(o, "after", (int,), w, 0),
        next_after=_get(o, "next_after", (int,), w),
        last_seq=_get(o, "last_seq", (int,), w),
        more=bool(_get(o, "more", (bool,), w, False)),
        thinned=bool(_get(o, "thinned", (bool,), w, False)),
        series=series,
    )


def parse_command(obj: Any) -> CommandRecord:
    """Parse a command record (``POST /v1/commands`` or ``GET /v1/commands/<id>``).

    Raises:
        ProtocolMismatch, SchemaError: as :func:`parse_status`.
    """
    o = check_protocol(obj)
    w = "command"
    state = _get(o, "state", (str,), w)
    if state not in COMMAND_STATES:
        raise SchemaError(f"command.state: unknown state {state[:40]!r}")
    ckpt = o.get("checkpoint")
    return CommandRecord(
        id=_get(o, "id", (str,), w),
        action=_get(o, "action", (str,), w),
        state=state,
        created_at=float(_get(o, "created_at", _NUM, w)),
        started_at=_get(o, "started_at", _OPT_NUM, w, None),
        finished_at=_get(o, "finished_at", _OPT_NUM, w, None),
        checkpoint=None if ckpt is None else parse_checkpoint_info(ckpt, "command.checkpoint"),
        error=_get(o, "error", _OPT_STR, w, None),
    )


def command_to_wire(record: CommandRecord) -> dict:
    return {"protocol": PROTOCOL_VERSION, **asdict(record)}


def parse_checkpoint_list(obj: Any) -> CheckpointList:
    """Parse ``GET /v1/checkpoints``.

    Raises:
        ProtocolMismatch, SchemaError: as :func:`parse_status`.
    """
    o = check_protocol(obj)
    items = _get(o, "checkpoints", (list,), "checkpoints", [])
    return CheckpointList(
        dir=_get(o, "dir", _OPT_STR, "checkpoints", None),
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
