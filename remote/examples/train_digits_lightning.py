"""A Lightning ``Trainer`` on scikit-learn's digits (CPU, real data, a small model built in
code), watched and controlled by colabtui.

    python remote/examples/train_digits_lightning.py --port PORT --token TOKEN \\
        --checkpoint-dir DIR --steps N --lr LR --label LABEL [--autosave-every S] \\
        [--dump-params FILE]

The colabtui part is two lines: ``callbacks=[ColabtuiCallback(mon)]`` and
``ckpt_path=resume_checkpoint(mon)``. The loader is torchdata's ``StatefulDataLoader`` (Lightning
resumes its position mid-epoch), so a run stopped and started again with the same
``--checkpoint-dir`` ends with the parameters of a run that was not stopped. ``--dump-params
FILE`` writes the final parameters with ``torch.save``. Needs ``colabtui-remote[lightning]``,
torchdata, torch and scikit-learn.
"""

from __future__ import annotations

import sys
import time

import lightning.pytorch as L
import torch
from colabtui_remote import Monitor
from colabtui_remote.checkpoint.errors import CheckpointError
from colabtui_remote.examples.digits import build_parser, load_digits_data
from colabtui_remote.integrations import IntegrationError
from colabtui_remote.integrations.lightning import ColabtuiCallback, resume_checkpoint
from torch import nn
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

BATCH_SIZE = 64


class DigitsMLP(L.LightningModule):
    """An MLP for 8x8 digits, with dropout, trained with Adam."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(128, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class StepDelay(L.Callback):
    """Sleeps after each batch, to make a live demo last."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


def digits_loader() -> StatefulDataLoader:
    data, target = load_digits_data()
    x = torch.tensor(data, dtype=torch.float32) / 16.0
    return StatefulDataLoader(TensorDataset(x, torch.tensor(target, dtype=torch.long)),
                              batch_size=BATCH_SIZE, shuffle=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.prog = "train_digits_lightning"
    parser.add_argument("--dump-params", default=None, metavar="FILE",
                        help="torch.save the final parameters here when the run finished")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    L.seed_everything(args.seed, verbose=False)
    model = DigitsMLP(args.lr)
    loader = digits_loader()
    run = args.run or f"digits-pl-lr{args.lr:g}"
    mon = None
    try:
        mon = Monitor(run=run, checkpoint_dir=args.checkpoint_dir, local_dir=args.local_dir,
                      autosave_every=args.autosave_every or None, label=args.label or run)
        callbacks = [ColabtuiCallback(mon)] + ([StepDelay(args.step_delay)]
                                               if args.step_delay else [])
        trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=callbacks,
                            default_root_dir=mon.framework_checkpointer().directory)
        resume = resume_checkpoint(mon)
        if args.port >= 0:
            mon.serve(host=args.host, port=args.port, token=args.token)
        if args.mailbox:
            mon.serve_mailbox(args.mailbox, interval_s=args.mailbox_interval)
    except (OSError, CheckpointError, ImportError, ValueError, IntegrationError) as exc:
        if mon is not None:
            mon.close()
        print(f"train_digits_lightning: {exc}", file=sys.stderr)
        return 2
    try:
        trainer.fit(model, loader, ckpt_path=resume)
    finally:
        mon.close()
    if args.dump_params and mon.state == "finished":
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   args.dump_params)
    print(f"train_digits_lightning: {mon.state} at step {mon.step}", file=sys.stderr,
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
