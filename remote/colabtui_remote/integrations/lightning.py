"""``lightning.pytorch.Trainer`` watched, saved and stopped from the laptop
(``pip install 'colabtui-remote[lightning]'``)::

    mon = Monitor(run="digits-pl", checkpoint_dir="/content/drive/MyDrive/digits-pl")
    trainer = L.Trainer(max_steps=3000, callbacks=[ColabtuiCallback(mon)])
    trainer.fit(model, train_loader, ckpt_path=resume_checkpoint(mon))

A save from the laptop (or the autosave) calls ``trainer.save_checkpoint`` at the next
training batch end into a new folder ``ckpt-000001200/`` of the Monitor's checkpoint folder,
which is made durable, listed with its file's size and sha256, pruned and replicated to Drive; a
stop (and SIGTERM) saves, then sets ``trainer.should_stop``. At the end of ``fit`` a last
checkpoint is saved. The callback's own state in each checkpoint is the random number
generators (Python, NumPy, torch CPU and CUDA), put back at the first batch after a resume:
with a resumable DataLoader (torchdata's ``StatefulDataLoader``) a resumed run is bitwise the
run that was not stopped.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import torch
from lightning.pytorch import Callback

from ..checkpoint.folders import remove_folder
from .bridge import FrameworkBridge, IntegrationError, check_writable, free_folder, say

__all__ = ["CHECKPOINT_FILE", "ColabtuiCallback", "resume_checkpoint"]

FRAMEWORK = "lightning"
CHECKPOINT_FILE = "model.ckpt"
"""The file ``trainer.save_checkpoint`` writes in each checkpoint folder."""
METRICS_EVERY_S = 1.0
"""Seconds between readings of ``trainer.callback_metrics`` (the laptop polls about once a
second); the training step's own loss is reported every step."""
RNG_KEY = "colabtui_rng"
"""Where a checkpoint holds the random number generators' states."""


def resume_checkpoint(monitor: Any) -> str | None:
    """The newest verified checkpoint of the run, for ``trainer.fit(..., ckpt_path=...)``: its
    ``model.ckpt``, whose size and sha256 match the manifest; a newer half-written or unlisted
    folder is skipped with a warning. In a new runtime it is fetched from Drive (md5 and sha256
    checked). None when there is none (train from the start).

    Raises:
        TypeError: ``monitor`` is not a Monitor.
        CheckpointError: a manifest does not parse, or Drive cannot be read (nothing changed).
    """
    found = FrameworkBridge(monitor, FRAMEWORK, "resume_checkpoint").resume()
    return os.path.join(found.path, CHECKPOINT_FILE) if found is not None else None


def _rng_state() -> dict:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss)
    except ImportError:
        pass
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))


class ColabtuiCallback(Callback):
    """Reports a Lightning ``Trainer`` to the Monitor (``trainer.global_step`` of
    ``trainer.estimated_stepping_batches``, the epoch, ``trainer.callback_metrics`` once a
    second and the training step's loss every step) and
    carries out saves and stops from the laptop through ``trainer.save_checkpoint``.

    Args:
        monitor: the run's Monitor (with a ``checkpoint_dir``).

    Raises:
        TypeError: no Monitor given.
        IntegrationError: at ``fit``: two colabtui callbacks on one Trainer, a Monitor
            without ``checkpoint_dir``, a folder that cannot be written.
    """

    def __init__(self, monitor: Any = None) -> None:
        self.bridge = FrameworkBridge(monitor, FRAMEWORK, "ColabtuiCallback")
        self._folder: str | None = None
        self._rng: dict | None = None
        self._metrics_due = 0.0
        self._epoch: int | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        ours = [c for c in trainer.callbacks if isinstance(c, ColabtuiCallback)]
        if len(ours) > 1:
            raise IntegrationError("two colabtui callbacks on one Trainer: pass one "
                                   "ColabtuiCallback(mon) in Trainer(callbacks=[...])")
        self._folder = self.bridge.folder()
        if self._folder is None:
            raise IntegrationError("ColabtuiCallback: the Monitor has no checkpoint_dir, so "
                                   "saves from the laptop could not be kept: "
                                   "Monitor(run=..., checkpoint_dir='...')")
        check_writable(self._folder, "give Monitor(checkpoint_dir=...) a folder you can write")
        if trainer.checkpoint_callback is None:
            every = self.bridge.mon.autosave_every
            say("enable_checkpointing=False: Lightning saves only when colabtui asks (" + (
                f"every {every:g} s, " if every else "") + "a save or stop from the laptop, "
                "SIGTERM, the end of fit)" + ("" if every else "; set "
                                              "Monitor(autosave_every=600) to autosave"))

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        total = trainer.estimated_stepping_batches
        self.bridge.start(total_steps=int(total) if total != float("inf") else None,
                          step=trainer.global_step, epoch=trainer.current_epoch)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        if self._rng is not None:  # after the loader's iterator was made: as the run had it
            try:
                _set_rng_state(self._rng)
            except Exception as exc:  # training never dies because of colabtui
                say(f"the random number generators could not be restored: {exc}")
            self._rng = None

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._epoch = trainer.current_epoch  # read once an epoch, not once a step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        now = time.monotonic()
        if now >= self._metrics_due:  # building callback_metrics costs ~100 us: once a second
            self._metrics_due = now + METRICS_EVERY_S
            self.bridge.log(step, trainer.callback_metrics)
        elif type(outputs) is dict and "loss" in outputs:  # the step's loss, every step
            self.bridge.log_loss(step, outputs["loss"])
        what = self.bridge.boundary(step, self._epoch)
        if what is not None and self._save(trainer, step) and what == "stop":
            trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if not self.bridge.stopped:
            last = self.bridge.mon.checkpointer.last if self.bridge.mon.checkpointer else None
            if last is None or last.step != trainer.global_step:
                self._save(trainer, trainer.global_step)
        self.bridge.end(trainer.global_step)

    def _save(self, trainer: Any, step: int) -> bool:
        """Write a checkpoint folder and hand it to the bridge; True once it is listed (a
        stop's) or queued (a save's)."""
        assert self._folder is not None
        path = free_folder(self._folder, step)
        try:
            os.makedirs(path)
            trainer.save_checkpoint(os.path.join(path, CHECKPOINT_FILE))
        except Exception as exc:  # a failed save is reported, and training goes on
            remove_folder(path)
            self.bridge.failed(step, f"trainer.save_checkpoint failed: {type(exc).__name__}: "
                                     f"{exc}")
            return False
        stop = self.bridge.stop_due
        info = self.bridge.saved(path, step, trainer.current_epoch)
        return info is not None or not stop

    # The generators go in the checkpoint's own "colabtui" key, not in a callback state_dict:
    # Lightning refuses two stateful callbacks of one type before setup() could say why.
    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = _rng_state()

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        self._rng = checkpoint.get(RNG_KEY)
