"""Durable checkpoints: a single writer thread, a manifest, and resume from the newest good one.

One file per checkpoint in the checkpoint folder (``ckpt-000001200.pt``; a second save at the
same step gets ``ckpt-000001200-2.pt``) plus ``manifest.json``. A checkpoint is announced only
once it is durable: written to ``.ckpt-….pt.tmp-<random>`` in the same folder, flushed, fsynced,
renamed with ``os.replace``, the folder fsynced, read back and its sha256 compared, and only then
listed in ``manifest.json`` (itself written to a temporary name, fsynced and renamed). Old
checkpoints are pruned to ``keep`` after that. A temporary file, or a file the manifest does not
list, is never loaded.

Manifest layout (``file`` is relative, so the folder can move between machines)::

    {"format": "colabtui-checkpoints", "version": 1,
     "checkpoints": [{"file": "ckpt-000001200.pt", "step": 1200, "epoch": 3, "bytes": 183000000,
                      "sha256": "…", "saved_at": 1700000000.0, "seconds": 2.4}, ...]}  # oldest first

torch is imported only when a checkpoint is captured, written or loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import mmap
import os
import re
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .checkpoint_state import (
    FORMAT,
    CheckpointError,
    capture_state,
    require_torch,
    restore,
    saved_values,
    state_nbytes,
)
from .schema import CheckpointInfo, ReplicaCopy, ReplicaStatus, SaveProgress

__all__ = ["MANIFEST", "MOUNT_GONE_ERRNOS", "CheckpointError", "CheckpointWarning", "Checkpointer",
           "FolderIO", "load_resumable", "load_verified", "read_manifest", "restore",
           "saved_values", "sha256_file"]

logger = logging.getLogger("colabtui_remote.checkpoint")

MANIFEST = "manifest.json"
_MANIFEST_FORMAT = "colabtui-checkpoints"
_NAME_RE = re.compile(r"^ckpt-(\d{9,})(?:-(\d+))?\.pt$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_EARLY_WRITEBACK_BYTES = 32 * 1024 * 1024
"""fdatasync the file being written every this many bytes (see :class:`_EarlyWriteback`)."""
_REMOTE_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs")
_crc_lock = threading.Lock()

OnDone = Callable[[CheckpointInfo | None, str | None], None]


class CheckpointWarning(UserWarning):
    """A checkpoint, temporary file or manifest was skipped or ignored on resume."""


def checkpoint_name(step: int, n: int = 1) -> str:
    """File name of the ``n``-th checkpoint saved at ``step`` (``ckpt-000001200.pt``, then
    ``ckpt-000001200-2.pt``)."""
    return f"ckpt-{step:09d}.pt" if n == 1 else f"ckpt-{step:09d}-{n}.pt"


def is_checkpoint_name(name: str) -> bool:
    """Whether ``name`` is a checkpoint file name (``ckpt-000001200.pt``, ``ckpt-000001200-2.pt``)."""
    return _NAME_RE.match(name) is not None


# --------------------------------------------------------------------------- manifest


def read_manifest(directory: str | os.PathLike, io: FolderIO | None = None
                  ) -> list[CheckpointInfo] | None:
    """The checkpoints ``manifest.json`` lists, oldest first; ``None`` if there is no manifest.

    Args:
        directory: the checkpoint folder.
        io: the filesystem calls to use on it (default: the os module's).

    Raises:
        CheckpointError: the manifest cannot be read or is malformed (the message says how).
    """
    directory = os.path.abspath(directory)
    path = os.path.join(directory, MANIFEST)
    try:
        with (io or _OS_IO).open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from exc
    return [_parse_entry(directory, e, f"{path}: checkpoints[{i}]")
            for i, e in enumerate(parse_manifest_doc(raw, path))]


def parse_manifest_doc(raw: bytes, where: str) -> list:
    """The raw ``checkpoints`` list of a manifest's bytes (entries not checked yet).

    Args:
        raw: the manifest file's content.
        where: where it came from, for messages (a path or a Drive URL).

    Raises:
        CheckpointError: not UTF-8 JSON, or not a colabtui checkpoint manifest.
    """
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != _MANIFEST_FORMAT \
            or not isinstance(doc.get("checkpoints"), list):
        raise CheckpointError(f"{where}: not a colabtui checkpoint manifest")
    return doc["checkpoints"]


def _parse_entry(directory: str, e: Any, where: str) -> CheckpointInfo:
    def field(key: str, types: tuple, optional: bool = False) -> Any:
        value = e.get(key)
        if (value is None and optional) or (isinstance(value, types) and not isinstance(value, bool)):
            return value
        raise CheckpointError(f"{where}.{key}: missing or of the wrong type")

    if not isinstance(e, dict):
        raise CheckpointError(f"{where}: not an object")
    name = field("file", (str,))
    if not _NAME_RE.match(name):  # also keeps the manifest from pointing outside the folder
        raise CheckpointError(f"{where}.file: {name[:80]!r} is not a checkpoint file name")
    sha = field("sha256", (str,))
    if not _SHA_RE.match(sha):
        raise CheckpointError(f"{where}.sha256: not a sha256 hex digest")
    return CheckpointInfo(step=field("step", (int,)), path=os.path.join(directory, name),
                          bytes=field("bytes", (int,)), sha256=sha,
                          saved_at=float(field("saved_at", (int, float))),
                          seconds=field("seconds", (int, float), optional=True),
                          epoch=field("epoch", (int,), optional=True))


def _manifest_bytes(entries: list[CheckpointInfo]) -> bytes:
    items = [{"file": os.path.basename(e.path), "step": e.step, "epoch": e.epoch,
              "bytes": e.bytes, "sha256": e.sha256, "saved_at": e.saved_at,
              "seconds": e.seconds} for e in entries]
    doc = {"format": _MANIFEST_FORMAT, "version": 1, "checkpoints": items}
    return json.dumps(doc, indent=1).encode("utf-8") + b"\n"


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable. Filesystems that cannot fsync a directory
    (some FUSE mounts) say EINVAL/ENOTSUP; there is nothing more to do on those."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _remove_quietly(path: str, io: FolderIO | None = None) -> None:
    try:
        (io or _OS_IO).remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)


class FolderIO:
    """The filesystem calls a :class:`Checkpointer` (and a mounted-folder replica) makes on a
    checkpoint folder. The default is the os module's behaviour; a test can pass a subclass that
    fails like a dropped FUSE mount (``OSError(errno.ENOTCONN, ...)``) and later recovers.

    Every method raises :class:`OSError` as the os call does.
    """

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def open(self, path: str, mode: str) -> Any:
        """A binary file object (``mode`` is ``"rb"``, ``"xb"`` or ``"wb"``), unbuffered for reads."""
        return open(path, mode, buffering=0) if mode == "rb" else open(path, mode)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def lexists(self, path: str) -> bool:
        return os.path.lexists(path)

    def fsync_dir(self, path: str) -> None:
        _fsync_dir(path)


_OS_IO = FolderIO()


def sha256_file(path: str, io: FolderIO | None = None) -> tuple[int, str]:
    """(size in bytes, sha256 hex digest) of a file as it reads back now.

    Hashes through a read-only mmap (no copy out of the page cache), falling back to reads
    where mmap is not supported.

    Raises:
        OSError: the file cannot be opened or read.
    """
    h = hashlib.sha256()
    with (io or _OS_IO).open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            try:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                    h.update(m)
            except (OSError, ValueError):
                h = hashlib.sha256()
                size = 0
                f.seek(0)
                buf = bytearray(8 << 20)
                view = memoryview(buf)
                while n := f.readinto(buf):
                    h.update(view[:n])
                    size += n
    return size, h.hexdigest()


# --------------------------------------------------------------------------- writing


def _fstype(directory: str) -> str | None:
    """The filesystem type holding ``directory`` (from /proc/self/mounts), None if unknown."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split()[1:3] for line in f if len(line.split()) >= 3]
    except OSError:
        return None
    real = os.path.realpath(directory)
    best, fstype = "", ""
    for point, kind in mounts:
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype or None


def _early_writeback_default(directory: str) -> bool:
    """True on local filesystems. On FUSE (Google Drive on Colab) and network filesystems an
    fsync may mean an upload, so fdatasync-ing every few MB could multiply the work."""
    fstype = _fstype(directory)
    return bool(fstype) and not fstype.startswith("fuse") and fstype not in _REMOTE_FS


def on_mounted_filesystem(path: str | os.PathLike) -> bool:
    """Whether ``path`` is on a FUSE mount (Google Drive on Colab: ``/content/drive``) or a
    network filesystem, i.e. a mount that can drop under a save."""
    path = os.path.abspath(os.fspath(path))
    if path == "/content/drive" or path.startswith("/content/drive/"):
        return True
    fstype = _fstype(path)
    return bool(fstype) and (fstype.startswith("fuse") or fstype in _REMOTE_FS)


class _EarlyWriteback:
    """fdatasync the file on a helper thread every few MB while torch.save is still writing,
    so the disk works in parallel with serialization and hashing and the final fsync has
    little left. Errors are left to that final fsync, which reports them."""

    def __init__(self, fd: int, every: int = _EARLY_WRITEBACK_BYTES) -> None:
        self._fd = fd
        self._every = every
        self._pending = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="colabtui-ckpt-writeback",
                                        daemon=True)
        self._thread.start()

    def wrote(self, nbytes: int) -> bool:
        """Count bytes written; True when the caller should flush its buffer (a sync is due)."""
        self._pending += nbytes
        if self._pending < self._every:
            return False
        self._pending = 0
        return True

    def kick(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                os.fdatasync(self._fd)
            except OSError:
                return

    def close(self) -> None:
        """Stop and join; must run before the file descriptor is closed."""
        self._stop = True
        self._wake.set()
        self._thread.join()


@dataclass
class _Job:
    state: dict
    step: int
    epoch: int | None
    on_done: OnDone | None
    started_at: float
    bytes_total: int | None
    phase: str = "writing"
    bytes_written: int = 0


class _HashingWriter:
    """The file object torch.save writes to: hashes each chunk as it goes to the file."""

    def __init__(self, f: Any, job: _Job, writeback: _EarlyWriteback | None) -> None:
        self._f = f
        self._job = job
        self._writeback = writeback
        self.sha = hashlib.sha256()
        self.nbytes = 0
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            self._f.write(view)
        except OSError as exc:
            # torch's zip writer turns this into "unexpected pos …"; keep the real reason.
            self.error = exc
            raise
        self.sha.update(view)
        n = view.nbytes
        self.nbytes += n
        self._job.bytes_written = self.nbytes
        if self._writeback is not None and self._writeback.wrote(n):
            self._f.flush()
            self._writeback.kick()
        return n

    def flush(self) -> None:
        self._f.flush()


@contextlib.contextmanager
def _zip_crc32_off(torch: Any) -> Iterator[None]:
    """torch.save computes a zip CRC32 of every record; on a 200 MB state that took 0.3 s here,
    three times the write itself, and the sha256 computed while writing covers integrity.
    The switch (torch >= 2.6) is process-wide, so it is held only around our own save."""
    try:
        from torch.utils.serialization import config
        before = config.save.compute_crc32
    except (ImportError, AttributeError):
        yield
        return
    with _crc_lock:
        config.save.compute_crc32 = False
        try:
            yield
        finally:
            config.save.compute_crc32 = before


MOUNT_GONE_ERRNOS = frozenset({errno.ENOTCONN, errno.EIO, errno.ESTALE, errno.ENODEV, errno.ENXIO,
                               errno.EHOSTDOWN, errno.ECONNABORTED, errno.ETIMEDOUT})
"""errno values that mean the folder's filesystem went away (107 ``ENOTCONN``, "Transport
endpoint is not connected", is what a dropped Drive FUSE mount answers)."""


@dataclass
class _Folder:
    """One folder the writer saves into: the checkpoint folder or the local fallback."""

    directory: str
    io: FolderIO
    early_writeback: bool
    entries: list[CheckpointInfo]


class Checkpointer:
    """Writes checkpoints of one run into one folder, on a single writer thread.

    The training thread calls :meth:`capture` (the only stall: copying state to CPU) and
    :meth:`submit`; the writer thread serializes, writes, verifies, publishes in the manifest and
    prunes. One checkpoint is in flight at a time. A failed write leaves earlier checkpoints and
    the manifest as they were and is reported through :attr:`last_error` and ``on_done``; it
    never raises on the training thread.

    With ``fallback_dir`` (for a checkpoint folder on a mounted Drive): when a save finds the
    folder's filesystem gone (an errno in :data:`MOUNT_GONE_ERRNOS`, or the folder missing or
    unreadable), the checkpoint is written to ``fallback_dir`` instead (same durability, its own
    manifest) and a :class:`~colabtui_remote.replica.Replicator` copies it to the folder once it
    is back (:attr:`mount_replica`, kind ``mount``). Later saves go to ``fallback_dir`` until
    every copy is verified there; then the folder is used again. The folder is never created
    again after construction: on an unmounted Drive that would write to the local disk under the
    mount point.

    Args:
        directory: the checkpoint folder; created if missing.
        keep: how many checkpoints to keep (newest by save order), at least 1.
        early_writeback: fdatasync while writing (see :class:`_EarlyWriteback`); ``None`` turns
            it on for local filesystems only.
        fallback_dir: local folder for saves while ``directory`` is unreachable; ``None``: a
            save into an unreachable folder fails (reported, as any failed save).
        io: the filesystem calls made on ``directory`` (default: the os module's); see
            :class:`FolderIO`.
        replica: a :class:`~colabtui_remote.replica.Replicator` that gets every checkpoint
            written (e.g. one copying to Drive through its API); closed by :meth:`close`.
        mount_retry_s: (first, longest) seconds between attempts to copy to the folder while it
            is unreachable.

    Raises:
        ValueError: ``keep`` < 1.
        OSError: the folder (or ``fallback_dir``) cannot be created; with ``fallback_dir``, a
            folder whose filesystem is gone is not an error (saves start in the fallback).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3,
                 early_writeback: bool | None = None, *,
                 fallback_dir: str | os.PathLike | None = None, io: FolderIO | None = None,
                 replica: Any = None, mount_retry_s: tuple[float, float] = (5.0, 300.0)) -> None:
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.fallback_dir = os.path.abspath(os.fspath(fallback_dir)) if fallback_dir else None
        if self.fallback_dir == self.directory:
            raise ValueError(f"fallback_dir is the checkpoint folder itself: {self.directory}")
        self.keep = keep
        self.replica = replica
        self.mount_replica: Any = None
        """The Replicator copying fallback checkpoints to :attr:`directory` (once it was needed)."""
        self._io = io or _OS_IO
        self._early_writeback_arg = early_writeback
        self._mount_retry_s = mount_retry_s
        self._offline: str | None = None
        self._cond = threading.Condition()
        self._job: _Job | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._resume_point: tuple[int, float] | None = None  # see resumed_from
        self._abandoned_keys: set[tuple[str, str]] = set()  # the folder's: see _abandoned
        self._primary = self._open_folder(self.directory, self._io, create=True)
        self._fallback = (self._open_folder(self.fallback_dir, _OS_IO, create=True)
                          if self.fallback_dir else None)
        if self._fallback is not None:
            self._copy_left_behind()
        if replica is not None:
            # A session that died mid-upload left its newest local checkpoints uncopied: they
            # are copied now unless the destination lists them or something newer.
            for info in self.list():
                replica.submit(info, only_if_newer=True)

    def _copy_left_behind(self) -> None:
        """Fallback checkpoints newer than the folder's newest and not in it (an earlier session
        ended before they were copied) are copied now; saves go to the fallback until then."""
        there = {e.sha256 for e in self._primary.entries}
        newest = max((e.saved_at for e in self._primary.entries), default=0.0)
        assert self._fallback is not None
        left = [e for e in self._fallback.entries if e.sha256 not in there and e.saved_at > newest]
        if not left:
            return
        reason = self._offline or (f"{len(left)} checkpoint(s) in {self.fallback_dir} are not "
                                   "copied there yet")
        self._go_offline(reason)
        for info in left:
            self.mount_replica.submit(info)

    def _open_folder(self, directory: str, io: FolderIO, create: bool) -> _Folder:
        early = (_early_writeback_default(directory) if self._early_writeback_arg is None
                 else self._early_writeback_arg)
        folder = _Folder(directory, io, early, [])
        try:
            if create:
                io.makedirs(directory)
            folder.entries = self._load_entries(folder)
        except OSError as exc:
            if directory != self.directory or self.fallback_dir is None \
                    or not self._mount_gone(exc):
                raise
            self._offline = _describe(exc)
            logger.warning("checkpoint folder %s is unreachable (%s); checkpoints go to %s "
                           "until it is back", directory, self._offline, self.fallback_dir)
        return folder

    @staticmethod
    def _load_entries(folder: _Folder) -> list[CheckpointInfo]:
        try:
            return read_manifest(folder.directory, folder.io) or []
        except CheckpointError as exc:
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from None
            # Nothing is lost: files stay on disk and load_resumable can still find them.
            logger.warning("%s; starting a new manifest (older files are kept, unlisted)", exc)
            return []

    def _mount_gone(self, exc: OSError) -> bool:
        """True when ``exc`` (from the checkpoint folder) means its filesystem is gone."""
        if exc.errno in MOUNT_GONE_ERRNOS:
            return True
        try:
            self._io.listdir(self.directory)
        except OSError:
            return True
        return False

    # ---- training thread

    def capture(self, tracked: dict[str, Any], step: int, epoch: int | None) -> dict:
        """Copy the tracked objects' state to CPU; see :func:`checkpoint_state.capture_state`.

        Raises:
            ImportError: torch is not installed.
            CheckpointError: something tracked cannot be stored as plain types.
        """
        return capture_state(tracked, step, epoch)

    def submit(self, state: dict, step: int, epoch: int | None,
               on_done: OnDone | None = None) -> bool:
        """Queue ``state`` (from :meth:`capture`) for the writer thread.

        ``on_done(info, None)`` runs on the writer thread once the manifest lists the checkpoint,
        ``on_done(None, message)`` when the write failed; it runs before :attr:`busy` turns
        False, so :meth:`wait` returning means it has run (and it must not call :meth:`submit`).

        Returns:
            False, with nothing queued, if a save is already in flight or the checkpointer is
            closed; True otherwise.

        Raises:
            ValueError: ``state`` is not a captured checkpoint state.
        """
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("submit() takes the dict returned by capture()")
        total = state_nbytes(state)
        with self._cond:
            if self._job is not None or self._closing:
                return False
            self._job = _Job(state=state, step=int(step), epoch=epoch, on_done=on_done,
                             started_at=time.time(), bytes_total=total)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="colabtui-ckpt-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    # ---- any thread

    @property
    def busy(self) -> bool:
        """True while a checkpoint is being written."""
        return self._job is not None

    def progress(self) -> SaveProgress | None:
        """The save in flight (phase ``writing``, ``verifying`` or ``publishing``; bytes written
        so far; ``bytes_total`` is the tensor-data estimate while writing, exact after), or None."""
        job = self._job
        if job is None:
            return None
        return SaveProgress(step=job.step, phase=job.phase, bytes_written=job.bytes_written,
                            bytes_total=job.bytes_total, started_at=job.started_at)

    @property
    def last(self) -> CheckpointInfo | None:
        """The newest durable checkpoint written locally, in the folder or the fallback (from
        the manifests at construction, then each save)."""
        entries = self.list()
        return entries[-1] if entries else None

    @property
    def offline(self) -> str | None:
        """Why the checkpoint folder is unreachable (saves go to the fallback), or None."""
        return self._offline

    @property
    def last_error(self) -> str | None:
        """Why the most recent failed save failed. A later success does not clear it; compare
        :attr:`last_error_at` with ``last.saved_at``."""
        return self._last_error

    @property
    def last_error_at(self) -> float | None:
        """When :attr:`last_error` happened, Unix seconds."""
        return self._last_error_at

    def list(self) -> list[CheckpointInfo]:
        """The checkpoints the manifests list, oldest first (``path`` absolute): the folder's,
        then the fallback's not yet copied to it, ordered by ``saved_at``."""
        with self._cond:
            entries = list(self._primary.entries)
            if self._fallback is not None and self._fallback.entries:
                there = {e.sha256 for e in entries}
                entries += [e for e in self._fallback.entries if e.sha256 not in there]
                entries.sort(key=lambda e: e.saved_at)
            return entries

    def replica_status(self) -> ReplicaStatus | None:
        """The :class:`~colabtui_remote.schema.ReplicaStatus` of :attr:`replica`, else of
        :attr:`mount_replica` once the folder was found unreachable, else None.

        For the mount, ``verified`` is the newest checkpoint durable in the folder whichever
        way it got there: written straight into it (verified by its sha256 read-back; ``md5``
        None unless a copy of it was md5-checked there) or copied back from the fallback
        (md5-checked), with its ``saved_at``.
        """
        if self.replica is not None:
            return self.replica.status()
        if self.mount_replica is None:
            return None
        status = self.mount_replica.status()
        return dataclasses.replace(status, verified=self._verified_in_folder())

    def _verified_in_folder(self) -> ReplicaCopy | None:
        copied = self.mount_replica.verified()  # what it last read or wrote there
        with self._cond:
            written = [e for e in self._primary.entries if not self._abandoned(e)]
        newest_copy = max(copied, key=lambda e: (e.saved_at, e.step), default=None)
        newest_written = max(written, key=lambda e: (e.saved_at, e.step), default=None)
        if newest_written is None or (newest_copy is not None and (
                newest_copy.saved_at, newest_copy.step) >= (newest_written.saved_at,
                                                             newest_written.step)):
            return None if newest_copy is None else newest_copy.as_copy()
        same = next((e for e in copied if e.sha256 == newest_written.sha256), None)
        if same is not None:
            return same.as_copy()
        return ReplicaCopy(step=newest_written.step, name=os.path.basename(newest_written.path),
                           bytes=newest_written.bytes, md5=None,
                           verified_at=newest_written.saved_at, saved_at=newest_written.saved_at)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no save is in flight (its ``on_done`` has run). False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None, timeout)

    def close(self, timeout: float | None = 30, replica_timeout: float | None = 300) -> None:
        """Finish the save in flight, then stop the writer thread (waits up to ``timeout`` s);
        then let the replicas finish their copies (up to ``replica_timeout`` s; a copy not made
        by then stays local and is reported). Later :meth:`submit` calls return False."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("checkpoint writer still busy after %ss; left running", timeout)
        for replica in (self.replica, self.mount_replica):
            if replica is not None:
                replica.close(replica_timeout)

    # ---- writer thread

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._closing)
                job = self._job
                if job is None:
                    return
            try:
                info, error = self._save(job), None
            except Exception as exc:
                info = None
                error = f"checkpoint at step {job.step} not saved: {type(exc).__name__}: {exc}"
                self._last_error, self._last_error_at = error, time.time()
                logger.error("%s", error)
            job.state = {}  # let the copy go before anyone waits on us
            if job.on_done is not None:
                try:
                    job.on_done(info, error)
                except Exception:
                    logger.exception("checkpoint on_done callback failed")
            with self._cond:
                self._job = None
                self._cond.notify_all()

    def _save(self, job: _Job) -> CheckpointInfo:
        folder = self._target()
        try:
            info = self._save_into(folder, job)
        except OSError as exc:
            if folder is not self._primary or self._fallback is None or not self._mount_gone(exc):
                raise
            self._go_offline(_describe(exc))
            job.phase, job.bytes_written = "writing", 0
            folder = self._fallback
            info = self._save_into(folder, job)
        if folder is self._fallback:
            replica = self._mount_replica()
            replica.submit(info)
            replica.retry_now()  # probing a mount is cheap: try at every save
        if self.replica is not None:
            self.replica.submit(info)
        return info

    def _target(self) -> _Folder:
        """The folder this save goes to: the checkpoint folder, unless it is unreachable and the
        fallback's copies are not all verified there yet."""
        if self._offline is None or self._fallback is None:
            return self._primary
        if self.mount_replica is not None and not self.mount_replica.settled():
            return self._fallback
        try:  # everything is copied (or there was nothing to copy): try the folder again
            # A folder that is not there (a mount point left empty, a link pointing away) is
            # unreachable, not a folder without a manifest.
            self._io.listdir(self.directory)
            entries = self._load_entries(self._primary)  # the replica rewrote its manifest
        except OSError as exc:
            if self._mount_gone(exc):
                return self._fallback
            raise
        with self._cond:
            self._primary.entries = [e for e in entries if not self._abandoned(e)]
        logger.info("checkpoint folder %s is reachable again", self.directory)
        self._offline = None
        return self._primary

    def _go_offline(self, reason: str) -> None:
        self._offline = reason
        logger.warning("checkpoint folder %s: %s; checkpoints go to %s until every one of them "
                       "is copied there", self.directory, reason, self.fallback_dir)
        self._mount_replica()

    def _mount_replica(self) -> Any:
        if self.mount_replica is None:
            from .replica import Replicator  # replica imports this module
            from .replica_mount import MountedFolder

            first, longest = self._mount_retry_s
            replica = Replicator(MountedFolder(self.directory, io=self._io), keep=self.keep,
                                 retry_min_s=first, retry_max_s=longest, start=False)
            if self._resume_point is not None:
                replica.resumed_from(*self._resume_point, abandoned=self._folder_abandoned())
            replica.start()
            self.mount_replica = replica
        return self.mount_replica

    def _free_name(self, step: int, folder: _Folder | None = None) -> str:
        folder = folder or self._primary
        listed = {os.path.basename(e.path) for e in folder.entries}
        n = 1
        while True:
            name = checkpoint_name(step, n)
            if name not in listed and not folder.io.lexists(os.path.join(folder.directory, name)):
                return name
            n += 1

    def _save_into(self, folder: _Folder, job: _Job) -> CheckpointInfo:
        torch = require_torch()
        io = folder.io
        t0 = time.perf_counter()
        name = self._free_name(job.step, folder)
        final = os.path.join(folder.directory, name)
        tmp = os.path.join(folder.directory, f".{name}.tmp-{secrets.token_hex(4)}")
        try:
            with io.open(tmp, "xb") as f:
                writeback = _EarlyWriteback(f.fileno()) if folder.early_writeback else None
                try:
                    out = _HashingWriter(f, job, writeback)
                    try:
                        with _zip_crc32_off(torch):
                            torch.save(job.state, out)
                    except Exception as exc:
                        if out.error is not None and exc is not out.error:
                            raise out.error from None
                        raise
                    f.flush()
                finally:
                    if writeback is not None:
                        writeback.close()
                os.fsync(f.fileno())
            io.replace(tmp, final)
        except BaseException:
            _remove_quietly(tmp, io)
            raise
        published = False
        try:
            io.fsync_dir(folder.directory)
            job.phase, job.bytes_total = "verifying", out.nbytes
            size, sha = sha256_file(final, io)
            if size != out.nbytes or sha != out.sha.hexdigest():
                raise CheckpointError(
                    f"{final} does not read back as written: wrote {out.nbytes} bytes with "
                    f"sha256 {out.sha.hexdigest()}, read {size} bytes with sha256 {sha}")
            job.phase = "publishing"
            info = CheckpointInfo(step=job.step, path=final, bytes=size, sha256=sha,
                                  saved_at=time.time(), seconds=round(time.perf_counter() - t0, 4),
                                  epoch=job.epoch)
            dropped = self._publish(folder, info)
            published = True
        except BaseException:
            if not published:  # never announced, so never to be loaded: reclaim the space
                _remove_quietly(final, io)
            raise
        self._prune(dropped)
        logger.info("checkpoint step %d saved: %s, %d bytes in %.2fs", info.step, final,
                    info.bytes, info.seconds)
        return info

    def _publish(self, folder: _Folder, info: CheckpointInfo) -> list[CheckpointInfo]:
        """List ``info`` in ``folder``'s manifest, keeping the newest :attr:`keep`; returns the
        entries no longer listed (to prune once this is durable)."""
        with self._cond:
            entries = [*folder.entries, info]
        kept, dropped = entries[-self.keep:], entries[:-self.keep]
        self._write_manifest(kept, folder)
        with self._cond:
            folder.entries = kept
        folder.io.fsync_dir(folder.directory)
        return dropped

    def _write_manifest(self, entries: list[CheckpointInfo], folder: _Folder | None = None) -> None:
        """Replace manifest.json atomically: temp name, fsync, os.replace."""
        folder = folder or self._primary
        io = folder.io
        mtmp = os.path.join(folder.directory, f".{MANIFEST}.tmp-{secrets.token_hex(4)}")
        try:
            with io.open(mtmp, "xb") as f:
                f.write(_manifest_bytes(entries))
                f.flush()
                os.fsync(f.fileno())
            io.replace(mtmp, os.path.join(folder.directory, MANIFEST))
        except BaseException:
            _remove_quietly(mtmp, io)
            raise

    def adopt(self, path: str | os.PathLike, *, step: int, sha256: str, saved_at: float,
              epoch: int | None = None) -> CheckpointInfo:
        """List a checkpoint file fetched from elsewhere (resume from Drive) in the folder's
        manifest, as if it had been saved here. Not sent to :attr:`replica` (it came from there).

        Args:
            path: the file, a temporary name inside :attr:`directory` (``.ckpt-….tmp-…``); it is
                renamed to a free ``ckpt-…`` name (an existing file is never overwritten).
            step: the step it holds.
            sha256: its sha256 as its source lists it; checked after the rename.
            saved_at: when it was first saved, Unix seconds.
            epoch: its epoch, or None.

        Returns:
            Its entry, now :attr:`last` (unless a newer one is listed).

        Raises:
            RuntimeError: a save is in flight.
            CheckpointError: the file does not hash to ``sha256`` (it is removed).
            OSError: it cannot be renamed or the manifest written.
        """
        with self._cond:
            if self._job is not None:
                raise RuntimeError("adopt() while a save is in flight")
        folder = self._primary
        final = os.path.join(folder.directory, self._free_name(step, folder))
        folder.io.replace(os.fspath(path), final)
        try:
            folder.io.fsync_dir(folder.directory)
            size, sha = sha256_file(final, folder.io)
            if sha != sha256:
                raise CheckpointError(f"{final}: sha256 {sha} differs from its source's {sha256}")
            info = CheckpointInfo(step=step, path=final, bytes=size, sha256=sha,
                                  saved_at=saved_at, seconds=None, epoch=epoch)
            dropped = self._publish(folder, info)
        except BaseException:
            _remove_quietly(final, folder.io)
            raise
        self._prune(dropped)
        return info

    def resumed_from(self, info: CheckpointInfo, at: float | None = None) -> list[CheckpointInfo]:
        """Record that resume took ``info`` (from this folder, the fallback, or adopted from
        the replica).

        Listed checkpoints after ``info`` in its folder failed verification, and listed
        checkpoints of a greater step saved before ``at`` in either folder are an abandoned
        future (the run goes on from ``info.step``): both are taken off the manifests (their
        files stay on disk, never loaded) and are no longer reported as the last durable
        checkpoint. Only entries read by now count: a folder that was unreachable when this
        Checkpointer read it (a dropped mount) may hold newer checkpoints nobody looked at, and
        those are never unlisted because of this resume. A folder whose manifest was read but
        that is unreachable now is left as it is; its next manifest, written by a save or by
        :attr:`mount_replica`, leaves the abandoned ones off. :attr:`replica` and
        :attr:`mount_replica` are told too (see
        :meth:`~colabtui_remote.replica.Replicator.resumed_from`; the mount replica gets the
        folder's abandoned entries, read here).

        Args:
            info: the checkpoint resume took.
            at: when the run resumed, Unix seconds; default now.

        Returns:
            The local entries taken off (empty when none is newer than ``info``).

        Raises:
            RuntimeError: a save is in flight.
            OSError: a reachable folder's manifest could not be rewritten (the old one stays as
                it was); the replicas are told all the same.
        """
        at = time.time() if at is None else float(at)
        bad: list[CheckpointInfo] = []
        failure: OSError | None = None
        with self._cond:
            if self._job is not None:
                raise RuntimeError("resumed_from() while a save is in flight")
            self._resume_point = (info.step, at)
            for folder in (self._primary, self._fallback):
                if folder is None:
                    continue
                future = [e for e in folder.entries if e.step > info.step and e.saved_at <= at]
                if folder is self._primary:
                    self._abandoned_keys.update(_key(e) for e in future)
                paths = [e.path for e in folder.entries]
                cut = paths.index(info.path) + 1 if info.path in paths else len(paths)
                kept = [e for i, e in enumerate(folder.entries) if i < cut and e not in future]
                gone = [e for e in folder.entries if e not in kept]
                if not gone:
                    continue
                if folder is self._primary and self._offline is not None:
                    folder.entries = kept  # unreachable: its next manifest leaves them off
                    bad += gone
                    continue
                try:
                    self._write_manifest(kept, folder)
                    folder.entries = kept
                    folder.io.fsync_dir(folder.directory)
                except OSError as exc:
                    failure = failure or exc
                    continue
                bad += gone
        if self.replica is not None:
            self.replica.resumed_from(info.step, at)
        if self.mount_replica is not None:
            self.mount_replica.resumed_from(info.step, at, abandoned=self._folder_abandoned())
        for entry in bad:
            why = (f"saved before the resume at the earlier step {info.step}"
                   if entry.step > info.step else "it failed verification on resume")
            logger.info("unlisted %s (step %d): %s; the file is kept but never loaded",
                        entry.path, entry.step, why)
        if failure is not None:
            raise failure
        return bad

    def _abandoned(self, entry: CheckpointInfo) -> bool:
        """Whether ``entry`` (of the checkpoint folder) is of the future this run abandoned when
        it resumed: listed in the folder's manifest as read by then, with a greater step than
        the resume's, saved before it."""
        return _key(entry) in self._abandoned_keys

    def _folder_abandoned(self) -> set[tuple[str, str]]:
        """(file name, sha256) of the checkpoint folder's entries abandoned at the resume."""
        return set(self._abandoned_keys)

    def _prune(self, dropped: list[CheckpointInfo]) -> None:
        """Delete checkpoints the manifest no longer lists (it was already rewritten)."""
        for entry in dropped:
            inside = os.path.dirname(entry.path) == self.directory
            _remove_quietly(entry.path, self._io if inside else _OS_IO)


