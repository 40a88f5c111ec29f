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
                      "md5": "…", "verified_at": 1700000050.0, "file_id": "1AbC…"}, ...]}
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
from .fs import OS_IO, FolderIO, atomic_write

__all__ = ["MANIFEST", "ManifestEntry", "aside_name", "checkpoint_name", "entry_key",
           "file_order", "is_checkpoint_name", "manifest_bytes", "name_step", "parse_entries",
           "read_manifest", "write_manifest"]

MANIFEST = "manifest.json"
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
    return f"manifest.unreadable-{stamp}-{secrets.token_hex(2)}.json"


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

    @classmethod
    def of(cls, info: CheckpointInfo) -> ManifestEntry:
        """The entry for a checkpoint written locally."""
        return cls(file=os.path.basename(info.path), step=info.step, bytes=info.bytes,
                   sha256=info.sha256, saved_at=info.saved_at, epoch=info.epoch,
                   seconds=info.seconds)

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
        return doc


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
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestUnreadable(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT \
            or not isinstance(doc.get("checkpoints"), list):
        raise ManifestUnreadable(f"{where}: not a colabtui checkpoint manifest")
    return [_parse_entry(e, f"{where}: checkpoints[{i}]")
            for i, e in enumerate(doc["checkpoints"])]


def _parse_entry(e: Any, where: str) -> ManifestEntry:
    if not isinstance(e, dict):
        raise ManifestUnreadable(f"{where}: not an object")

    def field(key: str, types: tuple, optional: bool = False) -> Any:
        value = e.get(key)
        if (value is None and optional) or (isinstance(value, types) and not isinstance(value, bool)):
            return value
        raise ManifestUnreadable(f"{where}.{key}: missing or of the wrong type")

    name = field("file", (str,))
    if not is_checkpoint_name(name):  # also keeps a manifest from naming a path elsewhere
        raise ManifestUnreadable(f"{where}.file: {name[:80]!r} is not a checkpoint file name")
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
                         seconds=None if seconds is None else float(seconds))


def manifest_bytes(entries: list[ManifestEntry], *, replica: bool = True) -> bytes:
    """A manifest (oldest entry first) as UTF-8 JSON; see :meth:`ManifestEntry.to_json`."""
    doc = {"format": FORMAT, "version": 1,
           "checkpoints": [e.to_json(replica=replica) for e in entries]}
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
    path = os.path.join(directory, MANIFEST)
    try:
        with (io or OS_IO).open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from exc
    return [e.info(directory) for e in parse_entries(raw, path)]


def write_manifest(directory: str, entries: list[CheckpointInfo], io: FolderIO | None = None,
                   *, sync_dir: bool = False) -> None:
    """Replace a checkpoint folder's ``manifest.json`` atomically (see
    :func:`~colabtui_remote.checkpoint.fs.atomic_write`) with ``entries``, oldest first.

    Raises:
        OSError: it cannot be written; the old manifest stays as it was.
    """
    data = manifest_bytes([ManifestEntry.of(e) for e in entries], replica=False)
    atomic_write(os.path.join(directory, MANIFEST), lambda f: f.write(data), io=io,
                 sync_dir=sync_dir)
