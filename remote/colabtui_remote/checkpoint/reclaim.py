"""Reclaiming what killed saves leave in a checkpoint folder: the one rule, for every destination.

A save killed at a random instant leaves a temporary file (``.ckpt-….pt.tmp-…``,
``.manifest.json.tmp-…``), a complete checkpoint the manifest never listed (killed while it was
verified), or one the manifest no longer lists (killed before the prune). Nothing ever loads
them; without this they fill the folder (measured: about 120 MB per kill of a 120 MB save).

After each good save (a manifest written there), a file is removed only when all of these hold:

1. its name is ours: a temporary name of a checkpoint, the manifest or the lock
   (:func:`is_our_temp`), or a checkpoint name (``ckpt-000001200.pt``); never anything else
   (a manifest kept aside, the mailbox's files, the user's);
2. the manifest there, as written and as read back now, neither lists it nor retains it
   (:class:`~.manifest.RetainedFile`: an abandoned future, a checkpoint that failed
   verification, files found where there was no readable manifest);
3. the writer does not protect it otherwise: the abandoned and unusable ones it knows of, a
   name reserved for a copy under way, a checkpoint another open writer of this process lists
   there (two writers on one folder overwrite each other's manifest);
4. it was last modified before the newest listed checkpoint there (the same clock: the
   filesystem's, or Drive's): a file written after that may be someone's save in flight;
5. nobody else may be writing there: the writer holds the folder's lock (:mod:`.lock`; a Drive
   folder has none: there, two runtimes on one folder are the hazard they always were), and no
   manifest kept aside as unreadable (``manifest.unreadable-…``) is there: it may list any file.

Why ``retained`` is in the manifest and not only in the writer's memory: runtimes die all the
time (that is why this exists), so a file a resume unlisted on purpose must stay protected in
the sessions after it, which know nothing of that resume but the manifest. What a resume
unlisted stays until someone deletes it by hand; every other leftover goes at the next good save.

What one save reclaimed is reported once (:func:`report`: logged, and one printed line) and
kept as a :class:`Reclaimed` by the writer.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import CheckpointError
from .fs import FolderIO, describe_oserror
from .lock import LOCK_NAME
from .manifest import (
    ASIDE_PREFIX,
    MANIFEST,
    RetainedFile,
    is_checkpoint_name,
    merge_retained,
    read_folder,
)

__all__ = ["FolderFile", "Reclaimed", "Reclaiming", "ReplicaReclaiming", "choose",
           "folder_files", "is_our_temp", "reclaim_destination", "reclaim_folder", "report",
           "retain_unlisted"]

logger = logging.getLogger("colabtui_remote.checkpoint")

_TEMP_RE = re.compile(r"^\.(?:ckpt-\d{9,}(?:-\d+)?\.pt|" + re.escape(MANIFEST) + "|"
                      + re.escape(LOCK_NAME) + r")\.tmp-[0-9a-f]{8}$")


def is_our_temp(name: str) -> bool:
    """Whether ``name`` is a temporary name this package writes a checkpoint, a manifest or a
    lock under (``.ckpt-000001200.pt.tmp-1a2b3c4d``; see
    :func:`~colabtui_remote.checkpoint.fs.temp_name`)."""
    return _TEMP_RE.match(name) is not None


@dataclass(frozen=True)
class FolderFile:
    """A file in a checkpoint folder or a Drive folder.

    Attributes:
        name: its name (Drive: its title).
        bytes: its size in bytes.
        mtime: when it was last modified, Unix seconds on the destination's clock.
        id: Drive's file id; None in a folder.
    """

    name: str
    bytes: int
    mtime: float
    id: str | None = None


@dataclass(frozen=True)
class Reclaimed:
    """What one save reclaimed in one folder.

    Attributes:
        where: the folder (or ``gdrive://`` URL).
        files: the names removed.
        bytes: their total size in bytes.
        at: when, Unix seconds.
        blocked: why nothing could be removed there this time (another writer holds the lock,
            a manifest kept aside), or None.
    """

    where: str
    files: tuple[str, ...] = ()
    bytes: int = 0
    at: float = 0.0
    blocked: str | None = None

    @property
    def count(self) -> int:
        """How many files were removed."""
        return len(self.files)


def choose(names: Iterable[str], files: Iterable[FolderFile], *, listed: set[str],
           protect: set[str]) -> tuple[list[FolderFile], str | None]:
    """The files to remove, by the rule of this module's docstring (points 1 to 4, and the
    manifest kept aside of 5; the lock is the caller's).

    Args:
        names: every name in the folder.
        files: the files of ``names`` that may matter: ours by name and the listed ones.
        listed: names the manifest lists.
        protect: names never to remove (retained, abandoned, unusable, reserved).

    Returns:
        (files to remove, None), or ([], why nothing may be removed).
    """
    names = list(names)
    aside = sorted(n for n in names if n.startswith(ASIDE_PREFIX))
    if aside:
        return [], (f"a manifest kept aside as unreadable is there ({aside[0]}) and may list "
                    "any file; move it away once it is checked")
    files = list(files)
    newest = max((f.mtime for f in files if f.name in listed), default=None)
    if newest is None:
        return [], "no checkpoint listed there is present"
    return [f for f in files
            if (is_our_temp(f.name) or is_checkpoint_name(f.name))
            and f.name not in listed and f.name not in protect and f.mtime < newest], None


def folder_files(directory: str, io: FolderIO, names: Iterable[str]) -> list[FolderFile]:
    """The regular files among ``names`` in ``directory`` that are ours by name (temporary or
    checkpoint names); a file gone meanwhile is left out.

    Raises:
        OSError: one cannot be examined for another reason.
    """
    out = []
    for name in names:
        if not (is_our_temp(name) or is_checkpoint_name(name)):
            continue
        try:
            st = io.lstat(os.path.join(directory, name))
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):  # never a link or a folder
            out.append(FolderFile(name, st.st_size, st.st_mtime))
    return out


def reclaim_folder(directory: str, io: FolderIO, *, listed: set[str], protect: set[str],
                   blocked: str | None = None) -> Reclaimed:
    """Remove what killed saves left in a local (or mounted) folder, after a good save there.

    Args:
        directory: the folder.
        io: the filesystem calls to make on it.
        listed: names its manifest lists as the writer wrote it (the manifest there is read
            again; what it lists counts too).
        protect: names never to remove (its retained files are added from the manifest).
        blocked: why nothing may be removed (the lock is not held), or None.

    Returns:
        What was removed (a file that cannot be removed is logged and left). Never raises:
        a folder that cannot be examined is reported in ``blocked``.
    """
    now = time.time()
    if blocked is not None:
        return Reclaimed(directory, at=now, blocked=blocked)
    try:
        there = read_folder(directory, io)
        if there is None:
            return Reclaimed(directory, at=now, blocked="its manifest is gone")
        entries, retained = there
        if retained is None:
            return Reclaimed(directory, at=now, blocked="its manifest's retained list does "
                                                        "not parse")
        listed = listed | {os.path.basename(e.path) for e in entries}
        protect = protect | {r.file for r in retained}
        names = io.listdir(directory)
        chosen, why = choose(names, folder_files(directory, io, names), listed=listed,
                             protect=protect)
    except (OSError, CheckpointError) as exc:
        why = describe_oserror(exc) if isinstance(exc, OSError) else str(exc)
        return Reclaimed(directory, at=now, blocked=f"cannot examine it: {why}")
    if why is not None:
        return Reclaimed(directory, at=now, blocked=why)
    removed, total = [], 0
    for f in sorted(chosen, key=lambda f: f.name):
        try:
            io.remove(os.path.join(directory, f.name))
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("could not remove %s: %s", os.path.join(directory, f.name),
                           describe_oserror(exc))
            continue
        removed.append(f.name)
        total += f.bytes
    return Reclaimed(directory, files=tuple(removed), bytes=total, at=now)


def reclaim_destination(dest: Any, *, listed: set[str], protect: set[str],
                        blocked: str | None = None) -> Reclaimed:
    """Remove what killed copies and prunes left at a replica destination, after a manifest
    was written there.

    Args:
        dest: the :class:`~colabtui_remote.checkpoint.remote.ReplicaDestination`.
        listed: names the manifest just written lists.
        protect: names never to remove (retained, abandoned, unusable, reserved for copies).
        blocked: why nothing may be removed now, or None.

    Returns:
        What was removed (a file that cannot be removed is logged and left). Never raises:
        a destination that cannot be listed is reported in ``blocked``.
    """
    now = time.time()
    if blocked is not None:
        return Reclaimed(dest.dest, at=now, blocked=blocked)
    try:
        files = dest.files()
    except Exception as exc:  # DriveError is an OSError; anything else is as bad here
        return Reclaimed(dest.dest, at=now, blocked=f"cannot list it: {exc}")
    chosen, why = choose([f.name for f in files], files, listed=listed, protect=protect)
    if why is not None:
        return Reclaimed(dest.dest, at=now, blocked=why)
    removed, total = [], 0
    for f in sorted(chosen, key=lambda f: f.name):
        try:
            dest.remove(f)
        except Exception as exc:
            logger.warning("could not remove %s/%s: %s", dest.dest, f.name, exc)
            continue
        removed.append(f.name)
        total += f.bytes
    return Reclaimed(dest.dest, files=tuple(removed), bytes=total, at=now)


def report(reclaimed: Reclaimed, log: logging.Logger = logger) -> None:
    """Say what a save reclaimed, once: one logged line (debug level when nothing) and, when
    something was removed, the same line printed to the notebook."""
    if not reclaimed.count:
        if reclaimed.blocked:
            log.debug("reclaimed nothing in %s: %s", reclaimed.where, reclaimed.blocked)
        return
    message = (f"reclaimed {reclaimed.count} file(s), {reclaimed.bytes / 1e6:.1f} MB, left by "
               f"interrupted saves in {reclaimed.where}")
    log.info("%s", message)
    print(f"colabtui: {message}", flush=True)


def retain_unlisted(directory: str, io: FolderIO, entries: Iterable[Any], why: str
                    ) -> list[RetainedFile]:
    """Records retaining every checkpoint file in ``directory`` that ``entries`` (its
    :class:`~colabtui_remote.schema.CheckpointInfo`) do not list: what a writer keeps where it
    found no readable manifest (those files may have been listed).

    Raises:
        OSError: the folder cannot be listed.
    """
    listed = {os.path.basename(e.path) for e in entries}
    return [RetainedFile(n, why) for n in sorted(io.listdir(directory))
            if is_checkpoint_name(n) and n not in listed]


_OPEN: weakref.WeakSet = weakref.WeakSet()  # this process's writers not closed yet


class Reclaiming:
    """The reclaim after each good save, mixed into
    :class:`~colabtui_remote.checkpoint.writer.Checkpointer`. It uses the writer's ``_cond``,
    ``_primary`` (its folders have ``directory``, ``io``, ``entries``, ``retained``, ``lock``),
    ``_fallback``, ``mount_replica``, ``_job`` and ``_abandoned_keys``."""

    _last_reclaim: Reclaimed | None = None
    _reclaimed: tuple[int, int] = (0, 0)

    def _writing_probe(self) -> Any:
        """``writing()`` for this writer's locks: a save in flight, or copies to its folder
        under way. It holds the writer weakly (a lock must not keep it alive). The writer
        counts as open from now on (see :meth:`_others_listed`)."""
        _OPEN.add(self)
        ref = weakref.ref(self)

        def writing() -> bool:
            ck = ref()
            return ck is not None and (ck._job is not None or (
                ck.mount_replica is not None and not ck.mount_replica.settled()))

        return writing

    def _stop_reclaiming(self) -> None:
        """At close: this writer's entries no longer protect anything elsewhere."""
        _OPEN.discard(self)

    def _others_listed(self, directory: str) -> set[str]:
        """Names that other open writers of this process list in ``directory``: two writers
        on one folder overwrite each other's manifest, and the other's checkpoints must not
        then look like leftovers."""
        names: set[str] = set()
        for other in list(_OPEN):
            if other is self:
                continue
            for folder in (getattr(other, "_primary", None), getattr(other, "_fallback", None)):
                if folder is not None and folder.directory == directory:
                    names |= {os.path.basename(e.path) for e in folder.entries}
        return names

    @property
    def last_reclaim(self) -> Reclaimed | None:
        """What the last good save removed of what killed saves left there (count, bytes,
        names), or why it could remove nothing; None before the first save."""
        return self._last_reclaim

    @property
    def reclaimed_total(self) -> tuple[int, int]:
        """(files, bytes) removed after this writer's saves so far."""
        return self._reclaimed

    def _reclaim(self, folder: Any) -> None:
        """Remove what killed saves left in ``folder``, which a save just went to; never
        raises (the save is durable and listed whatever happens here)."""
        try:
            blocked = None
            replica = self.mount_replica
            if folder is self._primary and replica is not None and not replica.settled():
                blocked = "copies to it are under way"
            if blocked is None and folder.lock is not None:
                blocked = folder.lock.acquire()
            with self._cond:
                listed = {os.path.basename(e.path) for e in folder.entries}
                protect = {r.file for r in folder.retained}
                if folder is self._primary:
                    protect |= {name for name, _ in self._abandoned_keys}
            protect |= self._others_listed(folder.directory)
            done = reclaim_folder(folder.directory, folder.io, listed=listed, protect=protect,
                                  blocked=blocked)
        except Exception:
            logger.exception("reclaiming in %s failed", folder.directory)
            return
        self._last_reclaim = done
        self._reclaimed = (self._reclaimed[0] + done.count, self._reclaimed[1] + done.bytes)
        report(done)


class ReplicaReclaiming:
    """The retained list and the reclaim after each manifest written there, mixed into
    :class:`~colabtui_remote.checkpoint.replica.Replicator`. It uses the Replicator's ``dest``,
    ``_cond``, ``_abandoned``, ``_unusable``, ``_names`` (names reserved for copies under way),
    ``_retained_there`` (what the manifest there retains as last read or written; None: no
    readable manifest there) and ``_aside_seen``."""

    _last_reclaim: Reclaimed | None = None

    @property
    def last_reclaim(self) -> Reclaimed | None:
        """What the last manifest written there was followed by: the files removed there
        (count, bytes, names), or why none could be; None before the first."""
        return self._last_reclaim

    def _retained_for(self, listed: list, current: list, merged: list) -> list[RetainedFile]:
        """The ``retained`` of the next manifest there: what it retains now, the entries
        listed there that the next one leaves off (``listed`` less ``current``), and, where
        there was no readable manifest, every other checkpoint file there (it may have been
        listed)."""
        there = self._retained_there
        if there is None:
            names = {e.file for e in merged}
            there = [RetainedFile(n, "there when it had no readable manifest")
                     for n in sorted(self.dest.names()) if is_checkpoint_name(n) and n not in names]
        with self._cond:
            unusable = set(self._unusable)
        newly = [RetainedFile.of(e, "its download failed its checksum"
                                 if (e.file, e.sha256) in unusable
                                 else "saved before a resume at an earlier step")
                 for e in listed if e not in current]
        return merge_retained(there, newly)

    def _reclaim_there(self, kept: list) -> None:
        """After a manifest listing ``kept`` was written there; never raises."""
        try:
            blocked = ("a manifest there was kept aside as unreadable in this session"
                       if self._aside_seen else self.dest.reclaim_blocked())
            with self._cond:
                protect = {name for name, _ in self._abandoned | self._unusable}
                protect |= set(self._names.values())
            protect |= {r.file for r in self._retained_there or []}
            done = reclaim_destination(self.dest, listed={e.file for e in kept}, protect=protect,
                                       blocked=blocked)
        except Exception:
            logger.exception("reclaiming at %s failed", self.dest.dest)
            return
        self._last_reclaim = done
        report(done)
