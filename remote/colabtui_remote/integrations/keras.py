"""Keras 3 ``model.fit`` watched, saved and stopped from the laptop
(``pip install 'colabtui-remote[keras]'``; any backend, tested with ``KERAS_BACKEND=torch``)::

    mon = Monitor(run="digits-keras", checkpoint_dir="/content/drive/MyDrive/digits-keras")
    model.fit(x, y, epochs=20, callbacks=[ColabtuiCallback(mon)])   # resumes by itself

A save from the laptop (or the autosave) writes, at the next batch end, a folder
``ckpt-000001200/`` of the Monitor's checkpoint folder holding what Keras'
``BackupAndRestore`` holds: ``model.weights.h5`` (``model.save_weights``: the weights and the
optimizer's variables) and ``training_metadata.json`` (epoch, batch), plus what an exact resume
needs besides: the step, the states of the model's seed generators and of the global random
number generators (as the epoch began, and now). It is made durable, listed with each file's size
and sha256, pruned and replicated to Drive. A stop (and SIGTERM) saves, then sets
``model.stop_training``; the end of ``fit`` saves a last checkpoint.

Resume (``on_train_begin``, before the first epoch): the newest verified checkpoint is loaded,
``fit`` starts at its epoch, the global generators are put back as that epoch began (so its
data order is drawn again the same), the batches of that epoch already trained are passed over
without training, and then the generators are put back as they were after those batches (an
unseeded ``Dropout`` draws from them every batch). With the torch backend, a resumed run ends
bitwise equal to a run that was not stopped.
"""

from __future__ import annotations

import json
import os
import random
import weakref
from typing import Any

import keras
import numpy as np

from ..checkpoint.folders import remove_folder
from .bridge import FrameworkBridge, IntegrationError, check_writable, free_folder

__all__ = ["METADATA_FILE", "WEIGHTS_FILE", "ColabtuiCallback", "resume_checkpoint"]

