"""Keras 3 ``model.fit`` on scikit-learn's digits (CPU, the torch backend, real data, a small
model built in code), watched and controlled by colabtui.

    python remote/examples/train_digits_keras.py --port PORT --token TOKEN \\
        --checkpoint-dir DIR --steps N --lr LR --label LABEL [--autosave-every S] \\
        [--dump-params FILE]

The colabtui part is one line: ``callbacks=[ColabtuiCallback(mon)]``; started again with the
same ``--checkpoint-dir`` it resumes from the newest verified checkpoint, mid-epoch included.
``--steps`` is rounded up to whole epochs of 29 batches. ``--dump-params FILE`` writes the final
weights with ``torch.save``. Needs ``colabtui-remote[keras]``, torch and scikit-learn.
"""

from __future__ import annotations

import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from colabtui_remote import Monitor  # noqa: E402
from colabtui_remote.checkpoint.errors import CheckpointError  # noqa: E402
from colabtui_remote.examples.digits import build_parser, load_digits_data  # noqa: E402
from colabtui_remote.integrations import IntegrationError  # noqa: E402
from colabtui_remote.integrations.keras import ColabtuiCallback  # noqa: E402

BATCH_SIZE = 64


def digits_model(lr: float) -> keras.Model:
    """An MLP for 8x8 digits, with dropout, compiled with Adam."""
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dropout(0.1), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class StepDelay(keras.callbacks.Callback):
    """Sleeps after each batch, to make a live demo last."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.prog = "train_digits_keras"
    parser.add_argument("--dump-params", default=None, metavar="FILE",
                        help="torch.save the final weights here when the run finished")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    keras.utils.set_random_seed(args.seed)
    data, target = load_digits_data()
    x, y = (data / 16.0).astype(np.float32), target
    epochs = math.ceil(args.steps / math.ceil(len(x) / BATCH_SIZE))
    model = digits_model(args.lr)
    run = args.run or f"digits-keras-lr{args.lr:g}"
    mon = None
    try:
        mon = Monitor(run=run, checkpoint_dir=args.checkpoint_dir, local_dir=args.local_dir,
                      autosave_every=args.autosave_every or None, label=args.label or run)
        callbacks = [ColabtuiCallback(mon)] + ([StepDelay(args.step_delay)]
                                               if args.step_delay else [])
        if args.port >= 0:
            mon.serve(host=args.host, port=args.port, token=args.token)
        if args.mailbox:
            mon.serve_mailbox(args.mailbox, interval_s=args.mailbox_interval)
    except (OSError, CheckpointError, ImportError, ValueError, IntegrationError) as exc:
        if mon is not None:
            mon.close()
        print(f"train_digits_keras: {exc}", file=sys.stderr)
        return 2
    try:
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0,
                  callbacks=callbacks)
    finally:
        mon.close()
    if args.dump_params and mon.state == "finished":
        torch.save({v.path: torch.tensor(keras.ops.convert_to_numpy(v.value))
                    for v in model.variables}, args.dump_params)
    print(f"train_digits_keras: {mon.state} at step {mon.step}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
