"""The one manifest format: ``manifest.json`` in a checkpoint folder, a mounted Drive folder or
a ``gdrive://`` folder; its file names, its parser and its writer.

A checkpoint folder holds one file per checkpoint (``ckpt-000001200.pt``; a second save at the
same step gets ``ckpt-000001200-2.pt``) and the manifest that lists them, oldest first. ``file``
is relative, so the folder can move between machines; a file the manifest does not list is
never loaded. Entries a replica wrote (Drive, or a copy back to a mount) carry three more
fields: the md5 checked there, when, and Drive's file id::

    {"format": "colabtui-checkpoints", "version": 1,
     "checkpoints": [{"file": "ckpt-000001200.pt", "step": 1200, "epoch": 3, "bytes": 183000000,
                      "sha256": "…", "saved_at": 1700000000.0, "seconds": 2.4,
                      "md5": "…", "verified_at": 1700000050.0, "file_id": "1AbC…"}, ...],
     "retained": [{"file": "ckpt-000001300.pt", "why": "…", "step": 1300, "sha256": "…"}]}

A checkpoint a framework wrote as a folder (:mod:`.folders`: ``checkpoint-500/`` of the Hugging
Face Trainer, ``ckpt-000000500/`` of the Lightning and Keras integrations) is an entry whose
``file`` is the folder's name (at a replica: its tar, ``checkpoint-500.tar``, with the tar's size
in ``packed_bytes`` and its md5 in ``md5``), ``framework`` names who wrote it, and ``files``
lists each file's relative path, size and sha256; ``bytes`` is their sum and ``sha256`` the
:attr:`~.folders.FolderTree.sha256` over that list::

    {"file": "checkpoint-500", "step": 500, "bytes": 1870000, "sha256": "…", "saved_at": …,
     "framework": "transformers", "files": [{"path": "model.safetensors", "bytes": 1800000,
                                            "sha256": "…"}, ...]}

The version stays 1: a reader from before folder entries does not misread one, it refuses the
manifest (the name is not a checkpoint file name) and loads nothing of it.

``retained`` (only present when not empty) names checkpoint files that were unlisted on purpose
and are kept: an abandoned future after a resume, a checkpoint that failed verification or its
download checksum, the files found in a folder that had no readable manifest. They are never
loaded (resume reads ``checkpoints`` only, and ignores ``retained`` entirely) and never reclaimed
(:mod:`.reclaim`); writers carry the list forward, so the protection outlives the session that
unlisted them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..schema import CheckpointInfo, ReplicaCopy
from .errors import CheckpointError, ManifestUnreadable
from .folders import FileDigest, FolderTree, is_folder_name, is_packed_name, safe_relative_path
from .fs import OS_IO, FolderIO, atomic_write

__all__ = ["ASIDE_PREFIX", "MANIFEST", "ManifestEntry", "RetainedFile", "aside_name",
           "checkpoint_name", "entry_key", "file_order", "is_checkpoint_name", "manifest_bytes",
           "merge_retained", "name_step", "parse_entries", "parse_listing", "parse_retained",
           "read_folder", "read_manifest", "read_trees", "write_manifest"]

MANIFEST = "manifest.json"
ASIDE_PREFIX = "manifest.unreadable-"
"""How the name of a manifest kept aside begins (see :func:`aside_name`)."""
FORMAT = "colabtui-checkpoints"
_NAME_RE = re.compile(r"^ckpt-(\d{9,})(?:-(\d+))?\.pt$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")


# --------------------------------------------------------------------------- file names


def checkpoint_name(step: int, n: int = 1) -> str:
    """File name of the ``n``-th checkpoint saved at ``step`` (``ckpt-000001200.pt``, then
    ``ckpt-000001200-2.pt``)."""
    return f"ckpt-{step:09d}.pt" if n == 1 else f"ckpt-{step:09d}-{n}.pt"


def is_checkpoint_name(name: str) -> bool:
    """Whether ``name`` is a checkpoint file name (``ckpt-000001200.pt``, ``ckpt-000001200-2.pt``)."""
    return _NAME_RE.match(name) is not None


def file_order(name: str) -> tuple[int, int]:
    """(step, n) of a checkpoint file name, for sorting; ``name`` must be one."""
    m = _NAME_RE.match(name)
    assert m is not None
    return int(m.group(1)), int(m.group(2) or 1)


def name_step(name: str) -> int:
    """The step in a checkpoint or temporary file name (``.ckpt-000001200.pt.tmp-…``), -1 if none."""
    m = re.match(r"^\.?ckpt-(\d+)", name)
    return int(m.group(1)) if m else -1


def aside_name() -> str:
    """A fresh name for a manifest kept aside: ``manifest.unreadable-20240101T120000Z-ab12.json``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{ASIDE_PREFIX}{stamp}-{secrets.token_hex(2)}.json"


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class ManifestEntry:
    """One checkpoint listed in a manifest.

    ``md5`` and ``verified_at`` are ``None`` for entries written by a
    :class:`~colabtui_remote.checkpoint.writer.Checkpointer` directly (verified by its sha256
    read-back when saved); ``file_id`` is Drive's id of the file. ``bytes`` in bytes,
    ``saved_at`` and ``verified_at`` Unix seconds, ``seconds`` how long the save took.
    """

    file: str
    step: int
    bytes: int
    sha256: str
    saved_at: float
    md5: str | None = None
    verified_at: float | None = None
    file_id: str | None = None
    epoch: int | None = None
    seconds: float | None = None
    tree: FolderTree | None = None
    """The files of a folder checkpoint (None for a checkpoint file)."""
    packed_bytes: int | None = None
    """At a replica, the size of a folder's tar in bytes (``md5`` is the tar's)."""

    @classmethod
    def of(cls, info: CheckpointInfo, tree: FolderTree | None = None) -> ManifestEntry:
        """The entry for a checkpoint written locally (``tree``: a folder's files)."""
        return cls(file=os.path.basename(info.path), step=info.step, bytes=info.bytes,
                   sha256=info.sha256, saved_at=info.saved_at, epoch=info.epoch,
                   seconds=info.seconds, tree=tree)

    def info(self, directory: str) -> CheckpointInfo:
        """This entry as a :class:`~colabtui_remote.schema.CheckpointInfo` in ``directory``."""
        return CheckpointInfo(step=self.step, path=os.path.join(directory, self.file),
                              bytes=self.bytes, sha256=self.sha256, saved_at=self.saved_at,
                              seconds=self.seconds, epoch=self.epoch)

    def as_copy(self) -> ReplicaCopy:
        """This entry as the status reports it (``verified_at`` is ``saved_at`` for an entry
        written there directly, whose sha256 read-back verified it when it was saved)."""
        return ReplicaCopy(step=self.step, name=self.file, bytes=self.bytes, md5=self.md5,
                           verified_at=self.verified_at or self.saved_at, file_id=self.file_id,
                           saved_at=self.saved_at)

    def to_json(self, *, replica: bool = True) -> dict:
        """The entry's JSON object; ``replica=False`` leaves out the replica's fields (md5,
        verified_at, file_id), as a checkpoint folder's own manifest has them."""
        doc = {"file": self.file, "step": self.step, "epoch": self.epoch, "bytes": self.bytes,
               "sha256": self.sha256, "saved_at": self.saved_at, "seconds": self.seconds}
        if replica:
            doc.update(md5=self.md5, verified_at=self.verified_at)
            if self.file_id is not None:
                doc["file_id"] = self.file_id
            if self.packed_bytes is not None:
                doc["packed_bytes"] = self.packed_bytes
        if self.tree is not None:
            doc["framework"] = self.tree.framework
            doc["files"] = [f.to_json() for f in self.tree.files]
        return doc


