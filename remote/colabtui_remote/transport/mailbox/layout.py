"""Where a Drive mailbox keeps its files, and how they are read and written.

A mailbox is a folder (a run folder on a mounted Drive, or the same folder synced to a laptop
by Google Drive for desktop) that carries protocol v1 without a network connection. Each file
has exactly one writer, so a sync client never has two versions of one file to reconcile:

==========================================  ===========  ============================================
name                                        written by   content (the same JSON as the HTTP route)
==========================================  ===========  ============================================
``mailbox.json``                            runtime      ``{"protocol", "session_id", "interval_s"}``
``status.json``                             runtime      ``GET /v1/status``
``checkpoints.json``                        runtime      ``GET /v1/checkpoints``
``metrics/<session>-<after>-<last>.json``   runtime      ``GET /v1/metrics?after=<after>``: the
                                                         points with ``after < seq <= last``
``commands/<id>.json``                      laptop       ``POST /v1/commands`` body ``{"id", "action"}``
``records/<id>.json``                       runtime      ``GET /v1/commands/<id>``
==========================================  ===========  ============================================

The laptop removes a command file once it has seen the command's final record; the runtime
removes only files it wrote. Names starting with ``.`` are temporary files and are never read.

Storage is behind :class:`MailboxStorage` so that another backend (the Drive API) can carry the
same layout; :class:`LocalFolder` is the one for a plain or mounted folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

from ...checkpoint.fs import atomic_write
from ...drive.errors import FileTooLarge

INFO = "mailbox.json"
STATUS = "status.json"
CHECKPOINTS = "checkpoints.json"
METRICS = "metrics"
COMMANDS = "commands"
RECORDS = "records"

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Largest mailbox file read, bytes (a metrics chunk stays under 256 KB; the same bound as the
HTTP client's largest answer)."""

_CHUNK = re.compile(r"([0-9A-Za-z]{1,64})-([0-9]{12})-([0-9]{12})\.json")  # whole name, ASCII


def chunk_name(session_id: str, after: int, last: int) -> str:
    """The file name of a metrics chunk holding the points with ``after < seq <= last``."""
    return f"{session_id}-{after:012d}-{last:012d}.json"


def parse_chunk_name(name: str) -> tuple[str, int, int] | None:
    """``(session_id, after, last)`` of a chunk file name, or ``None`` for any other name."""
    m = _CHUNK.fullmatch(name)
    if m is None:
        return None
    return m.group(1), int(m.group(2)), int(m.group(3))


class MailboxStorage(Protocol):
    """What a mailbox needs from where it lives. Names are relative, ``/``-separated, at most
    one folder deep (``"status.json"``, ``"commands/<id>.json"``).

    Every method raises ``OSError`` (``FileNotFoundError`` for a missing name or folder) and
    nothing else for a storage failure.
    """

    def check(self) -> None:
        """Raise ``FileNotFoundError``/``NotADirectoryError`` unless the mailbox folder exists."""

    def read(self, name: str) -> bytes:
        """The whole file. Raises ``FileNotFoundError``, :class:`FileTooLarge`."""

    def write(self, name: str, data: bytes) -> None:
        """Replace the file atomically: a reader sees the old content or the new, never half."""

    def list(self, folder: str) -> list[str]:
        """File names in ``folder`` (without the folder), temporary files left out; ``[]`` when
        the folder does not exist yet."""

    def remove(self, name: str) -> None:
        """Delete the file; a missing one is not an error."""


class LocalFolder:
    """A mailbox in a local folder: a mounted Drive (``/content/drive/MyDrive/...``) or a
    folder Google Drive for desktop keeps in sync.

    Writes go to a temporary name in the same folder, are flushed and fsynced, then
    ``os.replace``-d over the final name: no hard links, which Drive's mount does not have.

    Args:
        root: the mailbox folder. It is not created here (see :meth:`create`).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalFolder({str(self.root)!r})"

    def create(self) -> None:
        """Create the folder (and its parents). Raises ``OSError``."""
        self.root.mkdir(parents=True, exist_ok=True)

    def check(self) -> None:
        if not self.root.is_dir():
            if self.root.exists():
                raise NotADirectoryError(f"{self.root} is not a folder")
            raise FileNotFoundError(f"folder {self.root} does not exist")

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if not 1 <= len(parts) <= 2 or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad mailbox file name {name!r}")
        return self.root.joinpath(*parts)

    def read(self, name: str) -> bytes:
        path = self._path(name)
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise FileTooLarge(f"{name} is larger than {MAX_FILE_BYTES} bytes")
        return data

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(exist_ok=True)
        # A status rewritten every few seconds: the folder's fsync would cost more than a
        # lost rename after a power cut (the next round writes it again).
        atomic_write(path, lambda f: f.write(data), sync_dir=False)

    def list(self, folder: str) -> list[str]:
        try:
            with os.scandir(self._path(folder)) as entries:
                return sorted(e.name for e in entries
                              if not e.name.startswith(".") and e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            self.check()  # the mailbox itself gone is an error; only its subfolder missing is not
            return []

    def remove(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
