"""Saves and stops at a step boundary: when they are due, and how they are carried out.

The training thread calls :meth:`Saver.act` from ``Monitor.at_step_boundary`` when a command is
pending, SIGTERM arrived or the autosave is due. A save copies the tracked state to CPU (the
only stall) and hands it to the checkpoint writer's thread; a stop saves, waits until the
checkpoint is durable, then ends the loop. A save that fails never ends the run: its reason goes
to the command records and the checkpoint status. Ahead of the runtime's known limit (see
:mod:`.runtime`) the autosave is due at once, once a session (:meth:`Saver.schedule`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import schema
from .checkpoint.writer import Checkpointer
from .commands import INTERNAL_PREFIX, CommandBook

__all__ = ["NO_CHECKPOINT_DIR", "Saver"]

log = logging.getLogger("colabtui_remote.monitor")

NO_CHECKPOINT_DIR = "no checkpoint_dir was given to Monitor(); nothing to save to"


class Saver:
    """Carries out saves and stops for one run, on the training thread.

    Args:
        checkpointer: the writer, or None when the run has no checkpoint folder.
        commands: the command book the transports feed.
        tracked: returns what a checkpoint holds now (name → object or plain value).
        get_state: the run's state (``running``, ``saving``…).
        set_state: sets it.
        autosave_every: seconds between automatic checkpoints, or None.
        now: ``time.monotonic()`` at the start; the first autosave is due ``autosave_every``
            later.
        limit_at: when the runtime reaches its known maximum less a margin,
            ``time.monotonic()`` seconds (:attr:`~.runtime.RuntimeClock.save_at`; None: no
            known limit): the autosave is due then, once a session, autosave on or off.
    """

    def __init__(self, checkpointer: Checkpointer | None, commands: CommandBook,
                 tracked: Callable[[], dict[str, Any]], get_state: Callable[[], str],
                 set_state: Callable[[str], None], autosave_every: float | None,
                 now: float, limit_at: float | None = None) -> None:
        self.checkpointer = checkpointer
        self.commands = commands
        self._tracked = tracked
        self._get_state = get_state
        self._set_state = set_state
        self.autosave_every = autosave_every
        self.limit_at = float("inf") if limit_at is None else limit_at
        """When the save ahead of the runtime's limit is due, ``time.monotonic()`` seconds
        (inf: none, or done)."""
        self.next_autosave = min(now + autosave_every if autosave_every else float("inf"),
                                 self.limit_at)
        """When the next autosave is due, ``time.monotonic()`` seconds (inf: never)."""
        self.framework: Callable[[list[schema.CommandRecord]], None] | None = None
        """Set by a framework integration that writes its own checkpoints: a save or stop due
        (the commands taken; empty for an autosave) is handed to it instead of saved here."""

    def act(self, now: float, step: int, epoch: int | None) -> bool:
        """Carry out the pending commands, else the autosave when due. A save already in
        flight defers both to a later boundary. Returns True when a stop was carried out."""
        busy = self.busy
        if self.commands.has_pending() and not busy:
            records = self.commands.take_pending()
            self.schedule(now)
            if self.framework is not None:
                self.framework(records)
                return False
            if any(r.action == "stop" for r in records):
                return self.stop(records, step, epoch)
            self.save([r.id for r in records], step, epoch)
        elif now >= self.next_autosave and not busy:
            self.schedule(now)
            if self.framework is not None:
                self.framework([])
            else:
                self.save([], step, epoch)
        return False

    def schedule(self, now: float) -> None:
        """A save starts at ``now``: the next autosave is ``autosave_every`` later, or the
        limit's save when that comes first. Once it is due, a save at or after it is that save
        (it is not made twice a session)."""
        if now >= self.limit_at:
            self.limit_at = float("inf")
        every = self.autosave_every
        self.next_autosave = min(now + every if every else float("inf"), self.limit_at)

    def save(self, command_ids: list[str], step: int, epoch: int | None, wait: bool = False
             ) -> tuple[schema.CheckpointInfo | None, str | None]:
        """Save at ``step`` for these commands. With ``wait``, block until the write is durable
        and return (info, error); otherwise return at once and let the writer report to the
        command records."""
        ckpt = self.checkpointer
        if ckpt is None:
            if not wait:
                for cid in command_ids:
                    self.commands.finish(cid, error=NO_CHECKPOINT_DIR)
            return None, NO_CHECKPOINT_DIR
        last = ckpt.last
        if last is not None and last.step == step:
            for cid in command_ids:  # this step is already durable: nothing to write twice
                self.commands.finish(cid, checkpoint=last)
            return last, None
        outcome: dict[str, Any] = {}

        def settle(info: schema.CheckpointInfo | None, error: str | None) -> None:
            outcome.update(info=info, error=error)
            if not wait:
                for cid in command_ids:
                    self.commands.finish(cid, checkpoint=info, error=error)
                if self._get_state() == "saving":
                    self._set_state("running")
                if _from_laptop(command_ids):
                    _say(f"saved step {step} for the laptop" if info is not None
                         else f"the save at step {step} failed: {error}", info)

        def on_done(info: schema.CheckpointInfo | None, error: str | None) -> None:
            if error:
                log.warning("colabtui_remote: checkpoint at step %d failed: %s", step, error)
            settle(info, error)

        if not wait:
            self._set_state("saving")
        try:
            state = self.capture(step, epoch)
        except Exception as exc:  # a save must never end the run: a failed save, reported
            error = f"checkpoint at step {step} not saved: could not capture the training state: {exc}"
            ckpt.record_failure(error, exc)  # the status's last_error; logged there, once
            settle(None, error)
            return None, error
        if not self.submit(state, step, epoch, on_done) and wait:
            self.wait()  # a save was in flight: this one goes after it
            self.submit(state, step, epoch, on_done)
        if wait:
            self.wait()
        return outcome.get("info"), outcome.get("error")

    @property
    def busy(self) -> bool:
        """A save is in flight (a new one waits for a later boundary)."""
        return self.checkpointer is not None and self.checkpointer.busy

    def submit(self, state: dict, step: int, epoch: int | None, on_done: Any) -> bool:
        """Hand a captured state to the writer (see :meth:`Checkpointer.submit`); False when
        a save is in flight."""
        assert self.checkpointer is not None
        return self.checkpointer.submit(state, step, epoch, on_done)

    def wait(self) -> None:
        """Until the save in flight is durable (or failed)."""
        if self.checkpointer is not None:
            self.checkpointer.wait()

    def capture(self, step: int, epoch: int | None) -> dict:
        """The state a save at ``step`` writes (on the training thread; the only stall).

        Raises:
            CheckpointError: a tracked object cannot be captured."""
        assert self.checkpointer is not None
        return self.checkpointer.capture(self._tracked(), step, epoch)

    def stop(self, records: list[schema.CommandRecord], step: int, epoch: int | None) -> bool:
        """Save, then end the loop (returns True). If the save fails the run goes on (returns
        False): stopping then would lose the work since the last checkpoint."""
        self._set_state("stopping")
        try:
            info, error = self.save([], step, epoch, wait=True)
        except BaseException:  # a second interrupt while saving: not stopping for ever
            self._set_state("interrupted")
            for record in records:
                self.commands.finish(record.id, error="interrupted while saving")
            raise
        no_folder = self.checkpointer is None
        for record in records:
            if error and not (no_folder and record.action == "stop"):
                why = error if record.action == "save" else (
                    f"not stopped: the checkpoint failed ({error})")
                self.commands.finish(record.id, error=why)
            else:
                self.commands.finish(record.id, checkpoint=info)
        if error and not no_folder:
            self._set_state("running")
            return False
        self._set_state("stopped")
        if _from_laptop([r.id for r in records]):
            _say(f"stopped at step {step} from the laptop", info)
        return True

    def interrupt(self, step: int, epoch: int | None, *, save: bool) -> None:
        """The loop is interrupted at this boundary: save (when ``save`` and there is a
        folder; waiting until it is durable), state ``interrupted``, and say so."""
        self._set_state("interrupted")
        info, error = self.save([], step, epoch, wait=True) if save and self.checkpointer \
            else (None, None)
        self._set_state("interrupted")
        if error:
            _say(f"interrupted at step {step}; the checkpoint failed: {error}", None)
        else:
            _say(f"interrupted at step {step}" + ("" if info else "; no checkpoint saved"),
                 info)

    def finish(self, step: int, epoch: int | None) -> None:
        """The run completed: save a last checkpoint (waiting for it), then ``finished``."""
        if self.checkpointer is not None:
            self._set_state("saving")
            self.save([], step, epoch, wait=True)
        self._set_state("finished")


def _from_laptop(command_ids: list[str]) -> bool:
    return any(not cid.startswith(INTERNAL_PREFIX) for cid in command_ids)


def _say(what: str, info: schema.CheckpointInfo | None) -> None:
    """One line in the notebook's output (a save or stop from the laptop, an interrupt)."""
    where = f" ({info.bytes / 1e6:.1f} MB, {info.path})" if info is not None else ""
    print(f"colabtui: {what}{where}", flush=True)
