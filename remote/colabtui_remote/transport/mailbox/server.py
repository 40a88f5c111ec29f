"""The notebook side of a Drive mailbox: protocol v1 through files in the run folder.

:class:`MailboxServer` runs on a daemon thread. Every ``interval_s`` it reads the command files
the laptop dropped into the same :class:`~colabtui_remote.commands.CommandBook` the HTTP server
feeds (idempotent by id), writes each command's record back, then the metric points logged
since the last round as one chunk file, and last the status snapshot. While a command it
received is still pending or running it looks every :data:`FAST_TICK_S`, so the outcome (and
the status that shows it) is written as soon as the training thread reports it.

Nothing a file says reaches the training loop as an exception: a command file that does not
parse (garbage, or half synced) is read again on the next rounds, and when it still does not
parse after :data:`GARBAGE_AFTER` rounds it is logged once and, if its name holds a valid id,
answered with a failed record. A storage failure (the mount dropped) is logged once per message
and the next round tries again. The file layout is in :mod:`.layout`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ... import schema, wire
from ...commands import _ID, CommandBook, CommandConflict
from ..source import RunSource
from .layout import (
    CHECKPOINTS,
    COMMANDS,
    INFO,
    METRICS,
    RECORDS,
    STATUS,
    MailboxStorage,
    chunk_name,
    parse_chunk_name,
)

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
"""Seconds between rounds. Each round writes two or three small files; on a mounted Drive each
write becomes an upload, and 5 s keeps well inside Drive's per-user request quota."""

FAST_TICK_S = 0.1
"""Seconds between looks at the command book while a mailbox command is under way."""

GARBAGE_AFTER = 3
"""Rounds a command file may fail to parse (a sync still under way) before it is answered with
a failed record."""

STALE_STOP_S = 60.0
"""A stop sent this many seconds before this session started, and never answered, was meant for
an earlier session: it is answered as failed instead of ending this one (60 s of clock skew
between laptop and runtime allowed)."""

MAX_CHUNK_FILES = 200
"""Most metrics chunk files kept; beyond it the oldest go (the laptop sees a thinned gap)."""

MAX_METRICS_BYTES = 32 * 1024 * 1024
"""Most bytes of metrics chunk files kept."""

COMPACT_KEEP_NEWEST = 8
"""Newest chunks never merged: the ones a polling laptop is about to read."""

MAX_BACKOFF_S = 300.0
"""Longest wait between rounds while the storage answers "rate limited" (Drive's 403/429),
seconds; the wait doubles from two intervals, or follows the server's Retry-After."""

MAX_RECORD_FILES = 200
"""Record files kept; beyond it, final records whose command file the laptop already removed
go, oldest first. A record whose command file is still there is never removed."""


@dataclass
class _Chunk:
    name: str
    after: int
    last: int
    points: int
    bytes: int


