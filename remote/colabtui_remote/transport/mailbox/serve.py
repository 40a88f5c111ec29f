"""Serving a run through a mailbox folder: the storage a folder or ``gdrive://`` URL gets, and
the line the laptop runs. ``Monitor.serve_mailbox()`` is a thin call of :func:`start`."""

from __future__ import annotations

import os

from ..source import RunSource
from .layout import LocalFolder, MailboxStorage
from .server import MailboxServer

__all__ = ["MAILBOX_ENV", "MAILBOX_INTERVAL_ENV", "from_environment", "open_storage", "start",
           "synced_hint"]

MAILBOX_ENV = "COLABTUI_MAILBOX"
"""A mailbox folder every Monitor of the process serves from its start: ``colabtui launch``
sets it for the script it starts on a Colab runtime, so the script needs no ``--mailbox``."""
MAILBOX_INTERVAL_ENV = "COLABTUI_MAILBOX_INTERVAL"
"""Seconds between that mailbox's rounds (default 5; ``colabtui launch`` sets 1)."""


def from_environment(env: dict[str, str] | None = None) -> tuple[str, float] | None:
    """``(folder, interval_s)`` from :data:`MAILBOX_ENV` and :data:`MAILBOX_INTERVAL_ENV`, or
    ``None`` when no folder is set.

    Raises:
        ValueError: the interval is not a number of seconds in [0.05, 86400].
    """
    env = os.environ if env is None else env
    folder = env.get(MAILBOX_ENV, "").strip()
    if not folder:
        return None
    text = env.get(MAILBOX_INTERVAL_ENV, "").strip() or "5"
    try:
        interval = float(text)
    except ValueError:
        interval = float("nan")
    if not 0.05 <= interval <= 86400:
        raise ValueError(f"{MAILBOX_INTERVAL_ENV}={text!r}: seconds between mailbox rounds, "
                         "from 0.05 to 86400")
    return folder, interval


def synced_hint(folder: str) -> str:
    """What to type on the laptop for a mailbox folder: on a mounted Drive, the same path in
    the user's synced Drive (``<your Drive folder>/MyDrive/colabtui/run``), else the folder."""
    marker = "/MyDrive/"
    if marker in folder:
        return "<your synced Google Drive folder>/MyDrive/" + folder.split(marker, 1)[1]
    return f"{folder} (as synced to the laptop)"


def open_storage(folder: str | os.PathLike) -> tuple[MailboxStorage, str]:
    """The storage for a mailbox folder, created if missing, and where it is as printed.

    Args:
        folder: a path, or ``gdrive://ID[/path]`` (Drive through its API; subfolders of ID are
            created).

    Raises:
        ValueError: a malformed ``gdrive://`` URL (said before any login is looked for).
        OSError: the folder cannot be created (a ``DriveError`` for Drive).
        ImportError: a ``gdrive://`` folder without pydrive2 installed.
    """
    if isinstance(folder, str) and folder.startswith("gdrive://"):
        from ...drive.auth import connect
        from ...drive.client import DriveFolder
        from ...drive.url import parse_gdrive_url
        from .drive_storage import DriveMailbox

        parse_gdrive_url(folder)
        storage: MailboxStorage = DriveMailbox(DriveFolder.open(folder, connect(), create=True))
        where = folder
    else:
        local = LocalFolder(os.path.abspath(folder))
        storage, where = local, str(local.root)
    storage.create()
    return storage, where


def start(source: RunSource, folder: str | os.PathLike, interval_s: float, *,
          quiet: bool) -> tuple[MailboxServer, str]:
    """Start a :class:`~.server.MailboxServer` for ``source`` in ``folder`` and print the line
    to run on the laptop; returns it and where the folder is. Raises as :func:`open_storage`."""
    storage, where = open_storage(folder)
    mailbox = MailboxServer(source, storage, interval_s)
    mailbox.start()
    if not quiet:
        there = where if where.startswith("gdrive://") else synced_hint(where)
        print(f"colabtui: mailbox {where} (every {interval_s:g} s); on the laptop: "
              f"colabtui connect {there}", flush=True)
    return mailbox, where
