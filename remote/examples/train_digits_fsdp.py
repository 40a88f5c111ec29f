"""FSDP2 (``fully_shard``) on scikit-learn's digits, watched and controlled by colabtui as one
session: run it under torchrun (gloo on the CPU, NCCL on GPUs).

    torchrun --nproc_per_node=2 remote/examples/train_digits_fsdp.py --port PORT --token TOKEN \\
        --checkpoint-dir DIR --steps N --lr LR --label LABEL [--autosave-every S] \\
        [--dump-params FILE]

train_digits.py's command line; ``--steps N`` is rounded up to whole epochs. The parameters
and the optimizer state are sharded across the ranks (DTensors), so a checkpoint is a
``torch.distributed.checkpoint`` folder every rank writes its shards into with
``async_save``; rank 0 lists it once all are written. Run without torchrun (``python
remote/examples/train_digits_fsdp.py …``), it trains the same model unsharded in one process
and resumes from the job's sharded checkpoint (DCP reshards it). ``--dump-params FILE`` (rank
0, at the end of a finished run) writes the full parameters. Needs torch and scikit-learn.
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
from colabtui_remote.examples.digits import build_parser
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_digits_ddp import BATCH_SIZE, digits  # noqa: E402 - the same data, the same split


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    p.prog = "train_digits_fsdp"
    p.add_argument("--dump-params", default=None, metavar="FILE",
                   help="rank 0 writes the final (full) parameters here when the run finished")
    args = p.parse_args(argv)
    distributed = "RANK" in os.environ  # under torchrun, even --nproc_per_node=1
    cuda = torch.cuda.is_available()
    rank, world = 0, 1
    device = torch.device("cpu")
    if distributed:
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if cuda:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
    torch.set_num_threads(1)
    train_set, val_set = digits()
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=args.seed)
    loader = DataLoader(train_set, batch_size=BATCH_SIZE, sampler=sampler)
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    if distributed:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (world,))
        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    epochs = math.ceil(args.steps / len(loader))

    run = args.run or f"digits-fsdp-lr{args.lr:g}"
    try:
        mon = Monitor(run=run, checkpoint_dir=args.checkpoint_dir, local_dir=args.local_dir,
                      autosave_every=args.autosave_every or None, label=args.label or run)
        mon.track(model=model, optimizer=optimizer, train_loader=loader)
        mon.total_steps = epochs * len(loader)  # for the laptop's progress and ETA
        if args.port >= 0:
            mon.serve(host=args.host, port=args.port, token=args.token)  # rank 0 only
    except (OSError, CheckpointError, ValueError) as exc:
        print(f"train_digits_fsdp: {exc}", file=sys.stderr)
        return 2
    for epoch in mon.epochs(0, epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.to(device)), y.to(device))
            loss.backward()
            optimizer.step()
            mon.log(loss=loss.detach())
            if args.step_delay:
                time.sleep(args.step_delay)
            if mon.at_step_boundary(mon.step + 1, epoch=epoch):
                break
        if mon.stop_requested:
            break
    mon.finish()
    full = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu()
            for k, v in model.state_dict().items()}  # every rank takes part in the gather
    if rank == 0:
        print(f"train_digits_fsdp: {mon.state} at step {mon.step}", file=sys.stderr, flush=True)
        if args.dump_params and mon.finished:
            torch.save({"model": full, "step": mon.step}, args.dump_params)
    mon.close()
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
