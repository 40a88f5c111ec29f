"""MetricsStore: seq order, paging, thinning, memory bound, non-finite values, threads."""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import tracemalloc
from array import array
from fractions import Fraction

import numpy as np
import pytest
import torch
from colabtui_remote import schema, wire
from colabtui_remote.metrics import BUCKET, MetricsStore, _Level, _thin


def drain(store: MetricsStore, after: int = 0, limit: int = schema.MAX_METRICS_POINTS):
    """Page through everything after ``after`` as a client does; (points by series, pages)."""
    got: dict[str, list[schema.MetricPoint]] = {}
    pages = []
    while True:
        page = store.page(after, limit)
        pages.append(page)
        for name, pts in page.series.items():
            got.setdefault(name, []).extend(pts)
        after = page.next_after
        if not page.more:
            return got, pages


def test_points_come_back_in_seq_order_with_step_and_time():
    store = MetricsStore()
    assert store.last_seq == 0 and store.latest() == {}
    for step in range(100):
        store.append("loss", 1.0 / (step + 1), step)
        if step % 10 == 0:
            store.append("lr", 0.1, step)
    page = store.page(0)
    assert store.last_seq == page.last_seq == page.next_after == 110
    assert not page.more and not page.thinned and page.after == 0
    loss, lr = page.series["loss"], page.series["lr"]
    assert [p.step for p in loss] == list(range(100))
    assert [p.value for p in loss] == [1.0 / (s + 1) for s in range(100)]
    assert [p.step for p in lr] == list(range(0, 100, 10))
    seqs = sorted(p.seq for p in loss + lr)
    assert seqs == list(range(1, 111)), "seq numbers are global across series, from 1"
    assert all(a.seq < b.seq and a.time <= b.time for a, b in zip(loss, loss[1:], strict=False))
    assert store.latest() == {"loss": 0.01, "lr": 0.1}


def test_after_returns_only_newer_points():
    store = MetricsStore()
    for step in range(10):
        store.append("loss", float(step), step)
    first = store.page(0)
    assert store.page(first.next_after).series == {}
    assert store.page(first.next_after).next_after == first.next_after
    store.append("loss", 10.0, 10)
    store.append("acc", 0.5, 10)
    page = store.page(first.next_after)
    assert {n: [p.value for p in pts] for n, pts in page.series.items()} == {
        "loss": [10.0], "acc": [0.5]}
    assert page.next_after == 12
    assert store.page(-5).series == store.page(0).series, "after < 0 counts as 0"
    assert store.page(-5).after == 0
    assert store.page(1000).series == {} and store.page(1000).next_after == 1000


def test_limit_cuts_at_the_lowest_seqs_across_series_and_says_more():
    store = MetricsStore()
    logged = {"a": [], "b": [], "c": []}
    for step in range(50):
        for name in random.Random(step).sample(sorted(logged), k=2):
            store.append(name, step * 0.5, step)
            logged[name].append(step)
    page = store.page(0, limit=7)
    assert page.more and page.next_after == 7
    assert sum(len(p) for p in page.series.values()) == 7
    assert sorted(p.seq for pts in page.series.values() for p in pts) == list(range(1, 8))
    got, pages = drain(store, limit=7)
    assert all(p.more for p in pages[:-1]) and not pages[-1].more
    assert {n: [p.step for p in pts] for n, pts in got.items()} == logged
    exact = store.page(0, limit=100)  # exactly 100 points logged: nothing more
    assert not exact.more and exact.next_after == 100
    with pytest.raises(ValueError, match="limit"):
        store.page(0, limit=0)


