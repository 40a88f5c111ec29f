"""Wire protocol v1, its parse: a decoded document from a peer to the types of
:mod:`.types`, every string cleaned and every number bounded (the rules are in
:mod:`colabtui_remote.schema`). Every function raises :class:`SchemaError` on anything
malformed, never another exception."""

from __future__ import annotations

import math
from typing import Any

from ..wire import (
    MAX_INT,
    MIN_INT,
    MISSING,
    NONFINITE_MARKERS,
    NUM,
    OPT_STR,
    SchemaError,
    clean_text,
    expect_object,
    get_field,
    get_int,
    get_real,
    marker_value,
    nonfinite_marker,
)
from .types import (
    COMMAND_STATES,
    MAX_INVALID_NAMED,
    MAX_METRIC_NAMES,
    MAX_METRICS_POINTS,
    PROTOCOL_VERSION,
    REPLICA_KINDS,
    REPLICA_STATES,
    STATES,
    CheckpointInfo,
    CheckpointList,
    CheckpointStatus,
    CommandRecord,
    GpuStats,
    HostInfo,
    MetricPoint,
    MetricsPage,
    RankInfo,
    ReplicaCopy,
    ReplicaStatus,
    RuntimeInfo,
    SaveProgress,
    Status,
    UploadProgress,
    WorldStatus,
)

# --------------------------------------------------------------------------- parsing

def _sequence_number(o: dict, key: str, where: str, default: Any = MISSING) -> int:
    """A sequence number: 0 to MAX_INT, else the document is a :class:`SchemaError`."""
    bad: list[str] = []
    value = get_int(o, key, where, bad, default)
    if bad:
        raise SchemaError(f"{where}.{key}: out of range (0 to 2**63-1)")
    return value


def parse_checkpoint_info(obj: Any, where: str = "checkpoint") -> CheckpointInfo:
    o = expect_object(obj, where)
    bad: list[str] = []
    return CheckpointInfo(
        step=get_int(o, "step", where, bad),
        path=get_field(o, "path", (str,), where),
        bytes=get_int(o, "bytes", where, bad),
        sha256=get_field(o, "sha256", (str,), where, ""),
        saved_at=get_real(o, "saved_at", where, bad),
        seconds=get_real(o, "seconds", where, bad, None),
        epoch=get_int(o, "epoch", where, bad, None),
        invalid=tuple(bad),
    )


def parse_gpu(obj: Any, where: str = "gpu") -> GpuStats:
    """One GPU of a status (strings cleaned, numbers bounded).

    Raises:
        SchemaError: not an object, or a field of the wrong type.
    """
    o = expect_object(obj, where)
    bad: list[str] = []
    unsupported = get_field(o, "unsupported", (dict,), where, {})
    return GpuStats(
        index=get_int(o, "index", where, bad, 0),
        name=get_field(o, "name", OPT_STR, where, None),
        uuid=get_field(o, "uuid", OPT_STR, where, None),
        utilization_pct=get_real(o, "utilization_pct", where, bad, None),
        memory_used_bytes=get_int(o, "memory_used_bytes", where, bad, None),
        memory_total_bytes=get_int(o, "memory_total_bytes", where, bad, None),
        temperature_c=get_real(o, "temperature_c", where, bad, None),
        power_w=get_real(o, "power_w", where, bad, None),
        power_limit_w=get_real(o, "power_limit_w", where, bad, None),
        unsupported={clean_text(str(k), 64): clean_text(str(v))
                     for k, v in list(unsupported.items())[:16]},
        rank=get_int(o, "rank", where, bad, None),
        host=get_field(o, "host", OPT_STR, where, None),
        invalid=tuple(bad),
    )


MAX_RANKS = 1024
"""Most ranks of a job a status lists."""


