"""Google Drive through its API: a ``gdrive://`` folder for checkpoints and for the mailbox.

Importing this package needs nothing beyond the standard library; the calls that reach Drive
need pydrive2 (``pip install 'colabtui-remote[drive]'``).

- :mod:`.url`: ``gdrive://FOLDER_ID/sub/path`` URLs.
- :mod:`.auth`: :func:`~.auth.connect` (an authorized ``GoogleDrive``), :func:`~.auth.login`.
- :mod:`.client`: :class:`~.client.DriveFolder` and the :class:`~.client.DriveError` family.
- :mod:`.mailbox_storage`: :class:`~.mailbox_storage.DriveMailbox`, a mailbox on Drive.
"""

from __future__ import annotations

from .auth import API_ENDPOINT_ENV, CREDENTIALS_ENV, connect, default_credentials_path, login
from .client import (
    ChecksumMismatch,
    DriveAuthError,
    DriveBadResponse,
    DriveError,
    DriveFile,
    DriveFolder,
    DriveNotFound,
    DriveRateLimited,
    DriveUnavailable,
    md5_file,
)
from .mailbox_storage import DriveMailbox
from .url import GDRIVE_SCHEME, is_gdrive_url, parse_gdrive_url

__all__ = [
    "API_ENDPOINT_ENV", "CREDENTIALS_ENV", "GDRIVE_SCHEME", "ChecksumMismatch", "DriveAuthError",
    "DriveBadResponse", "DriveError", "DriveFile", "DriveFolder", "DriveMailbox", "DriveNotFound",
    "DriveRateLimited", "DriveUnavailable", "connect", "default_credentials_path",
    "is_gdrive_url", "login", "md5_file", "parse_gdrive_url",
]