class MailboxServer:
    """Serves one session through a mailbox folder.

    Args:
        source: the run (a :class:`~colabtui_remote.transport.source.RunSource`: the Monitor).
        storage: where the mailbox lives (:class:`~.layout.LocalFolder`, or
            :class:`~.drive_storage.DriveMailbox`).
        interval_s: seconds between rounds.
        max_chunk_files: most metrics chunk files kept.
        max_metrics_bytes: most bytes of metrics chunk files kept.
        clock: wall clock, seconds (injected for tests).
    """

    def __init__(self, source: RunSource, storage: MailboxStorage, interval_s: float = DEFAULT_INTERVAL_S,
                 *, max_chunk_files: int = MAX_CHUNK_FILES,
                 max_metrics_bytes: int = MAX_METRICS_BYTES, clock=time.time) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be above 0 seconds")
        self.source = source
        self.storage = storage
        self.interval_s = float(interval_s)
        self.max_chunk_files = max(1, int(max_chunk_files))
        self.max_metrics_bytes = int(max_metrics_bytes)
        self._clock = clock
        self._commands: CommandBook = source.commands
        self._session = source.session_id
        self._exit = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one round at a time (the thread, or close()'s last one)
        self._after = 0  # last metric seq written to a chunk
        self._chunks: list[_Chunk] = []
        self._seen: set[str] = set()  # command file names settled (submitted or rejected)
        self._bad: dict[str, tuple[bytes, int]] = {}  # name → (content, rounds it failed)
        self._open: dict[str, bytes] = {}  # ids not yet answered for good → record bytes written
        self._checkpoints_written: bytes | None = None
        self._logged: set[str] = set()
        self._started = False
        self.rounds = 0
        """Rounds completed (for tests and the bench)."""
        self.backoff_s = 0.0
        """Seconds to wait before the next round after a rate-limit answer (0: the interval)."""

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Write the mailbox description and start the thread.

        Raises:
            OSError: the folder cannot be written at all (the message names it).
        """
        self.storage.check()
        self._write_info()
        self._forget_other_sessions()
        self._thread = threading.Thread(target=self._loop, name="colabtui-remote-mailbox",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write a last round (the final state and every command's outcome), stop the thread
        and join it. Idempotent."""
        if self._exit.is_set():
            return
        self._exit.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.tick()

    def _loop(self) -> None:
        while not self._exit.is_set():
            self.tick()
            deadline = time.monotonic() + max(self.interval_s, self.backoff_s)
            while not self._exit.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._open:  # a command under way: show its outcome (and the status) at once
                    self._exit.wait(min(left, FAST_TICK_S))
                    if self._records_changed():
                        self._round_safely(commands=False)
                else:
                    self._exit.wait(left)

    def tick(self) -> None:
        """One round: commands in, records out, metrics, checkpoints, status. Never raises."""
        self._round_safely(commands=True)

    def _round_safely(self, commands: bool) -> None:
        with self._lock:
            try:
                self._round(commands)
                self.backoff_s = 0.0
            except Exception as exc:  # a mailbox problem must never reach training
                self._log_once(f"mailbox {self.storage!r}: {type(exc).__name__}: {exc}")
                if hasattr(exc, "retry_after"):  # a rate limit (Drive's 403/429): back off
                    wait = getattr(exc, "retry_after", None)
                    self.backoff_s = min(MAX_BACKOFF_S, wait if wait else
                                         max(2 * self.backoff_s, 2 * self.interval_s))
            self.rounds += 1

    def _round(self, commands: bool) -> None:
        try:
            self.storage.check()
        except FileNotFoundError:
            # A mailbox on Drive deleted under us is made again (the runtime owns it); a local
            # folder is not: on a dropped mount that would write to the disk under it.
            if not getattr(self.storage, "recreate_when_gone", False):
                raise
            self.storage.create()
            self._log_once(f"mailbox {self.storage!r} was gone; made it again")
            self._forget_written()
        if commands:
            self._read_commands()
        # Records read, then the listing written, then the records: a laptop that reads "done"
        # finds the checkpoint listed (a save finishes only once its manifest lists it).
        records = self._snapshot_records()
        listing = wire.dumps(schema.checkpoint_list_to_wire(self.source.checkpoint_list()))
        if listing != self._checkpoints_written:
            self.storage.write(CHECKPOINTS, listing)
            self._checkpoints_written = listing
        self._write_records(records)
        status = self.source.status()  # before the chunks, so they hold every point it counts
        self._write_metrics()
        self.storage.write(STATUS, wire.dumps(schema.status_to_wire(status)))

    def _write_info(self) -> None:
        """Write ``mailbox.json``: protocol, session id, interval."""
        self.storage.write(INFO, wire.dumps({
            "protocol": schema.PROTOCOL_VERSION, "session_id": self._session,
            "interval_s": self.interval_s, "written_at": self._clock()}))

    def _forget_written(self) -> None:
        """After the mailbox was made again: what this server wrote there is gone. The
        description and the listing are written again; metric chunks go on from the newest
        point already written (the laptop keeps the earlier ones in its history)."""
        self._checkpoints_written = None
        self._chunks = []
        self._write_info()

    def _log_once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            log.warning("colabtui_remote: %s", message)

    # ------------------------------------------------------------------ commands

    def _records_changed(self) -> bool:
        for cid, written in list(self._open.items()):
            record = self._commands.get(cid)
            if record is not None and wire.dumps(schema.command_to_wire(record)) != written:
                return True
        return False

    def _read_commands(self) -> None:
        names = self.storage.list(COMMANDS)
        present = set(names)
        self._seen &= present  # the laptop removed it: it will not come back under that name
        for name in list(self._bad):
            if name not in present:
                del self._bad[name]
        for name in names:
            if name in self._seen or not name.endswith(".json"):
                continue
            try:
                data = self.storage.read(f"{COMMANDS}/{name}")
            except FileNotFoundError:
                continue  # removed between list and read
            self._take_command(name, data)

    def _take_command(self, name: str, data: bytes) -> None:
        file_id = name[: -len(".json")]
        where = f"{COMMANDS}/{name}"
        try:
            obj = wire.loads(data)
            if not isinstance(obj, dict):
                raise schema.SchemaError(f"JSON {type(obj).__name__}, not an object")
        except schema.SchemaError as exc:
            previous = self._bad.get(name)
            rounds = previous[1] + 1 if previous is not None and previous[0] == data else 1
            self._bad[name] = (data, rounds)
            if rounds >= GARBAGE_AFTER:  # the same bytes several rounds running: not a sync lag
                self._reject(file_id, None, f"command file {where} does not parse ({exc}); "
                             'expected {"id": "<uuid>", "action": "save" or "stop"}')
            return
        self._bad.pop(name, None)
        cid, action = obj.get("id"), obj.get("action")
        if cid != file_id:
            self._reject(file_id, action, f"command file {where} holds id {str(cid)[:64]!r}; "
                         "the id must be the file name without .json")
            return
        if self._known_final(cid) or self._stale_stop(cid, action, obj.get("sent_at")):
            return
        try:
            record, _created = self._commands.submit(cid, action)
        except (ValueError, CommandConflict) as exc:
            self._reject(file_id, action, f"command file {where}: {exc}")
            return
        self._seen.add(name)
        self._open.setdefault(record.id, b"")

    def _known_final(self, cid: str) -> bool:
        """A final record from this session or an earlier one: never act twice on one id."""
        if self._commands.get(cid) is not None:
            return False  # known here: submit() returns the same record
        try:
            record = schema.parse_command(wire.loads(self.storage.read(f"{RECORDS}/{cid}.json")))
        except (OSError, schema.SchemaError):
            return False
        if record.state in ("done", "failed"):
            self._seen.add(f"{cid}.json")
            return True
        return False

    def _stale_stop(self, cid: str, action: Any, sent_at: Any) -> bool:
        started = self.source.started_at
        if (action != "stop" or isinstance(sent_at, bool)
                or not isinstance(sent_at, (int, float)) or sent_at >= started - STALE_STOP_S):
            return False
        self._reject(cid, action, "this stop was sent to an earlier session of the run, which "
                     "ended before carrying it out; not applied to this session (send it again)")
        return True

    def _reject(self, file_id: str, action: Any, message: str) -> None:
        """Log once, and answer with a failed record when the file name is a valid id."""
        self._seen.add(f"{file_id}.json")
        self._bad.pop(f"{file_id}.json", None)
        self._log_once(message)
        if not _ID.fullmatch(file_id) or self._commands.get(file_id) is not None:
            return  # no id to answer to, or a good command already has that id
        now = self._clock()
        action_text = action[:40] if isinstance(action, str) else "?"
        record = schema.CommandRecord(id=file_id, action=action_text, state="failed",
                                      created_at=now, finished_at=now,
                                      error=message[: schema.MAX_TEXT])
        self.storage.write(f"{RECORDS}/{file_id}.json", wire.dumps(schema.command_to_wire(record)))

    def _write_records(self, snapshot: dict | None = None) -> bool:
        """Write the records that changed since last written. Returns True if any did.

        Args:
            snapshot: the records as read before the checkpoint listing was written, so that a
                record saying "done" never goes out ahead of the listing that holds its checkpoint.
        """
        wrote = False
        if snapshot is None:
            snapshot = self._snapshot_records()
        for cid, last in list(self._open.items()):
            record = snapshot.get(cid)
            if record is None:  # trimmed from the book: nothing more will change
                del self._open[cid]
                continue
            data = wire.dumps(schema.command_to_wire(record))
            if data != last:
                self.storage.write(f"{RECORDS}/{cid}.json", data)
                self._open[cid] = data
                wrote = True
            if record.state in ("done", "failed"):
                del self._open[cid]
                self._commands.delivered(cid)  # the laptop can read it now
        if wrote:
            self._prune_records()
        return wrote

    def _snapshot_records(self) -> dict:
        return {cid: self._commands.get(cid) for cid in list(self._open)}

    def _prune_records(self) -> None:
        names = self.storage.list(RECORDS)
        if len(names) <= MAX_RECORD_FILES:
            return
        commands = set(self.storage.list(COMMANDS))
        for name in names[: len(names) - MAX_RECORD_FILES]:
            cid = name[: -len(".json")]
            record = self._commands.get(cid)
            if name in commands or (record is not None and record.state in ("pending", "running")):
                continue
            self.storage.remove(f"{RECORDS}/{name}")

    # ------------------------------------------------------------------ metrics

    def _forget_other_sessions(self) -> None:
        """Chunks of an earlier session of this run: a laptop follows the session in
        ``status.json`` only, so they are of no more use."""
        for name in self.storage.list(METRICS):
            parsed = parse_chunk_name(name)
            if parsed is not None and parsed[0] != self._session:
                self.storage.remove(f"{METRICS}/{name}")

    def _write_metrics(self) -> None:
        store = self.source.metrics
        for _ in range(100):  # bounded: a huge backlog continues on the next round
            if store.last_seq <= self._after:
                return
            page = store.page(self._after)
            if page.next_after <= self._after:
                return
            self._write_chunk(page)
            if not page.more:
                break
        self._bound_chunks()

    def _write_chunk(self, page: schema.MetricsPage) -> None:
        data = wire.dumps(page.to_wire())
        name = chunk_name(self._session, page.after, page.next_after)
        self.storage.write(f"{METRICS}/{name}", data)
        self._chunks.append(_Chunk(name, page.after, page.next_after,
                                   sum(len(p) for p in page.series.values()), len(data)))
        self._after = page.next_after

    def _bound_chunks(self) -> None:
        self._compact_oldest()
        while self._chunks and (len(self._chunks) > self.max_chunk_files
                                or sum(c.bytes for c in self._chunks) > self.max_metrics_bytes):
            oldest = self._chunks.pop(0)
            self.storage.remove(f"{METRICS}/{oldest.name}")

    def _compact_oldest(self) -> None:
        """Merge the oldest run of adjacent small chunks into one (at most one merge a round).
        The merged file is written before the parts are removed, so a reader always finds the
        points: it takes the chunk that starts lowest and, of equals, reaches furthest."""
        candidates = self._chunks[:-COMPACT_KEEP_NEWEST]
        group: list[_Chunk] = []
        total = 0
        for chunk in candidates:
            if group and (chunk.after != group[-1].last
                          or total + chunk.points > schema.MAX_METRICS_POINTS):
                if len(group) > 1:
                    break
                group, total = [], 0
            group.append(chunk)
            total += chunk.points
        if len(group) < 2:
            return
        pages = [schema.parse_metrics(wire.loads(self.storage.read(f"{METRICS}/{c.name}")))
                 for c in group]
        series: dict[str, list[schema.MetricPoint]] = {}
        for page in pages:
            for key, pts in page.series.items():
                series.setdefault(key, []).extend(pts)
        merged = schema.MetricsPage(after=group[0].after, next_after=group[-1].last,
                                    last_seq=pages[-1].last_seq, more=False,
                                    thinned=any(p.thinned for p in pages), series=series)
        data = wire.dumps(merged.to_wire())
        name = chunk_name(self._session, merged.after, merged.next_after)
        self.storage.write(f"{METRICS}/{name}", data)
        start = self._chunks.index(group[0])
        self._chunks[start:start + len(group)] = [
            _Chunk(name, merged.after, merged.next_after, total, len(data))]
        for chunk in group:
            self.storage.remove(f"{METRICS}/{chunk.name}")