FRAMEWORK = "keras"
_FITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""model → (the colabtui callback of its fit() under way, that fit's params); kept outside the
model, whose attributes Keras tracks (a tuple set on it comes back as a copy)."""
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "training_metadata.json"


def resume_checkpoint(monitor: Any) -> str | None:
    """The newest verified checkpoint folder of the run (every file's size and sha256 checked;
    fetched from Drive in a new runtime), or None. :class:`ColabtuiCallback` resumes from it
    by itself; this is for loading it elsewhere (``model.load_weights(path + "/" +
    WEIGHTS_FILE)``).

    Raises:
        TypeError: ``monitor`` is not a Monitor.
        CheckpointError: a manifest does not parse, or Drive cannot be read (nothing changed).
    """
    found = FrameworkBridge(monitor, FRAMEWORK, "resume_checkpoint").resume()
    return found.path if found is not None else None


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {"python": [random.getstate()[0], list(random.getstate()[1]),
                                        random.getstate()[2]],
                             "numpy": [kind, keys.tolist(), pos, has_gauss, gauss]}
    if keras.backend.backend() == "torch":
        import torch

        state["torch"] = torch.get_rng_state().tolist()
    return state


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in state:
        import torch

        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _seed_states(model: Any) -> dict[str, list]:
    return {v.path: np.asarray(keras.ops.convert_to_numpy(v.value)).tolist()
            for v in model.non_trainable_variables if "seed_generator_state" in v.path}


class ColabtuiCallback(keras.callbacks.Callback):
    """Reports ``model.fit`` to the Monitor (batch and epoch logs as metrics, the step as
    the optimizer's iterations) and carries out saves and stops from the laptop.

    Args:
        monitor: the run's Monitor (with a ``checkpoint_dir``).
        resume: load the newest verified checkpoint when ``fit`` begins (see the module).

    Raises:
        TypeError: no Monitor given.
        IntegrationError: when ``fit`` begins: two colabtui callbacks in one ``fit``, a
            Monitor without ``checkpoint_dir``, a folder that cannot be written, a model that
            is not built.
    """

    def __init__(self, monitor: Any = None, *, resume: bool = True) -> None:
        super().__init__()
        self.bridge = FrameworkBridge(monitor, FRAMEWORK, "ColabtuiCallback")
        self.resume = resume
        self._folder: str | None = None
        self._epoch = 0
        self._batch = 0  # batches done in this epoch
        self._epoch_rng: dict | None = None  # the generators as this epoch began
        self._next_rng: dict | None = None  # ... as the next one will begin (after an epoch)
        self._restore: tuple[dict, int, dict | None] | None = None  # see _load
        self._skipping = 0
        self._just_skipped = False
        self._steps = 0  # the optimizer's iterations, counted here (reading them costs ~100 us)
        self._per_batch = 1  # steps a batch end stands for (steps_per_execution)

    # ---- set-up

    def on_train_begin(self, logs: dict | None = None) -> None:
        model = self.model
        owner = _FITS.get(model)  # the params dict is one per fit(), shared by its callbacks
        if owner is not None and owner[0] is not self and owner[1] is self.params:
            raise IntegrationError("two colabtui callbacks in one fit(): pass one "
                                   "ColabtuiCallback(mon) in callbacks=[...]")
        _FITS[model] = (self, self.params)
        self._folder = self.bridge.folder()
        if self._folder is None:
            raise IntegrationError("ColabtuiCallback: the Monitor has no checkpoint_dir, so "
                                   "saves from the laptop could not be kept: "
                                   "Monitor(run=..., checkpoint_dir='...')")
        check_writable(self._folder, "give Monitor(checkpoint_dir=...) a folder you can write")
        epoch = 0
        if self.resume:
            found = self.bridge.resume()
            if found is not None:
                epoch = self._load(found.path)
        self._steps = self._iterations()
        self._per_batch = int(getattr(model, "steps_per_execution", 1) or 1)
        total = (self.params or {}).get("epochs"), (self.params or {}).get("steps")
        self.bridge.start(total_steps=total[0] * total[1] if all(total) else None,
                          step=self._step(), epoch=epoch)

    def _load(self, path: str) -> int:
        model = self.model
        if not model.built:
            raise IntegrationError("ColabtuiCallback: the model must be built before fit() to "
                                   "resume (call it on a batch, or give keras.Input)")
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(path, WEIGHTS_FILE))
        with open(os.path.join(path, METADATA_FILE), encoding="utf-8") as f:
            meta = json.load(f)
        seeds = meta.get("seed_generators", {})
        for v in model.non_trainable_variables:
            if v.path in seeds:
                v.assign(np.array(seeds[v.path], dtype=keras.backend.standardize_dtype(v.dtype)))
        model._initial_epoch = meta["epoch"]
        if meta.get("rng") is not None:  # (as the epoch began, batches done, as they ended)
            self._restore = (meta["rng"], int(meta.get("batch", 0)), meta.get("rng_now"))
        return int(meta["epoch"])

    def _iterations(self) -> int:
        opt = self.model.optimizer
        return int(keras.ops.convert_to_numpy(opt.iterations)) if opt is not None else 0

    def _step(self) -> int:
        return self._steps

    # ---- the loop

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # Keras has made the epoch's data loader iterator by now; its sampler draws the data
        # order from the global generator at the first batch: the state here fixes the order.
        self._epoch, self._batch = epoch, 0
        if self._restore is not None:  # as the epoch began in the run that saved
            rng, done, now = self._restore
            self._restore = None
            _set_rng_state(rng)
            self._skip(done, now)
        self._epoch_rng = _rng_state()
        self._next_rng = None

    def _skip(self, batches: int, now: dict | None) -> None:
        """Pass over the first ``batches`` batches of this epoch without training (they were
        trained before the checkpoint; the data loader still yields them, in order), then put
        the generators back as they were after them (dropout draws from them every batch)."""
        if batches <= 0:
            if now is not None:
                _set_rng_state(now)
            return
        model, self._skipping = self.model, batches
        train = model.train_function

        def skipped(data: Any) -> dict:
            self._skipping -= 1
            self._just_skipped = True
            if self._skipping <= 0:
                model.train_function = train
                if now is not None:
                    _set_rng_state(now)
            return {}

        model.train_function = skipped

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._batch += 1
        if self._just_skipped:
            self._just_skipped = False
            return
        self._steps += self._per_batch
        step = self._step()
        if logs:
            self.bridge.log(step, logs)
        what = self.bridge.boundary(step, self._epoch)
        if what is not None and self._save(step) and what == "stop":
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs:
            self.bridge.log(self._step(), {k: v for k, v in logs.items()
                                           if k.startswith("val_")})
        self._epoch, self._batch, self._epoch_rng = epoch + 1, 0, None
        self._next_rng = _rng_state()  # the next epoch's iterator is made: as it will begin

    def on_train_end(self, logs: dict | None = None) -> None:
        if _FITS.get(self.model, (None,))[0] is self:
            del _FITS[self.model]
        step = self._step()
        if not self.bridge.stopped:
            last = self.bridge.mon.checkpointer.last if self.bridge.mon.checkpointer else None
            if last is None or last.step != step:
                self._save(step)
        self.bridge.end(step)

    def _save(self, step: int) -> bool:
        """Write a checkpoint folder and hand it to the bridge; True once it is listed (a
        stop's) or queued (a save's)."""
        assert self._folder is not None
        path = free_folder(self._folder, step)
        if self._epoch_rng is None:  # between epochs (the end of fit): resumes the next one
            epoch, batch, rng, now = self._epoch, 0, self._next_rng or _rng_state(), None
        else:  # resumed at this epoch's beginning, its first batches passed over
            epoch, batch, rng, now = self._epoch, self._batch, self._epoch_rng, _rng_state()
        meta = {"epoch": epoch, "batch": batch, "step": step, "rng": rng, "rng_now": now,
                "seed_generators": _seed_states(self.model)}
        try:
            os.makedirs(path)
            self.model.save_weights(os.path.join(path, WEIGHTS_FILE))
            with open(os.path.join(path, METADATA_FILE), "w", encoding="utf-8") as f:
                json.dump(meta, f)
        except Exception as exc:  # a failed save is reported, and training goes on
            remove_folder(path)
            self.bridge.failed(step, f"model.save_weights failed: {type(exc).__name__}: {exc}")
            return False
        stop = self.bridge.stop_due
        info = self.bridge.saved(path, step, meta["epoch"])
        return info is not None or not stop

