"""Checkpoint speed: capture stall and writer throughput, each beside a reference from the same run.

Run: ``python bench/bench_checkpoint.py [--mb 200] [--repeat 5]``

1. Capture stall: the time :meth:`Checkpointer.capture` holds the training thread, against
   cloning the same tensors (model state dict and Adam state), the least a safe copy can cost.
   Target: ratio <= 1.5.
2. Writer throughput: checkpoint bytes / writer seconds (write, fsync, rename, verify, manifest),
   against a plain open/write/flush/fsync of the same serialized bytes to the same folder.
   Target: ratio >= 0.7.

Figures are medians over ``--repeat`` runs, references and subjects interleaved (and in
alternating order for the capture). The temporary
folder sits in the repository (same disk), never in /dev/shm.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time

import torch
from colabtui_remote.checkpoint import Checkpointer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_state(mb: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A model of a few big Linear layers with Adam after one step: params + 2 moments ≈ ``mb`` MB."""
    width = 2048
    per_layer = width * width + width  # float32 elements
    layers = max(1, round(mb * 1e6 / 4 / 3 / per_layer))
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(8, width)).square().mean().backward()
    opt.step()
    return model, opt


def clone_reference(model: torch.nn.Module, opt: torch.optim.Optimizer) -> float:
    tensors = [*model.state_dict().values()]
    tensors += [v for s in opt.state_dict()["state"].values() for v in s.values()
                if isinstance(v, torch.Tensor)]
    t0 = time.perf_counter()
    copies = [t.detach().clone() for t in tensors]
    elapsed = time.perf_counter() - t0
    del copies
    return elapsed


def plain_write(folder: str, data: bytes) -> float:
    path = os.path.join(folder, "plain.bin")
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t0
    os.remove(path)
    return elapsed


def line(name: str, value: str, ref: str, ratio: float, target: str, ok: bool) -> None:
    print(f"{name:<22} {value:>14}   reference {ref:>14}   ratio {ratio:5.2f}   "
          f"target {target:<7} {'PASS' if ok else 'FAIL'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="state size, MB (default 200)")
    ap.add_argument("--repeat", type=int, default=6, help="runs per figure (default 6)")
    args = ap.parse_args()

    model, opt = make_state(args.mb)
    tracked = {"model": model, "optimizer": opt}
    stalls, clones, writer_bps, plain_bps = [], [], [], []
    done: list = []
    with tempfile.TemporaryDirectory(dir=REPO, prefix=".bench-ckpt-") as folder:
        ck = Checkpointer(os.path.join(folder, "ckpts"), keep=1)
        for i in range(args.repeat):
            # Alternate the order: whichever runs second reuses memory the first just freed
            # and skips page faults, which would otherwise favour one side.
            if i % 2:
                clones.append(clone_reference(model, opt))
            t0 = time.perf_counter()
            state = ck.capture(tracked, step=i, epoch=None)
            stalls.append(time.perf_counter() - t0)
            if not i % 2:
                clones.append(clone_reference(model, opt))

            buf = io.BytesIO()
            torch.save(state, buf)
            data = buf.getvalue()
            del buf
            plain_bps.append(len(data) / plain_write(folder, data))
            del data

            done.clear()
            ck.submit(state, i, None, lambda info, err: done.append((info, err)))
            del state
            ck.wait()
            info, err = done[0]
            if err:
                print(f"save failed: {err}", file=sys.stderr)
                return 2
            writer_bps.append(info.bytes / info.seconds)
        ck.close()
        size = info.bytes

    stall, clone = statistics.median(stalls), statistics.median(clones)
    w, p = statistics.median(writer_bps), statistics.median(plain_bps)
    print(f"checkpoint: {size / 1e6:.0f} MB, {args.repeat} runs, medians; folder on the repo's disk")
    line("capture stall", f"{stall * 1e3:.0f} ms", f"{clone * 1e3:.0f} ms clone", stall / clone,
         "<= 1.5", stall / clone <= 1.5)
    line("writer throughput", f"{w / 1e6:.0f} MB/s", f"{p / 1e6:.0f} MB/s plain", w / p,
         ">= 0.7", w / p >= 0.7)
    return 0 if stall / clone <= 1.5 and w / p >= 0.7 else 1


if __name__ == "__main__":
    sys.exit(main())
