"""What a :class:`~colabtui_remote.checkpoint.replica.Replicator` copies checkpoints to: the
:class:`ReplicaDestination` protocol (a mounted Drive folder, :mod:`.mount`; Drive through its
API, :mod:`.drive`) and what a destination reports about a file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .manifest import ManifestEntry, RetainedFile
from .reclaim import FolderFile

__all__ = ["Progress", "RemoteCopy", "ReplicaDestination"]


Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``, called after each chunk."""


@dataclass(frozen=True)
class RemoteCopy:
    """What a destination reports about a file it holds."""

    name: str
    bytes: int | None
    md5: str | None
    file_id: str | None = None


class ReplicaDestination(Protocol):
    """Where a :class:`~colabtui_remote.checkpoint.replica.Replicator` copies checkpoints. One
    thread uses an instance at a time.

    Attributes:
        kind: ``"drive"`` or ``"mount"`` (see :data:`~colabtui_remote.schema.REPLICA_KINDS`).
        dest: where it is, as the user gave it (``gdrive://ID/runs/x`` or a path).
    """

    kind: str
    dest: str

    def read_manifest(self) -> list[ManifestEntry] | None:
        """The manifest there, oldest first; None when there is none.

        Raises:
            ManifestUnreadable: it exists but does not parse.
            OSError: the destination cannot be reached (DriveError is an OSError).
        """

    def read_listing(self) -> tuple[list[ManifestEntry], list[RetainedFile] | None] | None:
        """The manifest there as a writer needs it: its entries (as :meth:`read_manifest`) and
        the files it retains (None when its ``retained`` does not parse); None when there is
        no manifest.

        Raises:
            ManifestUnreadable: its entries do not parse.
            OSError: the destination cannot be reached.
        """

    def set_aside_manifest(self) -> str:
        """Keep the (unparseable) manifest under :func:`aside_name`; returns where it is now.
        The next :meth:`write_manifest` may then replace ``manifest.json``."""

    def names(self) -> set[str]:
        """Names of the files there (to never overwrite one that is not ours)."""

    def files(self) -> list[FolderFile]:
        """The files there that may matter to :mod:`.reclaim` (at least every file ours by
        name, and any manifest kept aside; not folders or links): name, bytes, modification
        time on the destination's own clock (Unix seconds), Drive's id.

        Raises:
            OSError: the destination cannot be reached.
        """

    def put(self, local_path: str, name: str, *, progress: Progress | None = None,
            md5: str | None = None) -> RemoteCopy:
        """Copy a local file there under ``name`` (replacing a file of that name); returns
        what the destination reports about the copy, md5 included. ``md5``: the local file's,
        when the caller has it (spares hashing it again on the way)."""

    def write_manifest(self, entries: list[ManifestEntry],
                       retained: list[RetainedFile] = ()) -> None:
        """Replace the manifest there (atomically where the destination allows), listing
        ``entries`` and retaining ``retained``."""

    def delete(self, entry: ManifestEntry) -> None:
        """Remove an entry's file; a missing file is not an error."""

    def remove(self, file: FolderFile) -> None:
        """Remove a file :meth:`files` reported (by id on Drive); a missing one is not an
        error.

        Raises:
            OSError: the destination cannot be reached or refuses.
        """

    def reclaim_blocked(self) -> str | None:
        """Why nothing left by killed copies may be removed there now (another writer may be
        at work: see :mod:`.reclaim`), or None."""

    def fetch(self, entry: ManifestEntry, to_path: str, *, progress: Progress | None = None) -> None:
        """Copy an entry's file to ``to_path`` (a new file), checking its md5 when the entry
        has one.

        Raises:
            CheckpointError: this file is missing there or its md5 differs (try another).
            OSError: the destination cannot be reached.
        """

    def failure(self, exc: BaseException) -> tuple[str, float | None]:
        """How to show and retry an exception raised by the methods above: (state, seconds to
        wait or None). State ``offline`` (unreachable, rate limited) or ``error`` (refuses:
        credentials, folder not shared; needs the user)."""

    def reset(self) -> None:
        """Forget cached connections and ids (after a failure; the next call reconnects)."""
