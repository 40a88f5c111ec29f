"""A mailbox (:mod:`.layout`) in a Drive folder, through the API.

The same files as in a mounted or synced folder (``status.json``, ``commands/<id>.json``…), as
Drive files in a Drive folder and its subfolders. Each file has one writer, which updates it in
place (by id), so its id stays the same and a reader that has it cached reads it in one request.
Drive replaces a file's content as a whole: a reader sees the old content or the new.

Requests per operation, once the ids are cached: ``read`` 1, ``write`` 2 (a resumable upload's
start and its one chunk), ``remove`` 1, ``list`` 1, ``check`` 1. A cached id that Drive no
longer knows is dropped and looked up again once.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ...drive.client import DEFAULT_CHUNK_BYTES, DriveFile, DriveFolder
from ...drive.errors import DriveNotFound
from ...drive.url import is_folder_id, is_gdrive_url, parse_gdrive_url
from .layout import MAX_FILE_BYTES

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from pydrive2.drive import GoogleDrive

T = TypeVar("T")


class _Absent(Exception):
    """A name a fresh lookup did not find: no point in looking again."""


class DriveMailbox:
    """A :class:`~colabtui_remote.transport.mailbox.layout.MailboxStorage` in a Drive folder.

    Every method raises ``OSError`` only for a storage failure: a
    :class:`~colabtui_remote.drive.client.DriveError`, of which
    :class:`~colabtui_remote.drive.client.DriveNotFound` (a missing name or folder) is also a
    ``FileNotFoundError``. Safe to use from several threads.

    Args:
        folder: ``gdrive://ID[/sub/path]``, a bare folder id, or an open :class:`DriveFolder`.
            A URL is resolved on first use (subfolders are created only by :meth:`create`).
        drive: an authorized ``GoogleDrive``; default: :func:`~.auth.connect` ``()`` on first
            use. Ignored when ``folder`` is a :class:`DriveFolder`.

    Raises:
        ValueError: a malformed URL or id.
    """

    recreate_when_gone = True
    """A mailbox on Drive deleted while the runtime serves it is made again by the runtime
    (see :class:`~.server.MailboxServer`)."""

    def __init__(self, folder: str | DriveFolder, drive: GoogleDrive | None = None) -> None:
        self._lock = threading.Lock()
        self._subfolders: dict[str, DriveFolder] = {}
        self._files: dict[tuple[str, str], DriveFile] = {}
        if isinstance(folder, DriveFolder):
            self._root: DriveFolder | None = folder
            self._fixed = True
            self.url = folder.url
            self._drive = folder.drive
        else:
            if is_gdrive_url(folder):
                parse_gdrive_url(folder)  # a ValueError now, not on first use
            elif not is_folder_id(folder):
                raise ValueError(f"{folder!r} is neither a gdrive:// URL nor a Drive folder id")
            self._root = None
            self._fixed = False
            self.url = folder if is_gdrive_url(folder) else f"gdrive://{folder}"
            self._drive = drive

    def __repr__(self) -> str:
        return f"DriveMailbox({self.url!r})"

    # ------------------------------------------------------------------ folders

    def _open(self, create: bool) -> tuple[DriveFolder, bool]:
        """The mailbox folder, and whether it was resolved (so checked) just now."""
        root = self._root
        if root is not None:
            return root, False
        if self._drive is None:
            from ...drive.auth import connect

            self._drive = connect()
        root = DriveFolder.open(self.url, self._drive, create=create,
                                chunk_bytes=DEFAULT_CHUNK_BYTES)
        with self._lock:
            self._root = root
        return root, True

    def _forget(self, folder_name: str | None = None) -> None:
        """Drop cached ids: of one subfolder and its files, or (``None``) all of them."""
        with self._lock:
            if folder_name is None:
                self._subfolders.clear()
                self._files.clear()
                if not self._fixed:
                    self._root = None  # resolve the URL again: a subfolder may be new
                return
            self._subfolders.pop(folder_name, None)
            for key in [k for k in self._files if k[0] == folder_name]:
                del self._files[key]

    def _folder(self, folder_name: str, create: bool) -> DriveFolder:
        root, _ = self._open(create=False)
        if not folder_name:
            return root
        with self._lock:
            cached = self._subfolders.get(folder_name)
        if cached is not None:
            return cached
        try:
            sub = root.subfolder(folder_name, create=create)
        except DriveNotFound as exc:
            if create:
                raise
            raise _Absent(str(exc)) from None  # a fresh lookup: final
        with self._lock:
            self._subfolders[folder_name] = sub
        return sub

    def _retry_once(self, folder_name: str, op: Callable[[], T]) -> T:
        """Run ``op``; when Drive says an id is gone, forget the folder's cached ids and run it
        once more (fresh lookups). A miss found by a fresh lookup (``_Absent``) is final."""
        for attempt in (0, 1):
            try:
                return op()
            except _Absent as exc:
                raise DriveNotFound(str(exc)) from None
            except DriveNotFound:
                if attempt:
                    raise
                self._forget(folder_name or None)
        raise AssertionError("unreachable")

    @staticmethod
    def _split(name: str) -> tuple[str, str]:
        parts = name.split("/") if isinstance(name, str) else []
        if not 1 <= len(parts) <= 2 or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad mailbox file name {name!r}")
        return ("", parts[0]) if len(parts) == 1 else (parts[0], parts[1])

    def _cached(self, key: tuple[str, str]) -> DriveFile | None:
        with self._lock:
            return self._files.get(key)

    def _remember(self, key: tuple[str, str], f: DriveFile | None) -> None:
        with self._lock:
            if f is None:
                self._files.pop(key, None)
            else:
                self._files[key] = f

    # ------------------------------------------------------------------ MailboxStorage

    def create(self) -> None:
        """Resolve the folder, creating the subfolders of its URL that are missing (never the
        folder the id names).

        Raises:
            DriveNotFound: the folder the id names does not exist or is not shared.
            DriveError: any other Drive failure.
        """
        if self._fixed:
            self.check()
            return
        self._forget()
        self._open(create=True)

    def check(self) -> None:
        """Raise :class:`DriveNotFound` (a ``FileNotFoundError``) unless the folder exists.

        Raises:
            DriveNotFound
            DriveError
        """
        try:
            root, just_checked = self._open(create=False)
            if not just_checked:
                root.check()
        except DriveNotFound:
            self._forget()
            raise

    def read(self, name: str) -> bytes:
        """The whole file.

        Raises:
            ValueError: a bad name.
            DriveNotFound: no such file or folder (a ``FileNotFoundError``).
            FileTooLarge: larger than :data:`~colabtui_remote.transport.mailbox.layout.MAX_FILE_BYTES`.
            DriveError
        """
        folder_name, title = self._split(name)

        def op() -> bytes:
            folder = self._folder(folder_name, create=False)
            key = (folder_name, title)
            f = self._cached(key)
            if f is None:
                f = folder.find(title)
                if f is None or f.is_folder:
                    raise _Absent(f"no file {name} in the mailbox {self.url}")
                self._remember(key, f)
            # the cached size is of an older version: let the read find the size
            return folder.read_bytes(dataclasses.replace(f, size=None), MAX_FILE_BYTES)

        return self._retry_once(folder_name, op)

    def write(self, name: str, data: bytes) -> None:
        """Replace the file's content (update in place; insert when new). Creates the subfolder
        on first write.

        Raises:
            ValueError: a bad name.
            DriveError
        """
        folder_name, title = self._split(name)

        def op() -> None:
            folder = self._folder(folder_name, create=True)
            key = (folder_name, title)
            cached = self._cached(key)
            f = folder.write_bytes(title, data, file_id=cached.id if cached else None)
            self._remember(key, f)

        self._retry_once(folder_name, op)

    def list(self, folder: str) -> list[str]:
        """File titles in the subfolder ``folder``, sorted, names starting with ``.`` left out;
        ``[]`` when the subfolder does not exist yet.

        Raises:
            ValueError: a bad folder name.
            DriveNotFound: the mailbox folder itself is gone.
            DriveError
        """
        if not isinstance(folder, str) or "/" in folder or folder in ("", ".", ".."):
            raise ValueError(f"bad mailbox folder name {folder!r}")

        def op() -> list[str]:
            try:
                sub = self._folder(folder, create=False)
            except _Absent:
                self.check()  # the mailbox itself gone is an error; only its subfolder missing is not
                return []
            files = [f for f in sub.list() if not f.is_folder]
            newest_first = sorted(files, key=lambda f: (f.created, f.id), reverse=True)
            for f in newest_first:  # of duplicates the oldest stays cached, as find() picks
                self._remember((folder, f.title), f)
            return sorted({f.title for f in files if not f.title.startswith(".")})

        return self._retry_once(folder, op)

    def remove(self, name: str) -> None:
        """Delete the file; a missing one (or a missing folder) is not an error.

        Raises:
            ValueError: a bad name.
            DriveError
        """
        folder_name, title = self._split(name)
        key = (folder_name, title)
        try:
            folder = self._folder(folder_name, create=False)
        except (_Absent, DriveNotFound):
            return
        f = self._cached(key)
        if f is None:
            try:
                f = folder.find(title)
            except DriveNotFound:
                return
        if f is not None and not f.is_folder:
            folder.delete(f)
        self._remember(key, None)
