"""Startup with a big history: 3 runs of 1 million metric points each, read for the first frame.

Fills a ledger (one session per run, 1,000,000 ``loss`` points each, pages of 100,000 points
through ``Ledger.add_points``), then times, from a freshly opened ledger, ``load_series`` of the
three runs as the app's first frame asks for them (``max_points`` 4000 each).

Reference, measured in the same run: reading the raw rows of the three runs (``SELECT step,
value``: what drawing from the full history would cost before any downsampling). Target (the
laptop-side issue): the app's first frame within 2 s; the figure must also stay well below the
reference. When ``colabtui.app`` is importable, ``ColabTuiApp(...).run_test()`` to its first
frame (no polling, panels loading their history from this ledger) is timed too.

    python bench/bench_ledger_startup.py [--points 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from colabtui_remote.schema import PROTOCOL_VERSION, GpuStats, Status

from colabtui.config import Config, SessionConfig, save_config
from colabtui.ledger import Ledger, iter_pages

TARGET_S = 2.0


def fill(path: Path, runs: int, points: int) -> list[SessionConfig]:
    rng = random.Random(0)
    sessions = []
    with Ledger(path) as ledger:
        for r in range(runs):
            run = f"digits-run{r}"
            cfg = SessionConfig(f"http://127.0.0.1:{9100 + r}", "bench-token-0123456789", run)
            sessions.append(cfg)
            status = Status(protocol=PROTOCOL_VERSION, run=run, session_id=f"sess-{r}", label=run,
                            state="running", step=points, started_at=1000.0,
                            gpus=[GpuStats(index=0, name="Tesla T4")])
            ledger.record_status(cfg.key, cfg.url, cfg.label, status, now=1000.0)
            series = [(s, 2.3 * math.exp(-s / (points / 5)) + 0.05 * rng.random())
                      for s in range(points)]
            for page in iter_pages(run, {"loss": series}):
                ledger.add_points(run, f"sess-{r}", page)
    return sessions


def time_first_frame_data(path: Path, runs: int) -> tuple[float, int]:
    start = time.perf_counter()
    ledger = Ledger(path)
    total = 0
    for r in range(runs):
        total += sum(len(v) for v in ledger.load_series(f"digits-run{r}", max_points=4000).values())
    elapsed = time.perf_counter() - start
    ledger.close()
    return elapsed, total


def time_raw_read(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    db = sqlite3.connect(path)
    rows = db.execute("SELECT step, value FROM points").fetchall()
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed, len(rows)


def time_app(config_path: Path, ledger_path: Path) -> float | None:
    try:
        from colabtui.app import ColabTuiApp
    except Exception as exc:  # noqa: BLE001 - the app is optional here
        print(f"app: not timed ({type(exc).__name__}: {exc})")
        return None

    async def first_frame() -> float:
        start = time.perf_counter()
        app = ColabTuiApp(config_path, ledger_path, poll=False)
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            return time.perf_counter() - start

    return asyncio.run(first_frame())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=1_000_000, help="points per run (1,000,000)")
    p.add_argument("--runs", type=int, default=3, help="runs, one session each (3)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite3"
        start = time.perf_counter()
        sessions = fill(path, args.runs, args.points)
        fill_s = time.perf_counter() - start
        n = args.runs * args.points
        print(f"fill: {n:,} points in {fill_s:.1f} s ({n / fill_s:,.0f} points/s), "
              f"file {path.stat().st_size / 1e6:.0f} MB")

        load_s, kept = min(time_first_frame_data(path, args.runs) for _ in range(3))
        ref_s, raw = time_raw_read(path)
        print(f"first-frame data (open + load_series x{args.runs}, max_points 4000): "
              f"{load_s * 1e3:.0f} ms, {kept:,} points kept")
        print(f"reference (read the {raw:,} raw rows): {ref_s * 1e3:.0f} ms")
        print(f"ratio: {load_s / ref_s:.3f} of the reference")
        ok = load_s < TARGET_S

        config_path = Path(tmp) / "config.toml"
        save_config(Config(sessions=sessions), config_path)
        app_s = time_app(config_path, path)
        if app_s is not None:
            print(f"app: ColabTuiApp.run_test() to first frame with this history: "
                  f"{app_s * 1e3:.0f} ms")
            ok = ok and app_s < TARGET_S
        print(f"{'PASS' if ok else 'FAIL'} (target: first frame within {TARGET_S:g} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
