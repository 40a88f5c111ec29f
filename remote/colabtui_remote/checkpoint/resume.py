"""Resume: the one place that decides which checkpoint a run loads, local or remote.

:func:`find_resumable` is what ``Monitor.resume()`` asks: the newest checkpoint that verifies in
the checkpoint folder or its local fallback (newer first), else, for a ``gdrive://``
destination, the newest verified on Drive, downloaded and checked. A listed checkpoint verifies
when its size and sha256 match the manifest and ``torch.load(weights_only=True)`` reads it;
each one skipped on the way is warned about once (:class:`~.errors.CheckpointWarning`).
Nothing is deleted here. :func:`load_resumable` (one folder), :func:`fetch_newest` and
:func:`download_newest` (a replica destination) are the steps, also used by the laptop's
``colabtui checkpoints``.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from typing import Any

from ..schema import CheckpointInfo
from .destinations import CheckpointDestination, as_destination, open_destination
from .errors import CheckpointError, ManifestUnreadable, warn_skipped
from .folders import (
    FolderTree,
    aside_folder,
    folder_names,
    folder_of,
    is_folder_name,
    name_order,
    remove_folder,
    unpack_folder,
    verify_folder,
)
from .fs import remove_quietly, sha256_file
from .manifest import (
    MANIFEST,
    ManifestEntry,
    checkpoint_name,
    file_order,
    is_checkpoint_name,
    name_step,
    read_manifest,
    read_trees,
)
from .replica import Progress, ReplicaDestination
from .state import load_state
from .writer import Checkpointer

__all__ = ["download_newest", "fetch_newest", "find_resumable", "find_resumable_folder",
           "load_resumable", "load_state", "newest_folder"]

logger = logging.getLogger("colabtui_remote.checkpoint")


def find_resumable(dest: CheckpointDestination) -> tuple[dict, CheckpointInfo] | None:
    """The newest local checkpoint that verifies (the folder's or the fallback's, newer
    first), else with a ``gdrive://`` destination the newest on Drive. A checkpoint folder
    that cannot be read (a mount that is gone) is warned about loudly: it may hold newer
    checkpoints than the one taken."""
    found = _find_local(dest.checkpointer)
    if found is None and dest.drive_url:
        found = _resume_from_drive(dest)
    return found

def _find_local(ckpt: Checkpointer) -> tuple[dict, CheckpointInfo] | None:
    unreadable = None
    if ckpt.fallback_dir:
        try:  # the Checkpointer created it: missing now means the mount is gone
            os.listdir(ckpt.directory)
            read_manifest(ckpt.directory)
        except (OSError, CheckpointError) as exc:
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if isinstance(cause, OSError):  # else: read, but its manifest does not parse
                unreadable = (f"[Errno {cause.errno}] {cause.strerror}"
                              if cause.errno is not None and cause.strerror else str(cause))
    found = _newest_local(ckpt)
    if unreadable is not None:
        _warn_unread_folder(ckpt, unreadable, found)
    return found

def _warn_unread_folder(ckpt: Checkpointer, why: str,
                        found: tuple[dict, CheckpointInfo] | None) -> None:
    took = (f"resuming from step {found[1].step} in {ckpt.fallback_dir}" if found
            else "no checkpoint in the local fallback either: starting at step 0")
    message = (
        f"colabtui: WARNING: the checkpoint folder {ckpt.directory} could not be read "
        f"({why}); it may hold newer checkpoints than this run sees; {took}. To resume "
        "from there, stop now, wait until the mount is back (on Colab: "
        "drive.mount('/content/drive')) and re-run; to go on from here, do nothing: "
        "checkpoints there are not unlisted or deleted because of this resume, and "
        "this run's checkpoints are copied there once it is back.")
    if logger.hasHandlers():
        logger.warning("%s", message)
    print(message, flush=True)

def _newest_local(ckpt: Checkpointer) -> tuple[dict, CheckpointInfo] | None:
    folders = [ckpt.directory] + ([ckpt.fallback_dir] if ckpt.fallback_dir else [])

    def newest(folder: str) -> float:
        try:
            entries = read_manifest(folder)
        except (CheckpointError, OSError):
            return 0.0
        return entries[-1].saved_at if entries else 0.0

    for folder in sorted(folders, key=newest, reverse=True):
        try:
            found = load_resumable(folder)
        except OSError as exc:
            if folder != ckpt.directory or not ckpt.fallback_dir:
                raise
            logger.warning("colabtui_remote: cannot read %s (%s); resuming from %s", folder,
                        exc, ckpt.fallback_dir)
            continue
        if found is not None:
            return found
    return None

def _resume_from_drive(dest: CheckpointDestination) -> tuple[dict, CheckpointInfo] | None:
    ckpt, url = dest.checkpointer, dest.drive_url
    assert url is not None
    remote = open_destination(url, credentials_path=dest.drive_credentials)
    unusable: list = []
    try:
        got = fetch_newest(remote, ckpt.directory, unusable=unusable,
                           check=lambda path, entry: load_state(path, entry.step))
    except ManifestUnreadable as exc:
        raise CheckpointError(
            f"cannot resume from Drive: {exc}. Nothing on Drive was changed. Fix or move "
            f"that manifest.json in {url} (the checkpoints it lists stay where they are), "
            "or give another checkpoint_dir") from None
    except OSError as exc:  # DriveError: not found or not shared, credentials, network
        raise CheckpointError(f"cannot resume from {url}: {exc}") from exc
    finally:
        if unusable and ckpt.replica is not None:
            ckpt.replica.unlist(unusable)  # failed md5/sha256: off the next manifest
    if got is None:
        return None
    entry, tmp, state = got
    info = ckpt.adopt(tmp, step=entry.step, sha256=entry.sha256, saved_at=entry.saved_at,
                      epoch=entry.epoch)
    print(f"colabtui: downloaded step {entry.step} from {url}/{entry.file} (md5 and sha256 "
          f"verified) to {info.path}", flush=True)
    return state, info


def _check_listed(info: CheckpointInfo) -> dict:
    try:
        size = os.path.getsize(info.path)
    except OSError as exc:
        raise CheckpointError(f"cannot read it: {exc.strerror or exc}") from None
    if size != info.bytes:
        raise CheckpointError(f"size is {size} bytes, the manifest says {info.bytes} "
                              "(truncated or incomplete)")
    try:
        _, sha = sha256_file(info.path)
    except OSError as exc:
        raise CheckpointError(f"cannot read it: {exc}") from None
    if sha != info.sha256:
        raise CheckpointError("sha256 differs from the manifest (file changed or corrupt)")
    return load_state(info.path, info.step)

def load_resumable(directory: str | os.PathLike) -> tuple[dict, CheckpointInfo] | None:
    """The newest checkpoint in ``directory`` that verifies, to resume from.

    A listed checkpoint verifies when its size and sha256 match the manifest and
    ``torch.load(weights_only=True)`` reads it. Each newer one that does not, and every
    temporary or unlisted ``ckpt-*.pt`` file newer than the one taken, gets a
    :class:`CheckpointWarning` (also logged) naming the file and why. Without a readable
    manifest the candidates are the ``ckpt-*.pt`` files, each verified by loading it (also
    warned). Nothing is ever deleted here.

    Args:
        directory: the checkpoint folder.

    Returns:
        ``(state, info)`` for :func:`restore`, or ``None`` when there is no usable checkpoint
        (or no folder).

    Raises:
        ImportError: there is a checkpoint to load but torch is not installed.
        OSError: the folder exists but cannot be listed (e.g. permission denied).
    """
    directory = os.path.abspath(os.fspath(directory))
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return None
    files = sorted((n for n in names if is_checkpoint_name(n)), key=file_order)
    temps = sorted(n for n in names if n.startswith(".ckpt-") and ".tmp-" in n)
    try:
        entries = read_manifest(directory)
        problem = None if entries is not None else "missing"
    except CheckpointError as exc:
        entries, problem = None, f"unreadable ({exc})"
    chosen: tuple[dict, CheckpointInfo] | None = None
    tried = 0
    if entries is not None:
        listed = {os.path.basename(e.path) for e in entries}
        unlisted = [n for n in files if n not in listed]
        for info in reversed(entries):
            if is_folder_name(os.path.basename(info.path)):
                continue  # a folder checkpoint (a framework's, or sharded): not a state file
            tried += 1
            try:
                chosen = (_check_listed(info), info)
                break
            except CheckpointError as exc:
                warn_skipped(f"checkpoint {info.path} (step {info.step}) is unusable: {exc}; "
                      "trying the previous one")
    else:
        unlisted = []
        if files:
            warn_skipped(f"{os.path.join(directory, MANIFEST)} is {problem}: rebuilding the list from "
                  f"{len(files)} checkpoint file(s) in {directory}; each is verified by loading it")
        for name in reversed(files):
            tried += 1
            path = os.path.join(directory, name)
            try:
                state = load_state(path, None)
                size, sha = sha256_file(path)
                step = state.get("step")
                chosen = (state, CheckpointInfo(
                    step=step if isinstance(step, int) else name_step(name), path=path,
                    bytes=size, sha256=sha, saved_at=os.path.getmtime(path), seconds=None,
                    epoch=state.get("epoch") if isinstance(state.get("epoch"), int) else None))
                break
            except (CheckpointError, OSError) as exc:
                warn_skipped(f"checkpoint {path} is unusable: {exc}; trying the previous one")
    for name, why in [*((n, "not listed in the manifest") for n in unlisted),
                      *((n, "a temporary file left by an unfinished save") for n in temps)]:
        path = os.path.join(directory, name)
        if chosen is None or _newer_than(path, name, chosen[1]):
            warn_skipped(f"ignored {path}: {why}; it is never loaded")
        else:
            logger.info("ignored older %s: %s", path, why)
    if chosen is None:
        if tried:
            warn_skipped(f"none of the {tried} checkpoint(s) in {directory} could be loaded")
        return None
    logger.info("resuming from %s (step %d)", chosen[1].path, chosen[1].step)
    return chosen

def _newer_than(path: str, name: str, info: CheckpointInfo) -> bool:
    if name_step(name) >= info.step:
        return True
    try:
        return os.path.getmtime(path) > info.saved_at
    except OSError:
        return False

def fetch_newest(dest: str | os.PathLike | ReplicaDestination, to_dir: str | os.PathLike, *,
                 check: Callable[[str, ManifestEntry], Any] | None = None,
                 progress: Progress | None = None,
                 unusable: list[ManifestEntry] | None = None,
                 select: Callable[[ManifestEntry], bool] | None = None
                 ) -> tuple[ManifestEntry, str, Any] | None:
    """Download the newest listed checkpoint that verifies into a temporary file in ``to_dir``.

    Each candidate, newest first, is fetched (md5 checked against the manifest), its size and
    sha256 compared with the manifest, then ``check(path, entry)`` runs (e.g. a
    ``torch.load``); one that fails is removed, warned about once (a
    :class:`~colabtui_remote.checkpoint.CheckpointWarning`, also logged where logging is set
    up), and the previous one is tried.

    Args:
        dest: the destination, or where it is (see :func:`open_destination`).
        to_dir: local folder for the download (created if missing).
        check: ``check(path, entry)``, raising
            :class:`~colabtui_remote.checkpoint.CheckpointError` for a file that cannot be used.
        progress: ``progress(bytes_done, bytes_total)`` during each download.
        unusable: a list the candidates whose bytes are not the manifest's (missing there,
            md5, size or sha256 differ) are appended to, for :meth:`Replicator.unlist`;
            candidates that only fail ``check`` are not.
        select: only entries for which ``select(entry)`` is true are candidates.

    Returns:
        ``(entry, temp_path, check's result)``, the file named ``.ckpt-….tmp-…`` (never loaded
        by :func:`~colabtui_remote.checkpoint.resume.load_resumable` until renamed), or ``None`` when
        nothing is listed or nothing verifies. A folder checkpoint (packed in a tar there) is
        unpacked into the temporary folder ``.NAME.fetch-…``, each file's size and sha256
        checked.

    Raises:
        ManifestUnreadable: the manifest there does not parse; nothing was changed there.
        OSError: ``dest`` cannot be reached or ``to_dir`` written.
    """
    d = as_destination(dest)
    to_dir = os.path.abspath(os.fspath(to_dir))
    os.makedirs(to_dir, exist_ok=True)
    entries = d.read_manifest() or []
    for entry in reversed(entries):
        if select is not None and not select(entry):
            continue
        tmp = os.path.join(to_dir, f".{entry.file}.tmp-{secrets.token_hex(4)}")
        intact = False
        try:
            d.fetch(entry, tmp, progress=progress)
            if entry.tree is not None:  # a folder, packed: unpacked and checked file by file
                tmp = _unpack_fetched(tmp, entry)
                size, sha = entry.tree.bytes, entry.tree.sha256
            else:
                size, sha = sha256_file(tmp)
            if size != entry.bytes or sha != entry.sha256:
                raise CheckpointError(f"{size} bytes with sha256 {sha}, the manifest says "
                                      f"{entry.bytes} bytes with sha256 {entry.sha256}")
            intact = True
            result = check(tmp, entry) if check is not None else None
        except CheckpointError as exc:
            _remove_fetched(tmp)
            if not intact and unusable is not None:
                unusable.append(entry)
            warn_skipped(f"checkpoint {d.dest}/{entry.file} (step {entry.step}) is unusable: {exc}; "
                  "trying the previous one", log=logger)
            continue
        except BaseException:
            _remove_fetched(tmp)
            raise
        return entry, tmp, result
    return None


def _unpack_fetched(tar: str, entry: ManifestEntry) -> str:
    """Unpack a fetched folder's tar next to it; the tar is removed either way."""
    assert entry.tree is not None
    folder = os.path.join(os.path.dirname(tar),
                          f".{folder_of(entry.file)}.fetch-{secrets.token_hex(4)}")
    try:
        unpack_folder(tar, folder, entry.tree)
    finally:
        remove_quietly(tar)
    return folder


