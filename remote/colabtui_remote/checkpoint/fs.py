"""The filesystem under a checkpoint: the one atomic write, fsync helpers, hashing, and probes
of what kind of filesystem a folder is on.

:func:`atomic_write` is the only place a file is made durable by rename: a temporary name in
the same folder (``.NAME.tmp-<random>``, never loaded by anyone), write, flush, fsync,
``os.replace`` over the final name, then the folder fsynced. Checkpoints, manifests, the mounted
replica and the mailbox all write through it. No hard links: Drive's FUSE mount has none.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import re
import secrets
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

__all__ = ["MOUNT_GONE_ERRNOS", "OS_IO", "EarlyWriteback", "FolderIO", "atomic_write",
           "describe_oserror", "early_writeback_default", "fsync_dir", "hash_local",
           "on_mounted_filesystem", "remove_quietly", "sha256_file", "temp_name"]

T = TypeVar("T")

EARLY_WRITEBACK_BYTES = 32 * 1024 * 1024
"""fdatasync the file being written every this many bytes (see :class:`EarlyWriteback`)."""

_REMOTE_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs")
_HASH_CHUNK = 8 << 20

MOUNT_GONE_ERRNOS = frozenset({errno.ENOTCONN, errno.EIO, errno.ESTALE, errno.ENODEV, errno.ENXIO,
                               errno.EHOSTDOWN, errno.ECONNABORTED, errno.ETIMEDOUT})
"""errno values that mean the folder's filesystem went away (107 ``ENOTCONN``, "Transport
endpoint is not connected", is what a dropped Drive FUSE mount answers)."""


def fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable. Filesystems that cannot fsync a directory
    (some FUSE mounts) say EINVAL/ENOTSUP; there is nothing more to do on those.

    Raises:
        OSError: the folder cannot be opened (other than permission) or fsync fails otherwise.
    """
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


class FolderIO:
    """The filesystem calls made on a checkpoint folder (by the writer and the mounted-folder
    replica). The default is the os module's behaviour; a test can pass a subclass that fails
    like a dropped FUSE mount (``OSError(errno.ENOTCONN, ...)``) and later recovers.

    Every method raises :class:`OSError` as the os call does.
    """

    def makedirs(self, path: str) -> None:
        """Create the folder (and its parents).

        Raises:
            NotADirectoryError: ``path`` (or a folder above it) is a file.
            OSError: it cannot be created.
        """
        try:
            os.makedirs(path, exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(f"{path} is a file, not a folder: give a checkpoint "
                                     "folder (it is created when missing)") from None

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

    def lstat(self, path: str) -> os.stat_result:
        """The file's own status (a link is not followed): size in bytes, mtime in seconds."""
        return os.lstat(path)

    def fsync_dir(self, path: str) -> None:
        fsync_dir(path)


OS_IO = FolderIO()
"""The os module's calls: the default :class:`FolderIO`."""


def remove_quietly(path: str, io: FolderIO | None = None) -> None:
    """Remove ``path``; a missing file is fine, any other failure is logged, never raised."""
    try:
        (io or OS_IO).remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        import logging

        logging.getLogger("colabtui_remote.checkpoint").warning("could not remove %s: %s",
                                                                path, exc)


def temp_name(name: str) -> str:
    """The temporary name a file named ``name`` is written under: ``.NAME.tmp-<8 hex>``."""
    return f".{name}.tmp-{secrets.token_hex(4)}"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], T], *,
                 io: FolderIO | None = None, sync_dir: bool = True) -> T:
    """Write a file so that ``path`` holds either what it held before or all of the new bytes.

    ``write(f)`` writes into a new temporary file in the same folder (:func:`temp_name`); it is
    flushed and fsynced, renamed over ``path`` with ``os.replace``, then the folder is fsynced
    (``sync_dir``). On any failure the temporary file is removed and ``path`` is untouched.

    Args:
        path: the final file.
        write: writes the content to the binary file object it is given; its result is
            returned.
        io: the filesystem calls to use (default :data:`OS_IO`).
        sync_dir: fsync the folder after the rename (off for files rewritten every few
            seconds whose loss on a power cut costs nothing, like a mailbox's status).

    Raises:
        OSError: the file cannot be written, synced or renamed (or whatever ``write`` raises).
    """
    io = io or OS_IO
    path = os.fspath(path)
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, temp_name(name))
    try:
        with io.open(tmp, "xb") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        io.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp, io)
        raise
    if sync_dir:
        io.fsync_dir(directory or ".")
    return result


def describe_oserror(exc: OSError) -> str:
    """``[Errno 107] Transport endpoint is not connected`` without the path repeated."""
    if exc.errno is not None and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def sha256_file(path: str, io: FolderIO | None = None) -> tuple[int, str]:
    """(size in bytes, sha256 hex digest) of a file as it reads back now.

    Hashes through a read-only mmap (no copy out of the page cache), falling back to reads
    where mmap is not supported.

    Raises:
        OSError: the file cannot be opened or read.
    """
    h = hashlib.sha256()
    with (io or OS_IO).open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            try:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                    h.update(m)
            except (OSError, ValueError):
                h = hashlib.sha256()
                size = 0
                f.seek(0)
                buf = bytearray(_HASH_CHUNK)
                view = memoryview(buf)
                while n := f.readinto(buf):
                    h.update(view[:n])
                    size += n
    return size, h.hexdigest()


def hash_local(path: str) -> tuple[int, str, str]:
    """(bytes, sha256 hex, md5 hex) of a local file, in one read.

    Raises:
        OSError: the file cannot be read.
    """
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_HASH_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            sha.update(view[:n])
            md5.update(view[:n])
            size += n
    return size, sha.hexdigest(), md5.hexdigest()


# --------------------------------------------------------------------------- probes


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


def early_writeback_default(directory: str) -> bool:
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


class EarlyWriteback:
    """fdatasync a file on a helper thread every few MB while it is still being written, so
    the disk works in parallel with serialization and hashing and the final fsync has little
    left. Errors are left to that final fsync, which reports them.

    Args:
        fd: the file descriptor being written.
        every: bytes between syncs (default :data:`EARLY_WRITEBACK_BYTES`).
    """

    def __init__(self, fd: int, every: int = EARLY_WRITEBACK_BYTES) -> None:
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
