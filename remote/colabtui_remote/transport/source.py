"""The one protocol both transports read a run through.

The HTTP server (:mod:`.http`) and the mailbox (:mod:`.mailbox`) never see a
:class:`~colabtui_remote.monitor.Monitor` as such: they read a :class:`RunSource`, which the
Monitor implements. Reads happen on the transports' threads; they never block the training
thread (the snapshot is built from attributes and in-memory stores).
"""

from __future__ import annotations

from typing import Protocol

from .. import schema
from ..commands import CommandBook
from ..metrics import MetricsStore

__all__ = ["RunSource"]


class RunSource(Protocol):
    """What a transport reads a run through and sends commands to.

    Attributes:
        session_id: this session's id (hex), as the status carries it.
        started_at: when this session started, Unix seconds (a mailbox command sent before it
            belongs to an earlier session).
        metrics: the metric points logged, read with ``page(after=SEQ)`` (metrics after a
            sequence number).
        commands: the command book commands are submitted to and read from (idempotent by id).
    """

    session_id: str
    metrics: MetricsStore
    commands: CommandBook

    @property
    def started_at(self) -> float: ...

    def status(self) -> schema.Status:
        """One status snapshot (``GET /v1/status``, ``status.json``)."""
        ...

    def checkpoint_list(self) -> schema.CheckpointList:
        """The kept checkpoints (``GET /v1/checkpoints``, ``checkpoints.json``)."""
        ...

    def status_served(self) -> None:
        """Called each time a status snapshot goes out to a client (so the source knows a
        client is watching, e.g. to linger at the end until it saw the final state)."""
        ...
