"""Google Drive through its API (``gdrive://FOLDER_ID[/sub/path]``) as a replica destination,
over :class:`colabtui_remote.drive.client.DriveFolder` (pydrive2, imported when first used).

Checkpoints go up with a resumable upload; Drive's ``md5Checksum`` is compared with the local
md5 before the manifest (``manifest.json`` in the same folder) lists them. Files are updated by
id, never by title alone: of several files with one title, ``DriveFolder.find`` picks the oldest
and warns. Subfolders of the URL are created on first use; the folder id itself must exist and
be shared with the account.
"""

from __future__ import annotations

import os

from ..drive.auth import connect
from ..drive.client import DriveFile, DriveFolder
from ..drive.errors import ChecksumMismatch, DriveAuthError, DriveNotFound, DriveRateLimited
from ..drive.url import parse_gdrive_url
from .errors import CheckpointError, ManifestUnreadable
from .manifest import (
    MANIFEST,
    ManifestEntry,
    RetainedFile,
    aside_name,
    manifest_bytes,
    parse_entries,
    parse_listing,
)
from .reclaim import FolderFile
from .remote import Progress, RemoteCopy

__all__ = ["DriveReplica"]


class DriveReplica:
    """A Drive folder as a :class:`~colabtui_remote.checkpoint.replica.ReplicaDestination`.

    Args:
        url: ``gdrive://FOLDER_ID[/sub/path]``.
        credentials_path: oauth2client credentials file; default as
            :func:`colabtui_remote.drive.auth.connect` finds it (env
            ``COLABTUI_DRIVE_CREDENTIALS``, Colab's sign-in, the default path).
        api_endpoint: the Drive API's base URL; default env ``COLABTUI_DRIVE_API`` or Google's.
        drive: an authorized ``GoogleDrive`` to use instead of connecting.
        chunk_bytes: bytes per upload chunk (a multiple of 256 KiB); default the client's 8 MiB.
        create: create the subfolders of the URL when missing (the writer does); without it a
            missing subfolder reads as "no manifest" (resume, listing, download).

    Nothing is contacted until the first call; after a failure (:meth:`reset`) the next call
    connects again, reading the credentials file again (a new login is picked up).

    Raises:
        ValueError: ``url`` is not a valid ``gdrive://`` URL.
    """

    kind = "drive"

    def __init__(self, url: str, *, credentials_path: str | os.PathLike | None = None,
                 api_endpoint: str | None = None, drive: object | None = None,
                 chunk_bytes: int | None = None, create: bool = True) -> None:
        parse_gdrive_url(url)
        self.dest = url.rstrip("/")
        self._credentials_path = credentials_path
        self._api_endpoint = api_endpoint
        self._given_drive = drive
        self._chunk_bytes = chunk_bytes
        self._create = create
        self._drive = None
        self._folder = None
        self._ids: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"DriveReplica({self.dest!r})"

    def folder(self):
        """The :class:`~colabtui_remote.drive.client.DriveFolder` (connecting on first use).

        Raises:
            DriveNotFound: the folder id does not exist or is not shared with the account.
            DriveAuthError: no credentials, or credentials refused (log in again).
            DriveError: any other Drive failure.
            ImportError: pydrive2 is not installed.
        """
        if self._folder is None:
            extra = {"chunk_bytes": self._chunk_bytes} if self._chunk_bytes else {}
            self._folder = DriveFolder.open(self.dest, self._connect(), create=self._create,
                                            **extra)
        return self._folder

    def _connect(self):
        if self._drive is None:
            self._drive = self._given_drive
            if self._drive is None:
                self._drive = connect(self._credentials_path, self._api_endpoint)
        return self._drive

    def _subfolder_missing(self) -> bool:
        """True when the URL's folder id exists but a subfolder of its path does not (raises
        DriveNotFound when the folder id itself is missing or not shared)."""
        folder_id, parts = parse_gdrive_url(self.dest)
        if not parts:
            return False
        DriveFolder.open(folder_id, self._connect())
        return True

    def _manifest_where(self, file_id: str) -> str:
        return f"{self.dest}/{MANIFEST} (file id {file_id})"

    def read_manifest(self) -> list[ManifestEntry] | None:
        got = self._manifest_raw()
        return None if got is None else parse_entries(*got)

    def read_listing(self) -> tuple[list[ManifestEntry], list[RetainedFile] | None] | None:
        got = self._manifest_raw()
        return None if got is None else parse_listing(*got)

    def _manifest_raw(self) -> tuple[bytes, str] | None:
        """(the manifest's bytes, where it is for messages), or None when there is none."""
        try:
            folder = self.folder()
        except DriveNotFound:
            if self._create or not self._subfolder_missing():
                raise
            return None  # nothing was ever written there
        found = folder.find(MANIFEST)
        if found is None:
            return None
        return folder.read_bytes(found), self._manifest_where(found.id)

    def set_aside_manifest(self) -> str:
        folder = self.folder()
        found = folder.find(MANIFEST)
        if found is None:
            return f"{self.dest}/{MANIFEST} (gone meanwhile)"
        title = aside_name()
        kept = folder.write_bytes(title, folder.read_bytes(found))  # a copy; then replaced
        return f"{self.dest}/{title} (file id {kept.id})"

    def names(self) -> set[str]:
        return {f.title for f in self.folder().list()}

    def files(self) -> list[FolderFile]:
        """Every file in the folder (not subfolders), its time Drive's ``modifiedDate``.

        Raises:
            DriveError: Drive cannot be reached or refuses.
        """
        return [FolderFile(f.title, f.size or 0, f.modified, f.id)
                for f in self.folder().list() if not f.is_folder]

    def remove(self, file: FolderFile) -> None:
        """Delete a file :meth:`files` reported, by its id (for good, not to the trash).

        Raises:
            DriveError: Drive refuses (a missing file is not an error).
        """
        self.folder().delete(file.id)
        self._ids.pop(file.name, None)

    def reclaim_blocked(self) -> str | None:
        """None: a Drive folder has no writer lock (two runtimes on one folder already
        overwrite each other's manifest)."""
        return None

    def put(self, local_path: str, name: str, *, progress: Progress | None = None,
            md5: str | None = None) -> RemoteCopy:
        """Resumable upload of ``local_path`` as ``name`` (updating by id when the file exists).

        Raises:
            ChecksumMismatch: Drive's md5 differs from the bytes sent (retried by the caller).
            DriveError: any other Drive failure.
        """
        f = self.folder().upload(local_path, name, file_id=self._ids.get(name), progress=progress,
                                 md5=md5)
        self._ids[name] = f.id
        return RemoteCopy(name=name, bytes=f.size, md5=f.md5, file_id=f.id)

    def write_manifest(self, entries: list[ManifestEntry],
                       retained: list[RetainedFile] = ()) -> None:
        self.folder().write_bytes(MANIFEST, manifest_bytes(entries, retained=retained))

    def delete(self, entry: ManifestEntry) -> None:
        folder = self.folder()
        if entry.file_id is not None:
            folder.delete(entry.file_id)
        else:
            found = folder.find(entry.file)
            if found is not None:
                folder.delete(found)
        self._ids.pop(entry.file, None)

    def fetch(self, entry: ManifestEntry, to_path: str, *, progress: Progress | None = None) -> None:
        """Download an entry's file (by id when the manifest has it) to ``to_path``, its md5
        checked against the manifest's (Drive's when the manifest has none).

        Raises:
            CheckpointError: the file is gone from Drive or its md5 differs.
            DriveError: Drive cannot be reached or refuses.
        """

        folder = self.folder()
        where = f"{self.dest}/{entry.file}"
        size = entry.packed_bytes if entry.packed_bytes is not None else entry.bytes  # a tar
        try:
            if entry.file_id is not None:
                file = DriveFile(id=entry.file_id, title=entry.file, size=size,
                                 md5=entry.md5, created=0.0, modified=0.0, is_folder=False)
            else:
                file = folder.find(entry.file)
                if file is None:
                    raise CheckpointError(f"{where} is listed in the manifest but not on Drive")
                if entry.md5 is not None:
                    file = DriveFile(id=file.id, title=file.title, size=size,
                                     md5=entry.md5, created=file.created,
                                     modified=file.modified, is_folder=False)
            folder.download(file, to_path, progress=progress)
        except ChecksumMismatch as exc:
            raise CheckpointError(str(exc)) from None
        except DriveNotFound as exc:
            try:
                folder.check()
            except DriveNotFound:
                raise exc from None  # the folder itself is gone: not this file's problem
            raise CheckpointError(f"{where} is listed in the manifest but gone from Drive: "
                                  f"{exc}") from None

    def failure(self, exc: BaseException) -> tuple[str, float | None]:
        if isinstance(exc, ChecksumMismatch):
            return "waiting", None
        if isinstance(exc, DriveRateLimited):
            return "offline", exc.retry_after
        if isinstance(exc, DriveAuthError | DriveNotFound | ImportError | ManifestUnreadable):
            return "error", None
        return "offline", None

    def reset(self) -> None:
        self._folder = self._drive = None
        self._ids.clear()
