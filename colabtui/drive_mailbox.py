"""A session's mailbox on Google Drive, read and written through the Drive API (``gdrive://ID``).

The same layout and the same :class:`~colabtui.mailbox_client.MailboxClient` as a synced folder;
only the storage differs (:class:`colabtui_remote.transport.mailbox.drive_storage.DriveMailbox`, pydrive2).
Credentials come from ``colabtui drive login`` (see :mod:`colabtui_remote.drive.auth`).

Every Drive request counts against the account's API quota, so a Drive mailbox is polled at
most every :data:`MIN_POLL_INTERVAL_S` seconds, and a 403/429 rate-limit answer turns into an
``unreachable`` error that the panel backs off from.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from colabtui.mailbox_client import MailboxClient

MIN_POLL_INTERVAL_S = 5.0
"""Shortest wait between status polls of a mailbox on Drive, seconds. A poll costs about four
requests (status, interval, metrics listing, a chunk): about 50 a minute per session, far under
Drive's per-user quota (12,000 queries a minute by default)."""


class LazyDriveMailbox:
    """:class:`~colabtui_remote.transport.mailbox.layout.MailboxStorage` over Drive that connects on first
    use, on the client's worker thread (never on the event loop), and again after a failure.

    Args:
        url: ``gdrive://FOLDER_ID[/sub/path]``, the runtime's mailbox folder.
        connect: returns a pydrive2 ``GoogleDrive``; default
            :func:`colabtui_remote.drive.auth.connect` (credentials from ``colabtui drive login``,
            ``COLABTUI_DRIVE_CREDENTIALS``, endpoint ``COLABTUI_DRIVE_API``).
    """

    def __init__(self, url: str, connect: Any = None) -> None:
        self.url = url
        self._connect = connect
        self._storage: Any = None
        self._lock = threading.Lock()
        self.rate_limited_until = 0.0
        """``time.monotonic()`` until which Drive asked us not to call again (Retry-After)."""

    def __repr__(self) -> str:
        return f"LazyDriveMailbox({self.url!r})"

    def _open(self) -> Any:
        with self._lock:
            if self._storage is None:
                from colabtui_remote.drive.auth import connect
                from colabtui_remote.drive.client import DriveFolder
                from colabtui_remote.transport.mailbox.drive_storage import DriveMailbox

                drive = (self._connect or connect)()
                self._storage = DriveMailbox(DriveFolder.open(self.url, drive))
            return self._storage

    def _call(self, method: str, *args: Any) -> Any:
        from colabtui_remote.drive.errors import DriveAuthError, DriveNotFound, DriveRateLimited

        storage = self._open()
        try:
            return getattr(storage, method)(*args)
        except DriveRateLimited as exc:  # wait as long as Drive asks (polls double anyway)
            if exc.retry_after:
                self.rate_limited_until = time.monotonic() + exc.retry_after
            raise
        except (DriveAuthError, DriveNotFound) as exc:
            if not isinstance(exc, FileNotFoundError) or method == "check":
                with self._lock:  # credentials or folder changed: connect afresh next time
                    self._storage = None
            raise

    def check(self) -> None:
        self._call("check")

    def read(self, name: str) -> bytes:
        return self._call("read", name)

    def write(self, name: str, data: bytes) -> None:
        self._call("write", name, data)

    def list(self, folder: str) -> list[str]:
        return self._call("list", folder)

    def remove(self, name: str) -> None:
        self._call("remove", name)


class DriveMailboxClient(MailboxClient):
    """A :class:`MailboxClient` over :class:`LazyDriveMailbox`: transport ``drive``, polled at
    most every :data:`MIN_POLL_INTERVAL_S` seconds, or less often while Drive's last rate-limit
    answer asked to wait longer (its ``Retry-After``)."""

    transport = "drive"

    @property
    def min_poll_interval_s(self) -> float:  # read by the panel before each poll
        wait = self.storage.rate_limited_until - time.monotonic()
        return max(MIN_POLL_INTERVAL_S, wait)


def drive_mailbox_client(url: str, connect: Any = None) -> DriveMailboxClient:
    """A client for the mailbox at ``url`` (``gdrive://…``). Nothing is contacted until the
    first request."""
    return DriveMailboxClient(url, storage=LazyDriveMailbox(url, connect))
