"""Distributed runs: what the Monitor costs a 2-rank job (gloo, on the CPU, under torchrun).

1. The boundary agreement: a DDP loop (an MLP on the digits data, one torch thread per rank)
   with ``mon.at_step_boundary`` at every step, beside the same loop without the Monitor, in
   alternating rounds; the figure is the median extra time per step, µs (target ≤ 50 µs,
   amortised, from the distributed-runs issue), with the default adaptive cadence (about
   one agreement per 0.1 s of steps) and with ``agree_every=1`` (every step).
2. The stall of a sharded save: an FSDP2 model's save through the Monitor (the training
   thread's part: naming the folder, DCP's state dict, ``async_save``'s staging, the ranks'
   parts) beside staging the same state alone (DCP's ``DefaultStager``, its buffers kept
   from one save to the next as the Monitor keeps them); target ≤ 1.2×.

    python bench/bench_distributed.py [--rounds 21] [--steps 300] [--mb 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)


def _ports() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--steps", type=int, default=300, help="steps per round")
    p.add_argument("--mb", type=int, default=32, help="model size for the save, MB")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_ports()}", HERE, "--worker", "--rounds", str(args.rounds),
           "--steps", str(args.steps), "--mb", str(args.mb)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env).returncode


def worker(args) -> int:
    import torch
    import torch.distributed as dist
    from colabtui_remote import Monitor
    from colabtui_remote.examples.digits import load_digits_data
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data, target = load_digits_data()
    x = torch.tensor(data, dtype=torch.float32) / 16
    y = torch.tensor(target)
    model = DDP(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(rank)

    def step() -> None:
        idx = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()

    done = [0]  # steps across rounds: the Monitor's step only goes forward

    def timed(boundary) -> float:
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
            done[0] += 1
            boundary(done[0])
        dist.barrier()
        return (time.perf_counter() - t0) / args.steps

    say = print if rank == 0 else (lambda *a, **k: None)
    for _ in range(20):
        step()
    results = {}
    for every in (None, 1):
        mon = Monitor(run=f"bench-agree-{every}", autosave_every=None, agree_every=every)
        mon.track(model=model, optimizer=opt)
        mon.resume()
        agreement = mon._job.agreement
        launches = [0]
        launch = agreement.launch

        def counted(*a, launches=launches, launch=launch, **k):
            launches[0] += 1
            launch(*a, **k)

        agreement.launch = counted
        plain, with_mon = [], []
        for r in range(args.rounds):  # ABBA: the order within a pair alternates
            if r % 2:
                with_mon.append(timed(mon.at_step_boundary))
                plain.append(timed(lambda i: None))
            else:
                plain.append(timed(lambda i: None))
                with_mon.append(timed(mon.at_step_boundary))
        extra = [(m - p) * 1e6 for p, m in zip(plain, with_mon, strict=True)]
        results[every] = (statistics.median(plain) * 1e6, statistics.median(extra),
                          launches[0] / args.rounds)
        mon.close()
    aa = [(b - a) * 1e6 * (-1) ** r for r, (a, b) in enumerate(
        (timed(lambda i: None), timed(lambda i: None)) for _ in range(args.rounds))]
    say(f"2-rank DDP step without the Monitor: {results[1][0]:.0f} µs (median of "
        f"{args.rounds} rounds of {args.steps} steps); A/A control (plain vs plain): "
        f"{statistics.median(aa):+.1f} µs/step, the noise of this figure")
    for every, (base, extra, per_round) in results.items():
        verdict = ("PASS" if extra <= 50 else "FAIL") if every is None else "(reference)"
        how = "adaptive cadence (default)" if every is None else f"every {every} step"
        say(f"  agreement, {how}: +{extra:.1f} µs/step "
            f"({(base + extra) / base:.4f}× the plain step; {per_round:.0f} agreements in "
            f"{args.steps} steps; target ≤ 50 µs) {verdict}")

    # the stall of a sharded save, beside staging the same state
    from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    width = int((args.mb * 2**20 / 4 / 2) ** 0.5)  # two square layers of about mb MB
    big = nn.Sequential(nn.Linear(width, width), nn.Linear(width, width))
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for layer in big:
        fully_shard(layer, mesh=mesh)
    fully_shard(big, mesh=mesh)
    bopt = torch.optim.Adam(big.parameters(), lr=1e-4)
    big(torch.randn(4, width)).sum().backward()
    bopt.step()
    folder = tempfile.mkdtemp(prefix="bench-dcp-")
    folder = [folder] if rank == 0 else [None]
    dist.broadcast_object_list(folder, src=0)
    mon = Monitor(run="bench-dcp", checkpoint_dir=folder[0], autosave_every=None, keep=2)
    mon.track(model=big, optimizer=bopt)
    mon.resume()
    stalls, stages = [], []
    stager = DefaultStager(StagingOptions(False, False, False, False))  # kept, as ours is

    def stage() -> None:
        msd, osd = get_state_dict(big, bopt)
        dist.barrier()
        t0 = time.perf_counter()
        stager.stage({"model": msd, "optimizer": osd})
        stages.append(time.perf_counter() - t0)

    def save(i: int) -> None:
        dist.barrier()
        t0 = time.perf_counter()
        mon._saver.save([], 1000 + i, None)  # what a boundary that saves runs, on every rank
        stalls.append(time.perf_counter() - t0)
        mon._saver.wait()
        mon._saver._drain()

    for i in range(max(4, args.rounds // 2)):
        if i % 2:
            stage()
            save(i)
        else:
            save(i)
            stage()
        dist.barrier()
    mon.close()
    stager.close()
    stall, stage = statistics.median(stalls), statistics.median(stages)
    state_mb = sum(t.numel() * t.element_size() for t in big.parameters()) * 3 / 2**20
    verdict = "PASS" if stall <= 1.2 * stage else "FAIL"
    say(f"sharded save of {state_mb:.0f} MB (model + Adam, {dist.get_world_size()} shards): "
        f"training stalls {stall * 1e3:.1f} ms, staging the same state alone "
        f"{stage * 1e3:.1f} ms: {stall / stage:.2f}× (target ≤ 1.2×) {verdict}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