def _key(entry: CheckpointInfo) -> tuple[str, str]:
    """(file name, sha256): how an entry is known in any copy of a folder's manifest."""
    return os.path.basename(entry.path), entry.sha256


def _describe(exc: OSError) -> str:
    """``[Errno 107] Transport endpoint is not connected`` without the path repeated."""
    if exc.errno is not None and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- resume


def _warn(message: str, *, log: logging.Logger = logger, stacklevel: int = 3) -> None:
    """Warn about a skipped checkpoint once: a :class:`CheckpointWarning`, and the same line
    on ``log`` only where logging is set up (with no logging configured, a notebook or a
    script, Python would print a logged warning too, and the user would read it twice)."""
    if log.hasHandlers():
        log.warning("%s", message)
    warnings.warn(message, CheckpointWarning, stacklevel=stacklevel)


def _load_verified(torch: Any, path: str, step: int | None) -> dict:
    """Load with weights_only=True and check it is one of ours (for ``step``).

    Raises:
        CheckpointError: why it cannot be used.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise CheckpointError(
            f"torch.load(weights_only=True) failed: {type(exc).__name__}: {first}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("not a colabtui checkpoint (no 'format' field)")
    if step is not None and state.get("step") != step:
        raise CheckpointError(f"holds step {state.get('step')!r}, the manifest says {step}")
    return state


def load_verified(path: str | os.PathLike, step: int | None = None) -> dict:
    """Load a checkpoint file with ``torch.load(weights_only=True)`` (on the CPU) and check it
    is a colabtui checkpoint (holding ``step`` when given).

    Raises:
        ImportError: torch is not installed.
        CheckpointError: why it cannot be used (unreadable, unsafe to unpickle, not ours, other
            step).
    """
    return _load_verified(require_torch(), os.fspath(path), step)


def _check_listed(torch: Any, info: CheckpointInfo) -> dict:
    try:
        size = os.path.getsize(info.path)
    except OSError as exc:
        raise CheckpointError(f"cannot read it: {exc.strerror or exc}") from None
    if size != info.bytes:
        raise CheckpointError(f"size is {size} bytes, the manifest says {info.bytes} "
                              "(truncated or incomplete)")
    try:
        _, sha = sha256_file(info.path)
    except OSError as exc:
        raise CheckpointError(f"cannot read it: {exc}") from None
    if sha != info.sha256:
        raise CheckpointError("sha256 differs from the manifest (file changed or corrupt)")
    return _load_verified(torch, info.path, info.step)


def _name_step(name: str) -> int:
    m = re.match(r"^\.?ckpt-(\d+)", name)
    return int(m.group(1)) if m else -1


def load_resumable(directory: str | os.PathLike) -> tuple[dict, CheckpointInfo] | None:
    """The newest checkpoint in ``directory`` that verifies, to resume from.

    A listed checkpoint verifies when its size and sha256 match the manifest and
    ``torch.load(weights_only=True)`` reads it. Each newer one that does not, and every
    temporary or unlisted ``ckpt-*.pt`` file newer than the one taken, gets a
    :class:`CheckpointWarning` (also logged) naming the file and why. Without a readable
    manifest the candidates are the ``ckpt-*.pt`` files, each verified by loading it (also
    warned). Nothing is ever deleted here.

    Args:
        directory: the checkpoint folder.

    Returns:
        ``(state, info)`` for :func:`restore`, or ``None`` when there is no usable checkpoint
        (or no folder).

    Raises:
        ImportError: there is a checkpoint to load but torch is not installed.
        OSError: the folder exists but cannot be listed (e.g. permission denied).
    """
    directory = os.path.abspath(os.fspath(directory))
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return None
    files = sorted((n for n in names if _NAME_RE.match(n)), key=_file_order)
    temps = sorted(n for n in names if n.startswith(".ckpt-") and ".tmp-" in n)
    try:
        entries = read_manifest(directory)
        problem = None if entries is not None else "missing"
    except CheckpointError as exc:
        entries, problem = None, f"unreadable ({exc})"
    chosen: tuple[dict, CheckpointInfo] | None = None
    tried = 0
    if entries is not None:
        listed = {os.path.basename(e.path) for e in entries}
        unlisted = [n for n in files if n not in listed]
        for info in reversed(entries):
            tried += 1
            try:
                chosen = (_check_listed(require_torch(), info), info)
                break
            except CheckpointError as exc:
                _warn(f"checkpoint {info.path} (step {info.step}) is unusable: {exc}; "
                      "trying the previous one")
    else:
        unlisted = []
        if files:
            _warn(f"{os.path.join(directory, MANIFEST)} is {problem}: rebuilding the list from "
                  f"{len(files)} checkpoint file(s) in {directory}; each is verified by loading it")
        for name in reversed(files):
            tried += 1
            path = os.path.join(directory, name)
            try:
                state = _load_verified(require_torch(), path, None)
                size, sha = sha256_file(path)
                step = state.get("step")
                chosen = (state, CheckpointInfo(
                    step=step if isinstance(step, int) else _name_step(name), path=path,
                    bytes=size, sha256=sha, saved_at=os.path.getmtime(path), seconds=None,
                    epoch=state.get("epoch") if isinstance(state.get("epoch"), int) else None))
                break
            except (CheckpointError, OSError) as exc:
                _warn(f"checkpoint {path} is unusable: {exc}; trying the previous one")
    for name, why in [*((n, "not listed in the manifest") for n in unlisted),
                      *((n, "a temporary file left by an unfinished save") for n in temps)]:
        path = os.path.join(directory, name)
        if chosen is None or _newer_than(path, name, chosen[1]):
            _warn(f"ignored {path}: {why}; it is never loaded")
        else:
            logger.info("ignored older %s: %s", path, why)
    if chosen is None:
        if tried:
            _warn(f"none of the {tried} checkpoint(s) in {directory} could be loaded")
        return None
    logger.info("resuming from %s (step %d)", chosen[1].path, chosen[1].step)
    return chosen


def _file_order(name: str) -> tuple[int, int]:
    m = _NAME_RE.match(name)
    assert m is not None
    return int(m.group(1)), int(m.group(2) or 1)


def _newer_than(path: str, name: str, info: CheckpointInfo) -> bool:
    if _name_step(name) >= info.step:
        return True
    try:
        return os.path.getmtime(path) > info.saved_at
    except OSError:
        return False
