"""The writer lock of a checkpoint folder: whether anyone else may be writing there right now.

A :class:`~colabtui_remote.checkpoint.writer.Checkpointer` writes :data:`LOCK_NAME` into each
folder it writes to, atomically, when it starts, and removes it at close. The file names the
writer: host name, pid, the process's start time (field 22 of ``/proc/<pid>/stat``, clock
ticks since boot, where there is a /proc), the boot id and pid namespace, and a token of its
own; ``alive_at`` is refreshed every :data:`LOCK_REFRESH_S` seconds by one thread per process.
Leftovers of killed saves are reclaimed (:mod:`.reclaim`) only by the holder of the lock.

How a lock found in the folder is judged:

- ours (our token): held.
- this host, same pid namespace, same boot: the writer is alive when its pid is (a zombie is
  not) with the start time recorded (a reused pid is not the writer). A live writer's lock
  means: remove nothing. A dead one's is taken over. In this very process (a notebook cell run
  again makes a second Checkpointer while the first is never closed), the other lock's writer is
  asked: it stands while that writer is writing, and is taken over otherwise (a write it starts
  later is newer than anything reclaimed, see :mod:`.reclaim`).
- another host (or a pid namespace this process cannot see into): nothing can be asked of its
  process; its lock stands while it is refreshed. Remove nothing, and say so once, naming the
  host: two runtimes writing one folder overwrite each other's manifest. A lock not refreshed
  for :data:`LOCK_STALE_S` seconds is a runtime that died (every Colab runtime has its own
  host name, so a mounted Drive folder is left a lock by every runtime that died in it): it is
  taken over, and said so.
- a lock that does not parse stands until it is as old as that, then is taken over.

Nothing here raises on a filesystem failure: a lock that cannot be read or written is simply
not held (and nothing is reclaimed).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from .fs import OS_IO, FolderIO, atomic_write, describe_oserror

__all__ = ["LOCK_NAME", "LOCK_REFRESH_S", "LOCK_STALE_S", "FolderLock", "Holder", "identity",
           "release_all"]

logger = logging.getLogger("colabtui_remote.checkpoint")

LOCK_NAME = "writer.lock"
"""The lock file's name in a checkpoint folder."""
LOCK_REFRESH_S = 60.0
"""Seconds between refreshes of ``alive_at`` by the holder."""
LOCK_STALE_S = 900.0
"""A lock of another host not refreshed for this many seconds is taken over (15 missed
refreshes: a runtime that died, not a slow mount or a clock a few minutes off)."""

_FORMAT = "colabtui-writer-lock"
_LIVE: dict[str, weakref.ref] = {}  # token -> this process's FolderLock, until released
_LIVE_GUARD = threading.Lock()


@dataclass(frozen=True)
class Holder:
    """What a lock file says about its writer (``None``: not known where it was written)."""

    host: str
    pid: int
    token: str
    start: str | None = None
    boot: str | None = None
    pidns: str | None = None
    since: float = 0.0
    alive_at: float = 0.0

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}"

    def to_json(self) -> dict:
        return {"format": _FORMAT, "version": 1, "host": self.host, "pid": self.pid,
                "start": self.start, "boot": self.boot, "pidns": self.pidns,
                "token": self.token, "since": self.since, "alive_at": self.alive_at}


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a process, from /proc; None if unknown."""
    text = _read_text(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _pidns() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


_IDENTITY: dict[int, Holder] = {}


def identity() -> Holder:
    """This process as a lock names it (token empty): host, pid, start time, boot id, pid
    namespace (the last three None where /proc does not say)."""
    pid = os.getpid()
    me = _IDENTITY.get(pid)  # per pid: a forked child is another process
    if me is None:
        stat = _proc_stat(pid)
        boot = _read_text("/proc/sys/kernel/random/boot_id")
        me = Holder(host=socket.gethostname(), pid=pid, token="",
                    start=stat[1] if stat else None, boot=boot.strip() if boot else None,
                    pidns=_pidns())
        _IDENTITY[pid] = me
    return me


def _pid_alive(pid: int) -> bool | None:
    """Whether a process of this machine runs; None where that cannot be asked (Windows, whose
    ``os.kill`` ends the process instead)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    except OSError:
        return False
    stat = _proc_stat(pid)
    return stat is None or stat[0] not in ("Z", "X")  # a zombie writes nothing


