"""What the framework callbacks share: the bridge between a framework's own loop and a
:class:`~colabtui_remote.monitor.Monitor`.

The framework's step end is the run's step boundary: the bridge reports the step there
(:meth:`FrameworkBridge.boundary`), and the Monitor's Saver hands it the saves and stops that are
due (commands from the laptop, SIGTERM, the autosave) instead of saving tracked objects itself.
The callback then asks the framework for its own checkpoint (the Trainer's
``control.should_save``, Lightning's ``trainer.save_checkpoint``, Keras' weights and optimizer
variables); once that folder is written, :meth:`FrameworkBridge.saved` has the Checkpointer make
it durable and list it, and the commands' records end ``done`` with it, or ``failed`` with the
reason. A stop waits until the checkpoint is durable; if it is not, the run goes on (stopping
then would lose the work since the last checkpoint). Nothing here raises into the training loop
once training has started; set-up errors are raised before it starts, with what to change.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from ..checkpoint.folders import is_folder_name
from ..checkpoint.resume import find_resumable_folder
from ..commands import INTERNAL_PREFIX
from ..lifecycle import watch_cells
from ..monitor import Monitor
from ..saving import NO_CHECKPOINT_DIR
from ..schema import CheckpointInfo, CommandRecord

__all__ = ["FrameworkBridge", "IntegrationError", "check_writable", "free_folder"]

log = logging.getLogger("colabtui_remote.integrations")


class IntegrationError(ValueError):
    """A framework is set up in a way its colabtui callback cannot work with (two colabtui
    callbacks on one trainer, checkpoints going to another folder than the Monitor's, a folder
    that cannot be written); raised before training starts, the message says what to change."""


def say(line: str) -> None:
    """One line in the notebook's output, as the Monitor prints them."""
    print(f"colabtui: {line}", flush=True)


