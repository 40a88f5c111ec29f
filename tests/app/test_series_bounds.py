"""A panel's series stay bounded however long a run logs (bench/bench_app_memory.py measures
the app's RSS; here, what bounds it), and thinning keeps what a chart shows."""

from __future__ import annotations

import math

from colabtui_remote.schema import MetricPoint
from ui_fixtures import NOW, frozen_clock, three_sessions, write_config

from colabtui.app import ColabTuiApp
from colabtui.widgets.chart_data import thin_points
from colabtui.widgets.session_panel import MAX_POINTS_IN_MEMORY, PollResult


def series(n: int, first: int = 0, spike_at: int | None = None,
           nan_at: tuple[int, ...] = ()) -> list[MetricPoint]:
    pts = []
    for i in range(first, first + n):
        value = 1.0 + 0.1 * math.sin(i / 5)
        if i == spike_at:
            value = 50.0
        if i in nan_at:
            value = math.nan
        pts.append(MetricPoint(i + 1, i, NOW + i, value))
    return pts


def test_thinning_keeps_ends_spikes_and_the_first_nonfinite_point_of_each_bucket():
    pts = series(20_000, spike_at=12_345, nan_at=(500, 501, 502, 15_000))
    pts[7_000] = pts[7_000]._replace(value=-math.inf)
    thin = thin_points(pts, 1000)
    assert len(thin) <= 1000 + 2 + 3  # min and max a bucket, the ends, 3 non-finite
    assert thin[0] == pts[0] and thin[-1] == pts[-1]
    assert [p.step for p in thin] == sorted(p.step for p in thin)
    assert max(p.value for p in thin if math.isfinite(p.value)) == 50.0, "the spike stays"
    assert min(p.value for p in thin if math.isfinite(p.value)) == \
        min(p.value for p in pts if math.isfinite(p.value))
    nans = [p.step for p in thin if math.isnan(p.value)]
    assert nans == [500, 15_000], "one NaN per bucket, each bucket's first"
    assert any(p.value == -math.inf for p in thin)
    assert thin_points(pts[:10], 1000) == pts[:10]
    assert thin_points([], 10) == []


async def test_a_long_run_keeps_a_bounded_series_in_the_panel(tmp_path):
    session = three_sessions()[0]
    write_config(tmp_path / "config.toml", [session])
    app = ColabTuiApp(tmp_path / "config.toml", tmp_path / "ledger.sqlite3",
                      clock=frozen_clock, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        panel = app.panels[0]
        key = session.config.key
        chunk = 4_000
        for k in range(10):  # 40,000 points, four times the bound
            pts = series(chunk, first=k * chunk, spike_at=22_222)
            panel.apply(PollResult(key, NOW, status=session.status, new_points={"loss": pts}))
            assert len(panel.series["loss"]) <= MAX_POINTS_IN_MEMORY
        await pilot.pause()
        shown = panel.series["loss"]
        assert shown[0].step == 0 and shown[-1].step == 10 * chunk - 1
        assert max(p.value for p in shown) == 50.0, "the spike is still on the chart"
        assert len(shown) >= MAX_POINTS_IN_MEMORY // 4, "thinned, not emptied"