def test_thin_keeps_min_max_and_first_nonfinite_of_each_bucket():
    vals = [5, 1, 9, 3, 3, 3, 3, 3,                       # min 1 at 1, max 9 at 2
            2, 2, 2, 2, 2, 2, 2, 2,                       # flat: one point
            4, math.nan, 0, 7, math.nan, math.inf, 6, -math.inf,
            math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan]
    n = len(vals)
    lvl = _Level(array("q", range(1, n + 1)), array("q", range(100, 100 + n)),
                 array("d", [1000.0 + i for i in range(n)]), array("d", vals))
    kept, dropped_max = _thin(lvl, n)
    idx = [s - 1 for s in kept.seq]
    assert idx == [1, 2, 8, 17, 18, 19, 21, 23, 24]
    assert list(kept.step) == [100 + i for i in idx], "kept points keep their own step"
    assert list(kept.time) == [1000.0 + i for i in idx], "and their own time"
    assert dropped_max == n, "the last NaN of the all-NaN bucket was dropped"
    assert BUCKET == 8
    head, _ = _thin(lvl, 20)  # a partial last bucket: nothing beyond it is touched
    assert [s - 1 for s in head.seq] == [1, 2, 8, 17, 18, 19]


def test_thinning_keeps_spikes_and_nan_and_flags_the_gap():
    store = MetricsStore(recent_points=200, max_bytes=64 * 1024)
    rng = random.Random(0)
    logged = {}
    for step in range(40_000):
        value = rng.random()
        if step % 997 == 0:
            value = 1000.0 + step  # spikes, far apart
        elif step % 1499 == 0:
            value = -1000.0 - step
        elif step in (12_345, 23_456):
            value = math.nan
        elif step == 31_000:
            value = math.inf
        store.append("loss", value, step)
        logged[step] = value
    got, pages = drain(store)
    points = got["loss"]
    assert len(points) < 40_000 / 4, "older points were thinned"
    assert all(p.step == p.seq - 1 for p in points), "kept points are real ones"
    assert all(p.value == logged[p.step] or (math.isnan(p.value) and math.isnan(logged[p.step]))
               for p in points)
    kept = {p.step for p in points}
    spikes = {s for s in logged if s % 997 == 0 or (s % 1499 == 0 and s % 997)}
    assert spikes <= kept, "every spike and dip survives thinning"
    assert {12_345, 23_456, 31_000} <= kept, "non-finite values survive thinning"
    assert [p.step for p in points[-200:]] == list(range(39_800, 40_000)), "recent: all of it"
    assert pages[0].thinned
    assert not store.page(store.last_seq - 100).thinned, "the recent range has no gap"


def test_memory_stays_bounded_and_is_reported_honestly():
    max_bytes = 128 * 1024
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        store = MetricsStore(recent_points=50_000, max_bytes=max_bytes)
        for step in range(30_000):
            store.append("loss", step * 1e-3, step)
            store.append("acc", 1.0 - step * 1e-5, step)
            store.append("lr", 3e-4, step)
        reported = store.memory_bytes()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(store) < 90_000 / 10
    assert reported <= max_bytes
    assert held <= reported * 1.25 + 32 * 1024, "memory_bytes() counts what the store holds"
    assert store.latest() == {"loss": 29_999 * 1e-3, "acc": 1.0 - 29_999 * 1e-5, "lr": 3e-4}


def test_nonfinite_values_are_stored_and_go_on_the_wire_as_null_with_a_marker():
    store = MetricsStore()
    for step, value in enumerate([1.5, math.nan, math.inf, -math.inf, 2.5]):
        store.append("loss", value, step)
    latest = store.latest()["loss"]
    assert latest == 2.5
    store.append("grad_norm", math.inf, 5)
    assert store.latest()["grad_norm"] == math.inf
    body = wire.dumps(store.page(0).to_wire())

    def refuse(name):
        raise AssertionError(f"bare {name} in JSON")

    doc = json.loads(body, parse_constant=refuse)
    assert [p[3:] for p in doc["series"]["loss"]] == [
        [1.5, None], [None, "nan"], [None, "inf"], [None, "-inf"], [2.5, None]]
    parsed = schema.parse_metrics(doc)
    values = [p.value for p in parsed.series["loss"]]
    assert math.isnan(values[1]) and values[2] == math.inf and values[3] == -math.inf