@dataclass(frozen=True)
class RetainedFile:
    """A checkpoint file unlisted on purpose and kept (the manifest's ``retained``): never
    loaded, never reclaimed.

    Attributes:
        file: its name in the folder (a checkpoint file name).
        why: why it is kept, for the person reading the manifest.
        step: the step it holds, when known.
        sha256: its sha256 hex digest when it was listed, when known.
    """

    file: str
    why: str
    step: int | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, entry: CheckpointInfo | ManifestEntry, why: str) -> RetainedFile:
        """The record for a listed entry taken off the list."""
        return cls(file=entry_key(entry)[0], why=why, step=entry.step, sha256=entry.sha256)

    def to_json(self) -> dict:
        return {"file": self.file, "why": self.why, "step": self.step, "sha256": self.sha256}


def merge_retained(*lists: list[RetainedFile]) -> list[RetainedFile]:
    """The records of ``lists``, one per file name (the first seen wins), in order."""
    out: dict[str, RetainedFile] = {}
    for records in lists:
        for r in records:
            out.setdefault(r.file, r)
    return list(out.values())


def entry_key(entry: CheckpointInfo | ManifestEntry) -> tuple[str, str]:
    """(file name, sha256): how an entry is known in any copy of a folder's manifest."""
    name = entry.file if isinstance(entry, ManifestEntry) else os.path.basename(entry.path)
    return name, entry.sha256


# --------------------------------------------------------------------------- parse and write


