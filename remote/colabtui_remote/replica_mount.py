"""A mounted folder (Google Drive on Colab: ``/content/drive/MyDrive/...``) as a replica
destination, with plain os calls through a :class:`~colabtui_remote.checkpoint.FolderIO`.

Used after the mount failed under a save: the checkpoint went to local disk and is copied here
once the mount answers again: temporary name, fsync, ``os.replace``, the folder fsynced, read
back and its md5 compared, and only then ``manifest.json`` updated (by the
:class:`~colabtui_remote.replica.Replicator`). No hard links (FUSE mounts refuse them), and the
folder itself is never created (on an unmounted Drive that would write to the local disk under
the mount point).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets

from .checkpoint import MANIFEST, CheckpointError, FolderIO
from .replica import (
    ManifestUnreadable,
    Progress,
    RemoteCopy,
    ReplicaEntry,
    aside_name,
    manifest_bytes,
    parse_entries,
)

_CHUNK = 8 << 20
_OS_IO = FolderIO()


class MountedFolder:
    """A checkpoint folder on a mount, as a :class:`~colabtui_remote.replica.ReplicaDestination`.

    Args:
        path: the folder (it must exist; it is never created here).
        io: the filesystem calls to make on it (default: the os module's).

    Every method raises :class:`OSError` when the mount does not answer.
    """

    kind = "mount"

    def __init__(self, path: str | os.PathLike, io: FolderIO | None = None) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.dest = self.path
        self.io = io or _OS_IO

    def __repr__(self) -> str:
        return f"MountedFolder({self.path!r})"

    def _join(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read_manifest(self) -> list[ReplicaEntry] | None:
        """The folder's manifest; None when it has none.

        Raises:
            ManifestUnreadable: it does not parse.
            OSError: the folder cannot be listed (mount gone) or the manifest read.
        """
        self.io.listdir(self.path)  # a missing folder is "unreachable", not "no manifest"
        try:
            with self.io.open(self._join(MANIFEST), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        return parse_entries(raw, self._join(MANIFEST))

    def set_aside_manifest(self) -> str:
        aside = self._join(aside_name())
        self.io.replace(self._join(MANIFEST), aside)  # a rename: nothing is rewritten
        self.io.fsync_dir(self.path)
        return aside

    def names(self) -> set[str]:
        return set(self.io.listdir(self.path))

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
        final = self._join(name)
        tmp = self._join(f".{name}.tmp-{secrets.token_hex(4)}")
        try:
            with open(local_path, "rb") as src, self.io.open(tmp, "xb") as dst:
                total = os.fstat(src.fileno()).st_size
                sent = 0
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, total)
                dst.flush()
                os.fsync(dst.fileno())
            self.io.replace(tmp, final)
        except BaseException:
            self._remove_quietly(tmp)
            raise
        self.io.fsync_dir(self.path)
        size, md5 = self._md5(final)
        return RemoteCopy(name=name, bytes=size, md5=md5)

    def write_manifest(self, entries: list[ReplicaEntry]) -> None:
        tmp = self._join(f".{MANIFEST}.tmp-{secrets.token_hex(4)}")
        try:
            with self.io.open(tmp, "xb") as f:
                f.write(manifest_bytes(entries))
                f.flush()
                os.fsync(f.fileno())
            self.io.replace(tmp, self._join(MANIFEST))
        except BaseException:
            self._remove_quietly(tmp)
            raise
        self.io.fsync_dir(self.path)

    def delete(self, entry: ReplicaEntry) -> None:
        try:
            self.io.remove(self._join(entry.file))
        except FileNotFoundError:
            pass

    def fetch(self, entry: ReplicaEntry, to_path: str, *, progress: Progress | None = None) -> None:
        """Copy an entry's file to the new local file ``to_path`` (fsynced), checking its md5
        when the entry has one.

        Raises:
            CheckpointError: the file is missing or its md5 differs (``to_path`` removed).
            OSError: the mount does not answer.
        """
        src_path = self._join(entry.file)
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
            self._remove_local(to_path)
            if exc.filename == to_path:
                raise
            raise CheckpointError(f"{src_path} is listed in the manifest but missing") from None
        except BaseException:
            self._remove_local(to_path)
            raise
        if entry.md5 is not None and md5.hexdigest() != entry.md5:
            self._remove_local(to_path)
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

    def _remove_quietly(self, path: str) -> None:
        try:
            self.io.remove(path)
        except OSError:
            pass

    @staticmethod
    def _remove_local(path: str) -> None:
        try:
            os.remove(path)
        except OSError:
            pass
