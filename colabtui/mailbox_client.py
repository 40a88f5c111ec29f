"""Client for a session reached through a mailbox folder (a Drive folder synced to this
machine), with the same interface as :class:`colabtui.client.RemoteClient`.

The runtime writes ``status.json``, metric chunks and command records into the folder; this
client reads them and drops command files there (layout: :mod:`colabtui_remote.transport.mailbox.layout`).
Every file is parsed with :mod:`colabtui_remote.schema`; every failure is a
:class:`~colabtui.client.SessionError` of the same kinds as over HTTP. File I/O runs on a
thread (``asyncio.to_thread``), never on the event loop.

Latency is the runtime's interval (it writes every ``interval_s``, 5 s by default) plus what the
sync client adds (seconds to a minute for Google Drive for desktop): :attr:`status_age_s` says
how old the last status was when read, and :attr:`stale` whether it is older than
:data:`STALE_INTERVALS` intervals.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from colabtui_remote import schema, wire
from colabtui_remote.transport.mailbox.layout import (
    CHECKPOINTS,
    COMMANDS,
    INFO,
    METRICS,
    RECORDS,
    STATUS,
    LocalFolder,
    MailboxStorage,
    parse_chunk_name,
)

from colabtui.client import SessionError
from colabtui.figures import age_s

MIN_POLL_INTERVAL_S = 2.0
"""Shortest wait between status polls of a mailbox: a file that changes every few seconds gains
nothing from being read every second."""

STALE_INTERVALS = 3
"""A status older than this many of the runtime's intervals is stale (shown as such)."""

DEFAULT_INTERVAL_S = 5.0
"""The runtime's interval when ``mailbox.json`` cannot be read (``Monitor.serve_mailbox``'s
default)."""

MIN_INTERVAL_S, MAX_INTERVAL_S = 0.05, 86400.0
"""The runtime intervals believed from ``mailbox.json``, seconds; outside them the default is
kept (an interval of 1e-300 s would make every status stale)."""

INFO_TTL_S = 30.0
"""``mailbox.json`` (the runtime's interval) is read with the first status of a session and
then at most this often, seconds, not on every poll: through Drive's API or Colab's proxy each
read is a request, and the interval changes only when the notebook serves the mailbox again."""

RETRY_S = 0.2
"""Wait before reading a file that did not parse once more (it may have been mid-sync)."""


