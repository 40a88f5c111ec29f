"""Checkpoints a framework writes as a folder (Hugging Face's ``checkpoint-500/``, or a folder
the Lightning and Keras integrations fill): made durable, described file by file, verified,
packed into one file for a replica and unpacked from one.

A folder is made durable by :func:`make_durable`: every file in it fsynced, every folder in it
fsynced bottom-up, then the folder itself and its parent. It is described by a
:class:`FolderTree`: each file's path relative to the folder, its size and its sha256, and one
sha256 over that list (:attr:`FolderTree.sha256`), the folder's identity in any copy of the
manifest. A replica holds the folder as one uncompressed tar (``checkpoint-500.tar``: Drive's
API and its md5 are per file), written in a fixed order with fixed metadata.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from .errors import CheckpointError
from .fs import fsync_dir

__all__ = ["FileDigest", "FolderTree", "aside_folder", "is_aside_folder", "is_folder_name",
           "folder_names", "folder_of", "is_packed_name", "make_durable", "name_order", "pack_folder", "packed_name", "remove_folder",
           "safe_relative_path", "unpack_folder", "verify_folder"]

_FOLDER_RE = re.compile(r"^(?:checkpoint-\d+|ckpt-\d{9,})(?:-\d+)?$")
_ASIDE_RE = re.compile(r"^\.(?:checkpoint-\d+|ckpt-\d{9,})(?:-\d+)?\.unlisted-[0-9a-f]{8}$")
_CHUNK = 8 << 20


def is_folder_name(name: str) -> bool:
    """Whether ``name`` is a folder checkpoint's name: ``checkpoint-500`` (the Hugging Face
    Trainer's), ``ckpt-000000500`` (the Lightning and Keras integrations'), either with a
    ``-2`` for a second copy."""
    return _FOLDER_RE.match(name) is not None


def packed_name(folder: str) -> str:
    """The name of a folder's tar at a replica: ``checkpoint-500.tar``."""
    return f"{folder}.tar"


def folder_of(name: str) -> str:
    """The folder's name for an entry's ``file``: ``checkpoint-500`` for ``checkpoint-500.tar``
    (at a replica) or ``checkpoint-500`` (in the folder itself)."""
    return name[:-4] if is_packed_name(name) else name


def is_packed_name(name: str) -> bool:
    """Whether ``name`` is a packed folder's name at a replica (``checkpoint-500.tar``)."""
    return name.endswith(".tar") and is_folder_name(name[:-4])


def aside_folder(name: str) -> str:
    """A fresh name to move an unlisted folder out of a framework's way:
    ``.checkpoint-600.unlisted-1a2b3c4d`` (a framework globbing ``checkpoint-*`` skips it)."""
    return f".{name}.unlisted-{secrets.token_hex(4)}"


def is_aside_folder(name: str) -> bool:
    """Whether ``name`` was made by :func:`aside_folder`."""
    return _ASIDE_RE.match(name) is not None