def check_writable(directory: str, what: str) -> None:
    """Make sure a file can be created in ``directory`` (created if missing).

    Raises:
        IntegrationError: it cannot; the message names the folder, the error and ``what`` to
            change.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".colabtui-probe-"):
            pass
    except OSError as exc:
        raise IntegrationError(f"cannot write checkpoints in {directory}: {exc}; {what}") from None


def free_folder(directory: str, step: int) -> str:
    """A folder checkpoint's path in ``directory`` for ``step`` that does not exist yet:
    ``ckpt-000000500``, then ``ckpt-000000500-2``…"""
    n = 1
    while True:
        name = f"ckpt-{step:09d}" if n == 1 else f"ckpt-{step:09d}-{n}"
        path = os.path.join(directory, name)
        if not os.path.lexists(path):
            assert is_folder_name(name)
            return path
        n += 1


class FrameworkBridge:
    """Reports a framework's loop to a Monitor and carries out its saves and stops through
    the framework.

    Args:
        monitor: the run's Monitor.
        framework: ``transformers``, ``lightning`` or ``keras``: written into each checkpoint's
            manifest entry, and only that framework's checkpoints are resumed from.
        owner: the callback's name, for messages.

    Raises:
        TypeError: ``monitor`` is not a Monitor (the message shows the line to write).
    """

    def __init__(self, monitor: Any, framework: str, owner: str) -> None:
        if not isinstance(monitor, Monitor):
            raise TypeError(
                f"{owner} needs the run's colabtui Monitor, got {type(monitor).__name__}: "
                f"mon = Monitor(run='my-run', checkpoint_dir='/content/drive/MyDrive/my-run'); "
                f"{owner}(mon)")
        self.mon = monitor
        self.framework = framework
        self.owner = owner
        self._records: list[CommandRecord] | None = None  # a save is due, not carried out yet
        self._stop = False
        self.stopped = False
        """True once a stop was carried out (the checkpoint is durable)."""

    # ---- set-up (before training: may raise)

    def folder(self) -> str | None:
        """The local folder the framework writes its checkpoints into (the Monitor's
        checkpoint folder; for a folder on a mount, its local fallback, replicated to the
        mount), or None without a ``checkpoint_dir``."""
        ckpt = self.mon.framework_checkpointer()
        return ckpt.directory if ckpt is not None else None

    def start(self, *, total_steps: int | None, step: int, epoch: int | None,
              keep: int | None = None) -> None:
        """Training starts (or resumes) at ``step``: the laptop sees ``running``; saves and
        stops due from now on come to this bridge; SIGTERM asks to save and stop. ``keep``:
        how many checkpoints the framework keeps itself (kept as many here)."""
        mon = self.mon
        mon.total_steps = total_steps
        mon.step, mon.epoch = step, epoch
        mon.finished = False
        self.stopped = False
        mon._stop = False
        mon._set_state("running")
        watch_cells(mon)  # an exception out of the framework's loop: failed (or interrupted)
        mon._saver.framework = self._due
        ckpt = mon.checkpointer
        if keep is not None and ckpt is not None and keep >= 1:
            ckpt.keep = keep
            if ckpt.replica is not None:
                ckpt.replica.keep = keep
        if mon._sigterm_handler is not None:
            mon._sigterm_handler.install()

    # ---- the training loop (never raises)

    def boundary(self, step: int, epoch: int | None) -> str | None:
        """``step`` steps are done: returns ``"save"`` or ``"stop"`` when the framework should
        write a checkpoint now (and, for a stop, end after it), else None."""
        try:
            self.mon.at_step_boundary(step, epoch)
        except Exception:  # training never dies because of colabtui
            log.exception("colabtui_remote: step boundary failed")
        if self._records is None:
            return None
        return "stop" if self._stop else "save"

    def _due(self, records: list[CommandRecord]) -> None:
        """The Saver's hand-off: a save or stop is due now."""
        self._records = (self._records or []) + records
        self._stop = self._stop or any(r.action == "stop" for r in records)
        self.mon._set_state("stopping" if self._stop else "saving")

    def log(self, step: int, values: dict[str, Any]) -> None:
        """Record the numbers among ``values`` (floats, ints, 0-d tensors) at ``step``; other
        values (strings, lists, booleans) are left out. No I/O, no GPU synchronisation (see
        :meth:`~colabtui_remote.monitor.Monitor.log`)."""
        append = self.mon.metrics.append
        for name, value in values.items():
            kind = type(value)
            if kind is bool or not isinstance(name, str):
                continue
            if kind is float or kind is int or getattr(value, "ndim", None) == 0:
                try:
                    append(name, value, step)
                except (TypeError, ValueError):
                    pass

    def log_loss(self, step: int, value: Any) -> None:
        """:meth:`log` of the one value ``loss`` (a step's loss, every step: the short way)."""
        try:
            self.mon.metrics.append("loss", value, step)
        except (TypeError, ValueError):
            pass

    def saved(self, path: str, step: int, epoch: int | None) -> CheckpointInfo | None:
        """The framework wrote the checkpoint folder ``path`` (asked by colabtui or on its own
        schedule): make it durable and list it; the commands due end with it. For a stop, wait
        until it is durable. Returns the checkpoint once a stop's save is durable, else None
        (a stop then does not happen: see :attr:`stop_due`)."""
        records, stop = self._records or [], self._stop
        self._records, self._stop = None, False
        ckpt = self.mon.checkpointer
        if ckpt is None:
            self._end(records, None, NO_CHECKPOINT_DIR, stop)
            return None
        outcome: dict[str, Any] = {}

        def on_done(info: CheckpointInfo | None, error: str | None) -> None:
            outcome.update(info=info, error=error)
            if not stop:
                self._end(records, info, error, stop)

        try:
            ckpt.wait()  # the previous folder is being made durable: this one goes after it
            queued = ckpt.submit_folder(path, step, epoch, self.framework, on_done)
        except Exception as exc:
            queued, outcome["error"] = False, f"{type(exc).__name__}: {exc}"
        if not queued:
            error = outcome.get("error") or "the checkpoint writer is closed"
            self._end(records, None, f"checkpoint at step {step} not saved: {error}", stop)
            return None
        if not stop:
            return None
        ckpt.wait()
        self._end(records, outcome.get("info"), outcome.get("error"), stop)
        return outcome.get("info")

    def failed(self, step: int, error: str) -> None:
        """The framework could not write the checkpoint asked for: the commands due fail with
        ``error``, the run goes on."""
        records, stop = self._records or [], self._stop
        self._records, self._stop = None, False
        message = f"checkpoint at step {step} not saved: {error}"
        if self.mon.checkpointer is not None:
            self.mon.checkpointer.record_failure(message)
        self._end(records, None, message, stop)

    @property
    def stop_due(self) -> bool:
        """Whether a stop was asked for and not carried out yet."""
        return self._stop

    def _end(self, records: list[CommandRecord], info: CheckpointInfo | None,
             error: str | None, stop: bool) -> None:
        mon = self.mon
        for r in records:
            why = error if r.action == "save" or not error else (
                f"not stopped: the checkpoint failed ({error})")
            mon.commands.finish(r.id, checkpoint=info, error=why)
        laptop = any(not r.id.startswith(INTERNAL_PREFIX) for r in records)
        where = f" ({info.bytes / 1e6:.1f} MB, {info.path})" if info is not None else ""
        if stop and not error:
            self.stopped = mon._stop = True
            mon._set_state("stopped")
            say(f"stopped at step {info.step if info else mon.step}"
                + (" from the laptop" if laptop else "") + where)
            return
        if mon.state in ("saving", "stopping"):
            mon._set_state("running")
        if laptop:
            say(f"saved step {info.step} for the laptop{where}" if info is not None
                else f"the save at step {mon.step} failed: {error}")

    def end(self, step: int) -> None:
        """Training ended: wait for the last checkpoint to be durable; ``finished`` unless it
        was stopped (then the run goes on when started again)."""
        ckpt = self.mon.checkpointer
        if ckpt is not None:
            ckpt.wait()
        self.mon._saver.framework = None
        self.mon.step = step
        if not self.stopped and self.mon.state not in ("failed", "interrupted"):
            self.mon.finished = True
            self.mon._set_state("finished")
            say(f"{self.mon.run} finished at step {step}")

    def resume(self) -> CheckpointInfo | None:
        """The newest verified checkpoint of this framework (see
        :func:`~colabtui_remote.checkpoint.resume.find_resumable_folder`), or None."""
        ckpt = self.mon.framework_checkpointer()
        if ckpt is None:
            return None
        found = find_resumable_folder(ckpt, self.framework)
        if found is not None:
            self.mon.step, self.mon.epoch = found.step, found.epoch
            say(f"resuming {self.mon.run} at step {found.step} from {found.path}")
        return found
