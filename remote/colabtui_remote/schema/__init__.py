"""Wire protocol v1: the one definition of what crosses between a runtime and the laptop.

The notebook-side server builds its responses with these types (:mod:`.types`) and
:func:`..wire.dumps`; the laptop parses every response with the ``parse_*`` functions
(:mod:`.parse`), which raise :class:`SchemaError` on anything malformed, so a bad answer becomes
an error on one panel and never a traceback. Import everything from here.

Rules kept here (see DESIGN.md, "The wire protocol"):

* JSON, UTF-8. Non-finite floats travel as ``null``; a metric point carries a marker
  (``"nan"``, ``"inf"``, ``"-inf"``) beside the ``null`` so the client can tell NaN from missing.
  :func:`..wire.dumps` never emits ``NaN``/``Infinity`` tokens.
* Units are in the field names: ``_bytes``, ``_s`` (seconds), ``_c`` (°C), ``_w`` (watts),
  ``_pct`` (percent, 0–100). Times (``_at``) are Unix seconds (float, UTC).
* A change to the wire format bumps :data:`PROTOCOL_VERSION`.

Everything a peer sends is hostile until parsed here (DESIGN.md, "The laptop side"):

* Every string is one line of plain text, at most :data:`..wire.MAX_TEXT` characters, cleaned by
  :func:`..wire.clean_text`: control characters, bidirectional controls and lone surrogates
  become ``\ufffd`` (:data:`..wire.PLACEHOLDER`), line breaks ``⏎``, tabs ``⇥``.
* Every number is in range: steps, totals, counts and sizes are integers from 0 to
  :data:`..wire.MAX_INT`, times and rates finite floats. A field the peer sent out of range is
  ``None`` and named in its object's ``invalid`` (a tuple of field names, never on the wire;
  :func:`invalid_paths` gathers them), so the laptop shows "invalid" there and keeps the rest.
  Sequence numbers (``last_seq``, ``after``, ``next_after``) out of range make the document a
  :class:`SchemaError`: a run whose points cannot be followed is not followed wrongly. A metric
  point out of range is left out of its page (named in the page's ``invalid``).
"""

from ..wire import MAX_TEXT, SchemaError
from .parse import (
    ProtocolMismatch,
    check_protocol,
    parse_checkpoint_info,
    parse_checkpoint_list,
    parse_command,
    parse_error,
    parse_gpu,
    parse_metrics,
    parse_status,
)
from .types import (
    ACTIONS,
    COMMAND_STATES,
    MAX_INVALID_NAMED,
    MAX_METRIC_NAMES,
    MAX_METRICS_POINTS,
    MAX_REQUEST_BYTES,
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
    checkpoint_list_to_wire,
    command_to_wire,
    error_body,
    gpu_to_wire,
    invalid_paths,
    status_to_wire,
)

__all__ = [
    "ACTIONS", "COMMAND_STATES", "MAX_INVALID_NAMED", "MAX_METRICS_POINTS", "MAX_METRIC_NAMES",
    "MAX_REQUEST_BYTES", "MAX_TEXT", "PROTOCOL_VERSION", "REPLICA_KINDS", "REPLICA_STATES",
    "STATES", "CheckpointInfo", "CheckpointList", "CheckpointStatus", "CommandRecord", "GpuStats",
    "HostInfo", "MetricPoint", "MetricsPage", "ProtocolMismatch", "RankInfo", "ReplicaCopy",
    "ReplicaStatus", "RuntimeInfo", "SaveProgress", "SchemaError", "Status", "UploadProgress",
    "WorldStatus", "check_protocol",
    "checkpoint_list_to_wire", "command_to_wire", "error_body", "gpu_to_wire", "invalid_paths",
    "parse_checkpoint_info", "parse_checkpoint_list", "parse_command", "parse_error",
    "parse_gpu", "parse_metrics", "parse_status", "status_to_wire",
]
