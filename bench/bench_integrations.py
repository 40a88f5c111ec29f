"""Each framework callback's cost on its digits example's step time, beside the same run without
it, in the same process.

For the Hugging Face Trainer, Lightning and Keras 3 (torch backend), the model and data of
``remote/examples/train_digits_{hf,lightning,keras}.py`` train for ``--steps`` steps with the
colabtui callback (a Monitor serving on loopback, no saves due) and without it, alternating
``--rounds`` times so drift hits both. A step's time is the interval between two step ends,
taken by a timing callback present in both runs; each run's figure is its median step, and the
ratio is the median over rounds of (with / without). Target: ≤ 1.01 (the framework issue).
Beside it, the time spent inside the callback's per-step hooks, per step: on a shared machine
the A/B ratio moves by several percent from run to run, this figure does not.

    python bench/bench_integrations.py [--steps 300] [--rounds 5] [--only hf,lightning,keras]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402
from colabtui_remote import Monitor  # noqa: E402
from colabtui_remote.examples.digits import load_digits_data  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "remote" / "examples"))
TARGET = 1.01


HOOK_TIME = [0.0, 0]  # seconds inside the callback's per-step hooks, steps


def timed(callback, *hooks: str):
    """Count the time spent in ``callback``'s ``hooks`` into :data:`HOOK_TIME`."""
    for name in hooks:
        inner = getattr(callback, name)

        def wrapper(*args, _inner=inner, _count=name == hooks[0], **kwargs):
            t0 = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                HOOK_TIME[0] += time.perf_counter() - t0
                HOOK_TIME[1] += _count

        setattr(callback, name, wrapper)
    return callback


def monitor(folder: str) -> Monitor:
    mon = Monitor(run="bench", checkpoint_dir=folder, autosave_every=None, handle_sigterm=False)
    mon.serve(port=0, quiet=True)
    return mon


def median_step(marks: list[float]) -> float:
    """Median interval between step ends, seconds (the first few, warm-up, left out)."""
    gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)][5:]
    return statistics.median(gaps)


def run_hf(steps: int, with_callback: bool, folder: str) -> float:
    import train_digits_hf as hf
    from colabtui_remote.integrations.transformers import ColabtuiCallback, checkpoint_folder
    from transformers import Trainer, TrainerCallback, TrainingArguments

    marks: list[float] = []

    class Timing(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    data, target = load_digits_data()
    ds = hf.Digits(torch.tensor(data, dtype=torch.float32) / 16.0, torch.tensor(target))
    mon = monitor(folder) if with_callback else None
    args = TrainingArguments(output_dir=checkpoint_folder(mon) if mon else folder,
                             max_steps=steps, per_device_train_batch_size=64, logging_steps=10,
                             save_strategy="no", report_to="none", use_cpu=True,
                             disable_tqdm=True)
    callbacks = [Timing()] + ([timed(ColabtuiCallback(mon), "on_step_end", "on_log")]
                              if mon else [])
    Trainer(model=hf.DigitsMLP(), args=args, train_dataset=ds, callbacks=callbacks).train()
    if mon:
        mon.close(linger_s=0)
    return median_step(marks)


def run_lightning(steps: int, with_callback: bool, folder: str) -> float:
    import lightning.pytorch as L
    import train_digits_lightning as pl
    from colabtui_remote.integrations.lightning import ColabtuiCallback

    marks: list[float] = []

    class Timing(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            marks.append(time.perf_counter())

    mon = monitor(folder) if with_callback else None
    callbacks = [Timing()] + ([timed(ColabtuiCallback(mon), "on_train_batch_end",
                                     "on_train_batch_start")] if mon else [])
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks)
    trainer.fit(pl.DigitsMLP(), pl.digits_loader())
    if mon:
        mon.close(linger_s=0)
    return median_step(marks)


def run_keras(steps: int, with_callback: bool, folder: str) -> float:
    import keras
    import numpy as np
    import train_digits_keras as kx
    from colabtui_remote.integrations.keras import ColabtuiCallback

    marks: list[float] = []

    class Timing(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks.append(time.perf_counter())

    data, target = load_digits_data()
    x = (data / 16.0).astype(np.float32)
    mon = monitor(folder) if with_callback else None
    callbacks = [Timing()] + ([timed(ColabtuiCallback(mon), "on_train_batch_end")]
                              if mon else [])
    epochs = -(-steps // -(-len(x) // kx.BATCH_SIZE))
    kx.digits_model(1e-3).fit(x, target, batch_size=kx.BATCH_SIZE, epochs=epochs, verbose=0,
                              callbacks=callbacks)
    if mon:
        mon.close(linger_s=0)
    return median_step(marks)


RUNS = {"hf": run_hf, "lightning": run_lightning, "keras": run_keras}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--only", default="hf,lightning,keras")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import logging

    logging.disable(logging.WARNING)
    met = True
    for name in args.only.split(","):
        run = RUNS[name]
        ratios, plain, watched = [], [], []
        HOOK_TIME[:] = [0.0, 0]
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                without = run(args.steps, False, a)
                with_cb = run(args.steps, True, b)
            plain.append(without)
            watched.append(with_cb)
            ratios.append(with_cb / without)
        ratio = statistics.median(ratios)
        ok = ratio <= TARGET
        met = met and ok
        step = statistics.median(plain)
        in_hooks = HOOK_TIME[0] / max(HOOK_TIME[1], 1)
        print(f"{name:>9}: step {statistics.median(watched) * 1e3:.3f} ms with the callback, "
              f"{step * 1e3:.3f} ms without: {ratio:.3f} x (target <= {TARGET:.2f} x: "
              f"{'pass' if ok else 'NOT MET'}); inside the callback {in_hooks * 1e6:.1f} us "
              f"a step, {in_hooks / step:.2%} of it", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