def _parse_world(obj: Any, where: str) -> WorldStatus | None:
    if obj is None:
        return None
    o = expect_object(obj, where)
    bad: list[str] = []
    ranks_raw = get_field(o, "ranks", (list,), where, [])
    ranks = []
    for i, r in enumerate(ranks_raw[:MAX_RANKS]):
        w = f"{where}.ranks[{i}]"
        ro = expect_object(r, w)
        rbad: list[str] = []
        ranks.append(RankInfo(
            rank=get_int(ro, "rank", w, rbad, None),
            local_rank=get_int(ro, "local_rank", w, rbad, None),
            host=get_field(ro, "host", OPT_STR, w, None),
            pid=get_int(ro, "pid", w, rbad, None),
            gpu_uuid=get_field(ro, "gpu_uuid", OPT_STR, w, None),
            step=get_int(ro, "step", w, rbad, None),
            lost=get_field(ro, "lost", OPT_STR, w, None),
            invalid=tuple(rbad)))
    return WorldStatus(size=get_int(o, "size", where, bad, None),
                       nodes=get_int(o, "nodes", where, bad, None), ranks=ranks,
                       checkpoint_kind=get_field(o, "checkpoint_kind", OPT_STR, where, None),
                       invalid=tuple(bad))


MAX_PLATFORM = 16
"""Longest platform name a status keeps (``colab``, ``kaggle``, ``other``)."""

MAX_LIMIT_NOTE = 120
"""Longest ``runtime.limit_note`` a status keeps."""


def _get_duration(o: dict, key: str, where: str, bad: list[str]) -> float | None:
    """``o[key]`` as a length of time, seconds: finite and at least 0, else ``None`` and named
    in ``bad``; ``None`` when missing or null."""
    value = get_real(o, key, where, bad, None)
    if value is not None and value < 0:
        bad.append(key)
        return None
    return value


def _parse_runtime(obj: Any, where: str) -> RuntimeInfo | None:
    if obj is None:
        return None
    o = expect_object(obj, where)
    bad: list[str] = []
    note = get_field(o, "limit_note", OPT_STR, where, None)
    return RuntimeInfo(
        platform=get_field(o, "platform", (str,), where)[:MAX_PLATFORM],
        age_s=_get_duration(o, "age_s", where, bad),
        max_s=_get_duration(o, "max_s", where, bad),
        idle_timeout_s=_get_duration(o, "idle_timeout_s", where, bad),
        limit_note=None if note is None else note[:MAX_LIMIT_NOTE],
        invalid=tuple(bad))


def _parse_progress(obj: Any, where: str) -> SaveProgress | None:
    if obj is None:
        return None
    o = expect_object(obj, where)
    bad: list[str] = []
    return SaveProgress(
        step=get_int(o, "step", where, bad),
        phase=get_field(o, "phase", (str,), where),
        bytes_written=get_int(o, "bytes_written", where, bad, 0),
        bytes_total=get_int(o, "bytes_total", where, bad, None),
        started_at=get_real(o, "started_at", where, bad, None),
        invalid=tuple(bad),
    )


