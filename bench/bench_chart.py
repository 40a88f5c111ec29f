"""Drawing one loss chart of 1,000 points, through to a finished frame.

A headless app (``App.run_test``, 160x48) holds one :class:`LossChart` 50 columns wide and 32
rows high. One draw is ``set_series()`` of a 1,000-point loss-like curve (3 NaN, one spike)
followed by the frames that paint it (``pilot.pause()`` twice: the chart draws its strips in
the frame that paints it). Two curves alternate
so no draw repeats the previous one. The figure is the median CPU time of a draw
(``time.process_time``) over the repeats.

Reference, in the same run and the same way: Textual's built-in ``Sparkline`` of the same size
given the same 1,000 values, and the frames alone with nothing changed (the harness's floor).
Target (issue 13): ≤ 10 ms (braille lines, 2×4 dots a cell). The time for 100,000 points (a long run; the panel keeps
up to 50,000 in memory per series, more after a reload from the ledger) is printed for
information.

    python bench/bench_chart.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from collections.abc import Callable

from colabtui_remote.schema import MetricPoint
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline

from colabtui.widgets.loss_chart import LossChart

TARGET_S = 0.010
POINTS = 1_000
LARGE_POINTS = 100_000


def loss_points(n: int, phase: float = 0.0) -> list[MetricPoint]:
    """A noisy decaying loss over ``n`` steps with 3 NaN and one spike (deterministic)."""
    nan_at = {n // 3, n // 3 + 1, (2 * n) // 3}
    spike_at = (3 * n) // 5
    points = []
    for i in range(n):
        value = 2.3 * math.exp(-5 * i / n) + 0.08 + 0.05 * math.sin(0.7 * i + phase)
        if i == spike_at:
            value = 9.0
        if i in nan_at:
            value = math.nan
        points.append(MetricPoint(i + 1, i * 10, 1.76e9 + i, value))
    return points


class ChartApp(App):
    CSS = """
    Horizontal { height: 32; }
    LossChart, Sparkline { width: 50; height: 32; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield LossChart(id="chart")
            yield Sparkline([], id="spark")


async def median_cpu(pilot, draw: Callable[[int], None], repeats: int) -> float:
    """Median CPU seconds of ``draw(i)`` plus the two frames that paint it."""
    times = []
    for i in range(repeats + 2):  # the first two warm caches and are dropped
        t0 = time.process_time()
        draw(i)
        await pilot.pause()
        await pilot.pause()
        if i >= 2:
            times.append(time.process_time() - t0)
    return statistics.median(times)


async def run(repeats: int) -> dict[str, float]:
    app = ChartApp()
    curves = [loss_points(POINTS, phase) for phase in (0.0, 1.0)]
    values = [[p.value for p in c] for c in curves]
    large = [loss_points(LARGE_POINTS, phase) for phase in (0.0, 1.0)]
    results: dict[str, float] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        chart = app.query_one(LossChart)
        spark = app.query_one(Sparkline)
        if chart.size.width != 50:
            raise SystemExit(f"the chart is {chart.size.width} columns wide, not 50")

        def set_chart(i: int) -> None:
            chart.set_series({"loss": curves[i % 2]})

        def set_spark(i: int) -> None:
            spark.data = values[i % 2]

        def set_large(i: int) -> None:
            chart.set_series({"loss": large[i % 2]})

        def nothing(i: int) -> None:
            pass

        cases: list[tuple[str, Callable[[int], None], int]] = [
            ("floor", nothing, repeats), ("chart", set_chart, repeats),
            ("sparkline", set_spark, repeats), ("chart_100k", set_large, max(5, repeats // 3)),
        ]
        for name, draw, n in cases:
            results[name] = await median_cpu(pilot, draw, n)
        # the chart really drew: the title counts the 3 NaN of the last 100k curve
        title = chart.title.plain
        if "3 NaN" not in title:
            raise SystemExit(f"the chart did not draw the series (title {title!r})")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    r = asyncio.run(run(args.repeats))
    ms = {k: v * 1e3 for k, v in r.items()}
    ok = r["chart"] <= TARGET_S
    print(f"bench_chart: LossChart 50x32 in a 160x48 headless app, set_series() + the frames "
          f"that paint it, median CPU over {args.repeats} draws")
    print(f"  chart, {POINTS:,} points        {ms['chart']:7.1f} ms")
    print(f"  reference: Sparkline, same values {ms['sparkline']:5.1f} ms   ratio "
          f"{r['chart'] / r['sparkline']:5.1f}x")
    print(f"  frames alone (nothing changed)  {ms['floor']:5.1f} ms   (harness floor, included in "
          "both figures above)")
    print(f"  chart, {LARGE_POINTS:,} points      {ms['chart_100k']:7.1f} ms   (for information)")
    print(f"  {'PASS' if ok else 'FAIL'} (target: one chart of {POINTS:,} points drawn in "
          f"≤ {TARGET_S * 1e3:g} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
