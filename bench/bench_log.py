"""Cost of logging one metric value on the training thread, beside TensorBoard's add_scalar.

Times single calls with time.perf_counter_ns (the timer's own cost is printed too and is
included in every figure) for:

* MetricsStore.append(name, float, step), the hot path behind Monitor.log;
* Monitor.log(loss=x), when colabtui_remote.monitor exists;
* torch.utils.tensorboard.SummaryWriter.add_scalar (needs the ``tensorboard`` package), the
  reference, in the same run.

Targets (notebook-side issue): p50 ≤ 2 µs and p99 ≤ 20 µs per call for a float.
On a CUDA machine it also times append() of a CUDA 0-d tensor beside ``.item()`` and checks the
values arrive.

    python bench/bench_log.py [--calls 300000]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tempfile
import time
from collections.abc import Callable

from colabtui_remote.metrics import MetricsStore

P50_TARGET_NS = 2_000
P99_TARGET_NS = 20_000


def percentiles(call: Callable[[int], object], calls: int) -> tuple[float, float, float]:
    """p50, p99 and mean of one call, in ns, over ``calls`` calls (after 1 % warm-up)."""
    ns = time.perf_counter_ns
    for i in range(calls // 100):
        call(i)
    durations = [0] * calls
    gc.collect()
    for i in range(calls):
        t0 = ns()
        call(i)
        durations[i] = ns() - t0
    durations.sort()
    return durations[calls // 2], durations[calls * 99 // 100], sum(durations) / calls


def row(label: str, figures: tuple[float, float, float], ref: tuple[float, float, float] | None,
        check: bool) -> bool:
    p50, p99, mean = figures
    text = f"  {label:<44} p50 {p50 / 1000:7.2f} µs  p99 {p99 / 1000:7.2f} µs  mean {mean / 1000:7.2f} µs"
    if ref is not None:
        text += f"  add_scalar/this: p50 {ref[0] / p50:.0f}x  p99 {ref[1] / p99:.0f}x"
    ok = p50 <= P50_TARGET_NS and p99 <= P99_TARGET_NS
    if check:
        text += f"  targets p50 ≤ 2 µs, p99 ≤ 20 µs: {'PASS' if ok else 'FAIL'}"
    print(text, flush=True)
    return ok or not check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300_000)
    args = parser.parse_args()
    calls = args.calls
    ns = time.perf_counter_ns
    timer = percentiles(lambda i: None, calls)
    print(f"{calls} single calls each; timer + loop overhead: p50 {timer[0] / 1000:.2f} µs\n")

    ref = None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        print(f"  TensorBoard reference unavailable ({exc}): pip install tensorboard")
    else:
        with tempfile.TemporaryDirectory() as folder:
            writer = SummaryWriter(folder)
            # A tenth of the calls: add_scalar is ~100x slower, and its percentiles settle sooner.
            ref = percentiles(lambda i: writer.add_scalar("loss", 0.5, i), calls // 10)
            writer.close()
        row("SummaryWriter.add_scalar (reference)", ref, None, check=False)

    ok = True
    store = MetricsStore()
    values = [math.sin(i / 100) for i in range(1000)]
    ok &= row("MetricsStore.append(float)", percentiles(
        lambda i: store.append("loss", values[i % 1000], i), calls), ref, check=True)
    mixed = MetricsStore()
    names = ("loss", "acc", "lr")
    ok &= row("MetricsStore.append(float), 3 series", percentiles(
        lambda i: mixed.append(names[i % 3], values[i % 1000], i), calls), ref, check=True)

    try:
        from colabtui_remote.monitor import Monitor
    except ImportError as exc:
        print(f"  Monitor.log: colabtui_remote.monitor not importable yet ({exc})")
    else:
        mon = Monitor(run="bench-log", autosave_every=None, handle_sigterm=False)
        try:
            ok &= row("Monitor.log(loss=x)", percentiles(
                lambda i: mon.log(i, loss=values[i % 1000]), calls), ref, check=True)
        finally:
            mon.close()

    import torch

    t = torch.tensor(0.5)
    row("MetricsStore.append(CPU 0-d tensor) (info)", percentiles(
        lambda i: store.append("cpu_tensor", t, i), calls // 3), ref, check=False)
    if torch.cuda.is_available():
        ok &= cuda_check(ns)
    else:
        print("  (no CUDA device here: the CUDA tensor check runs on a GPU machine)")
    print(f"\nbench_log: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def cuda_check(ns: Callable[[], int]) -> bool:
    """append() of a CUDA 0-d tensor must not wait for the GPU; .item() does (reference)."""
    import torch

    store = MetricsStore()
    x = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    losses = [x[i % 4096, 0] * 1.0 for i in range(1000)]  # 0-d CUDA tensors
    expected = [float(v) for v in losses]
    torch.cuda.synchronize()
    busy = x @ x  # queue work on the GPU so a synchronous read would have to wait
    t0 = ns()
    for i in range(1000):
        store.append("loss", losses[i], i)
    append_ns = (ns() - t0) / 1000
    t0 = ns()
    (busy @ x).sum().item()
    item_ns = ns() - t0
    got = [p.value for p in store.page(0).series["loss"]]
    values_ok = got == expected
    print(f"  MetricsStore.append(CUDA 0-d tensor)          mean {append_ns / 1000:7.2f} µs "
          f"while the GPU is busy; one .item() then: {item_ns / 1000:9.2f} µs; "
          f"values read back {'PASS' if values_ok else 'FAIL'}")
    return values_ok


if __name__ == "__main__":
    sys.exit(main())
