"""Saves and stops of a distributed job: :class:`~..saving.Saver`'s calls, made by every rank
at the same boundary (the flags agreed there say which), each with its collectives.

- Replicated state (DDP, or nothing sharded): every rank captures its own part (its RNG
  states, its tracked data loaders' positions and generators) and rank 0 gathers them; rank 0
  captures the rest and writes the usual checkpoint file, whose ``"ranks"`` holds every
  rank's part.
- Sharded state (DTensors: FSDP2): every rank writes its shards with DCP's ``async_save``
  (:mod:`.sharded`) into a temporary folder all ranks name alike without asking
  (``.dcp-000000500.tmp-<job>-<n>``); once DCP finished on every rank, rank 0 writes
  ``colabtui-state.pt`` there, renames it ``ckpt-000000500`` and lists it.

A stop waits until the checkpoint is durable on rank 0, which then tells every rank whether
to end (a failed save ends no rank). Command records, the run's state and what the notebook
prints are rank 0's, as in one process.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .. import schema
from ..checkpoint.errors import CheckpointError
from ..checkpoint.folders import folder_names
from ..saving import NO_CHECKPOINT_DIR, Saver
from .sharded import FRAMEWORK, STATE_FILE

__all__ = ["JobSaver"]

log = logging.getLogger("colabtui_remote.distributed")


class JobSaver(Saver):
    """A :class:`~..saving.Saver` on every rank of a job.

    Set by the job when it starts (:meth:`.job.Job.start`): :attr:`job`, and whether rank 0
    has somewhere to save (:attr:`saves`, agreed).
    """

    job: Any = None
    saves = False
    """Rank 0 has a checkpoint folder (agreed when the job starts)."""
    sharded = False
    """The tracked model holds DTensors: checkpoints are DCP folders (agreed at start)."""

    _parts: list[Any] | None = None
    _parts_later: Any = None
    _stager: Any = None
    _count = 0
    directory = ""
    """Rank 0's checkpoint folder, where every rank writes a sharded save's temporary folder
    (agreed at start)."""
    nonce = ""
    """This job's mark in those temporary names (agreed at start)."""
    saved_step: int | None = None
    """The step of the last sharded save started (or resumed from): the same on every rank."""
    _future: Any = None
    _commit: threading.Thread | None = None

    @property
    def main(self) -> bool:
        return self.job.ranks.is_main

    # ------------------------------------------------------------------ the calls

    def save(self, command_ids: list[str], step: int, epoch: int | None, wait: bool = False
             ) -> tuple[schema.CheckpointInfo | None, str | None]:
        if not self.saves:
            return super().save(command_ids, step, epoch, wait) if self.main \
                else (None, NO_CHECKPOINT_DIR)
        groups = self.job.groups
        if self.sharded:
            if self.saved_step == step:  # every rank knows: this step is saved (or being)
                return self._saved_again(command_ids, step) if self.main else (None, None)
            self.saved_step = step
            self._count += 1
            folder = os.path.join(self.directory, f".dcp-{step:09d}.tmp-{self.nonce}-{self._count}")
            error = self._start_sharded(folder, step)
            # gathered off the training thread: the stall is the staging (and this rank's part)
            self._parts_later = groups.gather_later(error or self.job.rank_part(step, epoch))
            self._folder_path = folder
            if not self.main:
                if wait:
                    self._drain()
                return None, None
            return super().save(command_ids, step, epoch, wait)
        self._parts = groups.gather(self.job.rank_part(step, epoch))
        if not self.main:
            return None, None
        return super().save(command_ids, step, epoch, wait)

    def stop(self, records: list[schema.CommandRecord], step: int, epoch: int | None) -> bool:
        if self.main:
            stopped = super().stop(records, step, epoch)
        else:
            self.save([], step, epoch, wait=True)
            stopped = False
        return bool(self.job.groups.broadcast(stopped))

    def interrupt(self, step: int, epoch: int | None, *, save: bool) -> None:
        if self.main:
            super().interrupt(step, epoch, save=save)
        elif save and self.saves:
            self.save([], step, epoch, wait=True)

    def finish(self, step: int, epoch: int | None) -> None:
        records = self.job.settle()
        if self.main:
            super().finish(step, epoch)
            last = self.checkpointer.last if self.checkpointer is not None else None
            for record in records:  # a save or stop asked for at the last step: this is it
                self.commands.finish(record.id, checkpoint=last,
                                     error=None if last is not None else NO_CHECKPOINT_DIR)
        elif self.saves:
            self.save([], step, epoch, wait=True)

    # ------------------------------------------------------------------ rank 0's hooks

    def capture(self, step: int, epoch: int | None) -> dict:
        if self.sharded:  # the ranks' parts join it on the commit thread
            return self.job.split.capture_rest(self._tracked(), step, epoch, None)
        parts = self._parts or []
        _check_parts(parts)
        state = super().capture(step, epoch)
        state["ranks"] = parts
        return state

    @property
    def busy(self) -> bool:
        return super().busy or (self._commit is not None and self._commit.is_alive())

    def submit(self, state: dict, step: int, epoch: int | None, on_done: Any) -> bool:
        if not self.sharded:
            return super().submit(state, step, epoch, on_done)
        folder, future, parts = self._folder_path, self._future, self._parts_later
        self._commit = threading.Thread(
            target=self._commit_folder,
            args=(folder, future, parts, state, step, epoch, on_done),
            name="colabtui-dcp-commit", daemon=True)
        self._commit.start()
        return True

    def wait(self) -> None:
        if self._commit is not None:
            self._commit.join()
        super().wait()

    # ------------------------------------------------------------------ sharded saves

    def _saved_again(self, command_ids: list[str], step: int
                     ) -> tuple[schema.CheckpointInfo | None, str | None]:
        """Rank 0: a save at a step saved already answers with that checkpoint, once it is
        durable (or with why it failed)."""
        self.wait()
        last = self.checkpointer.last
        if last is not None and last.step == step:
            info, error = last, None
        else:
            info, error = None, self.checkpointer.last_error or f"the save at step {step} failed"
        for cid in command_ids:
            self.commands.finish(cid, checkpoint=info, error=error)
        return info, error

    def _folder(self, step: int) -> str:
        directory = self.checkpointer.directory
        taken = set(folder_names(os.listdir(directory)))
        taken |= {os.path.basename(e.path) for e in self.checkpointer.list()}
        name, n = f"ckpt-{step:09d}", 1
        while name in taken:
            n += 1
            name = f"ckpt-{step:09d}-{n}"
        return os.path.join(directory, name)

    def _drain(self) -> None:
        """Wait for this rank's last ``async_save`` and the gather of its part (never two in
        flight on one group)."""
        for future in (self._future, self._parts_later):
            if future is None:
                continue
            try:
                future.result()
            except Exception as exc:  # reported by rank 0's commit; here only logged
                log.warning("colabtui_remote: rank %d's sharded save failed: %s",
                            self.job.ranks.rank, exc)
        self._future = self._parts_later = None

    def _start_sharded(self, folder: str, step: int) -> str | None:
        """Stage this rank's shards and start writing them; the error, or None."""
        import torch.distributed.checkpoint as dcp

        self._drain()  # the staging buffers are reused: the last save has read them
        try:
            self._future = dcp.async_save(self.job.split.state_dict(), checkpoint_id=folder,
                                          process_group=self.job.groups.checkpoint,
                                          async_stager=self._staging())
        except Exception as exc:
            return f"could not stage the sharded state at step {step}: {type(exc).__name__}: {exc}"
        return None

    def _staging(self) -> Any:
        """The stager every sharded save of this rank uses: DCP's ``DefaultStager`` keeps its
        CPU buffers (pinned with CUDA), so after the first save staging is a copy into memory
        already there. Closed by :meth:`close_staging`."""
        if self._stager is None:
            import torch
            from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

            cuda = torch.cuda.is_available()
            self._stager = DefaultStager(StagingOptions(
                use_pinned_memory=cuda, use_shared_memory=False, use_async_staging=False,
                use_non_blocking_copy=False))
        return self._stager

    def close_staging(self) -> None:
        """After the last save (the Monitor closes): the staging buffers go."""
        self._drain()
        stager, self._stager = self._stager, None
        if stager is not None:
            stager.close()

    def _commit_folder(self, folder: str, future: Any, parts: Any, state: dict, step: int,
                       epoch: int | None, on_done: Any) -> None:
        """Rank 0, on its own thread: once DCP finished on every rank and every rank's part
        is here, write the rest of the state beside the shards and hand the folder to the
        writer (made durable, listed)."""
        from ..checkpoint.fs import atomic_write
        from ..checkpoint.state import HashingWriter, save_state

        try:
            state["ranks"] = parts.result()
            _check_parts(state["ranks"])
            future.result()
            atomic_write(os.path.join(folder, STATE_FILE),
                         lambda f: save_state(state, HashingWriter(f, lambda n: None)))
            final = self._folder(step)
            os.replace(folder, final)  # every rank wrote into the same temporary name
            folder = final
        except Exception as exc:
            error = f"sharded checkpoint at step {step} not saved: {type(exc).__name__}: {exc}"
            self.checkpointer.record_failure(error, exc)
            on_done(None, error)
            return
        ckpt = self.checkpointer
        for _ in range(3):
            if ckpt.submit_folder(folder, step, epoch, FRAMEWORK, on_done):
                return
            ckpt.wait()  # a save before this one is still being written
        error = f"sharded checkpoint at step {step} not listed: the checkpoint writer is closed"
        ckpt.record_failure(error)
        on_done(None, error)



def _check_parts(parts: list[Any]) -> None:
    """Raises CheckpointError when a rank could not capture its part (it sent why)."""
    for rank, part in enumerate(parts):
        if isinstance(part, str):
            raise CheckpointError(f"rank {rank}: {part}")