def _parse_checkpoint_status(obj: Any, where: str) -> CheckpointStatus:
    if obj is None:
        return CheckpointStatus()
    o = expect_object(obj, where)
    bad: list[str] = []
    last = o.get("last")
    return CheckpointStatus(
        dir=get_field(o, "dir", OPT_STR, where, None),
        last=None if last is None else parse_checkpoint_info(last, f"{where}.last"),
        in_progress=_parse_progress(o.get("in_progress"), f"{where}.in_progress"),
        last_error=get_field(o, "last_error", OPT_STR, where, None),
        last_error_at=get_real(o, "last_error_at", where, bad, None),
        next_autosave_at=get_real(o, "next_autosave_at", where, bad, None),
        autosave_every_s=get_real(o, "autosave_every_s", where, bad, None),
        count=get_int(o, "count", where, bad, 0),
        replica=_parse_replica(o.get("replica"), f"{where}.replica"),
        invalid=tuple(bad),
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
        v, vw, vbad = expect_object(verified, f"{where}.verified"), f"{where}.verified", []
        verified = ReplicaCopy(
            step=get_int(v, "step", vw, vbad), name=get_field(v, "name", (str,), vw),
            bytes=get_int(v, "bytes", vw, vbad),
            md5=(get_field(v, "md5", OPT_STR, vw, None) or None),
            verified_at=get_real(v, "verified_at", vw, vbad),
            file_id=get_field(v, "file_id", OPT_STR, vw, None),
            saved_at=get_real(v, "saved_at", vw, vbad, None), invalid=tuple(vbad))
    uploading = o.get("uploading")
    if uploading is not None:
        u, uw, ubad = expect_object(uploading, f"{where}.uploading"), f"{where}.uploading", []
        uploading = UploadProgress(
            step=get_int(u, "step", uw, ubad), bytes_sent=get_int(u, "bytes_sent", uw, ubad),
            bytes_total=get_int(u, "bytes_total", uw, ubad),
            started_at=get_real(u, "started_at", uw, ubad, None), invalid=tuple(ubad))
    bad: list[str] = []
    return ReplicaStatus(
        dest=get_field(o, "dest", (str,), where), kind=kind, state=state,
        verified=verified, uploading=uploading, pending=get_int(o, "pending", where, bad, 0),
        last_error=get_field(o, "last_error", OPT_STR, where, None),
        last_error_at=get_real(o, "last_error_at", where, bad, None),
        next_retry_at=get_real(o, "next_retry_at", where, bad, None), invalid=tuple(bad))


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
        shown = server_version if abs(server_version) <= MAX_INT else "(out of range)"
        super().__init__(
            f"protocol mismatch: the session speaks v{shown}, this colabtui speaks "
            f"v{PROTOCOL_VERSION}; install the same version of colabtui-remote on both sides"
        )


def _parse_metric_values(o: dict) -> tuple[dict[str, float | None], dict[str, str]]:
    """``status.metrics`` and ``status.metrics_nonfinite``; a value beyond the float range
    (``1e400`` decodes as ``inf``) is ``None`` with its marker, as a logged inf is."""
    metrics_raw = get_field(o, "metrics", (dict,), "status", {})
    nonfinite_raw = get_field(o, "metrics_nonfinite", (dict,), "status", {})
    nonfinite = {clean_text(str(k)): v for k, v in list(nonfinite_raw.items())[:MAX_METRIC_NAMES]
                 if v in NONFINITE_MARKERS}
    metrics: dict[str, float | None] = {}
    for name, value in list(metrics_raw.items())[:MAX_METRIC_NAMES]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, NUM)):
            raise SchemaError(f"status.metrics.{clean_text(str(name), 40)}: expected a number "
                              "or null")
        name = clean_text(str(name))
        value = None if value is None else float(value)
        if value is not None and not math.isfinite(value):
            nonfinite[name] = nonfinite_marker(value)
            value = None
        metrics[name] = value
    return metrics, nonfinite


def parse_status(obj: Any) -> Status:
    """Parse a decoded ``/v1/status`` body (strings cleaned, numbers bounded: see the module).

    Raises:
        ProtocolMismatch: another protocol version.
        SchemaError: a field is missing or of the wrong type.
    """
    o = check_protocol(obj)
    w = "status"
    bad: list[str] = []
    state = get_field(o, "state", (str,), w)
    if state not in STATES:
        raise SchemaError(f"status.state: unknown state {state[:40]!r}")
    metrics, nonfinite = _parse_metric_values(o)
    gpus_raw = get_field(o, "gpus", (list,), w, [])
    host = expect_object(o.get("host") or {}, "status.host")
    return Status(
        protocol=o["protocol"],
        run=get_field(o, "run", (str,), w),
        session_id=get_field(o, "session_id", (str,), w),
        label=get_field(o, "label", (str,), w, ""),
        state=state,
        step=get_int(o, "step", w, bad, None),
        total_steps=get_int(o, "total_steps", w, bad, None),
        epoch=get_int(o, "epoch", w, bad, None),
        steps_per_s=get_real(o, "steps_per_s", w, bad, None),
        metrics=metrics,
        metrics_nonfinite=nonfinite,
        last_seq=_sequence_number(o, "last_seq", w, 0),
        started_at=get_real(o, "started_at", w, bad, None),
        uptime_s=get_real(o, "uptime_s", w, bad, None),
        server_time=get_real(o, "server_time", w, bad, None),
        gpus=[parse_gpu(g, f"status.gpus[{i}]") for i, g in enumerate(gpus_raw[:16])],
        gpu_error=get_field(o, "gpu_error", OPT_STR, w, None),
        checkpoint=_parse_checkpoint_status(o.get("checkpoint"), "status.checkpoint"),
        host=HostInfo(
            python=get_field(host, "python", OPT_STR, "status.host", None),
            torch=get_field(host, "torch", OPT_STR, "status.host", None),
            platform=get_field(host, "platform", OPT_STR, "status.host", None),
            hostname=get_field(host, "hostname", OPT_STR, "status.host", None),
        ),
        error=get_field(o, "error", OPT_STR, w, None),
        world=_parse_world(o.get("world"), "status.world"),
        runtime=_parse_runtime(o.get("runtime"), "status.runtime"),
        invalid=tuple(bad),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, NUM) and not isinstance(value, bool)


