"""The Hugging Face ``Trainer`` watched, saved and stopped from the laptop
(``pip install 'colabtui-remote[transformers]'``)::

    mon = Monitor(run="digits-hf", checkpoint_dir="/content/drive/MyDrive/digits-hf")
    args = TrainingArguments(output_dir=checkpoint_folder(mon), save_steps=200, ...)
    trainer = Trainer(model=model, args=args, ..., callbacks=[ColabtuiCallback(mon)])
    trainer.train(resume_from_checkpoint=resume_checkpoint(mon))

The callback only flips the Trainer's own flags, as the Trainer's JIT checkpoint does: a save
from the laptop sets ``control.should_save`` at the next step end and the Trainer writes its
own ``checkpoint-N`` folder; a stop (and SIGTERM) sets ``should_save`` and
``should_training_stop``. Every ``checkpoint-N`` the Trainer writes (its ``save_steps`` too) is
made durable, listed with each file's size and sha256, pruned with the Trainer's
``save_total_limit`` and replicated to Drive by the Monitor's Checkpointer; the status shows it.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from .bridge import FrameworkBridge, IntegrationError, check_writable, say

__all__ = ["ColabtuiCallback", "checkpoint_folder", "resume_checkpoint"]

FRAMEWORK = "transformers"


def checkpoint_folder(monitor: Any) -> str:
    """The folder to give ``TrainingArguments(output_dir=...)``: where the Monitor keeps the
    run's checkpoints on the runtime's disk (its ``checkpoint_dir``; for ``gdrive://`` or a
    mounted Drive, the local folder replicated there).

    Raises:
        TypeError: ``monitor`` is not a Monitor.
        IntegrationError: the Monitor has no ``checkpoint_dir``.
    """
    folder = FrameworkBridge(monitor, FRAMEWORK, "checkpoint_folder").folder()
    if folder is None:
        raise IntegrationError("the Monitor has no checkpoint_dir, so the Trainer's checkpoints "
                               "would not be kept: Monitor(run=..., checkpoint_dir='...')")
    return folder


def resume_checkpoint(monitor: Any) -> str | None:
    """The newest verified ``checkpoint-N`` folder of the run, for
    ``trainer.train(resume_from_checkpoint=...)``: every file's size and sha256 checked
    against the manifest; a newer half-written or unlisted folder is skipped with a warning.
    In a new runtime it is fetched from Drive (md5 and every file's sha256 checked). None when
    there is none (train from the start).

    Raises:
        TypeError: ``monitor`` is not a Monitor.
        CheckpointError: a manifest does not parse, or Drive cannot be read (nothing changed).
    """
    found = FrameworkBridge(monitor, FRAMEWORK, "resume_checkpoint").resume()
    return found.path if found is not None else None


class ColabtuiCallback(TrainerCallback):
    """Reports a ``Trainer`` to the Monitor and carries out saves and stops from the laptop
    through the Trainer's own checkpoints. Pass it with ``Trainer(callbacks=[...])``.

    Reports ``state.global_step`` of ``state.max_steps``, the epoch, and every number of
    ``on_log`` (loss, learning_rate, grad_norm, eval_*) as metrics.

    Args:
        monitor: the run's Monitor (with a ``checkpoint_dir``).

    Raises:
        TypeError: no Monitor given.
        IntegrationError: at ``Trainer(...)`` or ``train()``: ``output_dir`` is not
            :func:`checkpoint_folder`, two colabtui callbacks on one Trainer, a folder that
            cannot be written.
    """

    def __init__(self, monitor: Any = None) -> None:
        self.bridge = FrameworkBridge(monitor, FRAMEWORK, "ColabtuiCallback")
        self._our_stop = False

    def _check(self, args: Any) -> str:
        folder = self.bridge.folder()
        if folder is None:
            raise IntegrationError("ColabtuiCallback: the Monitor has no checkpoint_dir, so "
                                   "saves from the laptop could not be kept: "
                                   "Monitor(run=..., checkpoint_dir='...')")
        if os.path.abspath(args.output_dir) != folder:
            raise IntegrationError(
                f"ColabtuiCallback: TrainingArguments(output_dir={args.output_dir!r}) is not "
                f"where the Monitor keeps checkpoints ({folder}); pass "
                "output_dir=checkpoint_folder(mon)")
        return folder

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._check(args)
        if str(getattr(args.save_strategy, "value", args.save_strategy)) == "no":
            every = self.bridge.mon.autosave_every
            say("save_strategy='no': the Trainer saves only when colabtui asks (" + (
                f"every {every:g} s, " if every else "") + "a save or stop from the laptop, "
                "SIGTERM)" + ("" if every else "; nothing saves this run otherwise: set "
                              "save_strategy='steps' or Monitor(autosave_every=600)"))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        owner = getattr(state, "_colabtui_callback", None)
        if owner is not None and owner is not self:
            raise IntegrationError("two colabtui callbacks on one Trainer: pass one "
                                   "ColabtuiCallback(mon) in Trainer(callbacks=[...])")
        state._colabtui_callback = self
        folder = self._check(args)
        check_writable(folder, "give TrainingArguments(output_dir=...) and "
                               "Monitor(checkpoint_dir=...) a folder you can write")
        ckpt = self.bridge.mon.checkpointer
        ckpt.protected = lambda path: (state.best_model_checkpoint is not None and
                                       os.path.abspath(state.best_model_checkpoint) == path)
        self._our_stop = False
        self.bridge.start(total_steps=state.max_steps, step=state.global_step,
                          epoch=int(state.epoch or 0),
                          keep=args.save_total_limit if args.save_total_limit else None)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        what = self.bridge.boundary(state.global_step, int(state.epoch or 0))
        if what is not None:
            control.should_save = True
        if what == "stop":
            self._our_stop = not control.should_training_stop
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        path = os.path.join(os.path.abspath(args.output_dir), f"checkpoint-{state.global_step}")
        stop = self.bridge.stop_due
        try:
            info = self.bridge.saved(path, state.global_step, int(state.epoch or 0))
        except Exception as exc:  # training never dies because of colabtui
            self.bridge.failed(state.global_step, f"{type(exc).__name__}: {exc}")
            info = None
        if stop and info is None and self._our_stop:
            control.should_training_stop = False  # the save failed: stopping would lose work
        self._our_stop = False

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if logs:
            self.bridge.log(state.global_step, logs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if getattr(state, "_colabtui_callback", None) is self:
            del state._colabtui_callback
        self.bridge.end(state.global_step)