def safe_relative_path(path: str) -> bool:
    """Whether ``path`` is a plain relative path inside a folder: ``/``-separated, no empty,
    ``.`` or ``..`` part, not absolute, no backslash or NUL."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path \
            or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


@dataclass(frozen=True)
class FileDigest:
    """One file of a folder checkpoint: ``path`` relative to the folder (``/``-separated),
    ``bytes`` its size in bytes, ``sha256`` its hex digest."""

    path: str
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True)
class FolderTree:
    """What a folder checkpoint holds: its files, sorted by path, and the framework that wrote
    it (``transformers``, ``lightning``, ``keras``, or None)."""

    files: tuple[FileDigest, ...]
    framework: str | None = None

    @property
    def bytes(self) -> int:
        """The files' sizes added up, bytes."""
        return sum(f.bytes for f in self.files)

    @property
    def sha256(self) -> str:
        """sha256 hex over the sorted list of (sha256, size, path): equal for two folders
        exactly when they hold the same files with the same bytes."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.sha256} {f.bytes} {f.path}\n".encode())
        return h.hexdigest()


def _walk(root: str) -> tuple[list[str], list[str]]:
    """(files, folders) under ``root``, relative, sorted; folders deepest first.

    Raises:
        CheckpointError: a link or something other than a file or folder is inside.
    """
    files, folders = [], []
    for here, dirs, names in os.walk(root):
        rel = os.path.relpath(here, root)
        for name in dirs + names:
            full = os.path.join(here, name)
            mode = os.lstat(full).st_mode
            sub = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
            if stat.S_ISLNK(mode):
                raise CheckpointError(f"{full} is a link: a checkpoint folder holds only files")
            if stat.S_ISDIR(mode):
                folders.append(sub)
            elif stat.S_ISREG(mode):
                files.append(sub)
            else:
                raise CheckpointError(f"{full} is not a regular file")
    return sorted(files), sorted(folders, key=lambda p: -p.count("/"))


def _hash(f: BinaryIO) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    while chunk := f.read(_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def make_durable(path: str, framework: str | None = None) -> FolderTree:
    """fsync every file in the folder ``path`` and hash it, fsync its folders (deepest
    first), the folder itself and its parent; return what it holds.

    Raises:
        CheckpointError: the folder is empty, or holds a link or a special file.
        OSError: it cannot be read or synced.
    """
    files, folders = _walk(path)
    if not files:
        raise CheckpointError(f"{path} holds no file")
    digests = []
    for rel in files:
        with open(os.path.join(path, rel), "rb", buffering=0) as f:
            os.fsync(f.fileno())
            size, sha = _hash(f)
        digests.append(FileDigest(rel, size, sha))
    for rel in folders:
        fsync_dir(os.path.join(path, rel))
    fsync_dir(path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return FolderTree(tuple(digests), framework)


def verify_folder(path: str, tree: FolderTree) -> None:
    """Check that the folder ``path`` holds every file of ``tree`` with its size and sha256
    (files it holds beyond those are not looked at: they are never part of the checkpoint).

    Raises:
        CheckpointError: the folder or a file is missing, or a size or sha256 differs; the
            message names the file.
    """
    if not os.path.isdir(path):
        raise CheckpointError("the folder is missing")
    for f in tree.files:
        full = os.path.join(path, f.path)
        try:
            if os.path.islink(full):
                raise CheckpointError(f"{f.path} is a link")
            if os.path.getsize(full) != f.bytes:
                raise CheckpointError(f"{f.path} has {os.path.getsize(full)} bytes, the "
                                      f"manifest says {f.bytes} (half-written or changed)")
            with open(full, "rb", buffering=0) as fh:
                _, sha = _hash(fh)
        except FileNotFoundError:
            raise CheckpointError(f"{f.path} is missing (half-written)") from None
        except OSError as exc:
            raise CheckpointError(f"{f.path} cannot be read: {exc}") from None
        if sha != f.sha256:
            raise CheckpointError(f"{f.path}: sha256 differs from the manifest (changed or "
                                  "corrupt)")


def pack_folder(path: str, tree: FolderTree, out: BinaryIO) -> tuple[int, str]:
    """Write the files of ``tree`` from the folder ``path`` into ``out`` as an uncompressed
    tar (sorted paths, mtime 0, mode 0644, owner 0), checking each file's sha256 as it is
    read.

    Returns:
        (bytes written, md5 hex of the tar).

    Raises:
        CheckpointError: a file no longer has its size or sha256 (the folder changed).
        OSError: a file cannot be read or ``out`` written.
    """
    md5 = hashlib.md5()
    written = 0

    class _Out:
        def write(self, data: bytes) -> int:
            nonlocal written
            md5.update(data)
            written += len(data)
            return out.write(data)

    with tarfile.open(fileobj=_Out(), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for f in tree.files:
            info = tarfile.TarInfo(f.path)
            info.size, info.mtime, info.mode = f.bytes, 0, 0o644
            with open(os.path.join(path, f.path), "rb") as src:
                if os.fstat(src.fileno()).st_size != f.bytes:
                    raise CheckpointError(f"{f.path} changed since it was listed (its size)")
                checked = _Checked(src, f)
                tar.addfile(info, checked)
                checked.finish()
    return written, md5.hexdigest()


class _Checked:
    """A file read through sha256, for :func:`pack_folder`."""

    def __init__(self, f: BinaryIO, digest: FileDigest) -> None:
        self._f, self._digest, self._h, self._n = f, digest, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._h.update(data)
        self._n += len(data)
        return data

    def finish(self) -> None:
        if self._n != self._digest.bytes or self._h.hexdigest() != self._digest.sha256:
            raise CheckpointError(f"{self._digest.path} changed since it was listed")


def unpack_folder(tar_path: str, to_dir: str, tree: FolderTree) -> None:
    """Unpack the tar ``tar_path`` into the new folder ``to_dir`` (only the files of ``tree``,
    nothing outside ``to_dir``), then :func:`verify_folder` it and make it durable.

    Raises:
        CheckpointError: the tar does not hold exactly ``tree``'s files with their sha256
            (``to_dir`` is removed).
        OSError: it cannot be read or ``to_dir`` written.
    """
    wanted = {f.path for f in tree.files}
    os.makedirs(to_dir)
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            members = tar.getmembers()
            names = {m.name for m in members}
            if names != wanted or any(not m.isfile() for m in members):
                raise CheckpointError(f"{tar_path} does not hold the files its manifest lists")
            tar.extractall(to_dir, filter="data")
        verify_folder(to_dir, tree)
        make_durable(to_dir, tree.framework)
    except BaseException:
        remove_folder(to_dir)
        raise


def remove_folder(path: str) -> None:
    """Remove a folder and what it holds; a missing one is fine, any other failure is logged,
    never raised."""
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        import logging

        logging.getLogger("colabtui_remote.checkpoint").warning("could not remove %s: %s",
                                                                path, exc)


def folder_names(names: Iterable[str]) -> list[str]:
    """The folder checkpoint names among ``names``, by step."""
    return sorted((n for n in names if is_folder_name(n)), key=name_order)


def name_order(name: str) -> tuple[int, int]:
    """(step, n) of a folder checkpoint's name, for sorting."""
    m = re.match(r"^(?:checkpoint|ckpt)-(\d+)(?:-(\d+))?$", name)
    assert m is not None
    return int(m.group(1)), int(m.group(2) or 1)