def _parse_points(name: str, pts: Any, invalid: list[str]) -> list[MetricPoint]:
    if not isinstance(pts, list):
        raise SchemaError(f"metrics.series.{name[:40]}: expected a list")
    parsed = []
    for i, p in enumerate(pts):
        if not isinstance(p, list) or len(p) != 5:
            raise SchemaError(f"metrics.series.{name[:40]}[{i}]: expected "
                              "[seq, step, time, value, marker]")
        seq, step, t, value, marker = p
        if (not _is_number(seq) or not _is_number(step) or not _is_number(t)
                or (value is not None and not _is_number(value))
                or (marker is not None and marker not in NONFINITE_MARKERS)
                or (value is None and marker is None)):
            raise SchemaError(f"metrics.series.{name[:40]}[{i}]: bad point")
        if (type(seq) is not int or type(step) is not int or not 0 <= seq <= MAX_INT
                or not MIN_INT <= step <= MAX_INT or not math.isfinite(t)):
            invalid.append(f"series.{name}[{i}]")  # left out: it cannot be placed or stored
            continue
        parsed.append(MetricPoint(seq, step, float(t),
                                  marker_value(marker, None if value is None else float(value))))
    return parsed


def parse_metrics(obj: Any) -> MetricsPage:
    """Parse a decoded ``/v1/metrics`` body. Non-finite points come back as NaN/±inf floats;
    a point whose seq, step or time is out of range is left out and named in ``invalid``.

    Raises:
        ProtocolMismatch, SchemaError: as :func:`parse_status`; also a sequence number out
            of range.
    """
    o = check_protocol(obj)
    w = "metrics"
    series_raw = get_field(o, "series", (dict,), w, {})
    if len(series_raw) > MAX_METRIC_NAMES:
        raise SchemaError(f"metrics.series: {len(series_raw)} series, at most {MAX_METRIC_NAMES}")
    if sum(len(pts) for pts in series_raw.values() if isinstance(pts, list)) \
            > MAX_METRICS_POINTS * 4:
        raise SchemaError("metrics.series: too many points in one response")
    series: dict[str, list[MetricPoint]] = {}
    invalid: list[str] = []
    for raw_name, pts in series_raw.items():
        name = clean_text(str(raw_name))
        parsed = _parse_points(name, pts, invalid)
        if name in series:  # two names that differ only in what cleaning replaced
            parsed = sorted(series[name] + parsed, key=lambda p: p.seq)
        series[name] = parsed
    return MetricsPage(
        after=_sequence_number(o, "after", w, 0),
        next_after=_sequence_number(o, "next_after", w),
        last_seq=_sequence_number(o, "last_seq", w),
        more=bool(get_field(o, "more", (bool,), w, False)),
        thinned=bool(get_field(o, "thinned", (bool,), w, False)),
        series=series,
        invalid=tuple(invalid[:MAX_INVALID_NAMED]),
    )


def parse_command(obj: Any) -> CommandRecord:
    """Parse a command record (``POST /v1/commands`` or ``GET /v1/commands/<id>``).

    Raises:
        ProtocolMismatch, SchemaError: as :func:`parse_status`.
    """
    o = check_protocol(obj)
    w = "command"
    bad: list[str] = []
    state = get_field(o, "state", (str,), w)
    if state not in COMMAND_STATES:
        raise SchemaError(f"command.state: unknown state {state[:40]!r}")
    ckpt = o.get("checkpoint")
    return CommandRecord(
        id=get_field(o, "id", (str,), w),
        action=get_field(o, "action", (str,), w),
        state=state,
        created_at=get_real(o, "created_at", w, bad),
        started_at=get_real(o, "started_at", w, bad, None),
        finished_at=get_real(o, "finished_at", w, bad, None),
        checkpoint=None if ckpt is None else parse_checkpoint_info(ckpt, "command.checkpoint"),
        error=get_field(o, "error", OPT_STR, w, None),
        invalid=tuple(bad),
    )


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


def parse_error(obj: Any) -> str | None:
    """The message of an error body (cleaned, see :func:`.wire.clean_text`), or ``None`` if
    ``obj`` is not one."""
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        msg = obj["error"].get("message")
        if isinstance(msg, str):
            return clean_text(msg)
    return None
