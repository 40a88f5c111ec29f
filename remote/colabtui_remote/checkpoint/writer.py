"""The Checkpointer: durable checkpoints of one run, written on a single writer thread.

A checkpoint is announced only once it is durable: written through
:func:`~colabtui_remote.checkpoint.fs.atomic_write` (temporary name in the same folder, flush,
fsync, ``os.replace``, the folder fsynced), read back and its sha256 compared, and only then
listed in ``manifest.json`` (:mod:`.manifest`, itself written atomically). Old checkpoints are
pruned to ``keep`` after that. A temporary file, or a file the manifest does not list, is never
loaded; what killed saves leave is removed by the next good save, by the rule of
:mod:`.reclaim`, while this writer holds the folder's lock (:mod:`.lock`).

Where the checkpoint folder is on a mount that can drop (Drive on Colab), the routing of saves
to a local fallback folder and back is :class:`~colabtui_remote.checkpoint.mount.MountFallback`'s;
copies beyond the runtime's disk are a :class:`~colabtui_remote.checkpoint.replica.Replicator`'s.
torch is imported only when a checkpoint is captured, written or loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..schema import CheckpointInfo, ReplicaStatus, SaveProgress
from .adopt import Adopting
from .errors import CheckpointError
from .folders import FolderTree, remove_folder
from .fs import (
    OS_IO,
    EarlyWriteback,
    FolderIO,
    atomic_write,
    describe_oserror,
    early_writeback_default,
    remove_quietly,
    sha256_file,
)
from .lock import FolderLock, release_all
from .manifest import (
    RetainedFile,
    checkpoint_name,
    entry_key,
    merge_retained,
    read_folder,
    read_trees,
    write_manifest,
)
from .mount import MountFallback
from .reclaim import Reclaiming, retain_unlisted
from .state import FORMAT, HashingWriter, capture_state, require_torch, save_state, state_nbytes

__all__ = ["Checkpointer", "OnDone"]

logger = logging.getLogger("colabtui_remote.checkpoint")

OnDone = Callable[[CheckpointInfo | None, str | None], None]
"""``on_done(info, None)`` once a checkpoint is listed; ``on_done(None, message)`` on failure."""


@dataclass
class _Job:
    state: dict
    step: int
    epoch: int | None
    on_done: OnDone | None
    started_at: float
    bytes_total: int | None
    phase: str = "writing"
    bytes_written: int = 0
    folder: str | None = None  # a folder a framework wrote: made durable and listed (adopt.py)
    framework: str | None = None


@dataclass
class _Folder:
    """One folder the writer saves into: the checkpoint folder or the local fallback."""

    directory: str
    io: FolderIO
    early_writeback: bool
    entries: list[CheckpointInfo]
    retained: list[RetainedFile] = dataclasses.field(default_factory=list)
    lock: FolderLock | None = None
    trees: dict[str, FolderTree] = dataclasses.field(default_factory=dict)  # folder entries


class Checkpointer(MountFallback, Reclaiming, Adopting):
    """Writes checkpoints of one run into one folder, on a single writer thread.

    The training thread calls :meth:`capture` (the only stall: copying state to CPU) and
    :meth:`submit`; the writer thread serializes, writes, verifies, publishes in the manifest and
    prunes. One checkpoint is in flight at a time. A failed write leaves earlier checkpoints and
    the manifest as they were and is reported through :attr:`last_error` and ``on_done``; it
    never raises on the training thread.

    It holds each folder's lock (:mod:`.lock`) until :meth:`close`; after each good save, what
    killed saves left there is removed by the rule of :mod:`.reclaim` (:attr:`last_reclaim`).

    With ``fallback_dir`` (for a checkpoint folder on a mounted Drive): when a save finds the
    folder's filesystem gone (an errno in :data:`MOUNT_GONE_ERRNOS`, or the folder missing or
    unreadable), the checkpoint is written to ``fallback_dir`` instead (same durability, its own
    manifest) and a :class:`~colabtui_remote.checkpoint.replica.Replicator` copies it to the folder once it
    is back (:attr:`mount_replica`, kind ``mount``). Later saves go to ``fallback_dir`` until
    every copy is verified there; then the folder is used again. The folder is never created
    again after construction: on an unmounted Drive that would write to the local disk under the
    mount point.

    Args:
        directory: the checkpoint folder; created if missing.
        keep: how many checkpoints to keep (newest by save order), at least 1.
        early_writeback: fdatasync while writing (see :class:`EarlyWriteback`); ``None`` turns
            it on for local filesystems only.
        fallback_dir: local folder for saves while ``directory`` is unreachable; ``None``: a
            save into an unreachable folder fails (reported, as any failed save).
        io: the filesystem calls made on ``directory`` (default: the os module's); see
            :class:`FolderIO`.
        replica: a :class:`~colabtui_remote.checkpoint.replica.Replicator` that gets every checkpoint
            written (e.g. one copying to Drive through its API); closed by :meth:`close`.
        mount_retry_s: (first, longest) seconds between attempts to copy to the folder while it
            is unreachable.

    Raises:
        ValueError: ``keep`` < 1.
        OSError: the folder (or ``fallback_dir``) cannot be created; with ``fallback_dir``, a
            folder whose filesystem is gone is not an error (saves start in the fallback).
    """

    _job_type = _Job

    def __init__(self, directory: str | os.PathLike, keep: int = 3,
                 early_writeback: bool | None = None, *,
                 fallback_dir: str | os.PathLike | None = None, io: FolderIO | None = None,
                 replica: Any = None, mount_retry_s: tuple[float, float] = (5.0, 300.0)) -> None:
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.fallback_dir = os.path.abspath(os.fspath(fallback_dir)) if fallback_dir else None
        if self.fallback_dir == self.directory:
            raise ValueError(f"fallback_dir is the checkpoint folder itself: {self.directory}")
        self.keep = keep
        self.replica = replica
        self.mount_replica: Any = None
        """The Replicator copying fallback checkpoints to :attr:`directory` (once it was needed)."""
        self._io = io or OS_IO
        self._early_writeback_arg = early_writeback
        self._mount_retry_s = mount_retry_s
        self._offline: str | None = None
        self._cond = threading.Condition()
        self._job: _Job | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._resume_point: tuple[int, float] | None = None  # see resumed_from
        self._abandoned_keys: set[tuple[str, str]] = set()  # the folder's: see _abandoned
        self._locks: list[FolderLock] = []
        # A Checkpointer dropped without close() (or alive at exit) lets its locks go.
        weakref.finalize(self, release_all, self._locks)
        self._primary = self._open_folder(self.directory, self._io, create=True)
        self._fallback = (self._open_folder(self.fallback_dir, OS_IO, create=True)
                          if self.fallback_dir else None)
        if self._fallback is not None:
            self._copy_left_behind()
        if replica is not None:
            # A session that died mid-upload left its newest local checkpoints uncopied: they
            # are copied now unless the destination lists them or something newer.
            for info in self.list():
                replica.submit(info, only_if_newer=True)

    def _open_folder(self, directory: str, io: FolderIO, create: bool) -> _Folder:
        early = (early_writeback_default(directory) if self._early_writeback_arg is None
                 else self._early_writeback_arg)
        folder = _Folder(directory, io, early, [],
                         lock=FolderLock(directory, io, writing=self._writing_probe()))
        self._locks.append(folder.lock)
        try:
            if create:
                io.makedirs(directory)
            folder.entries = self._load_entries(folder)
            folder.lock.acquire()  # says so when another runtime has the folder open
        except OSError as exc:
            if directory != self.directory or self.fallback_dir is None \
                    or not self._mount_gone(exc):
                raise
            self._offline = describe_oserror(exc)
            logger.warning("checkpoint folder %s is unreachable (%s); checkpoints go to %s "
                           "until it is back", directory, self._offline, self.fallback_dir)
        return folder

    @staticmethod
    def _load_entries(folder: _Folder) -> list[CheckpointInfo]:
        """The entries of the folder's manifest; sets ``folder.retained`` (without a readable
        manifest: every checkpoint file there, which load_resumable may still load)."""
        try:
            there = read_folder(folder.directory, folder.io)
            why = "in the folder when it had no manifest"
        except CheckpointError as exc:
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from None
            # Nothing is lost: files stay on disk and load_resumable can still find them.
            logger.warning("%s; starting a new manifest (older files are kept, unlisted)", exc)
            there, why = None, "in the folder when its manifest did not parse"
        entries, retained = there if there is not None else ([], None)
        if there is not None:
            folder.trees = read_trees(folder.directory, folder.io)
        folder.retained = retained if retained is not None else retain_unlisted(
            folder.directory, folder.io, entries,
            why if there is None else "in the folder when its retained list did not parse")
        return entries

    # ---- training thread

    def capture(self, tracked: dict[str, Any], step: int, epoch: int | None) -> dict:
        """Copy the tracked objects' state to CPU; see :func:`~colabtui_remote.checkpoint.state.capture_state`.

        Raises:
            ImportError: torch is not installed.
            CheckpointError: something tracked cannot be stored as plain types.
        """
        return capture_state(tracked, step, epoch)

    def record_failure(self, message: str, exc: BaseException | None = None) -> None:
        """Record a save that failed before it reached the writer thread (the training state
        could not be captured): it becomes :attr:`last_error`, with :attr:`last_error_at` now,
        as a failed write does, and is logged once at ERROR (with ``exc``'s traceback).

        Args:
            message: why, one line, e.g. ``"checkpoint at step 40 not saved: could not capture
                the training state: gen: ..."``.
            exc: the exception behind it, if any.
        """
        self._last_error, self._last_error_at = message, time.time()
        logger.error("%s", message, exc_info=exc)

    def submit(self, state: dict, step: int, epoch: int | None,
               on_done: OnDone | None = None) -> bool:
        """Queue ``state`` (from :meth:`capture`) for the writer thread.

        ``on_done(info, None)`` runs on the writer thread once the manifest lists the checkpoint,
        ``on_done(None, message)`` when the write failed; it runs before :attr:`busy` turns
        False, so :meth:`wait` returning means it has run (and it must not call :meth:`submit`).

        Returns:
            False, with nothing queued, if a save is already in flight or the checkpointer is
            closed; True otherwise.

        Raises:
            ValueError: ``state`` is not a captured checkpoint state.
        """
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("submit() takes the dict returned by capture()")
        total = state_nbytes(state)
        with self._cond:
            if self._job is not None or self._closing:
                return False
            self._job = _Job(state=state, step=int(step), epoch=epoch, on_done=on_done,
                             started_at=time.time(), bytes_total=total)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="colabtui-ckpt-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    # ---- any thread

    @property
    def busy(self) -> bool:
        """True while a checkpoint is being written."""
        return self._job is not None

    def progress(self) -> SaveProgress | None:
        """The save in flight (phase ``writing``, ``verifying`` or ``publishing``; bytes written
        so far; ``bytes_total`` is the tensor-data estimate while writing, exact after), or None."""
        job = self._job
        if job is None:
            return None
        return SaveProgress(step=job.step, phase=job.phase, bytes_written=job.bytes_written,
                            bytes_total=job.bytes_total, started_at=job.started_at)

    @property
    def last(self) -> CheckpointInfo | None:
        """The newest durable checkpoint written locally, in the folder or the fallback (from
        the manifests at construction, then each save)."""
        entries = self.list()
        return entries[-1] if entries else None

    @property
    def last_error(self) -> str | None:
        """Why the most recent failed save failed. A later success does not clear it; compare
        :attr:`last_error_at` with ``last.saved_at``."""
        return self._last_error

    @property
    def last_error_at(self) -> float | None:
        """When :attr:`last_error` happened, Unix seconds."""
        return self._last_error_at

    def list(self) -> list[CheckpointInfo]:
        """The checkpoints the manifests list, oldest first (``path`` absolute): the folder's,
        then the fallback's not yet copied to it, ordered by ``saved_at``."""
        with self._cond:
            entries = list(self._primary.entries)
            if self._fallback is not None and self._fallback.entries:
                there = {e.sha256 for e in entries}
                entries += [e for e in self._fallback.entries if e.sha256 not in there]
                entries.sort(key=lambda e: e.saved_at)
            return entries

    def replica_status(self) -> ReplicaStatus | None:
        """The :class:`~colabtui_remote.schema.ReplicaStatus` of :attr:`replica`, else of
        :attr:`mount_replica` once the folder was found unreachable, else None.

        For the mount, ``verified`` is the newest checkpoint durable in the folder whichever
        way it got there: written straight into it (verified by its sha256 read-back; ``md5``
        None unless a copy of it was md5-checked there) or copied back from the fallback
        (md5-checked), with its ``saved_at``.
        """
        if self.replica is not None:
            return self.replica.status()
        if self.mount_replica is None:
            return None
        status = self.mount_replica.status()
        return dataclasses.replace(status, verified=self._verified_in_folder())

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no save is in flight (its ``on_done`` has run). False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None, timeout)

    def close(self, timeout: float | None = 30, replica_timeout: float | None = 300) -> None:
        """Finish the save in flight, then stop the writer thread (waits up to ``timeout`` s);
        then let the replicas finish their copies (up to ``replica_timeout`` s; a copy not made
        by then stays local and is reported). Later :meth:`submit` calls return False."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        busy = False
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                busy = True
                logger.warning("checkpoint writer still busy after %ss; left running", timeout)
        for replica in (self.replica, self.mount_replica):
            if replica is not None:
                replica.close(replica_timeout)
        busy = busy or (self.mount_replica is not None and self.mount_replica.running)
        if not busy:  # a write still going on keeps its folders locked until the process ends
            release_all(self._locks)
            self._stop_reclaiming()

    # ---- writer thread

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._closing)
                job = self._job
                if job is None:
                    return
            try:
                info, error = self._save(job), None
            except Exception as exc:
                info = None
                error = f"checkpoint at step {job.step} not saved: {type(exc).__name__}: {exc}"
                self._last_error, self._last_error_at = error, time.time()
                logger.error("%s", error)
            job.state = {}  # let the copy go before anyone waits on us
            if job.on_done is not None:
                try:
                    job.on_done(info, error)
                except Exception:
                    logger.exception("checkpoint on_done callback failed")
            with self._cond:
                self._job = None
                self._cond.notify_all()

    def _save(self, job: _Job) -> CheckpointInfo:
        if job.folder is not None:
            return self._adopt_folder(job)
        folder = self._target()
        try:
            info = self._save_into(folder, job)
        except OSError as exc:
            if folder is not self._primary or self._fallback is None or not self._mount_gone(exc):
                raise
            self._go_offline(describe_oserror(exc))
            job.phase, job.bytes_written = "writing", 0
            folder = self._fallback
            info = self._save_into(folder, job)
        if folder is self._fallback:
            replica = self._mount_replica()
            replica.submit(info)
            replica.retry_now()  # probing a mount is cheap: try at every save
        if self.replica is not None:
            self.replica.submit(info)
        return info

    def _free_name(self, step: int, folder: _Folder | None = None) -> str:
        folder = folder or self._primary
        listed = {os.path.basename(e.path) for e in folder.entries}
        n = 1
        while True:
            name = checkpoint_name(step, n)
            if name not in listed and not folder.io.lexists(os.path.join(folder.directory, name)):
                return name
            n += 1

    def _save_into(self, folder: _Folder, job: _Job) -> CheckpointInfo:
        require_torch()
        io = folder.io
        t0 = time.perf_counter()
        final = os.path.join(folder.directory, self._free_name(job.step, folder))

        def write(f: Any) -> HashingWriter:
            writeback = EarlyWriteback(f.fileno()) if folder.early_writeback else None
            try:
                out = HashingWriter(f, lambda n: setattr(job, "bytes_written", n), writeback)
                save_state(job.state, out)
                f.flush()
            finally:
                if writeback is not None:
                    writeback.close()
            return out

        out = atomic_write(final, write, io=io, sync_dir=False)
        published = False
        try:
            io.fsync_dir(folder.directory)
            job.phase, job.bytes_total = "verifying", out.nbytes
            size, sha = sha256_file(final, io)
            if size != out.nbytes or sha != out.sha.hexdigest():
                raise CheckpointError(
                    f"{final} does not read back as written: wrote {out.nbytes} bytes with "
                    f"sha256 {out.sha.hexdigest()}, read {size} bytes with sha256 {sha}")
            job.phase = "publishing"
            info = CheckpointInfo(step=job.step, path=final, bytes=size, sha256=sha,
                                  saved_at=time.time(), seconds=round(time.perf_counter() - t0, 4),
                                  epoch=job.epoch)
            dropped = self._publish(folder, info)
            published = True
        except BaseException:
            if not published:  # never announced, so never to be loaded: reclaim the space
                remove_quietly(final, io)
            raise
        self._prune(dropped)
        logger.info("checkpoint step %d saved: %s, %d bytes in %.2fs", info.step, final,
                    info.bytes, info.seconds)
        self._reclaim(folder)
        return info

    def _publish(self, folder: _Folder, info: CheckpointInfo) -> list[CheckpointInfo]:
        """List ``info`` in ``folder``'s manifest, keeping the newest :attr:`keep`; returns the
        entries no longer listed (to prune once this is durable)."""
        with self._cond:
            entries = [*folder.entries, info]
        kept, dropped = entries[-self.keep:], entries[:-self.keep]
        kept += [e for e in dropped if self._protects(e)]  # a folder the framework still needs
        kept.sort(key=lambda e: e.saved_at)
        dropped = [e for e in dropped if e not in kept]
        write_manifest(folder.directory, kept, folder.io, retained=folder.retained,
                       trees=folder.trees)
        with self._cond:
            folder.entries = kept
        folder.io.fsync_dir(folder.directory)
        return dropped

    def resumed_from(self, info: CheckpointInfo, at: float | None = None) -> list[CheckpointInfo]:
        """Record that resume took ``info`` (from this folder, the fallback, or adopted from
        the replica).

        Listed checkpoints after ``info`` in its folder failed verification, and listed
        checkpoints of a greater step saved before ``at`` in either folder are an abandoned
        future (the run goes on from ``info.step``): both are taken off the manifests (their
        files stay on disk, never loaded) and are no longer reported as the last durable
        checkpoint. Only entries read by now count: a folder that was unreachable when this
        Checkpointer read it (a dropped mount) may hold newer checkpoints nobody looked at, and
        those are never unlisted because of this resume. A folder whose manifest was read but
        that is unreachable now is left as it is; its next manifest, written by a save or by
        :attr:`mount_replica`, leaves the abandoned ones off. :attr:`replica` and
        :attr:`mount_replica` are told too (see
        :meth:`~colabtui_remote.checkpoint.replica.Replicator.resumed_from`; the mount replica gets the
        folder's abandoned entries, read here).

        Args:
            info: the checkpoint resume took.
            at: when the run resumed, Unix seconds; default now.

        Returns:
            The local entries taken off (empty when none is newer than ``info``).

        Raises:
            RuntimeError: a save is in flight.
            OSError: a reachable folder's manifest could not be rewritten (the old one stays as
                it was); the replicas are told all the same.
        """
        at = time.time() if at is None else float(at)
        bad: list[CheckpointInfo] = []
        failure: OSError | None = None
        with self._cond:
            if self._job is not None:
                raise RuntimeError("resumed_from() while a save is in flight")
            self._resume_point = (info.step, at)
            for folder in (self._primary, self._fallback):
                if folder is None:
                    continue
                future = [e for e in folder.entries if e.step > info.step and e.saved_at <= at]
                if folder is self._primary:
                    self._abandoned_keys.update(entry_key(e) for e in future)
                paths = [e.path for e in folder.entries]
                cut = paths.index(info.path) + 1 if info.path in paths else len(paths)
                kept = [e for i, e in enumerate(folder.entries) if i < cut and e not in future]
                gone = [e for e in folder.entries if e not in kept]
                if not gone:
                    continue
                retained = merge_retained(folder.retained, [RetainedFile.of(e, _why(e, info))
                                                            for e in gone])
                if folder is self._primary and self._offline is not None:
                    folder.entries = kept  # unreachable: its next manifest leaves them off
                    folder.retained = retained
                    bad += gone
                    continue
                try:
                    write_manifest(folder.directory, kept, folder.io, retained=retained,
                                   trees=folder.trees)
                    folder.entries, folder.retained = kept, retained
                    folder.io.fsync_dir(folder.directory)
                except OSError as exc:
                    failure = failure or exc
                    continue
                bad += gone
        if self.replica is not None:
            self.replica.resumed_from(info.step, at)
        if self.mount_replica is not None:
            self.mount_replica.resumed_from(info.step, at, abandoned=self._folder_abandoned())
        for entry in bad:
            logger.info("unlisted %s (step %d): %s; the file is kept but never loaded",
                        entry.path, entry.step, _why(entry, info))
        if failure is not None:
            raise failure
        return bad

    def _abandoned(self, entry: CheckpointInfo) -> bool:
        """Whether ``entry`` (of the checkpoint folder) is of the future this run abandoned when
        it resumed: listed in the folder's manifest as read by then, with a greater step than
        the resume's, saved before it."""
        return entry_key(entry) in self._abandoned_keys

    def _folder_abandoned(self) -> set[tuple[str, str]]:
        """(file name, sha256) of the checkpoint folder's entries abandoned at the resume."""
        return set(self._abandoned_keys)

    def _prune(self, dropped: list[CheckpointInfo]) -> None:
        """Delete checkpoints the manifest no longer lists (it was already rewritten)."""
        for entry in dropped:
            inside = os.path.dirname(entry.path) == self.directory
            if os.path.isdir(entry.path):  # a folder checkpoint: the framework's own files
                remove_folder(entry.path)
                self._primary.trees.pop(os.path.basename(entry.path), None)
            else:
                remove_quietly(entry.path, self._io if inside else OS_IO)


def _why(entry: CheckpointInfo, resumed: CheckpointInfo) -> str:
    """Why ``entry`` was unlisted at the resume from ``resumed``."""
    return (f"saved before the resume at the earlier step {resumed.step}"
            if entry.step > resumed.step else "it failed verification on resume")