def _remove_fetched(path: str) -> None:
    if os.path.isdir(path):
        remove_folder(path)
    else:
        remove_quietly(path)

def download_newest(dest: str | os.PathLike | ReplicaDestination, to_dir: str | os.PathLike, *,
                    progress: Progress | None = None) -> tuple[ManifestEntry, str] | None:
    """Download the newest checkpoint at ``dest`` whose md5 and sha256 match its manifest into
    ``to_dir`` (created if missing), under its own name or, when a different file has that name
    there, a free ``ckpt-…-N.pt`` name (nothing is overwritten).

    Returns:
        ``(entry, path)``, or ``None`` when nothing listed there verifies.

    Raises:
        ManifestUnreadable: the manifest there does not parse.
        OSError: ``dest`` cannot be reached or ``to_dir`` written.
    """
    found = fetch_newest(dest, to_dir, progress=progress)
    if found is None:
        return None
    entry, tmp, _ = found
    to_dir = os.path.dirname(tmp)
    n, name = 1, entry.file
    if entry.tree is not None:  # a folder: under its own name, or NAME-2, never over another
        base = name = folder_of(entry.file)
        while os.path.lexists(os.path.join(to_dir, name)):
            n += 1
            name = f"{base}-{n}"
        os.replace(tmp, os.path.join(to_dir, name))
        return entry, os.path.join(to_dir, name)
    while True:
        final = os.path.join(to_dir, name)
        if not os.path.lexists(final):
            break
        try:
            if sha256_file(final)[1] == entry.sha256:  # the same checkpoint is already here
                remove_quietly(tmp)
                return entry, final
        except OSError:
            pass
        n += 1
        name = checkpoint_name(entry.step, n)
    os.replace(tmp, final)
    return entry, final


