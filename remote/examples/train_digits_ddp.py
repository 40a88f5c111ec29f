"""DistributedDataParallel on scikit-learn's digits, watched and controlled by colabtui as one
session: run it under torchrun (gloo on the CPU, NCCL on GPUs).

    torchrun --nproc_per_node=2 remote/examples/train_digits_ddp.py --port PORT --token TOKEN \\
        --checkpoint-dir DIR --steps N --lr LR --label LABEL [--autosave-every S] \\
        [--dump-params FILE]

train_digits.py's command line; ``--steps N`` is rounded up to whole epochs. Rank 0 serves
and reports the job; a save or stop from the laptop is carried out by every rank at the same
step; rank 0 writes the checkpoint, which holds every rank's random state and place in its
``DistributedSampler``'s order. Started again with the same ``--checkpoint-dir``, it resumes
exactly: ``--dump-params FILE`` (rank 0, at the end of a finished run) writes the final
parameters and optimizer state to compare. Needs torch and scikit-learn.
"""

from __future__ import annotations

import math
import os
import sys
import time

import torch
import torch.distributed as dist
from colabtui_remote import Monitor
from colabtui_remote.checkpoint.errors import CheckpointError
from colabtui_remote.examples.digits import build_parser, load_digits_data
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

BATCH_SIZE = 32
"""Per rank."""


def digits() -> tuple[TensorDataset, TensorDataset]:
    data, target = load_digits_data()
    x = torch.tensor(data, dtype=torch.float32) / 16.0
    y = torch.tensor(target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    n = int(0.8 * len(x))
    return (TensorDataset(x[order[:n]], y[order[:n]]),
            TensorDataset(x[order[n:]], y[order[n:]]))


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    p.prog = "train_digits_ddp"
    p.add_argument("--dump-params", default=None, metavar="FILE",
                   help="rank 0 writes the final parameters here when the run finished")
    p.add_argument("--rank-timeout", type=float, default=60.0, metavar="S",
                   help="seconds without a heartbeat before a rank counts as lost (default 60)")
    args = p.parse_args(argv)
    if "RANK" not in os.environ:
        print("train_digits_ddp: run me under torchrun, e.g. torchrun --nproc_per_node=2 "
              "remote/examples/train_digits_ddp.py --checkpoint-dir DIR", file=sys.stderr)
        return 2
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed + rank)  # each rank its own dropout
    train_set, val_set = digits()
    sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed)
    loader = DataLoader(train_set, batch_size=BATCH_SIZE, sampler=sampler)
    torch.manual_seed(args.seed)  # the same initial weights (DDP broadcasts rank 0's anyway)
    model = DDP(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2),
                              nn.Linear(128, 10)).to(device))
    torch.manual_seed(args.seed + rank)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    epochs = math.ceil(args.steps / len(loader))

    run = args.run or f"digits-ddp-lr{args.lr:g}"
    try:
        mon = Monitor(run=run, checkpoint_dir=args.checkpoint_dir, local_dir=args.local_dir,
                      autosave_every=args.autosave_every or None, label=args.label or run,
                      rank_timeout_s=args.rank_timeout)
        mon.track(model=model, optimizer=optimizer, train_loader=loader)
        mon.total_steps = epochs * len(loader)  # for the laptop's progress and ETA
        if args.port >= 0:
            mon.serve(host=args.host, port=args.port, token=args.token)  # rank 0 only
    except (OSError, CheckpointError, ValueError) as exc:
        print(f"train_digits_ddp: {exc}", file=sys.stderr)
        return 2
    for epoch in mon.epochs(0, epochs):
        sampler.set_epoch(epoch)
        model.train()
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.to(device)), y.to(device))
            loss.backward()
            optimizer.step()
            mon.log(loss=loss.detach())  # rank 0's loss
            mon.log_mean(mean_loss=loss.detach())  # every rank's, averaged at the agreements
            if args.step_delay:
                time.sleep(args.step_delay)
            if mon.at_step_boundary(mon.step + 1, epoch=epoch):
                break
        if mon.stop_requested:
            break
        model.eval()
        with torch.no_grad():
            xv, yv = val_set.tensors
            acc = (model(xv.to(device)).argmax(1) == yv.to(device)).float().mean()
        mon.log(val_acc=acc)
    mon.finish()
    if rank == 0:
        print(f"train_digits_ddp: {mon.state} at step {mon.step}", file=sys.stderr, flush=True)
        if args.dump_params and mon.finished:
            torch.save({"model": model.module.state_dict(), "optimizer": optimizer.state_dict(),
                        "step": mon.step}, args.dump_params)
    mon.close()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