def parse_entries(raw: bytes, where: str) -> list[ManifestEntry]:
    """The entries of a manifest's bytes, oldest first.

    Args:
        raw: the manifest file's content.
        where: where it came from, for messages (a path, or ``gdrive://…/manifest.json (file
            id …)``).

    Raises:
        ManifestUnreadable: not UTF-8 JSON, not a colabtui manifest, or an entry is malformed;
            the message names the place and the field.
    """
    doc = _parse_doc(raw, where)
    return [_parse_entry(e, f"{where}: checkpoints[{i}]")
            for i, e in enumerate(doc["checkpoints"])]


def parse_retained(raw: bytes, where: str) -> list[RetainedFile]:
    """The files a manifest's bytes list as retained (empty when it has no ``retained``).

    Raises:
        ManifestUnreadable: the manifest, or a record of ``retained``, is malformed.
    """
    doc = _parse_doc(raw, where)
    records = doc.get("retained", [])
    if not isinstance(records, list):
        raise ManifestUnreadable(f"{where}: retained: not a list")
    out = []
    for i, r in enumerate(records):
        at = f"{where}: retained[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("file"), str) \
                or not (is_checkpoint_name(r["file"]) or is_folder_name(r["file"])
                        or is_packed_name(r["file"])):
            raise ManifestUnreadable(f"{at}.file: missing or not a checkpoint file name")
        step, sha = r.get("step"), r.get("sha256")
        out.append(RetainedFile(
            file=r["file"], why=r["why"] if isinstance(r.get("why"), str) else "",
            step=step if isinstance(step, int) and not isinstance(step, bool) else None,
            sha256=sha if isinstance(sha, str) and _SHA_RE.match(sha) else None))
    return out