@pytest.mark.parametrize("values", [
    [0.5, 1.25, 3.0],  # finite: the fast way
    [1.5, math.nan, math.inf, -math.inf, 2.5],  # markers
    [1e308, 1e308],  # finite, but their sum is not
])
@pytest.mark.parametrize("limit", [2, 7, schema.MAX_METRICS_POINTS])
def test_the_wire_page_the_server_sends_is_the_page_encoded(values, limit):
    store = MetricsStore(recent_points=16)
    for step in range(60):
        store.append("loss", values[step % len(values)], step)
        if step % 3 == 0:
            store.append("lr", 0.1 / (step + 1), step)
    after = 0
    while True:  # the same cut, the same rows, page after page, thinned levels included
        page = store.page(after, limit)
        assert store.page_wire(after, limit) == page.to_wire()
        assert wire.dumps(store.page_wire(after, limit)) == wire.dumps(page.to_wire())
        after = page.next_after
        if not page.more:
            break
    assert store.page_wire(after, limit)["series"] == {}


@pytest.mark.parametrize("thinning", [False, True])
def test_a_reader_paging_while_the_training_thread_appends(thinning):
    store = (MetricsStore(recent_points=200, max_bytes=64 * 1024) if thinning
             else MetricsStore(recent_points=100_000))
    names = ("loss", "acc", "lr")
    total = 200_000
    errors: list[BaseException] = []

    def train():
        try:
            for i in range(total):
                store.append(names[i % 3], float(i), i)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=train)
    got: dict[str, list[tuple[int, int, float]]] = {n: [] for n in names}
    after = 0
    pages = 0
    writer.start()
    while writer.is_alive() or after < store.last_seq:
        page = store.page(after)
        if writer.is_alive():  # pages taken mid-append go through the wire and its parser
            page = schema.parse_metrics(wire.loads(wire.dumps(page.to_wire())))
        assert page.next_after >= after
        for name, pts in page.series.items():
            assert [p.seq for p in pts] == sorted({p.seq for p in pts}), "strictly increasing"
            if got[name] and pts:
                assert pts[0].seq > got[name][-1][0], "never a point twice"
            got[name].extend((p.seq, p.step, p.value) for p in pts)
        after = page.next_after
        pages += 1
    writer.join()
    assert not errors
    assert pages > 1
    for name in names:
        assert all(step == value for _, step, value in got[name]), "columns stay aligned"
        assert all(step % 3 == names.index(name) for _, step, _ in got[name])
    if not thinning:  # nothing thinned: the client rebuilt every point
        assert sum(len(v) for v in got.values()) == total
        assert sorted(seq for v in got.values() for seq, _, _ in v) == list(range(1, total + 1))


