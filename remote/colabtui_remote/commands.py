"""Commands from the laptop (save, stop): idempotent by client-chosen id, carried out on the
training thread at a step boundary.

The HTTP thread only records a command (:meth:`CommandBook.submit`); the training thread takes
the pending ones at its next step boundary (:meth:`CommandBook.take_pending`) and reports how they
ended. Tunnels drop responses and clients retry, so the same id twice returns the same record and
acts once.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import replace

from .schema import ACTIONS, CheckpointInfo, CommandRecord

MAX_ID_LENGTH = 128
_ID = re.compile(rf"[A-Za-z0-9._~-]{{1,{MAX_ID_LENGTH}}}")
"""Command ids: URL-safe characters only, so the id in ``/v1/commands/<id>`` needs no escaping."""

MAX_RECORDS = 1000
"""Records kept for ``GET /v1/commands/<id>``; the oldest finished ones go first."""


INTERNAL_PREFIX = "internal-"
"""Ids of commands the session gives itself (SIGTERM); no client waits for them."""


class CommandConflict(ValueError):
    """The id is known with another action."""


class CommandBook:
    """The set of commands a session has received. Thread-safe; every call is O(1) or O(pending).

    Args:
        clock: wall clock, seconds (injected for tests).
    """

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: OrderedDict[str, CommandRecord] = OrderedDict()
        self._pending: list[str] = []
        self._delivered: set[str] = set()
        self.changed = threading.Event()
        """Set whenever a command arrives, so a waiting training loop can look at once."""

    def submit(self, command_id: str, action: str) -> tuple[CommandRecord, bool]:
        """Record a command, or return the existing record for a known id.

        Returns:
            (record, created): ``created`` is False when the id was already known.

        Raises:
            ValueError: empty or over-long id, unknown action.
            CommandConflict: the id is known with another action.
        """
        if not isinstance(command_id, str) or not _ID.fullmatch(command_id):
            raise ValueError(f"id must be 1 to {MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ ~ - "
                             "(a UUID fits), so that GET /v1/commands/<id> can find it")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {str(action)[:40]!r}; expected one of {', '.join(ACTIONS)}")
        with self._lock:
            existing = self._records.get(command_id)
            if existing is not None:
                if existing.action != action:
                    raise CommandConflict(
                        f"command {command_id!r} was already sent as {existing.action!r}")
                return existing, False
            record = CommandRecord(id=command_id, action=action, state="pending",
                                   created_at=self._clock())
            self._records[command_id] = record
            self._pending.append(command_id)
            self._trim()
        self.changed.set()
        return record, True

    def get(self, command_id: str) -> CommandRecord | None:
        with self._lock:
            return self._records.get(command_id)

    def delivered(self, command_id: str) -> None:
        """Note that a client has seen this command's outcome (done or failed)."""
        with self._lock:
            record = self._records.get(command_id)
            if record is not None and record.state in ("done", "failed"):
                self._delivered.add(command_id)

    def undelivered(self) -> list[str]:
        """Ids of commands sent by a client whose outcome no client has fetched yet."""
        with self._lock:
            return [cid for cid, r in self._records.items()
                    if cid not in self._delivered and not cid.startswith(INTERNAL_PREFIX)]

    def has_pending(self) -> bool:
        """Cheap check for the hot path: a list's truth value, read without the lock."""
        return bool(self._pending)

    def take_pending(self) -> list[CommandRecord]:
        """Mark every pending command running and return them (training thread, step boundary)."""
        with self._lock:
            ids, self._pending = self._pending, []
            now = self._clock()
            taken = []
            for cid in ids:
                record = replace(self._records[cid], state="running", started_at=now)
                self._records[cid] = record
                taken.append(record)
            self.changed.clear()
            return taken

    def finish(self, command_id: str, checkpoint: CheckpointInfo | None = None,
               error: str | None = None) -> CommandRecord:
        """Mark a command done (with the checkpoint it wrote) or failed (with why)."""
        with self._lock:
            record = replace(self._records[command_id],
                             state="failed" if error else "done",
                             finished_at=self._clock(), checkpoint=checkpoint, error=error)
            self._records[command_id] = record
            return record

    def _trim(self) -> None:
        while len(self._records) > MAX_RECORDS:
            for cid, rec in self._records.items():
                if rec.state in ("done", "failed"):
                    del self._records[cid]
                    self._delivered.discard(cid)
                    break
            else:
                return
