"""Memory of a long run's metrics, and the size of the largest /v1/metrics response.

Logs 10 million points across 3 series (loss, acc, lr) into a default MetricsStore, then prints:

* what the store holds (memory_bytes(), and the process's RSS growth) beside the reference, a
  plain list with one (seq, step, time, value) tuple per point, measured with tracemalloc on 1 %
  of the points in the same run and scaled up; target ≤ 100 MB;
* the largest /v1/metrics body (wire.dumps(page.to_wire())) over 120 pages fetched as a client
  does, from 40 starting seqs spread over the whole range; target ≤ 256 KB. Values are chosen for long JSON: 17 significant
  digits, exponents up to ±300, and some NaN/±inf.

    python bench/bench_metrics_memory.py [--points 10000000]
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import sys
import time
import tracemalloc

from colabtui_remote import wire
from colabtui_remote.metrics import MetricsStore

MEMORY_TARGET = 100 * 1000 * 1000
PAGE_TARGET = 256 * 1024


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def long_values(n: int) -> list[float]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        if i % 97 == 0:
            out.append((math.nan, math.inf, -math.inf)[i % 3])
        else:
            out.append(rng.choice((-1, 1)) * rng.random() * 10.0 ** rng.randint(-300, 300))
    return out


def naive_bytes_per_point(sample: int, values: list[float]) -> float:
    """The reference: a tuple per point in a list, as a first version would keep them."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    now = time.time()
    points = [(i + 1, i, now + i, values[i & 1023] * 1.0) for i in range(sample)]
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del points
    return held / sample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000_000)
    args = parser.parse_args()
    n = args.points
    values = long_values(1024)
    names = ("loss", "acc", "lr")

    gc.collect()
    rss0 = rss_bytes()
    store = MetricsStore()
    append = store.append
    cpu0 = time.process_time()
    start = time.perf_counter()
    for i in range(n):
        append(names[i % 3], values[i & 1023], i // 3)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    held = store.memory_bytes()
    gc.collect()
    rss1 = rss_bytes()
    stored = len(store)
    naive = naive_bytes_per_point(n // 100, values) * n  # after the RSS figure: it frees

    print(f"{n:,} points logged across 3 series in {seconds:.1f} s wall, {cpu:.1f} s CPU "
          f"({cpu / n * 1e6:.2f} µs CPU a point, loop and thinning included); "
          f"{stored:,} points kept")
    mem_ok = held <= MEMORY_TARGET
    print(f"  store memory_bytes()   {held / 1e6:8.1f} MB   reference (tuple per point) "
          f"{naive / 1e6:8.1f} MB   ratio {held / naive:.3f}   target ≤ 100 MB: "
          f"{'PASS' if mem_ok else 'FAIL'}")
    if rss0 is not None and rss1 is not None:
        print(f"  process RSS growth     {(rss1 - rss0) / 1e6:8.1f} MB   (includes the allocator's "
              "free lists)")
        mem_ok &= rss1 - rss0 <= MEMORY_TARGET

    # Pages as a client fetches them, from 40 starting points spread over the whole range
    # (old thinned levels, the recent level; short and long seq numbers), 3 pages from each.
    start = time.perf_counter()
    pages, largest, total_points, thinned = 0, 0, 0, False
    last = store.last_seq
    for k in range(40):
        after = last * k // 40
        for _ in range(3):
            page = store.page(after)
            body = wire.dumps(page.to_wire())
            largest = max(largest, len(body))
            total_points += sum(len(p) for p in page.series.values())
            thinned |= page.thinned
            pages += 1
            after = page.next_after
            if not page.more:
                break
    page_ok = largest <= PAGE_TARGET
    print(f"  largest /v1/metrics    {largest / 1024:8.1f} KB   over {pages} pages "
          f"({total_points:,} points, {time.perf_counter() - start:.1f} s; thinned={thinned})   "
          f"ratio {largest / PAGE_TARGET:.2f} of target   target ≤ 256 KB: "
          f"{'PASS' if page_ok else 'FAIL'}")
    ok = mem_ok and page_ok
    print(f"\nbench_metrics_memory: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