def test_several_threads_may_log_at_once():
    store = MetricsStore(recent_points=100_000)

    def log(offset):
        for step in range(offset, offset + 20_000):
            store.append("loss", float(step), step)

    threads = [threading.Thread(target=log, args=(k * 100_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got, _ = drain(store)
    points = got["loss"]
    assert len(points) == 80_000 and store.last_seq == 80_000
    assert all(p.value == p.step for p in points)
    assert [p.seq for p in points] == list(range(1, 80_001))


@pytest.mark.parametrize("value, error, words", [
    ("0.5", TypeError, "got str"),
    (None, TypeError, "got NoneType"),
    (1 + 2j, TypeError, "got complex"),
    ([0.5], TypeError, "got list"),
    (torch.tensor([0.5, 0.25]), ValueError, r"shape \(2,\)"),
    (torch.zeros(1, 1), ValueError, r"shape \(1, 1\)"),
    (torch.tensor(1 + 1j), TypeError, "complex"),
    (np.array([1.0, 2.0]), ValueError, r"shape \(2,\)"),
    (10**400, ValueError, "too large"),
])
def test_bad_values_are_refused_clearly_and_lose_nothing(value, error, words):
    store = MetricsStore()
    store.append("loss", 0.5, 0)
    before = store.page(0)
    with pytest.raises(error, match=words):
        store.append("loss", value, 1)
    assert store.page(0) == before
    store.append("loss", 0.25, 1)
    assert [p.value for p in store.page(0).series["loss"]] == [0.5, 0.25]


def test_bad_steps_and_names_are_refused_clearly_and_lose_nothing():
    store = MetricsStore()
    store.append("loss", 0.5, 0)
    with pytest.raises(TypeError, match="step must be an integer"):
        store.append("loss", 0.5, 1.5)
    with pytest.raises(TypeError, match="step must be an integer"):
        store.append("loss", 0.5, 2**63)
    with pytest.raises(TypeError, match="name must be a string"):
        store.append(b"loss", 0.5, 1)
    with pytest.raises(ValueError, match="1 to 512 characters"):
        store.append("", 0.5, 1)
    for i in range(schema.MAX_METRIC_NAMES - 1):
        store.append(f"m{i}", 1.0, 1)
    with pytest.raises(ValueError, match="at most 64 series"):
        store.append("one_too_many", 1.0, 1)
    assert len(store.latest()) == schema.MAX_METRIC_NAMES
    assert store.last_seq == schema.MAX_METRIC_NAMES
    with pytest.raises(ValueError, match="recent_points"):
        MetricsStore(recent_points=4)
    with pytest.raises(ValueError, match="max_bytes"):
        MetricsStore(max_bytes=1000)


def test_tensors_and_numpy_scalars_are_accepted():
    store = MetricsStore()
    weight = torch.tensor(2.0, requires_grad=True)
    store.append("loss", (weight * 3).sum(), 0)  # a 0-d tensor with a graph behind it
    store.append("loss", torch.tensor(7, dtype=torch.int64), 1)
    store.append("loss", torch.tensor(0.5, dtype=torch.bfloat16), 2)
    store.append("loss", np.float32(0.25), np.int64(3))
    store.append("loss", np.array(1.5), 4)
    store.append("loss", True, 5)
    store.append("loss", Fraction(1, 4), 6)
    store.append("loss", 3, 7)
    points = store.page(0).series["loss"]
    assert [p.value for p in points] == [6.0, 7.0, 0.5, 0.25, 1.5, 1.0, 0.25, 3.0]
    assert [p.step for p in points] == list(range(8))
    assert all(type(p.value) is float for p in points)


def test_a_tensor_off_the_cpu_is_read_by_the_reader_not_on_the_hot_path(caplog):
    """A ``meta`` tensor is a real torch tensor on a device other than the CPU, with no data:
    ``.item()`` on it raises. Logging it must not call ``.item()`` (no error in append); the
    reader resolves it later, and a value that cannot be read is stored as NaN with a warning.
    Points logged after it in the same series stay behind it."""
    store = MetricsStore()
    store.append("loss", 1.0, 0)
    store.append("loss", torch.empty((), device="meta"), 1)  # would raise if read here
    store.append("loss", 3.0, 2)
    store.append("acc", 0.5, 2)
    with caplog.at_level(logging.DEBUG, logger="colabtui_remote.metrics"):
        page = store.page(0)
    loss = page.series["loss"]
    assert [p.step for p in loss] == [0, 1, 2] and [p.seq for p in loss] == [1, 2, 3]
    assert loss[0].value == 1.0 and math.isnan(loss[1].value) and loss[2].value == 3.0
    assert "could not read a logged device value" in caplog.text
    assert store.latest() == {"loss": 3.0, "acc": 0.5}


def test_device_values_nobody_reads_stay_bounded():
    store = MetricsStore()
    for step in range(800):  # the appender waits for the oldest beyond 256 queued
        store.append("loss", torch.empty((), device="meta"), step)
    assert len(store._series["loss"].pending) <= 2 * 256
    assert store.last_seq == 800 and len(store) == 800
