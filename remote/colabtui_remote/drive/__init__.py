"""The Drive wing: a plain Google Drive v2 library on pydrive2, for ``gdrive://`` folders.

It imports nothing of the checkpoints or the mailbox: those build on it
(:mod:`colabtui_remote.checkpoint.drive`, :mod:`colabtui_remote.transport.mailbox.drive_storage`).
Importing it needs only the standard library; the calls that reach Drive need pydrive2
(``pip install 'colabtui-remote[drive]'``).

- :mod:`.errors`: the :class:`~.errors.DriveError` family and the mapping from the libraries'
  exceptions.
- :mod:`.url`: ``gdrive://FOLDER_ID/sub/path`` URLs.
- :mod:`.auth`: :func:`~.auth.connect` (an authorized ``GoogleDrive``), :func:`~.auth.login`.
- :mod:`.client`: :class:`~.client.DriveFolder`, the files of one folder.
"""

from __future__ import annotations

from .auth import API_ENDPOINT_ENV, CREDENTIALS_ENV, connect, default_credentials_path, login
from .client import DriveFile, DriveFolder, md5_file
from .errors import (
    ChecksumMismatch,
    DriveAuthError,
    DriveBadResponse,
    DriveError,
    DriveNotFound,
    DriveRateLimited,
    DriveUnavailable,
    FileTooLarge,
)
from .url import GDRIVE_SCHEME, is_gdrive_url, parse_gdrive_url

__all__ = [
    "API_ENDPOINT_ENV", "CREDENTIALS_ENV", "GDRIVE_SCHEME", "ChecksumMismatch", "DriveAuthError",
    "DriveBadResponse", "DriveError", "DriveFile", "DriveFolder", "DriveNotFound",
    "DriveRateLimited", "DriveUnavailable", "FileTooLarge", "connect",
    "default_credentials_path", "is_gdrive_url", "login", "md5_file", "parse_gdrive_url",
]