# --------------------------------------------------------------------------- folder checkpoints


def find_resumable_folder(ckpt: Checkpointer, framework: str) -> CheckpointInfo | None:
    """The newest folder checkpoint written by ``framework`` that verifies, for the framework
    to resume from: in the Checkpointer's folder (:func:`newest_folder`), else at its replica
    (Drive, or a mounted Drive folder: the newest whose md5 and every file's sha256 check,
    unpacked and listed here). Newer listed ones that do not verify, and newer ones saved
    before this resume, are unlisted (see :meth:`Checkpointer.resumed_from`).

    Returns:
        The checkpoint (``path`` is the folder), or None when there is none.

    Raises:
        CheckpointError: a manifest does not parse, or the replica cannot be read (nothing is
            changed; the message says what to do).
    """
    found = newest_folder(ckpt.directory, framework)
    if found is None and ckpt.replica is not None:
        found = _folder_from_replica(ckpt, framework)
    if found is not None:
        unlist_passed_over(ckpt, found)
    return found


def unlist_passed_over(ckpt: Checkpointer, info: CheckpointInfo) -> None:
    """:meth:`Checkpointer.resumed_from` ``info``: newer listed checkpoints that failed
    verification, or were saved before this resume at a greater step, leave the list (never
    deleted). A folder that cannot be written is logged, not raised: the resume goes on."""
    try:
        ckpt.resumed_from(info)
    except OSError as exc:
        logger.warning("colabtui_remote: could not unlist unusable checkpoints: %s", exc)


