"""Ledger: a real SQLite file; points round-trip (NaN, ±inf), resumed runs continue their curve,
history outlives the config, downsampling keeps spikes and non-finite points."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import pytest
from colabtui_remote.schema import PROTOCOL_VERSION, GpuStats, MetricPoint, MetricsPage, Status

from colabtui.config import Config, SessionConfig, save_config
from colabtui.ledger import ROLLUP_WIDTHS, Ledger, iter_pages


def status(session_id: str, run: str = "run-a", state: str = "running", step: int = 0,
           gpus: tuple[str, ...] = ("Tesla T4",), started_at: float | None = None) -> Status:
    return Status(protocol=PROTOCOL_VERSION, run=run, session_id=session_id, label="label",
                  state=state, step=step, started_at=started_at,
                  gpus=[GpuStats(index=i, name=n) for i, n in enumerate(gpus)])


def page(series: dict[str, list[MetricPoint]]) -> MetricsPage:
    last = max((p.seq for pts in series.values() for p in pts), default=0)
    return MetricsPage(after=0, next_after=last, last_seq=last, more=False, thinned=False,
                       series=series)


def pts(steps, value=lambda s: 1.0 / (1 + s), first_seq: int = 1) -> list[MetricPoint]:
    return [MetricPoint(first_seq + i, s, 1000.0 + s, value(s)) for i, s in enumerate(steps)]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.fixture
def ledger(tmp_path: Path):
    led = Ledger(tmp_path / "data" / "ledger.sqlite3")
    yield led
    led.close()


def test_points_round_trip_with_nonfinite_values(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    values = [0.5, math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]
    series = [MetricPoint(i + 1, i * 10, 100.0 + i, v) for i, v in enumerate(values)]
    with Ledger(path) as led:
        led.record_status("s-1", "http://h:1", "", status("sess-1"), now=1.0)
        led.add_points("run-a", "sess-1", page({"loss": series}))
    with Ledger(path) as led:  # a new process would see the same
        got = led.load_series("run-a")["loss"]
        assert led.last_seq("sess-1") == len(values)
    assert [(p.seq, p.step, p.time) for p in got] == [(p.seq, p.step, p.time) for p in series]
    assert all(same(a.value, b.value) for a, b in zip(got, series, strict=True))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_page_twice_is_stored_once(ledger: Ledger) -> None:
    p = page({"loss": pts(range(5))})
    ledger.add_points("run-a", "sess-1", p)
    ledger.add_points("run-a", "sess-1", p)
    assert len(ledger.load_series("run-a")["loss"]) == 5
    assert ledger.last_seq("sess-1") == 5
    assert ledger.last_seq("never-seen") == 0


def test_resumed_run_continues_its_curve_later_session_wins(ledger: Ledger) -> None:
    # Session 1 logs steps 0..119 and dies; its last checkpoint was at step 100, so session 2
    # resumes at 101 and logs again over 101..119 (different values) and on to 200.
    ledger.record_status("s-1", "http://h:1", "", status("sess-1", started_at=10.0), now=10.0)
    ledger.add_points("run-a", "sess-1", page({"loss": pts(range(120), lambda s: 1.0)}))
    ledger.record_end("sess-1", "lost", now=20.0)
    ledger.record_status("s-1", "http://h:1", "", status("sess-2", started_at=30.0), now=30.0)
    ledger.add_points("run-a", "sess-2", page({"loss": pts(range(101, 201), lambda s: 2.0)}))
    curve = ledger.load_series("run-a")["loss"]
    assert [p.step for p in curve] == list(range(201))
    assert {p.value for p in curve if p.step <= 100} == {1.0}
    assert {p.value for p in curve if p.step > 100} == {2.0}


def test_curve_cut_at_resume_also_when_downsampled(ledger: Ledger) -> None:
    n = 50_000
    ledger.record_status("k", "u", "", status("old", started_at=1.0), now=1.0)
    for p in iter_pages("run-a", {"loss": [(s, 1.0) for s in range(n)]}, page_size=20_000):
        ledger.add_points("run-a", "old", p)
    ledger.record_status("k", "u", "", status("new", started_at=2.0), now=2.0)
    resume = 30_001  # not on a roll-up bucket boundary
    assert resume % ROLLUP_WIDTHS[0]
    for p in iter_pages("run-a", {"loss": [(s, 2.0) for s in range(resume, n + 5000)]}):
        ledger.add_points("run-a", "new", p)
    curve = ledger.load_series("run-a", max_points=500)["loss"]
    assert len(curve) <= 500 + 2
    assert all(p.value == 1.0 for p in curve if p.step < resume)
    assert all(p.value == 2.0 for p in curve if p.step >= resume)
    assert curve[0].step == 0 and curve[-1].step == n + 4999


def test_downsampling_keeps_spikes_and_nonfinite(ledger: Ledger) -> None:
    n = 200_000

    def value(s: int) -> float:
        if s == 123_457:
            return 99.0
        if s == 150_001:
            return -5.0
        if s == 170_003:
            return math.nan
        if s == 180_005:
            return math.inf
        return 1.0 + (s % 7) * 0.01

    for p in iter_pages("run-a", {"loss": [(s, value(s)) for s in range(n)],
                                  "lr": [(s, 1e-3) for s in range(0, n, 1000)]}):
        ledger.add_points("run-a", "sess-1", p)
    for max_points in (4000, 300, 20_000):  # roll-up levels and raw GROUP BY
        series = ledger.load_series("run-a", max_points=max_points)
        loss = series["loss"]
        assert len(loss) <= max_points + 4
        finite = [p.value for p in loss if math.isfinite(p.value)]
        assert max(finite) == 99.0 and min(finite) == -5.0
        assert [p.step for p in loss if math.isnan(p.value)] == [170_003]
        assert [p.step for p in loss if p.value == math.inf] == [180_005]
        assert [p.step for p in loss] == sorted(p.step for p in loss)
        assert len(series["lr"]) == 200  # short series come back whole


def test_history_kept_after_removal_from_config(tmp_path: Path, ledger: Ledger) -> None:
    session = SessionConfig("http://127.0.0.1:9", "t" * 20, "gone soon")
    config_path = tmp_path / "config.toml"
    save_config(Config([session]), config_path)
    ledger.record_status(session.key, session.url, session.label,
                         status("sess-1", gpus=("A100", "A100"), step=7), now=100.0)
    ledger.add_points("run-a", "sess-1", page({"loss": pts(range(10))}))
    save_config(Config([]).without(session.key), config_path)
    [row] = ledger.sessions()
    assert (row.session_key, row.url, row.label, row.run) == (session.key, session.url,
                                                              "gone soon", "run-a")
    assert row.gpu == "2× A100" and row.step == 7
    assert len(ledger.load_series("run-a")["loss"]) == 10


def test_sessions_newest_first_and_how_they_ended(ledger: Ledger) -> None:
    ledger.record_status("k", "u", "", status("a"), now=1.0)
    ledger.record_status("k", "u", "", status("b"), now=2.0)
    ledger.record_status("k", "u", "", status("a", state="finished"), now=3.0)
    ledger.record_end("b", "lost", now=4.0)
    rows = {r.session_id: r for r in ledger.sessions()}
    assert [r.session_id for r in ledger.sessions()] == ["a", "b"]
    assert (rows["a"].ended, rows["a"].ended_at, rows["a"].first_seen) == ("finished", 3.0, 1.0)
    assert rows["b"].ended == "lost"
    ledger.record_status("k", "u", "", status("b"), now=5.0)  # lost, then answered again
    assert {r.session_id: r.ended for r in ledger.sessions()}["b"] is None
    with pytest.raises(ValueError, match="how must be one of"):
        ledger.record_end("a", "exploded", now=6.0)


def test_points_before_any_status_are_kept(ledger: Ledger) -> None:
    ledger.add_points("run-a", "sess-x", page({"loss": pts(range(3))}))
    ledger.record_status("k", "u", "lbl", status("sess-x"), now=9.0)
    assert len(ledger.load_series("run-a")["loss"]) == 3
    assert ledger.sessions()[0].first_seen == 9.0


def test_other_runs_stay_apart(ledger: Ledger) -> None:
    ledger.add_points("run-a", "s1", page({"loss": pts(range(3))}))
    ledger.add_points("run-b", "s2", page({"loss": pts(range(7))}))
    assert len(ledger.load_series("run-b")["loss"]) == 7
    assert ledger.load_series("nothing") == {}
    assert ledger.runs() == ["run-a", "run-b"]


def test_safe_from_several_threads(ledger: Ledger) -> None:
    errors = []

    def work(i: int) -> None:
        try:
            for k in range(20):
                ledger.add_points(f"run-{i}", f"s{i}",
                                  page({"loss": pts(range(k * 10, k * 10 + 10), first_seq=k * 10 + 1)}))
                ledger.load_series(f"run-{i}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(len(ledger.load_series(f"run-{i}")["loss"]) == 200 for i in range(4))


def test_not_a_database_is_an_error_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        Ledger(path)
    assert path.read_bytes() == b"this is not sqlite" * 100
