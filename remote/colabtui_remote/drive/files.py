"""Files on Drive as the library sees them: their metadata (:class:`DriveFile`), and the readers
that hash a file's bytes on their way to Drive. No network here."""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import hashlib
import io
import os
import re
from dataclasses import dataclass
from typing import Any

from .errors import DriveBadResponse

__all__ = ["FOLDER_MIME", "DriveFile", "HashingReader", "PlainReader", "check_title",
           "chunked_upload_class", "md5_file", "parse_time", "quote_query"]

MiB = 1024 * 1024
FOLDER_MIME = "application/vnd.google-apps.folder"

_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
                      r"(Z|[+-]\d\d:\d\d)$")


def parse_time(text: Any) -> float:
    """Unix seconds of an RFC 3339 time as Drive writes it (``2024-05-01T12:00:00.123Z``)."""
    m = _RFC3339.match(str(text))
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {str(text)[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = float(f"0.{m.group(7)}") if m.group(7) else 0.0
    zone = m.group(8)
    if zone == "Z":
        tz = _dt.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return _dt.datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp() + frac


@dataclass(frozen=True)
class DriveFile:
    """One file or folder on Drive, as its metadata says.

    Attributes:
        id: the Drive file id.
        title: the file name shown in Drive.
        size: bytes of content; ``None`` for folders and Google Docs.
        md5: md5 hex digest of the content as Drive computed it; ``None`` where Drive has none.
        created: creation time, Unix seconds.
        modified: last modification time, Unix seconds.
        is_folder: whether it is a folder.
    """

    id: str
    title: str
    size: int | None
    md5: str | None
    created: float
    modified: float
    is_folder: bool

    @classmethod
    def from_metadata(cls, meta: Any) -> DriveFile:
        """Build from a Drive v2 file resource (a dict).

        Raises:
            DriveBadResponse: a field is missing or does not parse.
        """
        try:
            size = meta.get("fileSize")
            created = parse_time(meta["createdDate"])
            return cls(id=str(meta["id"]), title=str(meta["title"]),
                       size=int(size) if size is not None else None,
                       md5=str(meta["md5Checksum"]).lower() if meta.get("md5Checksum") else None,
                       created=created,
                       modified=parse_time(meta["modifiedDate"]) if meta.get("modifiedDate")
                       else created,
                       is_folder=meta.get("mimeType") == FOLDER_MIME)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DriveBadResponse(f"Drive file metadata lacks or garbles a field ({exc}): "
                                   f"{str(meta)[:200]}") from None


def md5_file(path: str | os.PathLike, chunk_bytes: int = 1 * MiB) -> str:
    """The md5 hex digest of a local file, read ``chunk_bytes`` at a time.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def quote_query(value: str) -> str:
    """A string literal for a Drive ``q`` query."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_title(title: Any) -> str:
    if not isinstance(title, str) or not title or title in (".", "..") or "/" in title:
        raise ValueError(f"bad Drive file title {title!r}: a non-empty name without '/'")
    return title


class HashingReader:
    """A seekable binary file that computes the md5 of its bytes as they are first read in
    order (a chunk read again after a resend is not hashed twice).

    The hashing runs on a helper thread (hashlib lets go of the GIL), so it overlaps the
    sending of the chunk instead of coming before it. :meth:`hexdigest` waits for it;
    :meth:`close` stops the thread.
    """

    def __init__(self, f: io.BufferedReader) -> None:
        self._f = f
        self._pos = f.tell()
        self._md5 = hashlib.md5()
        self._hashed = 0
        self._gap = False
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="colabtui-drive-md5")
        self._pending: list[concurrent.futures.Future] = []

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        data = self._f.read(n)
        end = start + len(data)
        self._pos = end
        if start <= self._hashed < end:
            self._wait()  # the previous chunk's hash: at most one chunk held for hashing
            self._pending.append(self._pool.submit(self._md5.update,
                                                   memoryview(data)[self._hashed - start:]))
            self._hashed = end
        elif start > self._hashed:
            self._gap = True
        return data

    def _wait(self) -> None:
        for future in self._pending:
            future.result()
        self._pending.clear()

    def hexdigest(self, size: int) -> str | None:
        """The md5 of all ``size`` bytes, or ``None`` when not all were read in order."""
        self._wait()
        return self._md5.hexdigest() if self._hashed == size and not self._gap else None

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class PlainReader:
    """The file as it is, for an upload whose md5 the caller already knows."""

    def __init__(self, f: io.BufferedReader, md5: str) -> None:
        self._f, self._md5 = f, md5.lower()
        self.seek, self.tell, self.read = f.seek, f.tell, f.read

    def hexdigest(self, size: int) -> str:
        return self._md5

    def close(self) -> None:
        pass


_upload_class: type | None = None


def chunked_upload_class() -> type:
    """googleapiclient's ``MediaIoBaseUpload``, sending each chunk as bytes read from the file
    rather than as a stream slice: one ``sendall`` per chunk, and a request that httplib2 or
    oauth2client sends again (after a dropped connection or a token refresh) carries the same
    bytes, where a stream slice would already be used up."""
    global _upload_class
    if _upload_class is None:
        from googleapiclient.http import MediaIoBaseUpload

        class ChunkedFileUpload(MediaIoBaseUpload):
            def has_stream(self) -> bool:
                return False

        _upload_class = ChunkedFileUpload
    return _upload_class
