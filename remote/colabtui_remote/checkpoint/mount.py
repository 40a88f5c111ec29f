"""A checkpoint folder on a mount that can drop (Google Drive on Colab:
``/content/drive/MyDrive/...``): the replica destination that copies checkpoints back to it, and
the routing of saves to a local fallback while it is gone.

:class:`MountedFolder` is that folder as a replica destination, with plain os calls through a
:class:`~colabtui_remote.checkpoint.fs.FolderIO`. :class:`MountFallback` is the part of the
:class:`~colabtui_remote.checkpoint.writer.Checkpointer` that decides which folder a save goes
to.

Used after the mount failed under a save: the checkpoint went to local disk and is copied here
once the mount answers again: temporary name, fsync, ``os.replace``, the folder fsynced, read
back and its md5 compared, and only then ``manifest.json`` updated (by the
:class:`~colabtui_remote.checkpoint.replica.Replicator`). No hard links (FUSE mounts refuse them), and the
folder itself is never created (on an unmounted Drive that would write to the local disk under
the mount point).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from typing import Any

from ..schema import ReplicaCopy
from .errors import CheckpointError, ManifestUnreadable
from .folders import pack_folder
from .fs import MOUNT_GONE_ERRNOS, OS_IO, FolderIO, atomic_write, remove_quietly
from .lock import FolderLock
from .manifest import (
    ASIDE_PREFIX,
    MANIFEST,
    ManifestEntry,
    RetainedFile,
    aside_name,
    manifest_bytes,
    parse_entries,
    parse_listing,
)
from .reclaim import FolderFile, folder_files
from .remote import Progress, RemoteCopy
from .replica import Replicator

__all__ = ["MountFallback", "MountedFolder"]

logger = logging.getLogger("colabtui_remote.checkpoint")

_CHUNK = 8 << 20


class MountedFolder:
    """A checkpoint folder on a mount, as a :class:`~colabtui_remote.checkpoint.replica.ReplicaDestination`.

    Args:
        path: the folder (it must exist; it is never created here).
        io: the filesystem calls to make on it (default: the os module's).
        lock: the folder's writer lock, held by the
            :class:`~colabtui_remote.checkpoint.writer.Checkpointer` whose folder it is; what
            killed copies left here is reclaimed only while it is held (without one, never).

    Every method raises :class:`OSError` when the mount does not answer.
    """

    kind = "mount"

    def __init__(self, path: str | os.PathLike, io: FolderIO | None = None, *,
                 lock: FolderLock | None = None) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.dest = self.path
        self.io = io or OS_IO
        self.lock = lock

    def __repr__(self) -> str:
        return f"MountedFolder({self.path!r})"

    def _join(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read_manifest(self) -> list[ManifestEntry] | None:
        """The folder's manifest; None when it has none.

        Raises:
            ManifestUnreadable: it does not parse.
            OSError: the folder cannot be listed (mount gone) or the manifest read.
        """
        raw = self._manifest_raw()
        return None if raw is None else parse_entries(raw, self._join(MANIFEST))

    def read_listing(self) -> tuple[list[ManifestEntry], list[RetainedFile] | None] | None:
        """The folder's manifest: its entries and the files it retains; see
        :meth:`~colabtui_remote.checkpoint.remote.ReplicaDestination.read_listing`.

        Raises:
            ManifestUnreadable: its entries do not parse.
            OSError: the folder cannot be listed (mount gone) or the manifest read.
        """
        raw = self._manifest_raw()
        return None if raw is None else parse_listing(raw, self._join(MANIFEST))

    def _manifest_raw(self) -> bytes | None:
        self.io.listdir(self.path)  # a missing folder is "unreachable", not "no manifest"
        try:
            with self.io.open(self._join(MANIFEST), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def set_aside_manifest(self) -> str:
        aside = self._join(aside_name())
        self.io.replace(self._join(MANIFEST), aside)  # a rename: nothing is rewritten
        self.io.fsync_dir(self.path)
        return aside

    def names(self) -> set[str]:
        return set(self.io.listdir(self.path))

    def files(self) -> list[FolderFile]:
        """The folder's files that are ours by name (checkpoint and temporary names) and any
        manifest kept aside there (size 0: only its name counts)."""
        names = self.io.listdir(self.path)
        aside = [FolderFile(n, 0, 0.0) for n in names if n.startswith(ASIDE_PREFIX)]
        return folder_files(self.path, self.io, names) + aside

    def remove(self, file: FolderFile) -> None:
        try:
            self.io.remove(self._join(file.name))
        except FileNotFoundError:
            pass

    def reclaim_blocked(self) -> str | None:
        """None while the folder's lock is held (taking it over from a writer that is gone);
        else why not."""
        if self.lock is None:
            return "no writer lock is held for this folder"
        return self.lock.acquire()

    def _md5(self, path: str) -> tuple[int, str]:
        md5, size = hashlib.md5(), 0
        with self.io.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                md5.update(chunk)
                size += len(chunk)
        return size, md5.hexdigest()

    def put(self, local_path: str, name: str, *, progress: Progress | None = None,
            md5: str | None = None) -> RemoteCopy:
        """Copy ``local_path`` here as ``name``: temporary name, fsync, rename, folder fsync;
        the md5 returned is the file's as it reads back from the mount (``md5``, the local
        one, is not needed: the read-back is the check)."""
        def write(dst: Any) -> None:
            with open(local_path, "rb") as src:
                total = os.fstat(src.fileno()).st_size
                sent = 0
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, total)

        final = self._join(name)
        atomic_write(final, write, io=self.io)
        size, md5 = self._md5(final)
        return RemoteCopy(name=name, bytes=size, md5=md5)

    def write_manifest(self, entries: list[ManifestEntry],
                       retained: list[RetainedFile] = ()) -> None:
        data = manifest_bytes(entries, retained=retained)
        atomic_write(self._join(MANIFEST), lambda f: f.write(data), io=self.io)

    def delete(self, entry: ManifestEntry) -> None:
        try:
            self.io.remove(self._join(entry.file))
        except FileNotFoundError:
            pass

    def fetch(self, entry: ManifestEntry, to_path: str, *, progress: Progress | None = None) -> None:
        """Copy an entry's file to the new local file ``to_path`` (fsynced), checking its md5
        when the entry has one.

        Raises:
            CheckpointError: the file is missing or its md5 differs (``to_path`` removed).
            OSError: the mount does not answer.
        """
        src_path = self._join(entry.file)
        if entry.tree is not None and os.path.isdir(src_path):  # a framework's own folder
            try:
                with open(to_path, "xb") as dst:
                    pack_folder(src_path, entry.tree, dst)
            except FileNotFoundError as exc:
                remove_quietly(to_path)
                raise CheckpointError(f"{exc.filename} is listed in the manifest but missing"
                                      ) from None
            except BaseException:
                remove_quietly(to_path)
                raise
            return
        md5 = hashlib.md5()
        try:
            with self.io.open(src_path, "rb") as src, open(to_path, "xb") as dst:
                sent = 0
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    md5.update(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, entry.bytes)
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError as exc:
            remove_quietly(to_path)
            if exc.filename == to_path:
                raise
            raise CheckpointError(f"{src_path} is listed in the manifest but missing") from None
        except BaseException:
            remove_quietly(to_path)
            raise
        if entry.md5 is not None and md5.hexdigest() != entry.md5:
            remove_quietly(to_path)
            raise CheckpointError(f"{src_path} has md5 {md5.hexdigest()}, the manifest says "
                                  f"{entry.md5}")

    def failure(self, exc: BaseException) -> tuple[str, float | None]:
        if isinstance(exc, ManifestUnreadable):
            return "error", None
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "error", None
        return "offline", None

    def reset(self) -> None:
        pass


class MountFallback:
    """Routing of saves between a checkpoint folder on a mount and a local fallback folder,
    mixed into :class:`~colabtui_remote.checkpoint.writer.Checkpointer`.

    When a save finds the folder's filesystem gone (an errno in
    :data:`~colabtui_remote.checkpoint.fs.MOUNT_GONE_ERRNOS`, or the folder missing or
    unreadable), the checkpoint goes to the fallback instead and a :class:`Replicator` copying
    to a :class:`MountedFolder` (:attr:`mount_replica`) brings it back once the mount answers.
    Later saves go to the fallback until every copy is verified there. It uses the writer's
    ``_primary``/``_fallback`` folders, ``_cond``, ``_io``, ``_offline``, ``keep`` and
    ``_mount_retry_s``.
    """

    mount_replica: Any = None
    """The Replicator copying fallback checkpoints to the folder (once it was needed)."""

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

    def _mount_gone(self, exc: OSError) -> bool:
        """True when ``exc`` (from the checkpoint folder) means its filesystem is gone."""
        if exc.errno in MOUNT_GONE_ERRNOS:
            return True
        try:
            self._io.listdir(self.directory)
        except OSError:
            return True
        return False

    @property
    def offline(self) -> str | None:
        """Why the checkpoint folder is unreachable (saves go to the fallback), or None."""
        return self._offline

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

    def _target(self) -> Any:
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
        if self._primary.lock is not None:
            self._primary.lock.acquire()  # unreachable at the start: locked from now on
        return self._primary

    def _go_offline(self, reason: str) -> None:
        self._offline = reason
        logger.warning("checkpoint folder %s: %s; checkpoints go to %s until every one of them "
                       "is copied there", self.directory, reason, self.fallback_dir)
        self._mount_replica()

    def _mount_replica(self) -> Any:
        if self.mount_replica is None:
            first, longest = self._mount_retry_s
            replica = Replicator(MountedFolder(self.directory, io=self._io,
                                               lock=self._primary.lock), keep=self.keep,
                                 retry_min_s=first, retry_max_s=longest, start=False)
            if self._resume_point is not None:
                replica.resumed_from(*self._resume_point, abandoned=self._folder_abandoned())
            replica.start()
            self.mount_replica = replica
        return self.mount_replica
