"""``gdrive://`` URLs: a Drive folder by id, optionally a path of subfolders below it.

``gdrive://1AbCdEfGhIjK/runs/resnet`` names the folder ``resnet`` inside ``runs`` inside the folder
whose Drive id is ``1AbCdEfGhIjK`` (the id is the last part of the folder's address in the Drive
web page). ``gdrive://root/...`` starts at the top of "My Drive". Subfolders are found by title.
"""

from __future__ import annotations

import re

GDRIVE_SCHEME = "gdrive://"

_ID = re.compile(r"^(?:root|[A-Za-z0-9_-]{10,})$")


def is_gdrive_url(s: object) -> bool:
    """Whether ``s`` is a string that starts with ``gdrive://`` (case-insensitive). Says nothing
    about whether the rest is valid: :func:`parse_gdrive_url` does."""
    return isinstance(s, str) and s[: len(GDRIVE_SCHEME)].lower() == GDRIVE_SCHEME


def is_folder_id(s: object) -> bool:
    """Whether ``s`` looks like a Drive id (``[A-Za-z0-9_-]``, at least 10 characters) or is
    ``"root"``."""
    return isinstance(s, str) and _ID.match(s) is not None


def parse_gdrive_url(url: str) -> tuple[str, tuple[str, ...]]:
    """Split ``gdrive://FOLDER_ID[/sub/path]`` into the folder id and the subfolder titles.

    A trailing ``/`` is allowed (``gdrive://ID/runs/``).

    Returns:
        ``(folder_id, ("sub", "path"))``; the tuple is empty for the folder itself.

    Raises:
        ValueError: not a ``gdrive://`` URL, an id that is empty or not a Drive id, or a path
            part that is empty (``a//b``), ``.`` or ``..``. The message quotes the URL.
    """
    if not is_gdrive_url(url):
        raise ValueError(f"{url!r} is not a Drive URL; expected {GDRIVE_SCHEME}FOLDER_ID[/sub/path]")
    rest = url[len(GDRIVE_SCHEME):]
    if rest.endswith("/"):
        rest = rest[:-1]
    folder_id, _, path = rest.partition("/")
    if not folder_id:
        raise ValueError(f"{url!r} has no folder id; expected {GDRIVE_SCHEME}FOLDER_ID[/sub/path]")
    if not is_folder_id(folder_id):
        raise ValueError(f"{url!r}: {folder_id!r} is not a Drive folder id (letters, digits, '-' "
                         "and '_', at least 10 of them, as in the folder's web address; or 'root')")
    parts = tuple(path.split("/")) if path else ()
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"{url!r}: bad path part {part!r} (empty, '.' and '..' are not "
                             "folder titles)")
    return folder_id, parts