def _parse(raw: bytes) -> Holder | None:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        return None
    host, pid, token = doc.get("host"), doc.get("pid"), doc.get("token")
    if not isinstance(host, str) or not isinstance(pid, int) or not isinstance(token, str):
        return None

    def text(key: str) -> str | None:
        value = doc.get(key)
        return value if isinstance(value, str) else None

    def number(key: str) -> float:
        value = doc.get(key)
        return float(value) if isinstance(value, int | float) else 0.0

    return Holder(host=host, pid=pid, token=token, start=text("start"), boot=text("boot"),
                  pidns=text("pidns"), since=number("since"), alive_at=number("alive_at"))


class FolderLock:
    """The writer lock of one folder, for one writer.

    Args:
        directory: the folder (never created here).
        io: the filesystem calls to make on it (default: the os module's).
        stale_s: seconds without a refresh after which another host's lock is taken over.
        writing: whether its writer is writing in the folder now (asked by another writer of
            the same process); None: always, while the lock is not released.

    :meth:`acquire` at the writer's start and before each reclaim; :meth:`release` at close.
    """

    def __init__(self, directory: str, io: FolderIO | None = None, *,
                 stale_s: float = LOCK_STALE_S, writing: Callable[[], bool] | None = None) -> None:
        self.directory = directory
        self.writing = writing
        self.path = os.path.join(directory, LOCK_NAME)
        self.io = io or OS_IO
        self.stale_s = stale_s
        self.token = secrets.token_hex(8)
        self.held = False
        self.blocked: str | None = None
        """Why the lock is not held (another writer, a folder that cannot be read), or None."""
        self._since = time.time()
        self._said: set[str] = set()
        self._guard = threading.Lock()
        self._released = False
        with _LIVE_GUARD:
            _LIVE[self.token] = weakref.ref(self)

    def __repr__(self) -> str:
        return f"FolderLock({self.path!r}, held={self.held})"

    # ---- reading and judging

    def _read(self) -> tuple[Holder | None, float, bool]:
        """(holder, file mtime, whether a file is there); a file that does not parse gives
        holder None with True.

        Raises:
            OSError: the folder or the file cannot be read.
        """
        try:
            with self.io.open(self.path, "rb") as f:
                raw = f.read()
            mtime = self.io.lstat(self.path).st_mtime
        except FileNotFoundError:
            return None, 0.0, False
        return _parse(raw), mtime, True

    def _judge(self, holder: Holder | None, mtime: float) -> tuple[bool, str]:
        """(stale, description) of a lock that is not ours."""
        now = time.time()
        if holder is None:
            age = now - mtime
            if age > self.stale_s:
                return True, f"an unreadable lock file not touched for {age / 60:.0f} min"
            return False, (f"an unreadable lock file {self.path} (written {age:.0f} s ago; "
                           "another writer's?)")
        me = identity()
        silent = now - max(holder.alive_at, mtime)
        other_box = holder.host != me.host or (holder.pidns and me.pidns
                                               and holder.pidns != me.pidns)
        if other_box:
            if silent > self.stale_s:
                return True, (f"{holder.describe()} has not refreshed it for "
                              f"{silent / 60:.0f} min (that runtime is gone)")
            return False, f"another runtime ({holder.describe()}) has this folder open"
        if holder.boot and me.boot and holder.boot != me.boot:
            return True, f"{holder.describe()} wrote it before this machine restarted"
        if holder.pid == me.pid and (holder.start == me.start or not holder.start
                                     or not me.start):
            with _LIVE_GUARD:
                ref = _LIVE.get(holder.token)
            other = ref() if ref is not None else None
            if other is None:
                return True, f"{holder.describe()} (this process), by a writer since closed"
            if other.writing is not None and not other.writing():
                return True, f"{holder.describe()} (this process), by a writer not writing now"
            return False, f"another writer of this process ({holder.describe()}) is writing here"
        alive = _pid_alive(holder.pid)
        if alive is False:
            return True, f"{holder.describe()} is not running"
        stat = _proc_stat(holder.pid)
        if holder.start and stat is not None and stat[1] != holder.start:
            return True, f"{holder.describe()} is not running (that pid is another process now)"
        if (alive is None or not holder.start or stat is None) and silent > self.stale_s:
            return True, (f"{holder.describe()} has not refreshed it for {silent / 60:.0f} min")
        return False, f"another writer on this host ({holder.describe()}) has this folder open"

    # ---- acquire, refresh, release

    def acquire(self) -> str | None:
        """Hold the lock, taking over one left by a writer that is gone.

        Returns:
            None when this writer holds it now; else why not (also kept in :attr:`blocked`),
            said once per other writer: another runtime's lock is a warning (logged and
            printed), another process's on this host is logged.
        """
        with self._guard:
            if self._released:
                self.held, self.blocked = False, "the writer is closed"
                return self.blocked
            try:
                holder, mtime, present = self._read()
                if present and holder is not None and holder.token == self.token:
                    self.held, self.blocked = True, None
                    return None
                took_over = None
                if present:
                    stale, what = self._judge(holder, mtime)
                    if not stale:
                        self._refused(holder, what)
                        return self.blocked
                    took_over = what
                self._write()
                holder, _, _ = self._read()  # two takers at once: the last rename wins
            except OSError as exc:
                self.held = False
                self.blocked = f"cannot read or write {self.path}: {describe_oserror(exc)}"
                logger.debug("%s", self.blocked)
                return self.blocked
            if holder is None or holder.token != self.token:
                self._refused(holder, "another writer took it at the same moment")
                return self.blocked
            self.held, self.blocked = True, None
            _HEARTBEAT.add(self)
            if took_over is not None:
                self._say_takeover(took_over)
            return None

    def _refused(self, holder: Holder | None, what: str) -> None:
        self.held = False
        self.blocked = f"{what}: nothing is reclaimed in {self.directory} while it does"
        key = holder.token if holder is not None else "unreadable"
        if key in self._said:
            return
        self._said.add(key)
        me = identity()
        if holder is not None and holder.host != me.host:
            message = (f"colabtui: WARNING: {self.directory}: {what} ({self.path}); two runtimes "
                       "writing one checkpoint folder overwrite each other's manifest. Nothing "
                       "left by interrupted saves is removed there while it does.")
            if logger.hasHandlers():
                logger.warning("%s", message)
            print(message, flush=True)
        else:
            logger.info("%s", self.blocked)

    def _say_takeover(self, what: str) -> None:
        message = f"took over the writer lock {self.path}: {what}"
        if "runtime is gone" in what:
            if logger.hasHandlers():
                logger.info("%s", message)
            print(f"colabtui: {message}", flush=True)
        else:
            logger.info("%s", message)

    def _write(self) -> None:
        me = identity()
        holder = Holder(host=me.host, pid=me.pid, token=self.token, start=me.start, boot=me.boot,
                        pidns=me.pidns, since=self._since, alive_at=time.time())
        data = json.dumps(holder.to_json(), indent=1).encode("utf-8") + b"\n"
        atomic_write(self.path, lambda f: f.write(data), io=self.io)

    def refresh(self) -> None:
        """Rewrite ``alive_at`` if the file there is still ours (else the lock is no longer
        held). Failures are logged at debug level only."""
        with self._guard:
            if not self.held or self._released:
                return
            try:
                holder, _, _ = self._read()
                if holder is None or holder.token != self.token:
                    self.held = False
                    return
                self._write()
            except OSError as exc:
                logger.debug("could not refresh %s: %s", self.path, describe_oserror(exc))

    def release(self) -> None:
        """Remove the lock file if it is still ours; this lock is not taken again."""
        with self._guard:
            if self._released:
                return
            self._released = True
            was_held, self.held = self.held, False
            with _LIVE_GUARD:
                _LIVE.pop(self.token, None)
            _HEARTBEAT.discard(self)
            if not was_held:
                return
            try:
                holder, _, _ = self._read()
                if holder is not None and holder.token == self.token:
                    self.io.remove(self.path)
            except OSError as exc:
                logger.debug("could not remove %s: %s", self.path, describe_oserror(exc))


def release_all(locks: list[FolderLock]) -> None:
    """:meth:`FolderLock.release` each of ``locks``."""
    for lock in locks:
        lock.release()


class _Heartbeat:
    """One daemon thread per process refreshing every held lock every :data:`LOCK_REFRESH_S`."""

    def __init__(self) -> None:
        self._locks: weakref.WeakSet[FolderLock] = weakref.WeakSet()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, lock: FolderLock) -> None:
        with self._guard:
            self._locks.add(lock)
            if self._thread is None or self._pid != os.getpid():  # none yet, or forked
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="colabtui-ckpt-lock",
                                                daemon=True)
                self._thread.start()

    def discard(self, lock: FolderLock) -> None:
        with self._guard:
            self._locks.discard(lock)

    def _run(self) -> None:
        while True:
            time.sleep(LOCK_REFRESH_S)
            with self._guard:
                locks = list(self._locks)
            for lock in locks:
                lock.refresh()


_HEARTBEAT = _Heartbeat()