def newest_folder(directory: str | os.PathLike, framework: str) -> CheckpointInfo | None:
    """The newest folder checkpoint of ``framework`` listed in ``directory``'s manifest whose
    files all have their listed size and sha256. Each newer listed one that does not, and each
    checkpoint folder there newer than the one taken that the manifest does not list (a save
    killed half-way), gets a :class:`CheckpointWarning`; the unlisted ones are also moved out
    of the framework's way (``.checkpoint-600.unlisted-…``: a framework that globs
    ``checkpoint-*`` would count or overwrite them), and removed by the next good save.

    Raises:
        CheckpointError: the manifest does not parse (nothing is changed: fix or move it).
    """
    directory = os.path.abspath(os.fspath(directory))
    try:
        infos, trees = read_manifest(directory), read_trees(directory)
    except ManifestUnreadable as exc:
        raise CheckpointError(f"cannot resume: {exc}. Nothing was changed; fix or move that "
                              "manifest.json (the checkpoints stay where they are)") from None
    if infos is None:
        return None
    chosen = None
    for info in reversed(infos):
        tree = trees.get(os.path.basename(info.path))
        if tree is None or tree.framework != framework:
            continue
        try:
            verify_folder(info.path, tree)
        except CheckpointError as exc:
            warn_skipped(f"checkpoint {info.path} (step {info.step}) is unusable: {exc}; "
                         "trying the previous one")
            continue
        chosen = info
        break
    listed = {os.path.basename(i.path) for i in infos}
    for name in folder_names(os.listdir(directory)):
        if name in listed or (chosen is not None and name_order(name)[0] <= chosen.step):
            continue
        aside = os.path.join(directory, aside_folder(name))
        os.replace(os.path.join(directory, name), aside)
        warn_skipped(f"ignored {os.path.join(directory, name)}: not listed in the manifest (a "
                     f"save that did not finish); never loaded, moved aside to {aside}")
    if chosen is not None:
        logger.info("resuming from %s (step %d)", chosen.path, chosen.step)
    return chosen


def _folder_from_replica(ckpt: Checkpointer, framework: str) -> CheckpointInfo | None:
    dest = ckpt.replica.dest
    unusable: list = []

    def ours(entry: ManifestEntry) -> bool:
        return entry.tree is not None and entry.tree.framework == framework

    try:
        got = fetch_newest(dest, ckpt.directory, unusable=unusable, select=ours)
    except ManifestUnreadable as exc:
        raise CheckpointError(f"cannot resume from {dest.dest}: {exc}. Nothing there was "
                              "changed; fix or move that manifest.json") from None
    except OSError as exc:
        raise CheckpointError(f"cannot resume from {dest.dest}: {exc}") from exc
    finally:
        if unusable:
            ckpt.replica.unlist(unusable)
    if got is None:
        return None
    entry, tmp, _ = got
    tree: FolderTree = entry.tree
    info = ckpt.adopt_folder(tmp, folder_of(entry.file), tree, step=entry.step,
                             saved_at=entry.saved_at, epoch=entry.epoch)
    print(f"colabtui: downloaded step {entry.step} from {dest.dest}/{entry.file} (md5 and "
          f"sha256 of every file verified) to {info.path}", flush=True)
    return info
