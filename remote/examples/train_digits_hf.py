"""A Hugging Face ``Trainer`` on scikit-learn's digits (CPU, real data, a small model built in
code: nothing is downloaded), watched and controlled by colabtui.

    python remote/examples/train_digits_hf.py --port PORT --token TOKEN --checkpoint-dir DIR \\
        --steps N --lr LR --label LABEL [--autosave-every S] [--dump-params FILE]

The colabtui part is three lines: ``output_dir=checkpoint_folder(mon)``,
``callbacks=[ColabtuiCallback(mon)]`` and ``resume_from_checkpoint=resume_checkpoint(mon)``.
Started again with the same ``--checkpoint-dir`` it resumes from the newest verified
``checkpoint-N``. ``--dump-params FILE`` writes the final parameters with ``torch.save``.
Needs ``colabtui-remote[transformers]``, torch and scikit-learn.
"""

from __future__ import annotations

import sys
import time

import torch
from colabtui_remote import Monitor
from colabtui_remote.checkpoint.errors import CheckpointError
from colabtui_remote.examples.digits import build_parser, load_digits_data
from colabtui_remote.integrations import IntegrationError
from colabtui_remote.integrations.transformers import (
    ColabtuiCallback,
    checkpoint_folder,
    resume_checkpoint,
)
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

BATCH_SIZE = 64


class DigitsMLP(nn.Module):
    """An MLP for 8x8 digits that returns its loss as a Trainer expects: ``{"loss", "logits"}``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(128, 10))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class Digits(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i]}


class StepDelay(TrainerCallback):
    """Sleeps after each step, to make a live demo last."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.prog = "train_digits_hf"
    parser.add_argument("--save-steps", type=int, default=200,
                        help="the Trainer's own save_steps (default 200)")
    parser.add_argument("--save-total-limit", type=int, default=3,
                        help="the Trainer's save_total_limit (default 3)")
    parser.add_argument("--dump-params", default=None, metavar="FILE",
                        help="torch.save the final parameters here when the run finished")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data, target = load_digits_data()
    x = torch.tensor(data, dtype=torch.float32) / 16.0
    y = torch.tensor(target, dtype=torch.long)
    torch.manual_seed(args.seed)
    model = DigitsMLP()
    run = args.run or f"digits-hf-lr{args.lr:g}"
    mon = None
    try:
        mon = Monitor(run=run, checkpoint_dir=args.checkpoint_dir, local_dir=args.local_dir,
                      autosave_every=args.autosave_every or None, label=args.label or run)
        training = TrainingArguments(
            output_dir=checkpoint_folder(mon), max_steps=args.steps,
            per_device_train_batch_size=BATCH_SIZE, learning_rate=args.lr, seed=args.seed,
            logging_steps=10, save_strategy="steps", save_steps=args.save_steps,
            save_total_limit=args.save_total_limit, report_to="none", use_cpu=True,
            disable_tqdm=True, dataloader_num_workers=0)
        callbacks = [ColabtuiCallback(mon)] + ([StepDelay(args.step_delay)]
                                               if args.step_delay else [])
        trainer = Trainer(model=model, args=training, train_dataset=Digits(x, y),
                          callbacks=callbacks)
        resume = resume_checkpoint(mon)
        if args.port >= 0:
            mon.serve(host=args.host, port=args.port, token=args.token)
        if args.mailbox:
            mon.serve_mailbox(args.mailbox, interval_s=args.mailbox_interval)
    except (OSError, CheckpointError, ImportError, ValueError, IntegrationError) as exc:
        if mon is not None:
            mon.close()
        print(f"train_digits_hf: {exc}", file=sys.stderr)
        return 2
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        mon.close()
    if args.dump_params and mon.state == "finished":
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   args.dump_params)
    print(f"train_digits_hf: {mon.state} at step {mon.step}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