def _parse_doc(raw: bytes, where: str) -> dict:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestUnreadable(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT \
            or not isinstance(doc.get("checkpoints"), list):
        raise ManifestUnreadable(f"{where}: not a colabtui checkpoint manifest")
    return doc


def _parse_entry(e: Any, where: str) -> ManifestEntry:
    if not isinstance(e, dict):
        raise ManifestUnreadable(f"{where}: not an object")

    def field(key: str, types: tuple, optional: bool = False) -> Any:
        value = e.get(key)
        if (value is None and optional) or (isinstance(value, types) and not isinstance(value, bool)):
            return value
        raise ManifestUnreadable(f"{where}.{key}: missing or of the wrong type")

    name = field("file", (str,))
    tree = _parse_tree(e, where) if "files" in e else None
    named = (is_folder_name(name) or is_packed_name(name)) if tree else is_checkpoint_name(name)
    if not named:  # also keeps a manifest from naming a path elsewhere
        raise ManifestUnreadable(f"{where}.file: {name[:80]!r} is not a checkpoint "
                                 f"{'folder' if tree else 'file'} name")
    sha = field("sha256", (str,))
    if not _SHA_RE.match(sha):
        raise ManifestUnreadable(f"{where}.sha256: not a sha256 hex digest")
    md5 = field("md5", (str,), optional=True)
    if md5 is not None and not _MD5_RE.match(md5):
        raise ManifestUnreadable(f"{where}.md5: not an md5 hex digest")
    verified_at = field("verified_at", (int, float), optional=True)
    seconds = field("seconds", (int, float), optional=True)
    return ManifestEntry(file=name, step=field("step", (int,)), bytes=field("bytes", (int,)),
                         sha256=sha, saved_at=float(field("saved_at", (int, float))), md5=md5,
                         verified_at=None if verified_at is None else float(verified_at),
                         file_id=field("file_id", (str,), optional=True),
                         epoch=field("epoch", (int,), optional=True),
                         seconds=None if seconds is None else float(seconds), tree=tree,
                         packed_bytes=field("packed_bytes", (int,), optional=True))


def _parse_tree(e: dict, where: str) -> FolderTree:
    files, framework = e.get("files"), e.get("framework")
    if not isinstance(files, list) or not files:
        raise ManifestUnreadable(f"{where}.files: not a non-empty list")
    if framework is not None and not isinstance(framework, str):
        raise ManifestUnreadable(f"{where}.framework: not a string")
    out = []
    for i, f in enumerate(files):
        at = f"{where}.files[{i}]"
        if not isinstance(f, dict) or not safe_relative_path(f.get("path")):
            raise ManifestUnreadable(f"{at}.path: missing or not a relative path inside the "
                                     "folder")
        size, sha = f.get("bytes"), f.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestUnreadable(f"{at}.bytes: missing or not a size")
        if not isinstance(sha, str) or not _SHA_RE.match(sha):
            raise ManifestUnreadable(f"{at}.sha256: not a sha256 hex digest")
        out.append(FileDigest(f["path"], size, sha))
    if len({f.path for f in out}) != len(out):
        raise ManifestUnreadable(f"{where}.files: a path is listed twice")
    return FolderTree(tuple(sorted(out, key=lambda f: f.path)), framework)


def manifest_bytes(entries: list[ManifestEntry], *, replica: bool = True,
                   retained: list[RetainedFile] = ()) -> bytes:
    """A manifest (oldest entry first) as UTF-8 JSON; see :meth:`ManifestEntry.to_json`.
    ``retained`` is written only when not empty (a manifest without it reads as before)."""
    doc: dict[str, Any] = {"format": FORMAT, "version": 1,
                           "checkpoints": [e.to_json(replica=replica) for e in entries]}
    if retained:
        doc["retained"] = [r.to_json() for r in retained]
    return json.dumps(doc, indent=1).encode("utf-8") + b"\n"


def read_manifest(directory: str | os.PathLike, io: FolderIO | None = None
                  ) -> list[CheckpointInfo] | None:
    """The checkpoints a folder's ``manifest.json`` lists, oldest first (``path`` absolute);
    ``None`` if there is no manifest.

    Args:
        directory: the checkpoint folder.
        io: the filesystem calls to use on it (default: the os module's).

    Raises:
        ManifestUnreadable: the manifest is malformed (the message says how).
        CheckpointError: it cannot be read; ``__cause__`` is the OSError.
    """
    directory = os.path.abspath(directory)
    raw = _read_raw(directory, io)
    if raw is None:
        return None
    return [e.info(directory) for e in parse_entries(raw, os.path.join(directory, MANIFEST))]


def read_folder(directory: str | os.PathLike, io: FolderIO | None = None
                ) -> tuple[list[CheckpointInfo], list[RetainedFile] | None] | None:
    """What a writer needs of a folder's manifest: the checkpoints it lists (as
    :func:`read_manifest`) and the files it retains, ``None`` for those when its ``retained``
    does not parse (the checkpoints still count); ``None`` if there is no manifest.

    Raises:
        ManifestUnreadable: the manifest's checkpoints are malformed.
        CheckpointError: it cannot be read; ``__cause__`` is the OSError.
    """
    directory = os.path.abspath(directory)
    raw = _read_raw(directory, io)
    if raw is None:
        return None
    where = os.path.join(directory, MANIFEST)
    entries, retained = parse_listing(raw, where)
    return [e.info(directory) for e in entries], retained


def parse_listing(raw: bytes, where: str
                  ) -> tuple[list[ManifestEntry], list[RetainedFile] | None]:
    """A manifest's entries (as :func:`parse_entries`) and retained files (as
    :func:`parse_retained`; None when those do not parse, the entries still count).

    Raises:
        ManifestUnreadable: the manifest's checkpoints are malformed.
    """
    entries = parse_entries(raw, where)
    try:
        return entries, parse_retained(raw, where)
    except ManifestUnreadable:
        return entries, None


def _read_raw(directory: str, io: FolderIO | None) -> bytes | None:
    path = os.path.join(directory, MANIFEST)
    try:
        with (io or OS_IO).open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from exc


def read_trees(directory: str | os.PathLike, io: FolderIO | None = None
               ) -> dict[str, FolderTree]:
    """The folder checkpoints a folder's manifest lists: name → :class:`FolderTree` (empty
    without a manifest).

    Raises:
        ManifestUnreadable: the manifest is malformed.
        CheckpointError: it cannot be read.
    """
    directory = os.path.abspath(directory)
    raw = _read_raw(directory, io)
    if raw is None:
        return {}
    return {e.file: e.tree for e in parse_entries(raw, os.path.join(directory, MANIFEST))
            if e.tree is not None}


def write_manifest(directory: str, entries: list[CheckpointInfo], io: FolderIO | None = None,
                   *, sync_dir: bool = False, retained: list[RetainedFile] = (),
                   trees: dict[str, FolderTree] | None = None) -> None:
    """Replace a checkpoint folder's ``manifest.json`` atomically (see
    :func:`~colabtui_remote.checkpoint.fs.atomic_write`) with ``entries``, oldest first, and
    the ``retained`` records; ``trees`` gives the files of the folder checkpoints among
    ``entries``, by name.

    Raises:
        OSError: it cannot be written; the old manifest stays as it was.
    """
    trees = trees or {}
    data = manifest_bytes([ManifestEntry.of(e, trees.get(os.path.basename(e.path)))
                           for e in entries], replica=False, retained=retained)
    atomic_write(os.path.join(directory, MANIFEST), lambda f: f.write(data), io=io,
                 sync_dir=sync_dir)
