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
from .schema import CheckpointInfo, SaveProgress

__all__ = ["MANIFEST", "CheckpointError", "CheckpointWarning", "Checkpointer", "load_resumable",
           "read_manifest", "restore", "saved_values", "sha256_file"]

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


# --------------------------------------------------------------------------- manifest


def read_manifest(directory: str | os.PathLike) -> list[CheckpointInfo] | None:
    """The checkpoints ``manifest.json`` lists, oldest first; ``None`` if there is no manifest.

    Raises:
        CheckpointError: the manifest cannot be read or is malformed (the message says how).
    """
    directory = os.path.abspath(directory)
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from exc
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != _MANIFEST_FORMAT \
            or not isinstance(doc.get("checkpoints"), list):
        raise CheckpointError(f"{path}: not a colabtui checkpoint manifest")
    return [_parse_entry(directory, e, f"{path}: checkpoints[{i}]")
            for i, e in enumerate(doc["checkpoints"])]


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


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)


def sha256_file(path: str) -> tuple[int, str]:
    """(size in bytes, sha256 hex digest) of a file as it reads back now.

    Hashes through a read-only mmap (no copy out of the page cache), falling back to reads
    where mmap is not supported.

    Raises:
        OSError: the file cannot be opened or read.
    """
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
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


def _early_writeback_default(directory: str) -> bool:
    """True on local filesystems. On FUSE (Google Drive on Colab) and network filesystems an
    fsync may mean an upload, so fdatasync-ing every few MB could multiply the work."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split()[1:3] for line in f if len(line.split()) >= 3]
    except OSError:
        return False
    real = os.path.realpath(directory)
    best, fstype = "", ""
    for point, kind in mounts:
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return bool(fstype) and not fstype.startswith("fuse") and fstype not in _REMOTE_FS


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


class Checkpointer:
    """Writes checkpoints of one run into one folder, on a single writer thread.

    The training thread calls :meth:`capture` (the only stall: copying state to CPU) and
    :meth:`submit`; the writer thread serializes, writes, verifies, publishes in the manifest and
    prunes. One checkpoint is in flight at a time. A failed write leaves earlier checkpoints and
    the manifest as they were and is reported through :attr:`last_error` and ``on_done``; it
    never raises on the training thread.

    Args:
        directory: the checkpoint folder; created if missing.
        keep: how many checkpoints to keep (newest by save order), at least 1.
        early_writeback: fdatasync while writing (see :class:`_EarlyWriteback`); ``None`` turns
            it on for local filesystems only.

    Raises:
        ValueError: ``keep`` < 1.
        OSError: the folder cannot be created.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3,
                 early_writeback: bool | None = None) -> None:
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.keep = keep
        os.makedirs(self.directory, exist_ok=True)
        self._early_writeback = (_early_writeback_default(self.directory)
                                 if early_writeback is None else early_writeback)
        try:
            self._entries: list[CheckpointInfo] = read_manifest(self.directory) or []
        except CheckpointError as exc:
            # Nothing is lost: files stay on disk and load_resumable can still find them.
            logger.warning("%s; starting a new manifest (older files are kept, unlisted)", exc)
            self._entries = []
        self._cond = threading.Condition()
        self._job: _Job | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._last_error_at: float | None = None

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
        """The newest durable checkpoint (from the manifest at construction, then each save)."""
        with self._cond:
            return self._entries[-1] if self._entries else None

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
        """The checkpoints the manifest lists, oldest first (``path`` absolute)."""
        with self._cond:
            return list(self._entries)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no save is in flight (its ``on_done`` has run). False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None, timeout)

    def close(self, timeout: float | None = 30) -> None:
        """Finish the save in flight, then stop the writer thread (waits up to ``timeout`` s).
        Later :meth:`submit` calls return False."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("checkpoint writer still busy after %ss; left running", timeout)

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

    def _free_name(self, step: int) -> str:
        listed = {os.path.basename(e.path) for e in self._entries}
        n = 1
        while True:
            name = checkpoint_name(step, n)
            if name not in listed and not os.path.lexists(os.path.join(self.directory, name)):
                return name
            n += 1

    def _save(self, job: _Job) -> CheckpointInfo:
        torch = require_torch()
        t0 = time.perf_counter()
        name = self._free_name(job.step)
        final = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, f".{name}.tmp-{secrets.token_hex(4)}")
        try:
            with open(tmp, "xb") as f:
                writeback = _EarlyWriteback(f.fileno()) if self._early_writeback else None
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
            os.replace(tmp, final)
        except BaseException:
            _remove_quietly(tmp)
            raise
        published = False
        try:
            _fsync_dir(self.directory)
            job.phase, job.bytes_total = "verifying", out.nbytes
            size, sha = sha256_file(final)
            if size != out.nbytes or sha != out.sha.hexdigest():
                raise CheckpointError(
                    f"{final} does not read back as written: wrote {out.nbytes} bytes with "
                    f"sha256 {out.sha.hexdigest()}, read {size} bytes with sha256 {sha}")
            job.phase = "publishing"
            info = CheckpointInfo(step=job.step, path=final, bytes=size, sha256=sha,
                                  saved_at=time.time(), seconds=round(time.perf_counter() - t0, 4),
                                  epoch=job.epoch)
            with self._cond:
                entries = [*self._entries, info]
            kept, dropped = entries[-self.keep:], entries[:-self.keep]
            self._write_manifest(kept)
            published = True
            with self._cond:
                self._entries = kept
            _fsync_dir(self.directory)
        except BaseException:
            if not published:  # never announced, so never to be loaded: reclaim the space
                _remove_quietly(final)
            raise
        self._prune(dropped)
        logger.info("checkpoint step %d saved: %s, %d bytes in %.2fs", info.step, final,
                    info.bytes, info.seconds)
        return info

    def _write_manifest(self, entries: list[CheckpointInfo]) -> None:
        """Replace manifest.json atomically: temp name, fsync, os.replace."""
        mtmp = os.path.join(self.directory, f".{MANIFEST}.tmp-{secrets.token_hex(4)}")
        try:
            with open(mtmp, "xb") as f:
                f.write(_manifest_bytes(entries))
                f.flush()
                os.fsync(f.fileno())
            os.replace(mtmp, os.path.join(self.directory, MANIFEST))
        except BaseException:
            _remove_quietly(mtmp)
            raise

    def resumed_from(self, info: CheckpointInfo) -> list[CheckpointInfo]:
        """Record that resume took ``info``: listed checkpoints after it failed verification, so
        they are taken off the manifest (their files stay on disk, never loaded) and are no
        longer reported as the last durable checkpoint.

        Returns:
            The entries taken off (empty when ``info`` is the newest or not listed).

        Raises:
            OSError: the manifest could not be rewritten (the old one stays as it was).
        """
        with self._cond:
            if self._job is not None:
                raise RuntimeError("resumed_from() while a save is in flight")
            paths = [e.path for e in self._entries]
            if info.path not in paths:
                return []
            cut = paths.index(info.path) + 1
            kept, bad = self._entries[:cut], self._entries[cut:]
            if not bad:
                return []
            self._write_manifest(kept)
            self._entries = kept
        _fsync_dir(self.directory)
        for entry in bad:
            logger.info("unlisted %s (step %d): it failed verification on resume; the file is "
                        "kept but never loaded", entry.path, entry.step)
        return bad

    def _prune(self, dropped: list[CheckpointInfo]) -> None:
        """Delete checkpoints the manifest no longer lists (it was already rewritten)."""
        for entry in dropped:
            _remove_quietly(entry.path)


# --------------------------------------------------------------------------- resume


def _warn(message: str) -> None:
    # Once, not twice: with no logging configured (a notebook, a script) the warning alone
    # shows; where logging is set up, it goes there too.
    if logger.hasHandlers():
        logger.warning("%s", message)
    warnings.warn(message, CheckpointWarning, stacklevel=3)


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