class MailboxClient:
    """Talks to one session through its mailbox folder. Same methods as
    :class:`~colabtui.client.RemoteClient` (both implement
    :class:`~colabtui.session_client.SessionClient`); all raise :class:`SessionError` only.

    Args:
        folder: the mailbox folder (or a ``mailbox:/path`` URL's path).
        storage: another backend with the same layout (default: :class:`LocalFolder`).
        clock: wall clock, seconds (to compute the age of the status).
    """

    transport = "mailbox"
    min_poll_interval_s = MIN_POLL_INTERVAL_S

    def __init__(self, folder: str | os.PathLike, *, storage: MailboxStorage | None = None,
                 clock=time.time, transport: str | None = None) -> None:
        self.folder = folder if isinstance(folder, str) and "://" in folder else Path(folder)
        """The folder, or the ``gdrive://`` URL of a mailbox on Drive (in messages)."""
        self.storage = storage or LocalFolder(self.folder)
        if transport is not None:
            self.transport = transport
        self._clock = clock
        self.interval_s = DEFAULT_INTERVAL_S
        self._status_server_time: float | None = None
        self._session_id: str | None = None  # of the last status read
        self._interval_read_at = -1e9

    def __repr__(self) -> str:
        return f"MailboxClient({str(self.folder)!r})"

    async def __aenter__(self) -> MailboxClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def status_age_s(self) -> float | None:
        """Age of the last status read, seconds, now (runtime's clock against ours): it keeps
        growing between polls, so a runtime that stopped writing shows as such."""
        return age_s(self._status_server_time, self._clock())

    @property
    def stale(self) -> bool:
        """The last status read was older than :data:`STALE_INTERVALS` intervals."""
        return self.status_age_s is not None and \
            self.status_age_s > STALE_INTERVALS * self.interval_s

    # ----------------------------------------------------------------- the same routes

    async def status(self) -> schema.Status:
        """Read ``status.json``; sets :attr:`status_age_s`.

        Raises:
            SessionError: ``unreachable`` (no folder, no status yet, unreadable),
                ``bad_response`` (garbage), ``protocol`` (another protocol version).
        """
        synced = "" if self.transport in ("drive", "colab") else ", and has the folder synced"
        status = await asyncio.to_thread(self._read_parsed, STATUS, schema.parse_status,
                                         "no status.json yet: has the runtime called "
                                         f"mon.serve_mailbox(){synced}?")
        now = time.monotonic()
        if status.session_id != self._session_id or now >= self._interval_read_at + INFO_TTL_S:
            await asyncio.to_thread(self._read_interval)
            self._interval_read_at = now
        self._session_id = status.session_id
        if status.server_time is not None:
            self._status_server_time = status.server_time
        return status

    async def metrics(self, after: int) -> schema.MetricsPage:
        """The points logged after seq ``after``, from the chunk that starts lowest.

        Raises:
            SessionError
        """
        return await asyncio.to_thread(self._metrics, int(after))

    async def send_command(self, action: str, command_id: str | None = None) -> schema.CommandRecord:
        """Drop ``commands/<id>.json``; the same id twice writes the same file and the runtime
        acts once. Returns the runtime's record if it has one, else a pending record.

        Raises:
            ValueError: ``action`` is not one of ``schema.ACTIONS`` (a programming error).
            SessionError
        """
        if action not in schema.ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {schema.ACTIONS}")
        return await asyncio.to_thread(self._send, action, command_id or str(uuid.uuid4()))

    async def get_command(self, command_id: str) -> schema.CommandRecord:
        """The runtime's record of a command; a pending one while only the command file is
        there. Once the record is final the command file is removed (the runtime keeps the
        record, so the id is never acted on again).

        Raises:
            SessionError: ``bad_response`` for an id that is neither sent nor answered.
        """
        return await asyncio.to_thread(self._get_command, command_id)

    async def checkpoints(self) -> schema.CheckpointList:
        """Read ``checkpoints.json``.

        Raises:
            SessionError
        """
        return await asyncio.to_thread(self._read_parsed, CHECKPOINTS,
                                       schema.parse_checkpoint_list,
                                       "no checkpoints.json yet in the mailbox")

    async def aclose(self) -> None:
        """Nothing to release (no connection); here for the same interface."""

    def run_folder_mailbox(self) -> str | None:
        """When this folder has no ``status.json`` but its ``mailbox`` subfolder has one (the
        run's folder was given, not its mailbox): the mailbox's path or URL; else ``None``.
        Blocking (call it on a thread); storage errors count as "no"."""
        try:
            self.storage.read(STATUS)
            return None
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            return None
        try:
            inner = self.storage.list("mailbox")
        except (OSError, ValueError):
            return None
        if STATUS not in inner:
            return None
        return f"{str(self.folder).rstrip('/')}/mailbox"

    # ----------------------------------------------------------------- plumbing (threads)

    def _unreachable(self, exc: OSError) -> SessionError:
        from colabtui_remote.drive.errors import DriveAuthError, DriveError

        kind = getattr(exc, "session_error_kind", None)
        if kind is not None:  # a storage error that knows what the panel should say
            return SessionError(kind, str(exc))
        if isinstance(exc, DriveAuthError):  # credentials missing, expired or revoked
            return SessionError("token_refused", str(exc))
        if isinstance(exc, DriveError):  # the Drive API's errors say what and where
            return SessionError("unreachable", str(exc))
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return SessionError("unreachable", f"mailbox folder {self.folder} not found "
                                "(is Google Drive for desktop running?)")
        return SessionError("unreachable", f"cannot read the mailbox {self.folder}: "
                            f"{exc.strerror or exc}")

    def _read(self, name: str, missing: str) -> bytes | None:
        try:
            self.storage.check()
        except OSError as exc:
            raise self._unreachable(exc) from None
        try:
            return self.storage.read(name)
        except ValueError as exc:  # a command id that is no file name
            raise SessionError("bad_response", str(exc)) from None
        except FileNotFoundError:
            if missing:
                raise SessionError("unreachable", missing) from None
            return None
        except OSError as exc:
            if getattr(exc, "session_error_kind", None) is not None:
                raise self._unreachable(exc) from None
            raise SessionError("bad_response" if "larger" in str(exc) else "unreachable",
                               f"{name}: {exc.strerror or exc}") from None

    def _read_parsed(self, name: str, parse, missing: str, retry: bool = True) -> Any:
        data = self._read(name, missing)
        if data is None:
            return None
        try:
            return parse(wire.loads(data))
        except schema.ProtocolMismatch as exc:
            raise SessionError("protocol", str(exc)) from None
        except schema.SchemaError as exc:
            if retry:  # replaced while we read it, or still syncing: once more
                time.sleep(RETRY_S)
                return self._read_parsed(name, parse, missing, retry=False)
            raise SessionError("bad_response", f"{name} in the mailbox: {str(exc)[:200]}") from None

    def _read_interval(self) -> None:
        try:
            info = wire.loads(self.storage.read(INFO))
            interval = info.get("interval_s") if isinstance(info, dict) else None
        except (OSError, schema.SchemaError):
            return
        if isinstance(interval, (int, float)) and not isinstance(interval, bool) and \
                MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
            self.interval_s = float(interval)

    def _metrics(self, after: int) -> schema.MetricsPage:
        session = self._session_of_status()
        try:
            names = self.storage.list(METRICS)
        except OSError as exc:
            raise self._unreachable(exc) from None
        chunks = []
        for name in names:
            parsed = parse_chunk_name(name)
            if parsed is not None and parsed[0] == session and parsed[2] > after:
                chunks.append((parsed[1], -parsed[2], name))
        last_seq = max((-c[1] for c in chunks), default=after)
        if not chunks:
            return schema.MetricsPage(after=after, next_after=after, last_seq=last_seq,
                                      more=False, thinned=False, series={})
        chunks.sort()  # starts lowest; of equals, reaches furthest (a merged chunk)
        chunk_after, neg_last, name = chunks[0]
        page = self._read_parsed(f"{METRICS}/{name}", schema.parse_metrics, "")
        if page is None:  # merged away between list and read: the next poll finds the rest
            return schema.MetricsPage(after=after, next_after=after, last_seq=last_seq,
                                      more=True, thinned=False, series={})
        series = {key: [p for p in pts if p.seq > after] for key, pts in page.series.items()}
        return schema.MetricsPage(
            after=after, next_after=-neg_last, last_seq=max(last_seq, page.last_seq),
            more=-neg_last < last_seq,
            thinned=page.thinned or chunk_after > after,  # older points were pruned: a gap
            series={k: v for k, v in series.items() if v}, invalid=page.invalid)

    def _session_of_status(self) -> str | None:
        """The session whose chunks to read: that of the last status read (a poll reads the
        status just before the metrics; reading it again would cost a request through an
        API), else the one in ``status.json`` now."""
        if self._session_id is not None:
            return self._session_id
        data = self._read(STATUS, "no status.json yet in the mailbox")
        try:
            obj = wire.loads(data)
        except schema.SchemaError:
            return None
        sid = obj.get("session_id") if isinstance(obj, dict) else None
        return sid if isinstance(sid, str) else None

    def _send(self, action: str, command_id: str) -> schema.CommandRecord:
        record = self._record(command_id)
        if record is not None:
            return record  # sent before and answered: the same record, no second action
        body = {"id": command_id, "action": action, "sent_at": self._clock()}
        try:
            self.storage.check()
            self.storage.write(f"{COMMANDS}/{command_id}.json", wire.dumps(body))
        except ValueError as exc:  # a name the storage refuses
            raise SessionError("bad_response", f"cannot send command id {command_id!r}: {exc}") \
                from None
        except OSError as exc:
            raise self._unreachable(exc) from None
        return schema.CommandRecord(id=command_id, action=action, state="pending",
                                    created_at=body["sent_at"])

    def _record(self, command_id: str) -> schema.CommandRecord | None:
        return self._read_parsed(f"{RECORDS}/{command_id}.json", schema.parse_command, "")

    def _get_command(self, command_id: str) -> schema.CommandRecord:
        record = self._record(command_id)
        name = f"{COMMANDS}/{command_id}.json"
        if record is not None:
            if record.state in ("done", "failed"):
                try:
                    self.storage.remove(name)  # ours; the runtime keeps the final record
                except OSError:
                    pass
            return record
        data = self._read(name, "")
        if data is None:
            raise SessionError("bad_response", f"no command with id {command_id[:128]!r} in the "
                               "mailbox")
        try:
            obj = wire.loads(data)
            action = obj["action"] if isinstance(obj, dict) else "?"
            sent_at = obj.get("sent_at") if isinstance(obj, dict) else None
        except (schema.SchemaError, KeyError):
            action, sent_at = "?", None
        created = wire.finite_or_none(sent_at) if isinstance(sent_at, (int, float)) else None
        return schema.CommandRecord(id=command_id, action=wire.clean_text(str(action), 40),
                                    state="pending",
                                    created_at=self._clock() if created is None else created)
