"""Which writer and which replica a checkpoint destination gets: the one place that reads
``Monitor(checkpoint_dir=...)``.

- a folder on the runtime's disk: a :class:`~.writer.Checkpointer` writing there;
- a folder on a mount that can drop (FUSE or network filesystem, ``/content/drive``), or any
  folder when ``local_dir`` or ``$COLABTUI_LOCAL_CHECKPOINTS`` names a runtime disk: the same,
  with a local fallback folder (:class:`~.mount.MountFallback`);
- ``gdrive://FOLDER_ID[/sub/path]``: a Checkpointer writing to a local folder first, and a
  :class:`~.replica.Replicator` uploading each checkpoint to Drive (:class:`~.drive.DriveReplica`).

:func:`open_destination` gives the replica destination for a folder or URL alone, for reading:
resume, ``colabtui checkpoints``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..drive.url import is_gdrive_url, parse_gdrive_url
from .fs import on_mounted_filesystem
from .manifest import ManifestEntry
from .mount import MountedFolder
from .replica import ReplicaDestination, Replicator
from .writer import Checkpointer

__all__ = ["LOCAL_CHECKPOINTS_ENV", "CheckpointDestination", "default_local_dir",
           "for_framework", "list_verified", "open_checkpoints", "open_destination"]

LOCAL_CHECKPOINTS_ENV = "COLABTUI_LOCAL_CHECKPOINTS"
"""Environment variable naming the folder under which :func:`default_local_dir` puts a run's
local checkpoints."""


def default_local_dir(run: str) -> str:
    """The local folder for a run's checkpoints (staging for Drive, fallback for a mount):
    ``$COLABTUI_LOCAL_CHECKPOINTS/<run>``, else ``/content/colabtui-checkpoints/<run>`` on Colab
    (``/content`` exists), else ``~/.cache/colabtui/checkpoints/<run>``. ``run`` is made safe as
    one path part (``/`` and other characters outside ``[A-Za-z0-9._-]`` become ``_``)."""
    part = re.sub(r"[^A-Za-z0-9._-]", "_", run).lstrip(".") or "run"
    base = os.environ.get(LOCAL_CHECKPOINTS_ENV)
    if not base:
        base = ("/content/colabtui-checkpoints" if os.path.isdir("/content")
                else os.path.join(os.path.expanduser("~"), ".cache", "colabtui", "checkpoints"))
    return os.path.join(base, part)


@dataclass
class CheckpointDestination:
    """Where a run's checkpoints go.

    Attributes:
        checkpointer: writes them durably on the runtime (the folder, or the local staging
            folder of a ``gdrive://`` destination).
        drive_url: the ``gdrive://`` URL they are uploaded to, or None.
        drive_credentials: the credentials file for it (None: found as
            :func:`colabtui_remote.drive.auth.connect` finds them).
    """

    checkpointer: Checkpointer
    drive_url: str | None = None
    drive_credentials: str | os.PathLike | None = None

    @property
    def where(self) -> str:
        """The destination as the user named it (the URL, or the folder)."""
        return self.drive_url or self.checkpointer.directory


def open_checkpoints(checkpoint_dir: str | os.PathLike, run: str, *, keep: int = 3,
                     local_dir: str | os.PathLike | None = None,
                     drive_credentials: str | os.PathLike | None = None
                     ) -> CheckpointDestination:
    """The writer (and replica) for ``checkpoint_dir``; see the module's docstring.

    Args:
        checkpoint_dir: a folder, or ``gdrive://FOLDER_ID[/sub/path]``.
        run: the run's name (names the default local folder, :func:`default_local_dir`).
        keep: checkpoints kept, at least 1.
        local_dir: the local staging folder of a ``gdrive://`` destination, and the fallback of
            a folder on a mount.
        drive_credentials: the credentials file for a ``gdrive://`` destination.

    Raises:
        ValueError: a ``gdrive://`` URL that is not valid, or ``keep`` < 1.
        ImportError: a ``gdrive://`` destination without pydrive2.
        OSError: a folder cannot be created.
    """
    dest = os.fspath(checkpoint_dir)
    if is_gdrive_url(dest):
        from ..drive.errors import require_pydrive2
        from .drive import DriveReplica

        parse_gdrive_url(dest)  # a bad URL fails here, not on the replica's thread
        require_pydrive2()  # and a missing extra too
        replica = Replicator(DriveReplica(dest, credentials_path=drive_credentials), keep=keep,
                             start=False)
        ckpt = Checkpointer(local_dir or default_local_dir(run), keep=keep, replica=replica)
        replica.start()  # reads the manifest there: the status shows what is verified
        return CheckpointDestination(ckpt, drive_url=dest, drive_credentials=drive_credentials)
    fallback = local_dir
    if fallback is None and (on_mounted_filesystem(dest) or os.environ.get(LOCAL_CHECKPOINTS_ENV)):
        fallback = default_local_dir(run)  # the user named a runtime disk
        if os.path.abspath(fallback) == os.path.abspath(dest):
            fallback = None  # checkpoints are on that disk already
    return CheckpointDestination(Checkpointer(dest, keep=keep, fallback_dir=fallback))


def for_framework(dest: CheckpointDestination) -> CheckpointDestination:
    """The destination for a framework that writes its own checkpoint folders (see
    :mod:`colabtui_remote.integrations`): a folder on the runtime's disk that the framework
    writes into, and a replica beyond it. A plain folder and a ``gdrive://`` destination are
    that already (``dest`` itself); a folder on a mount (with a local fallback) becomes its
    fallback folder, replicated to the mount (a framework writing onto a FUSE mount that drops
    would fail mid-save, and the mount's own copy is eventually consistent): ``dest``'s
    writer is closed and a new one opened.

    Raises:
        OSError: the local folder cannot be created.
    """
    ckpt = dest.checkpointer
    if ckpt.fallback_dir is None:
        return dest
    replica = Replicator(MountedFolder(ckpt.directory), keep=ckpt.keep, start=False)
    ckpt.close()
    local = Checkpointer(ckpt.fallback_dir, keep=ckpt.keep, replica=replica)
    replica.start()
    return CheckpointDestination(local, drive_url=dest.drive_url,
                                 drive_credentials=dest.drive_credentials)


def open_destination(dest: str | os.PathLike, *, credentials_path: str | os.PathLike | None = None,
                     api_endpoint: str | None = None, create: bool = False) -> ReplicaDestination:
    """The replica destination for ``dest``: ``gdrive://FOLDER_ID[/sub/path]`` (Drive through
    its API; credentials and endpoint as :func:`colabtui_remote.drive.auth.connect` finds them)
    or a folder path (a mounted Drive, or any checkpoint folder).

    Nothing is contacted yet; the first call on the destination connects. Without ``create``
    (reading: resume, listing, download) missing Drive subfolders are not created: they read as
    an empty destination.

    Raises:
        ValueError: a ``gdrive://`` URL that is not valid (the message quotes it).
    """
    if is_gdrive_url(dest):
        from .drive import DriveReplica

        return DriveReplica(str(dest), credentials_path=credentials_path,
                            api_endpoint=api_endpoint, create=create)
    return MountedFolder(os.fspath(dest))


def as_destination(dest: str | os.PathLike | ReplicaDestination) -> ReplicaDestination:
    """``dest`` itself when it is a destination already, else :func:`open_destination` of it."""
    if isinstance(dest, str | os.PathLike):
        return open_destination(dest)
    return dest


def list_verified(dest: str | os.PathLike | ReplicaDestination) -> list[ManifestEntry]:
    """The checkpoints listed at ``dest``, oldest first (empty when it has no manifest).

    Raises:
        ManifestUnreadable: its manifest does not parse (the message says where and why).
        OSError: it cannot be reached (a DriveError for Drive, whose message says what).
    """
    return as_destination(dest).read_manifest() or []
