"""A folder on Google Drive through the Drive v2 API (pydrive2 and googleapiclient).

:class:`DriveFolder` reads, writes, uploads and downloads the files of one Drive folder. Small
files (mailbox JSON) go through pydrive2's own ``GoogleDriveFile``; large ones (checkpoints) go
up as a resumable upload in ``chunk_bytes`` chunks through the same googleapiclient service
pydrive2 built, and come down in ``chunk_bytes`` ranges, checked against Drive's md5.

Every call turns what the libraries raise (``HttpError``, pydrive2's ``ApiRequestError``,
oauth2client's refresh errors, httplib2 and socket errors) into one of the :class:`DriveError`
subclasses below, whose message says what was being done and where (folder id, file title).
Nothing here retries or sleeps: a caller that wants to try again backs off itself
(:attr:`DriveRateLimited.retry_after` says for how long when Drive said so).

httplib2 connections are not thread-safe: every call takes the calling thread's own authorized
connection (pydrive2's thread-local one), so one :class:`DriveFolder` may be used from several
threads at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    ChecksumMismatch,
    DriveBadResponse,
    DriveError,
    DriveNotFound,
    FileTooLarge,
    remote_call,
    require_pydrive2,
)
from .files import (
    FOLDER_MIME,
    DriveFile,
    HashingReader,
    PlainReader,
    check_title,
    chunked_upload_class,
    md5_file,
    quote_query,
)
from .url import is_folder_id, is_gdrive_url, parse_gdrive_url

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from pydrive2.drive import GoogleDrive

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB

UPLOAD_CHUNK_UNIT = 256 * KiB
"""Drive's resumable uploads take chunks in multiples of this many bytes (Drive API docs,
"Perform a resumable upload")."""

DEFAULT_CHUNK_BYTES = 8 * MiB
"""Bytes per resumable-upload chunk and per download range. Each chunk is one request and is
held in memory once; 8 MiB keeps a 1 GB checkpoint to about 128 requests."""

DEFAULT_MAX_READ_BYTES = 64 * MiB
"""Largest file :meth:`DriveFolder.read_bytes` returns, bytes, unless told otherwise."""


# ---------------------------------------------------------------------------------- folder


class DriveFolder:
    """The files of one Drive folder.

    Args:
        folder_id: the folder's Drive id (or ``"root"``).
        drive: an authorized ``pydrive2.drive.GoogleDrive`` (from
            :func:`colabtui_remote.drive.auth.connect`).
        chunk_bytes: bytes per resumable-upload chunk and per download range; a multiple of
            256 KiB (Drive's rule).
        url: how the folder was named (``gdrive://ID/sub/path``), for messages; default
            ``gdrive://<folder_id>``.

    Raises:
        ValueError: a folder id that is no Drive id, or a bad ``chunk_bytes``.
    """

    def __init__(self, folder_id: str, drive: GoogleDrive, *,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, url: str | None = None) -> None:
        if not is_folder_id(folder_id):
            raise ValueError(f"{folder_id!r} is not a Drive folder id (letters, digits, '-' and "
                             "'_', at least 10 of them; or 'root')")
        if not isinstance(chunk_bytes, int) or chunk_bytes <= 0 or chunk_bytes % UPLOAD_CHUNK_UNIT:
            raise ValueError(f"chunk_bytes must be a positive multiple of {UPLOAD_CHUNK_UNIT} "
                             f"bytes (256 KiB), not {chunk_bytes!r}")
        self.folder_id = folder_id
        self.drive = drive
        self.chunk_bytes = chunk_bytes
        self.url = url or f"gdrive://{folder_id}"

    def __repr__(self) -> str:
        return f"DriveFolder({self.url!r})"

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, url_or_id: str, drive: GoogleDrive | None = None, *, create: bool = False,
             chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> DriveFolder:
        """The folder a ``gdrive://ID[/sub/path]`` URL (or a bare folder id) names.

        Checks that the folder ``ID`` exists (:meth:`check`), then finds each subfolder by
        title, creating the missing ones when ``create`` is true. Of several subfolders with
        one title, the oldest is taken (a warning is logged).

        Args:
            url_or_id: ``gdrive://ID/a/b`` or ``ID``.
            drive: an authorized ``GoogleDrive``; default: :func:`~.auth.connect` ``()``.
            create: create missing subfolders (never the folder ``ID`` itself).
            chunk_bytes: see :class:`DriveFolder`.

        Raises:
            ValueError: a malformed URL or id.
            DriveNotFound: the folder ``ID`` or a subfolder (without ``create``) is missing.
            DriveError: any other Drive failure.
            ImportError: pydrive2 is not installed.
        """
        if is_gdrive_url(url_or_id):
            folder_id, parts = parse_gdrive_url(url_or_id)
        else:
            folder_id, parts = str(url_or_id), ()
        if drive is None:
            from .auth import connect

            drive = connect()
        folder = cls(folder_id, drive, chunk_bytes=chunk_bytes, url=f"gdrive://{folder_id}")
        folder.check()
        for title in parts:
            folder = folder.subfolder(title, create=create)
        return folder

    def _missing(self) -> str:
        return f"Drive folder {self.folder_id} does not exist or is not shared with this " \
            f"account{'' if self.url == f'gdrive://{self.folder_id}' else f' ({self.url})'}"

    def check(self) -> DriveFile:
        """The folder's own metadata.

        Raises:
            DriveNotFound: it does not exist, is not shared with this account, is not a folder,
                or is in the trash.
            DriveError: any other Drive failure.
        """
        require_pydrive2()
        with remote_call(f"checking Drive folder {self.url}", not_found=self._missing()):
            gfile = self.drive.CreateFile({"id": self.folder_id})
            gfile.FetchMetadata()
            meta = dict(gfile)
        if meta.get("mimeType") != FOLDER_MIME:
            raise DriveNotFound(f"{self.url}: Drive id {self.folder_id} is a file, not a folder")
        if (meta.get("labels") or {}).get("trashed"):
            raise DriveNotFound(f"Drive folder {self.folder_id} ({self.url}) is in the trash")
        return DriveFile.from_metadata(meta)

    def path_in_my_drive(self, max_depth: int = 64) -> tuple[str, ...] | None:
        """The titles of the folders from "My Drive" down to this one, as a mounted Drive shows
        them: ``("colabtui", "wheels")`` for ``/content/drive/MyDrive/colabtui/wheels`` in
        Colab, ``()`` for My Drive itself (``gdrive://root``). Each folder's first parent is
        followed up to the one Drive marks ``isRoot``.

        Returns:
            The titles, or ``None`` when the folder is not in this account's My Drive (shared
            with it and not added, or on a shared drive), or is more than ``max_depth``
            folders down.

        Raises:
            DriveError: a Drive failure other than a parent this account cannot see.
        """
        require_pydrive2()
        if self.folder_id == "root":
            return ()
        titles: list[str] = []
        folder_id = self.folder_id
        for _ in range(max_depth):
            try:
                with remote_call(f"reading the parents of Drive folder {self.url}",
                                 not_found=f"Drive folder {folder_id} is not visible here"):
                    gfile = self.drive.CreateFile({"id": folder_id})
                    gfile.FetchMetadata()
                    meta = dict(gfile)
            except DriveNotFound:  # a parent folder only its owner sees: not in our My Drive
                return None
            parents = [p for p in meta.get("parents") or [] if isinstance(p, dict)]
            if not parents:
                return None
            titles.append(str(meta.get("title") or ""))
            if any(p.get("isRoot") for p in parents):
                return tuple(reversed(titles))
            folder_id = str(parents[0].get("id") or "")
            if not is_folder_id(folder_id):
                return None
        return None

    def subfolder(self, title: str, create: bool = False) -> DriveFolder:
        """The folder titled ``title`` inside this one.

        Raises:
            ValueError: an empty title or one with ``/``.
            DriveNotFound: there is none and ``create`` is false (or this folder is gone).
            DriveError: any other Drive failure.
        """
        check_title(title)
        found = self._find(title, folder=True)
        if found is None:
            if not create:
                raise DriveNotFound(f"no folder {title!r} in Drive folder {self.url}")
            with remote_call(f"creating folder {title!r} in Drive folder {self.url}",
                         not_found=self._missing()):
                gfile = self.drive.CreateFile({"title": title, "mimeType": FOLDER_MIME,
                                               "parents": [{"id": self.folder_id}]})
                gfile.Upload()
                found = DriveFile.from_metadata(dict(gfile))
            # Another writer may have made one at the same moment (Drive allows twins): look
            # again, so both take the same one (the oldest; _find warns about the twin).
            found = self._find(title, folder=True) or found
        return DriveFolder(found.id, self.drive, chunk_bytes=self.chunk_bytes,
                           url=f"{self.url.rstrip('/')}/{title}")

    # ------------------------------------------------------------------ listing

    def _list(self, query: str, what: str) -> list[DriveFile]:
        require_pydrive2()
        with remote_call(what, not_found=self._missing()):
            items = self.drive.ListFile({"q": query}).GetList()
            metas = [dict(item) for item in items]
        files = [DriveFile.from_metadata(meta) for meta in metas]
        files.sort(key=lambda f: (f.title, f.created, f.id))
        return files

    def list(self) -> list[DriveFile]:
        """Every child of this folder not in the trash (all pages), by title.

        Raises:
            DriveError
        """
        return self._list(f"{quote_query(self.folder_id)} in parents and trashed = false",
                          f"listing Drive folder {self.url}")

    def _find(self, title: str, folder: bool | None) -> DriveFile | None:
        query = (f"{quote_query(self.folder_id)} in parents and title = {quote_query(title)} "
                 "and trashed = false")
        if folder is True:
            query += f" and mimeType = {quote_query(FOLDER_MIME)}"
        elif folder is False:
            query += f" and mimeType != {quote_query(FOLDER_MIME)}"
        files = self._list(query, f"looking for {title!r} in Drive folder {self.url}")
        files = [f for f in files if f.title == title]  # exact, whatever the server matched
        if not files:
            return None
        files.sort(key=lambda f: (f.created, f.id))
        if len(files) > 1:
            log.warning("Drive folder %s holds %d items titled %r (ids %s); using %s, the "
                        "oldest", self.url, len(files), title, ", ".join(f.id for f in files),
                        files[0].id)
        return files[0]

    def find(self, title: str) -> DriveFile | None:
        """The child titled exactly ``title`` (not in the trash), or ``None``. Of several, the
        oldest ``created`` (then the smallest id) is returned and a warning names them all.

        Raises:
            DriveError
        """
        return self._find(check_title(title), folder=None)

    def _resolve(self, title_or_file: str | DriveFile) -> DriveFile:
        if isinstance(title_or_file, DriveFile):
            return title_or_file
        found = self._find(check_title(title_or_file), folder=False)
        if found is None:
            raise DriveNotFound(f"no file {title_or_file!r} in Drive folder {self.url}")
        return found

    # ------------------------------------------------------------------ small files

    def read_bytes(self, title_or_file: str | DriveFile,
                   max_bytes: int = DEFAULT_MAX_READ_BYTES) -> bytes:
        """The whole content of a file (one ranged ``alt=media`` request).

        Args:
            title_or_file: a title in this folder, or a :class:`DriveFile`.
            max_bytes: the most bytes accepted.

        Raises:
            DriveNotFound: no such file (or it was deleted meanwhile).
            FileTooLarge: the file holds more than ``max_bytes`` bytes (an ``OSError``).
            DriveError: any other Drive failure.
        """
        f = self._resolve(title_or_file)
        where = f"{f.title!r} in Drive folder {self.url}"
        if f.is_folder:
            raise DriveError(f"{where} is a folder, not a file")
        if f.size is not None and f.size > max_bytes:
            raise FileTooLarge(f"{where} holds {f.size} bytes, more than {max_bytes}")
        with remote_call(f"reading {where}",
                     not_found=f"{where} (file id {f.id}) is no longer on Drive"):
            gfile = self.drive.CreateFile({"id": f.id})
            buf = gfile.GetContentIOBuffer(chunksize=max_bytes + 1)
            data = buf.read() or b""
            total = buf.size
        if len(data) > max_bytes or (total is not None and total > max_bytes):
            raise FileTooLarge(f"{where} holds {total or len(data)} bytes, more than {max_bytes}")
        return bytes(data)

    def write_bytes(self, title: str, data: bytes, mime: str = "application/json", *,
                    file_id: str | None = None) -> DriveFile:
        """Set the content of the file ``title`` to ``data``: an update of the existing file
        (by id) when there is one, a new file otherwise. Never makes a second file with a
        title that exists. Readers see the old content or the new, never part.

        Args:
            title: the file's title in this folder.
            data: the content.
            mime: its MIME type.
            file_id: update this file (skips the lookup by title).

        Returns:
            The file's metadata after the write.

        Raises:
            DriveNotFound: ``file_id`` or this folder does not exist.
            DriveError: any other Drive failure.
        """
        check_title(title)
        if file_id is None:
            found = self._find(title, folder=False)
            file_id = found.id if found is not None else None
        where = f"{title!r} in Drive folder {self.url}"
        with remote_call(f"writing {where}",
                     not_found=f"{where}: file id {file_id} is no longer on Drive"
                     if file_id else self._missing()):
            if file_id is not None:
                gfile = self.drive.CreateFile({"id": file_id})
            else:
                gfile = self.drive.CreateFile({"title": title,
                                               "parents": [{"id": self.folder_id}]})
            gfile["mimeType"] = mime
            gfile.content = io.BytesIO(bytes(data))
            gfile.Upload()
            meta = dict(gfile)
        return DriveFile.from_metadata(meta)

    def delete(self, file_or_id: DriveFile | str) -> None:
        """Delete a file (for good, not to the trash). A missing one is not an error.

        Raises:
            DriveError: any Drive failure but "not found".
        """
        require_pydrive2()
        fid = file_or_id.id if isinstance(file_or_id, DriveFile) else str(file_or_id)
        try:
            with remote_call(f"deleting file id {fid} from Drive folder {self.url}"):
                self.drive.CreateFile({"id": fid}).Delete()
        except DriveNotFound:
            pass

    # ------------------------------------------------------------------ large files

    def _http(self) -> Any:
        """This thread's own authorized httplib2 connection: the one pydrive2's calls on this
        thread use too."""
        auth = self.drive.auth
        http = getattr(auth.thread_local, "http", None)
        if http is None:
            http = auth.thread_local.http = auth.Get_Http_Object()
        return http

    def upload(self, local_path: str | os.PathLike, title: str, *, file_id: str | None = None,
               progress: Callable[[int, int], None] | None = None,
               mime: str = "application/octet-stream", md5: str | None = None) -> DriveFile:
        """Upload a local file as ``title`` in this folder: a resumable upload in
        ``chunk_bytes`` chunks, each one request. Updates the file by id when ``file_id`` is
        given or a file titled ``title`` exists; inserts a new one otherwise.

        The md5 of the bytes sent is computed while they are read and compared with the md5
        Drive reports at the end.

        Args:
            local_path: the file to send.
            title: its title on Drive.
            file_id: the file to update (skips the lookup by title).
            progress: called as ``progress(bytes_sent, bytes_total)`` after every chunk
                Drive acknowledged, last with ``bytes_sent == bytes_total``.
            mime: the MIME type Drive records.
            md5: the file's md5 (hex) when the caller already has it (a checkpoint replicator
                reads the file once for sha256 and md5 before sending it): the bytes are then
                not hashed again while sent, and Drive's md5 is compared with this one.

        Returns:
            Drive's metadata of the uploaded file (``md5`` is Drive's).

        Raises:
            OSError: the local file cannot be read (not a :class:`DriveError`).
            ChecksumMismatch: Drive's md5 differs from the md5 of the bytes read (the file
                stays on Drive; ``expected`` is the local md5).
            DriveNotFound: ``file_id`` or this folder does not exist.
            DriveError: any other Drive failure (nothing is retried).
        """
        require_pydrive2()
        check_title(title)
        local_path = Path(local_path)
        size = os.path.getsize(local_path)
        if file_id is None:
            found = self._find(title, folder=False)
            file_id = found.id if found is not None else None
        where = f"{title!r} in Drive folder {self.url}"
        with open(local_path, "rb") as f, contextlib.closing(
                HashingReader(f) if md5 is None else PlainReader(f, md5)) as reader:
            media = chunked_upload_class()(reader, mimetype=mime, chunksize=self.chunk_bytes,
                                            resumable=True)
            with remote_call(f"uploading {local_path.name} as {where}",
                         not_found=f"{where}: file id {file_id} is no longer on Drive"
                         if file_id else self._missing()):
                files = self.drive.auth.service.files()
                if file_id is not None:
                    request = files.update(fileId=file_id, body={"title": title, "mimeType": mime},
                                           media_body=media, supportsAllDrives=True)
                else:
                    request = files.insert(body={"title": title, "mimeType": mime,
                                                 "parents": [{"id": self.folder_id}]},
                                           media_body=media, supportsAllDrives=True)
                http = self._http()
                response = None
                while response is None:
                    status, response = request.next_chunk(http=http)
                    if status is not None and progress is not None:
                        progress(int(status.resumable_progress), size)
            local_md5 = reader.hexdigest(size)
        result = DriveFile.from_metadata(response)
        if progress is not None:
            progress(size, size)
        if local_md5 is None:  # the library skipped bytes (it never does): hash the file
            local_md5 = md5_file(local_path)
        if result.md5 is not None and result.md5 != local_md5:
            raise ChecksumMismatch(f"uploaded {local_path} as {where} (file id {result.id}), but "
                                   f"Drive's md5 {result.md5} differs from the local {local_md5}",
                                   expected=local_md5, actual=result.md5)
        return result

    def download(self, file: DriveFile, dest_path: str | os.PathLike, *,
                 progress: Callable[[int, int], None] | None = None) -> str:
        """Download a file to ``dest_path`` in ``chunk_bytes`` ranges, durably.

        The bytes go to a temporary file beside ``dest_path`` (named ``.<name>.*.tmp``), are
        hashed as they are written, flushed and fsynced; only when the md5 equals ``file.md5``
        is the temporary file renamed over ``dest_path``. On any failure the temporary file is
        removed and ``dest_path`` is untouched.

        Args:
            file: the file (from :meth:`find` or :meth:`list`; ``file.md5`` is what is checked).
            dest_path: where it goes.
            progress: called as ``progress(bytes_received, bytes_total)`` after every range.

        Returns:
            The md5 hex digest of the bytes written.

        Raises:
            ChecksumMismatch: the bytes' md5 is not ``file.md5`` (``expected``: Drive's, or
                the one the caller put in ``file``, e.g. from a manifest).
            DriveNotFound: the file is no longer on Drive.
            DriveError: any other Drive failure.
            OSError: the destination cannot be written.
        """
        require_pydrive2()
        dest = Path(dest_path)
        where = f"{file.title!r} (file id {file.id}) from Drive folder {self.url}"
        kept = (f"{dest} left as it was" if os.path.lexists(dest)
                else f"nothing written to {dest}")
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            digest = hashlib.md5()
            received = 0
            with os.fdopen(fd, "wb") as out:
                with remote_call(f"downloading {where}",
                             not_found=f"{where} is no longer on Drive"):
                    buf = self.drive.CreateFile({"id": file.id}).GetContentIOBuffer(
                        chunksize=self.chunk_bytes)
                while True:
                    with remote_call(f"downloading {where}",
                                 not_found=f"{where} is no longer on Drive"):
                        chunk = buf.read()
                        total = buf.size
                    if chunk is None:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, total if total is not None else received)
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if file.md5 is not None and actual != file.md5:
                raise ChecksumMismatch(f"downloaded {where}: md5 {actual} of the bytes received "
                                       f"differs from the expected {file.md5}; the download is "
                                       f"discarded, {kept}",
                                       expected=file.md5, actual=actual)
            if file.size is not None and received != file.size:
                raise DriveBadResponse(f"downloaded {where}: {received} bytes received, Drive "
                                       f"says {file.size}; {kept}")
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return actual
