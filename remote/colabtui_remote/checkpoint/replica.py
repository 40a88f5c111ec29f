"""Copies of local checkpoints beyond the runtime's disk, made on one background thread.

A :class:`Replicator` takes each checkpoint once it is durable locally (a
:class:`~colabtui_remote.schema.CheckpointInfo`), copies it to a :class:`ReplicaDestination`
(Google Drive through its API, or a mounted Drive folder that was unreachable under a save),
compares the md5 the destination reports with the local file's, and only then lists it in the
destination's ``manifest.json``; then it prunes there to ``keep``. Failures (network, expired
credentials, rate limits, a dropped mount, a wrong md5) leave the local copy as it is, are shown
in :meth:`Replicator.status` and are retried with backoff. Training never waits for it.

The destination's manifest has the one format of :mod:`.manifest` (so a mounted folder stays
loadable by :func:`~colabtui_remote.checkpoint.resume.load_resumable`), with the replica's
three fields per entry (md5, verified_at, file_id).

A manifest there that does not parse is never overwritten: it is kept under another name
(``manifest.unreadable-<UTC time>.json``) before a new one is written, and the files it might
list are never pruned (pruning only touches entries of the new manifest).

After a resume (:meth:`Replicator.resumed_from`) the entries that were read listed there by
then, with a greater step and saved before the resume, are an abandoned future, and entries
whose download failed their md5 or sha256 are unusable (:meth:`Replicator.unlist`): both are
left off the next manifest written there (their files stay, unlisted, and are named in its
``retained`` list, so no later session deletes them either), never count toward ``keep`` and are
never reported as verified. Entries never read before the resume (the destination was
unreachable then) are never unlisted because of it: a newer checkpoint there stays listed, and
``keep`` applies there by ``saved_at`` as usual.

After each manifest written there, what killed copies and prunes left (unlisted ``ckpt-*``
files and temporary names older than the newest listed checkpoint) is removed by the rule of
:mod:`.reclaim`; never in a session that kept a manifest there aside, never while one kept aside
is there, and on a mounted folder only while its Checkpointer holds the folder's lock.

Which destination a folder or URL gets is :mod:`.destinations`'; reading a checkpoint back from
one at resume is :mod:`.resume`'s.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterable

from ..schema import CheckpointInfo, ReplicaStatus, UploadProgress
from .errors import CheckpointError, ManifestUnreadable, ReplicaChecksumError
from .folders import pack_folder, packed_name
from .fs import hash_local, remove_quietly, temp_name
from .manifest import ManifestEntry, RetainedFile, checkpoint_name, is_checkpoint_name, read_trees
from .reclaim import ReplicaReclaiming
from .remote import Progress, RemoteCopy, ReplicaDestination

__all__ = ["Progress", "RemoteCopy", "ReplicaDestination", "Replicator"]

logger = logging.getLogger("colabtui_remote.replica")


# --------------------------------------------------------------------------- the thread


class Replicator(ReplicaReclaiming):
    """Copies local checkpoints to one destination on a daemon thread, newest first.

    Args:
        dest: the destination.
        keep: checkpoints kept listed there (older ones are pruned there after a new one is
            listed), at least 1.
        retry_min_s: seconds before the first retry after a failure; doubles (with ±25 %
            jitter) on each further failure up to ``retry_max_s``. A rate limit that says how
            long to wait (``retry_after``) is obeyed instead.
        retry_max_s: the longest wait between retries, also the wait after an ``error``
            (credentials, folder not shared).
        start: start the thread now (it reads the destination's manifest at once, so
            :meth:`status` shows what is already verified there).

    The thread is a daemon; :meth:`close` lets it finish queued copies for a bounded time.
    """

    def __init__(self, dest: ReplicaDestination, keep: int = 3, *, retry_min_s: float = 5.0,
                 retry_max_s: float = 300.0, start: bool = True) -> None:
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        self.dest = dest
        self.keep = keep
        self.retry_min_s = float(retry_min_s)
        self.retry_max_s = max(float(retry_max_s), self.retry_min_s)
        self._cond = threading.Condition()
        self._queue: dict[str, CheckpointInfo] = {}
        self._entries: list[ManifestEntry] | None = None
        self._names: dict[str, str] = {}
        self._md5: dict[str, str] = {}
        self._uploading: UploadProgress | None = None
        self._failures = 0
        self._fail_state: str | None = None
        self._retry_at = 0.0  # time.monotonic()
        self._next_retry_at: float | None = None  # Unix seconds, for the status
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._unreadable: str | None = None  # why the manifest there does not parse
        self._abandoned: set[tuple[str, str]] = set()  # (file, sha256): see resumed_from
        self._unusable: set[tuple[str, str]] = set()  # (file, sha256) that failed a download
        self._if_newer: set[str] = set()  # local paths queued by submit(only_if_newer=True)
        self._read_tried = False  # a read of the manifest there has finished (or failed)
        self._aside: str | None = None  # where it was kept, until a new one is written
        self._aside_seen = False  # one was kept aside in this session: reclaim nothing
        self._retained_there: list[RetainedFile] | None = None  # None: read none yet
        self._closing = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Start the thread (once)."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"colabtui-replica-{self.dest.kind}")
                self._thread.start()

    # ---- any thread

    def submit(self, info: CheckpointInfo, *, only_if_newer: bool = False) -> None:
        """Queue a durable local checkpoint for copying. Returns at once.

        Args:
            info: the checkpoint.
            only_if_newer: copy it only when it is newer (``saved_at``) than every checkpoint
                listed there and not listed there itself (a local checkpoint found at start
                whose upload an earlier session did not finish); otherwise it is dropped from
                the queue once the manifest there is read.
        """
        with self._cond:
            if self._closing:
                logger.warning("replica %s closed: %s is not copied", self.dest.dest, info.path)
                return
            if info.path not in self._queue and only_if_newer:
                self._if_newer.add(info.path)
            elif not only_if_newer:
                self._if_newer.discard(info.path)
            self._queue[info.path] = info
            self._cond.notify_all()

    def retry_now(self) -> None:
        """Skip the current backoff wait."""
        with self._cond:
            self._retry_at = 0.0
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        """Whether the thread is alive (after :meth:`close`: a copy still under way)."""
        return self._thread is not None and self._thread.is_alive()

    def settled(self) -> bool:
        """True when every submitted checkpoint is verified there (or dropped) and the last
        attempt succeeded."""
        with self._cond:
            return (not self._queue and self._uploading is None and self._fail_state is None
                    and self._entries is not None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until :meth:`settled`; False after ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._queue and self._entries is not None and self._uploading is None
                and self._fail_state is None, timeout)

    def verified(self) -> list[ManifestEntry]:
        """The destination's manifest as last read or written, oldest first (empty before the
        first read), less the entries :meth:`resumed_from` takes off."""
        with self._cond:
            return list(self._entries or [])

    def resumed_from(self, step: int, at: float | None = None, *,
                     abandoned: Iterable[tuple[str, str]] = (),
                     wait_s: float = 20.0) -> list[ManifestEntry]:
        """Record that this run resumed at ``step``.

        Entries read listed there by now (by this Replicator, or by the caller: ``abandoned``)
        with a step greater than ``step`` and saved before ``at`` are an abandoned future (the
        run goes on from ``step``): they are left off the next manifest written there. Their
        files stay there (unlisted, never deleted by this Replicator; a new checkpoint never
        takes their names); they never count toward ``keep`` and :meth:`status` never reports
        them as verified. Entries that were never read before this call (the destination was
        unreachable) are never unlisted because of it. Queued local checkpoints of that future
        are not copied.

        When the thread is running and has not finished reading the manifest there yet, this
        waits up to ``wait_s`` seconds for that read (so what is there at the resume is known).

        Args:
            step: the step the run resumed at (the checkpoint's step).
            at: when, Unix seconds; default now. Checkpoints saved after it are this run's.
            abandoned: ``(file name, sha256)`` of entries the caller read listed there at the
                resume that belong to that future (a :class:`Checkpointer` reading the mounted
                folder it writes to).
            wait_s: the longest wait for the first read there, seconds.

        Returns:
            The entries known to be listed there now that the next manifest leaves off.
        """
        at = time.time() if at is None else float(at)
        with self._cond:
            thread = self._thread
            if thread is not None and thread.is_alive():
                self._cond.wait_for(lambda: self._read_tried, wait_s)
            self._abandoned.update(abandoned)
            self._abandoned.update((e.file, e.sha256) for e in self._entries or []
                                   if e.step > step and e.saved_at <= at)
            for path, info in list(self._queue.items()):
                if info.step > step and info.saved_at <= at:
                    del self._queue[path]
                    self._if_newer.discard(path)
                    logger.info("replica %s: not copying %s (step %d): saved before the resume "
                                "at step %d", self.dest.dest, path, info.step, step)
        return self._refilter(f"saved before the resume at the earlier step {step}")

    def unlist(self, entries: Iterable[ManifestEntry]) -> list[ManifestEntry]:
        """Leave ``entries`` (listed there; their download failed its md5 or sha256) off the
        next manifest written there, as :meth:`resumed_from` does with an abandoned future:
        their files stay, never deleted by this Replicator; they never count toward ``keep``
        and are never reported as verified.

        Returns:
            Those of ``entries`` known to be listed there now.
        """
        with self._cond:
            self._unusable.update((e.file, e.sha256) for e in entries)
        return self._refilter("its download failed its checksum")

    def _refilter(self, why: str) -> list[ManifestEntry]:
        with self._cond:
            before = list(self._entries or [])
            if self._entries is not None:
                self._entries = self._listed(self._entries)
            gone = [e for e in before if e not in (self._entries or [])]
            self._cond.notify_all()
        for e in gone:
            logger.info("replica %s: %s (step %d) is unlisted at the next manifest written there "
                        "(%s); the file is kept", self.dest.dest, e.file, e.step, why)
        return gone

    def _listed(self, entries: list[ManifestEntry]) -> list[ManifestEntry]:
        """``entries`` less the abandoned future and the unusable ones (call with the lock)."""
        return [e for e in entries if (e.file, e.sha256) not in self._unusable
                and (e.file, e.sha256) not in self._abandoned]

    def status(self) -> ReplicaStatus:
        """The ``checkpoint.replica`` block of the status."""
        with self._cond:
            pending = len(self._queue)
            if self._uploading is not None:
                state = "uploading"
            elif self._fail_state is not None and (pending or self._entries is None):
                state = self._fail_state
            elif pending or self._entries is None:
                state = "waiting"
            else:
                state = "ok"
            newest = self._entries[-1] if self._entries else None
            verified = None if newest is None else newest.as_copy()
            return ReplicaStatus(
                dest=self.dest.dest, kind=self.dest.kind, state=state, verified=verified,
                uploading=self._uploading, pending=pending, last_error=self._last_error,
                last_error_at=self._last_error_at,
                next_retry_at=self._next_retry_at if self._fail_state else None)

    def close(self, timeout: float | None = 300.0) -> int:
        """Stop taking checkpoints; let the thread copy what is queued for up to ``timeout``
        seconds. It gives up earlier when the next retry would come after that, or when the
        destination refuses (state ``error``: credentials, folder not shared). A copy not
        verified by then stays local and is reported (printed and logged).

        Returns:
            How many queued checkpoints were not verified there.
        """
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
            self._cond.notify_all()
            thread = self._thread
            queued = len(self._queue)
        if thread is not None:
            if queued and thread.is_alive():  # the notebook cell seems stuck otherwise: say why
                limit = "" if timeout is None else f" (up to {timeout:g} s)"
                print(f"colabtui: copying {queued} checkpoint(s) to {self.dest.dest} before "
                      f"closing{limit}…", flush=True)
            thread.join(None if timeout is None else timeout + 1.0)
        with self._cond:
            left = sorted(self._queue.values(), key=lambda i: i.saved_at)
        if left:
            newest = left[-1]
            why = f": {self._last_error}" if self._last_error else ""
            message = (f"colabtui: {len(left)} checkpoint(s) not verified at {self.dest.dest}; "
                       f"the newest (step {newest.step}) is kept locally at {newest.path}{why}")
            logger.warning("%s", message)
            print(message, flush=True)
        return len(left)

    # ---- the thread

    def _next(self) -> tuple[bool, CheckpointInfo | None]:
        """Wait for work; (False, None) when the thread should end."""
        with self._cond:
            while True:
                now = time.monotonic()
                work = bool(self._queue) or self._entries is None
                if self._closing and (not self._queue or now >= self._deadline
                                      or self._retry_at > self._deadline
                                      or self._fail_state == "error"):  # needs the user
                    return False, None
                if work and now >= self._retry_at:
                    if not self._queue:
                        return True, None
                    newest = max(self._queue.values(), key=lambda i: (i.saved_at, i.step))
                    return True, newest
                wait = self._retry_at - now if work else None
                if self._closing:
                    wait = min(wait if wait is not None else 1e9, self._deadline - now)
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            go, info = self._next()
            if not go:
                return
            try:
                if info is None:
                    entries = self._read_entries()
                    with self._cond:
                        self._entries = entries
                else:
                    self._copy(info)
            except Exception as exc:
                self._failed(exc)
            else:
                with self._cond:
                    self._failures, self._fail_state, self._next_retry_at = 0, None, None
                    self._retry_at = 0.0
            finally:
                with self._cond:
                    self._uploading = None
                    self._cond.notify_all()

    def _drop(self, info: CheckpointInfo, why: str) -> None:
        with self._cond:
            self._queue.pop(info.path, None)
            self._if_newer.discard(info.path)
        logger.info("replica %s: not copying %s: %s", self.dest.dest, info.path, why)

    def _read_entries(self) -> list[ManifestEntry]:
        """The manifest there as the next one is to list it (less what :meth:`resumed_from`
        takes off); see :meth:`_read_listed`."""
        entries = self._read_listed()
        with self._cond:
            return self._listed(entries)

    def _read_listed(self) -> list[ManifestEntry]:
        """The manifest there; [] when there is none or it does not parse (then it is kept
        aside just before the next manifest is written, never before)."""
        if self._aside is not None:
            return []  # kept aside already; the next write replaces it
        try:
            listing = self._read_manifest()
        except ManifestUnreadable as exc:
            self._retained_there = None
            if self._unreadable != str(exc):
                self._unreadable = str(exc)
                # Nothing is done yet, and a resume may stop the run before anything is: the
                # warning comes when the manifest is actually kept aside.
                note = (f"{exc}. Nothing there was changed; before this run lists a checkpoint "
                        "there, that manifest is kept under another name (no file it may list "
                        "is deleted or overwritten)")
                logger.info("%s", note)
                with self._cond:
                    self._last_error, self._last_error_at = note, time.time()
            return []
        self._unreadable = None
        entries, self._retained_there = listing or ([], None)
        return entries

    def _read_manifest(self) -> tuple[list[ManifestEntry], list[RetainedFile] | None] | None:
        """``dest.read_listing()``; marks that a read was tried (see :meth:`resumed_from`)."""
        try:
            return self.dest.read_listing()
        finally:
            with self._cond:
                self._read_tried = True
                self._cond.notify_all()

    def _write_manifest(self, entries: list[ManifestEntry], retained: list[RetainedFile]) -> None:
        if self._unreadable is not None and self._aside is None:
            self._aside_seen = True
            self._aside = self.dest.set_aside_manifest()
            note = (f"{self._unreadable}; kept it as {self._aside} and started a new manifest "
                    "(no file it may list is deleted or overwritten)")
            logger.warning("%s", note)
            with self._cond:
                self._last_error, self._last_error_at = note, time.time()
        self.dest.write_manifest(entries, retained)
        self._aside = self._unreadable = None
        self._retained_there = retained

    def _copy(self, info: CheckpointInfo) -> None:
        path = info.path
        if not os.path.exists(path):
            self._drop(info, "no longer kept locally")
            return
        entries = self._read_entries()
        with self._cond:
            self._entries = entries
        if any(e.sha256 == info.sha256 for e in entries):
            self._drop(info, "already there")
            return
        with self._cond:
            if_newer = path in self._if_newer
        if if_newer and any(e.saved_at >= info.saved_at for e in entries):
            self._drop(info, "a newer checkpoint is already there")
            return
        if sum(1 for e in entries if e.saved_at > info.saved_at) >= self.keep:
            self._drop(info, f"{self.keep} newer checkpoints are already there")
            return
        tree = read_trees(os.path.dirname(path)).get(os.path.basename(path)) \
            if os.path.isdir(path) else None
        if os.path.isdir(path) and tree is None:
            self._drop(info, "no longer listed locally")
            return
        packed = packed_bytes = None
        md5 = self._md5.get(path)
        if tree is not None:  # a folder checkpoint goes as one tar (see .folders)
            packed = os.path.join(os.path.dirname(path), temp_name(packed_name(
                os.path.basename(path))))
            try:
                with open(packed, "xb") as out:
                    packed_bytes, md5 = pack_folder(path, tree, out)
            except (CheckpointError, FileNotFoundError) as exc:
                remove_quietly(packed)
                self._drop(info, f"the local folder no longer matches its manifest ({exc})")
                return
            except BaseException:
                remove_quietly(packed)
                raise
        elif md5 is None:
            try:
                size, sha, md5 = hash_local(path)
            except FileNotFoundError:  # pruned locally meanwhile
                self._drop(info, "no longer kept locally")
                return
            if size != info.bytes or sha != info.sha256:
                self._drop(info, "the local file no longer matches its manifest (changed or "
                                 "corrupt)")
                with self._cond:
                    self._last_error = (f"{path} no longer matches its manifest sha256; it is "
                                        "not copied")
                    self._last_error_at = time.time()
                return
            self._md5[path] = md5
        name = self._names.get(path)
        if name is None:  # never overwrite a file there that is not ours
            taken = self.dest.names() | {e.file for e in entries}
            n, base = 1, os.path.basename(path)
            name = packed_name(base) if tree is not None else base \
                if is_checkpoint_name(base) else checkpoint_name(info.step)
            while name in taken:
                n += 1
                name = packed_name(f"{base}-{n}") if tree is not None \
                    else checkpoint_name(info.step, n)
            self._names[path] = name
        started = time.time()
        with self._cond:
            self._uploading = UploadProgress(step=info.step, bytes_sent=0, bytes_total=info.bytes,
                                             started_at=started)

        def progress(sent: int, total: int) -> None:
            with self._cond:
                self._uploading = UploadProgress(step=info.step, bytes_sent=int(sent),
                                                 bytes_total=int(total), started_at=started)

        try:
            copy = self.dest.put(packed or path, name, progress=progress, md5=md5)
        finally:
            if packed is not None:
                remove_quietly(packed)
        where = f"{self.dest.dest}/{name}"
        size = packed_bytes if packed_bytes is not None else info.bytes
        if copy.md5 != md5 or (copy.bytes is not None and copy.bytes != size):
            raise ReplicaChecksumError(
                f"{where}: the copy there has md5 {copy.md5} and {copy.bytes} bytes, the local "
                f"file {path} has md5 {md5} and {size} bytes; not verified, will retry")
        entry = ManifestEntry(file=name, step=info.step, bytes=info.bytes, sha256=info.sha256,
                             saved_at=info.saved_at, md5=md5, verified_at=time.time(),
                             file_id=copy.file_id, epoch=info.epoch, seconds=info.seconds,
                             tree=tree, packed_bytes=packed_bytes)
        listed = self._read_listed()  # again: merge with what is there now
        with self._cond:
            current = self._listed(listed)
        merged = sorted([e for e in current if e.file != name] + [entry],
                        key=lambda e: (e.saved_at, e.step))
        kept, dropped = merged[-self.keep:], merged[:-self.keep]
        self._write_manifest(kept, self._retained_for(listed, current, merged))
        for e in listed:
            if e not in current:
                logger.info("replica %s: unlisted %s (step %d): saved before this run resumed "
                            "at an earlier step, or it failed its checksum when downloaded; the "
                            "file is kept there", self.dest.dest, e.file, e.step)
        with self._cond:
            self._entries = kept
        logger.info("replica %s: step %d verified (md5 %s)", where, info.step, md5)
        for old in dropped:
            try:
                self.dest.delete(old)
            except Exception as exc:  # listed nowhere now; reclaimed later if it stays
                logger.warning("replica %s: could not delete %s: %s", self.dest.dest, old.file, exc)
        self._reclaim_there(kept)  # before the queue empties: a mount's writer waits till then
        with self._cond:
            self._queue.pop(path, None)
            self._if_newer.discard(path)
            self._names.pop(path, None)
            self._md5.pop(path, None)

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, ReplicaChecksumError):
            state, retry_after = "waiting", None
        elif isinstance(exc, OSError | ImportError):
            state, retry_after = self.dest.failure(exc)
        else:
            logger.exception("replica %s: unexpected error", self.dest.dest)
            state, retry_after = "error", None
        try:
            self.dest.reset()
        except Exception:
            logger.exception("replica %s: reset failed", self.dest.dest)
        with self._cond:
            self._failures += 1
            if retry_after is not None:
                delay = max(0.0, float(retry_after))
            elif state == "error":
                delay = self.retry_max_s
            else:
                # The exponent is capped: a float overflow here would end the thread.
                base = min(self.retry_max_s,
                           self.retry_min_s * 2.0 ** min(self._failures - 1, 60))
                delay = min(self.retry_max_s, base * random.uniform(0.75, 1.25))
            message = (str(exc) if isinstance(exc, OSError) and str(exc)
                       else f"{type(exc).__name__}: {exc}")
            self._fail_state = state
            self._last_error, self._last_error_at = message, time.time()
            self._retry_at = time.monotonic() + delay
            self._next_retry_at = time.time() + delay
        logger.warning("replica %s: %s (%s; retry in %.0f s)", self.dest.dest, message, state,
                       delay)
