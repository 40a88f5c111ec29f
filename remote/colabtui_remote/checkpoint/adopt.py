"""Checkpoints the Checkpointer did not write itself, listed in its manifest: a file fetched
from a replica at resume (:meth:`Adopting.adopt`), and a folder a framework wrote
(:meth:`Adopting.submit_folder`: the Hugging Face Trainer's ``checkpoint-500/``, or the folder
the Lightning and Keras integrations fill), mixed into
:class:`~colabtui_remote.checkpoint.writer.Checkpointer`.

A folder is announced the way a file is: on the writer thread it is made durable (every file
and folder in it fsynced, :func:`~.folders.make_durable`), each file's size and sha256 go into
the manifest entry, and only then is it listed, the oldest pruned to ``keep`` and the newest
sent to the replica. The framework's own rotation (the Trainer's ``save_total_limit``) and this
pruning agree: a listed folder the framework already deleted is taken off the list, a folder it
still needs (:attr:`Adopting.protected`, e.g. the Trainer's best checkpoint) is never pruned,
and every folder taken off the list by pruning is deleted, so none is left that the manifest
forgot. Folders moved aside at resume (unlisted, half-written) are removed by the next good
save.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ..schema import CheckpointInfo
from .errors import CheckpointError
from .folders import (
    FolderTree,
    is_aside_folder,
    is_folder_name,
    make_durable,
    remove_folder,
    verify_folder,
)
from .fs import remove_quietly, sha256_file

__all__ = ["Adopting"]


class Adopting:
    """Adopting files and folders into a :class:`~.writer.Checkpointer`'s manifest. It uses the
    writer's ``_cond``, ``_job``, ``_closing``, ``_primary``, ``_thread``, ``_run``,
    ``_job_type``, ``_free_name``, ``_publish``, ``_prune`` and ``replica``."""

    protected: Callable[[str], bool] | None = None
    """``protected(path)``: True for a listed folder the framework still needs (never pruned)."""

    def _protects(self, entry: CheckpointInfo) -> bool:
        return self.protected is not None and self.protected(entry.path)

    def submit_folder(self, path: str | os.PathLike, step: int, epoch: int | None,
                      framework: str, on_done: Any = None) -> bool:
        """Queue a folder a framework has written (``checkpoint-500`` in :attr:`directory`)
        for the writer thread: made durable, listed with each file's size and sha256, pruned,
        replicated. ``on_done`` as for :meth:`submit`.

        Returns:
            False, with nothing queued, when a save is in flight or the writer is closed.

        Raises:
            ValueError: ``path`` is not a folder checkpoint's name directly inside
                :attr:`directory` (``checkpoint-500``, ``ckpt-000000500``).
        """
        path = os.path.abspath(os.fspath(path))
        if os.path.dirname(path) != self.directory or not is_folder_name(os.path.basename(path)):
            raise ValueError(f"{path} is not a checkpoint folder (checkpoint-N or ckpt-N) "
                             f"directly inside {self.directory}")
        with self._cond:
            if self._job is not None or self._closing:
                return False
            self._job = self._job_type(state={}, step=int(step), epoch=epoch, on_done=on_done,
                             started_at=time.time(), bytes_total=None, folder=path,
                             framework=framework)
            if self._thread is None:
                import threading

                self._thread = threading.Thread(target=self._run, name="colabtui-ckpt-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    def _adopt_folder(self, job: Any) -> CheckpointInfo:
        """The writer thread's part of :meth:`submit_folder`."""
        assert job.folder is not None
        t0 = time.perf_counter()
        job.phase = "verifying"
        tree = make_durable(job.folder, job.framework)
        job.bytes_total = job.bytes_written = tree.bytes
        info = self._list_folder(job.folder, tree, step=job.step, epoch=job.epoch,
                                 saved_at=time.time(), seconds=round(time.perf_counter() - t0, 4))
        if self.replica is not None:
            self.replica.submit(info)
        return info

    def _list_folder(self, path: str, tree: FolderTree, *, step: int, epoch: int | None,
                     saved_at: float, seconds: float | None) -> CheckpointInfo:
        folder = self._primary
        info = CheckpointInfo(step=step, path=path, bytes=tree.bytes, sha256=tree.sha256,
                              saved_at=saved_at, seconds=seconds, epoch=epoch)
        with self._cond:
            # The same folder saved again (a resumed run reaching the step again), and folders
            # the framework rotated away itself, leave the list.
            folder.entries = [e for e in folder.entries if e.path != path
                              and (os.path.basename(e.path) not in folder.trees
                                   or os.path.isdir(e.path))]
            folder.trees[os.path.basename(path)] = tree
        dropped = self._publish(folder, info)
        self._prune(dropped)
        for name in os.listdir(folder.directory):
            if is_aside_folder(name):
                remove_folder(os.path.join(folder.directory, name))
        return info

    def adopt_folder(self, path: str | os.PathLike, name: str, tree: FolderTree, *, step: int,
                     saved_at: float, epoch: int | None = None) -> CheckpointInfo:
        """List a folder checkpoint fetched from a replica (resume in a new runtime) as
        ``name`` in :attr:`directory`. Not sent to :attr:`replica` (it came from there).

        Args:
            path: the fetched folder, under a temporary name inside :attr:`directory`; renamed
                to ``name`` (a folder of that name that is not listed is moved aside first).
            name: its name (``checkpoint-500``).
            tree: its files as its source lists them; checked after the rename.
            step: the step it holds.
            saved_at: when it was first saved, Unix seconds.
            epoch: its epoch, or None.

        Raises:
            RuntimeError: a save is in flight.
            CheckpointError: it does not hold ``tree`` (it is removed).
            OSError: it cannot be renamed or the manifest written.
        """
        from .folders import aside_folder

        with self._cond:
            if self._job is not None:
                raise RuntimeError("adopt_folder() while a save is in flight")
        final = os.path.join(self.directory, name)
        if os.path.lexists(final):
            os.replace(final, os.path.join(self.directory, aside_folder(name)))
        os.replace(os.fspath(path), final)
        try:
            verify_folder(final, tree)
            return self._list_folder(final, make_durable(final, tree.framework), step=step,
                                     epoch=epoch, saved_at=saved_at, seconds=None)
        except BaseException:
            remove_folder(final)
            raise

    def adopt(self, path: str | os.PathLike, *, step: int, sha256: str, saved_at: float,
              epoch: int | None = None) -> CheckpointInfo:
        """List a checkpoint file fetched from elsewhere (resume from Drive) in the folder's
        manifest, as if it had been saved here. Not sent to :attr:`replica` (it came from there).

        Args:
            path: the file, a temporary name inside :attr:`directory` (``.ckpt-….tmp-…``); it is
                renamed to a free ``ckpt-…`` name (an existing file is never overwritten).
            step: the step it holds.
            sha256: its sha256 as its source lists it; checked after the rename.
            saved_at: when it was first saved, Unix seconds.
            epoch: its epoch, or None.

        Returns:
            Its entry, now :attr:`last` (unless a newer one is listed).

        Raises:
            RuntimeError: a save is in flight.
            CheckpointError: the file does not hash to ``sha256`` (it is removed).
            OSError: it cannot be renamed or the manifest written.
        """
        with self._cond:
            if self._job is not None:
                raise RuntimeError("adopt() while a save is in flight")
        folder = self._primary
        final = os.path.join(folder.directory, self._free_name(step, folder))
        folder.io.replace(os.fspath(path), final)
        try:
            folder.io.fsync_dir(folder.directory)
            size, sha = sha256_file(final, folder.io)
            if sha != sha256:
                raise CheckpointError(f"{final}: sha256 {sha} differs from its source's {sha256}")
            info = CheckpointInfo(step=step, path=final, bytes=size, sha256=sha,
                                  saved_at=saved_at, seconds=None, epoch=epoch)
            dropped = self._publish(folder, info)
        except BaseException:
            remove_quietly(final, folder.io)
            raise
        self._prune(dropped)
        return info

