"""MetricsStore: the bounded in-memory store behind ``Monitor.log()`` and ``GET /v1/metrics``.

Every logged value gets a sequence number (``seq``), global across series and starting at 1, so a
client asks for "everything after seq N" and never sees a point twice.

Memory stays bounded however long a run is. The newest ``recent_points`` points of each series
are kept at full resolution; older ones move, a chunk at a time, into coarser levels. Each move
keeps, per bucket of :data:`BUCKET` points, the minimum and the maximum and the first NaN, +inf
and -inf, so spikes and divergence survive; the points kept are real points with their original
seq, step and time. Storage is columnar (``array('q')``/``array('d')``): 32 bytes a point.

Threads: :meth:`MetricsStore.append` runs on the training thread and is the hot path: no I/O, no
``.item()`` on a GPU tensor, no waiting on a lock. It puts ``(name, value, step, time)`` on a
deque (thread-safe without a lock); whoever next holds the store's lock gives the queued points
their seq numbers and stores them: the appender itself every :data:`FLUSH_EVERY` points if the
lock is free at that instant, else the reader holding it, which flushes before every read.
"""

from __future__ import annotations

import logging
import math
import operator
import sys
import threading
import time
from array import array
from bisect import bisect_right
from collections import deque
from itertools import repeat
from operator import itemgetter
from typing import Any

from colabtui_remote import schema
from colabtui_remote.metric_values import Pending as _Pending
from colabtui_remote.metric_values import coerce as _coerce

__all__ = ["MetricsStore", "BUCKET", "LEVELS"]

log = logging.getLogger(__name__)

BUCKET = 8
"""Points per thinning bucket. A bucket keeps at most 5 (min, max, NaN, +inf, -inf) and
usually 2, so each level is about 4x coarser than the one before."""

LEVELS = 6
"""Thinned levels above the recent one. With the defaults the coarsest holds one point in
about 4**6 = 4096 of those logged; beyond it the oldest points are re-thinned in place."""

_BUDGET_POINT_BYTES = 36
"""What a point is charged against ``max_bytes``: 32 bytes (seq and step int64, time and value
float64) plus ``array``'s ~6 % over-allocation and the slack of chunks waiting to move."""

FLUSH_EVERY = 256
"""Points an appender queues before it moves them into the series (when the lock is free)."""

QUEUE_MAX = 65_536
"""Points that may queue while a reader holds the lock before an appender waits for it."""

_MAX_PENDING = 256
"""Device values a series may hold unresolved before ``append`` waits for the oldest (a GPU that
far behind the host already stalls it: CUDA's launch queue is about 1024 kernels deep)."""

_time = time.time


class _Level:
    """One resolution level of a series: four equal-length columns in seq order."""

    __slots__ = ("seq", "step", "time", "value")

    def __init__(self, seq: array | None = None, step: array | None = None,
                 time_: array | None = None, value: array | None = None) -> None:
        self.seq = array("q") if seq is None else seq
        self.step = array("q") if step is None else step
        self.time = array("d") if time_ is None else time_
        self.value = array("d") if value is None else value

    def __len__(self) -> int:
        return len(self.seq)

    def extend(self, other: _Level) -> None:
        self.seq.extend(other.seq)
        self.step.extend(other.step)
        self.time.extend(other.time)
        self.value.extend(other.value)

    def replace_head(self, m: int, head: _Level | None) -> None:
        """Put ``head`` (nothing when ``None``) in place of the first ``m`` points."""
        for name in self.__slots__:
            col = getattr(self, name)
            if head is None:
                del col[:m]
            else:
                col[:m] = getattr(head, name)

    def nbytes(self) -> int:
        return (sys.getsizeof(self.seq) + sys.getsizeof(self.step)
                + sys.getsizeof(self.time) + sys.getsizeof(self.value))


class _Series:
    __slots__ = ("name", "levels", "pending")

    def __init__(self, name: str) -> None:
        self.name = name
        self.levels: list[_Level] = [_Level()]  # newest (full resolution) first
        # Points queued behind a device value not yet on the host: (seq, step, time, value).
        self.pending: list[tuple[int, int, float, Any]] = []


def _keep_slow(vals: array) -> tuple[int, ...]:
    """Indices to keep in a bucket holding a non-finite value (or finite values summing to inf)."""
    first: dict[str, int] = {}
    lo = hi = -1
    for i, v in enumerate(vals):
        if v != v:
            first.setdefault("nan", i)
        elif v == math.inf:
            first.setdefault("inf", i)
        elif v == -math.inf:
            first.setdefault("-inf", i)
        else:
            if lo < 0 or v < vals[lo]:
                lo = i
            if hi < 0 or v > vals[hi]:
                hi = i
    keep = set(first.values())
    if lo >= 0:
        keep.update((lo, hi))
    return tuple(sorted(keep))


_ONE = array("d", [0.0])


def _thin(lvl: _Level, m: int, bucket: int = BUCKET) -> tuple[_Level, int]:
    """Thin the first ``m`` points of ``lvl`` bucket by bucket.

    Per bucket of ``bucket`` points the minimum and maximum are kept, and when the bucket holds
    non-finite values, the first NaN, +inf and -inf too.

    Returns:
        The kept points as a new level, and the largest seq dropped (0 when none was).
    """
    seq, val = lvl.seq, lvl.value
    starts = range(0, m, bucket)
    # Whole-bucket work goes through map() over builtins: this runs on the training thread.
    chunks = [val[b:min(b + bucket, m)] for b in starts]
    finite = list(map(math.isfinite, map(sum, chunks)))  # False: a NaN/inf in the bucket
    # min()/max() mean nothing with a NaN in the bucket: those go to _keep_slow instead.
    safe = [c if f else _ONE for c, f in zip(chunks, finite, strict=True)]
    los = map(array.index, safe, map(min, safe))
    his = map(array.index, safe, map(max, safe))
    keep: list[int] = []
    add = keep.append
    for b, ok, lo, hi, chunk in zip(starts, finite, los, his, chunks, strict=True):
        if ok:
            if lo < hi:
                add(b + lo)
                add(b + hi)
            elif hi < lo:
                add(b + hi)
                add(b + lo)
            else:
                add(b + lo)
        else:
            keep.extend(b + k for k in _keep_slow(chunk))
    dropped_max = 0
    kept_tail = set(keep[-2 * bucket:])
    for i in range(m - 1, max(-1, m - 1 - 2 * bucket), -1):
        if i not in kept_tail:
            dropped_max = seq[i]
            break
    else:
        # The last two buckets kept everything (tiny buckets): look further back.
        kept_all = set(keep)
        for i in range(m - 1, -1, -1):
            if i not in kept_all:
                dropped_max = seq[i]
                break
    return _Level(array("q", map(seq.__getitem__, keep)),
                  array("q", map(lvl.step.__getitem__, keep)),
                  array("d", map(lvl.time.__getitem__, keep)),
                  array("d", map(val.__getitem__, keep))), dropped_max


_STEP_MIN = -(2**63)
_STEP_MAX = 2**63 - 1


def _check_step(name: str, step: Any) -> int:
    try:
        value = operator.index(step)
    except TypeError:
        value = None
    if value is None or not _STEP_MIN <= value <= _STEP_MAX:
        raise TypeError(f"metric {name!r}: step must be an integer in int64 range, got {step!r}")
    return value


class MetricsStore:
    """Sequence-numbered metric points per series, in bounded memory.

    Args:
        recent_points: points per series kept at full resolution (fewer when ``max_bytes``
            cannot hold them for every series). At least 16.
        max_bytes: approximate bound on what the store holds, all series together, in bytes.
            At least 16 KiB. With the defaults 3 series of 3.3 million points each take about
            30 MB, and 64 series keep their last ~14 000 points at full resolution.

    Raises:
        ValueError: ``recent_points`` or ``max_bytes`` too small.
    """

    def __init__(self, recent_points: int = 50_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        if recent_points < 16:
            raise ValueError(f"recent_points must be at least 16, got {recent_points}")
        if max_bytes < 16 * 1024:
            raise ValueError(f"max_bytes must be at least 16384, got {max_bytes}")
        self._recent_points = int(recent_points)
        self._max_bytes = int(max_bytes)
        # Appenders only add to this deque (thread-safe, no lock); whoever holds the lock moves
        # its points into the series: an appender every FLUSH_EVERY points if the lock is free,
        # a reader before every read.
        self._queue: deque[tuple[str, Any, int, float]] = deque()
        self._lock = threading.Lock()
        self._names: set[str] = set()  # accepted series names, read without the lock
        self._series: dict[str, _Series] = {}
        self._seq = 0  # last seq handed out (under the lock)
        self._dropped_max = 0  # largest seq thinned away
        self._device_values = False  # a device tensor was logged: look for _Pending on flush
        self._recent_cap = self._chunk = self._level_cap = 0
        self._set_caps(1)

    # ------------------------------------------------------------------ hot path

    def append(self, name: str, value: float | int | Any, step: int) -> None:
        """Record one value of series ``name`` at training step ``step``.

        Runs on the training thread: no I/O, no waiting on a GPU, no waiting on a lock (unless
        a reader has held it while :data:`QUEUE_MAX` points queued up). A CUDA 0-d tensor is
        copied to the host without blocking and read once the copy is done, or when a reader
        asks. NaN and ±inf are stored as they are. Safe to call from several threads.

        Args:
            name: series name, e.g. ``"loss"``; 1 to :data:`schema.MAX_TEXT` characters.
            value: a real number (int, float, numpy scalar) or a 0-d tensor/array.
            step: the training step, an integer in int64 range.

        Raises:
            TypeError: ``value`` is not a number or 0-d tensor, ``step`` is not an integer, or
                ``name`` is not a string.
            ValueError: ``value`` is a tensor/array that is not 0-d or an int too large for a
                float; ``name`` is empty or too long; a new series beyond
                :data:`schema.MAX_METRIC_NAMES`.
        """
        if type(value) is not float:
            value = self._coerce(name, value)
        if type(step) is not int or not _STEP_MIN <= step <= _STEP_MAX:
            step = _check_step(name, step)
        try:
            known = name in self._names
        except TypeError:  # unhashable
            known = False
        if not known:
            self._add_name(name)
        q = self._queue
        q.append((name, value, step, _time()))
        if len(q) >= FLUSH_EVERY:
            self._try_flush(len(q) >= QUEUE_MAX)

    def _coerce(self, name: str, value: Any) -> float | _Pending:
        value = _coerce(name, value)
        if type(value) is _Pending:
            self._device_values = True
        return value

    def _add_name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"metric name must be a string, got {type(name).__name__}")
        if not name or len(name) > schema.MAX_TEXT:
            raise ValueError(f"metric name must be 1 to {schema.MAX_TEXT} characters, "
                             f"got {len(name)}")
        with self._lock:  # once per series
            if name in self._names:
                return
            if len(self._names) >= schema.MAX_METRIC_NAMES:
                raise ValueError(f"metric {name!r}: at most {schema.MAX_METRIC_NAMES} series "
                                 "may be logged (the wire protocol's limit)")
            self._names = self._names | {name}  # replaced, so unlocked readers see old or new
            self._set_caps(len(self._names))

    def _try_flush(self, wait: bool) -> None:
        if self._lock.acquire(wait):
            try:
                self._flush(readers=False)
            finally:
                self._lock.release()

    # ------------------------------------------------------------------ under the lock

    def _flush(self, readers: bool) -> None:
        """Give queued points their seq and store them (lock held).

        Args:
            readers: called for a reader: wait for device values instead of leaving them queued.
        """
        q = self._queue
        n = len(q)
        if n:
            pop = q.popleft
            names, values, steps, times = zip(*[pop() for _ in range(n)], strict=True)
            seq0 = self._seq
            self._seq = seq0 + n
            first = names[0]
            if names.count(first) == n:
                groups = {first: None}
            else:
                groups = {}
                for i, nm in enumerate(names):
                    g = groups.get(nm)
                    if g is None:
                        groups[nm] = [i]
                    else:
                        g.append(i)
            for nm, idx in groups.items():
                s = self._series.get(nm)
                if s is None:
                    s = self._series[nm] = _Series(nm)
                if idx is None:
                    cols = (range(seq0 + 1, seq0 + n + 1), steps, times, values)
                elif len(idx) == 1:
                    i = idx[0]
                    cols = ((seq0 + 1 + i,), (steps[i],), (times[i],), (values[i],))
                else:
                    get = itemgetter(*idx)
                    cols = ([seq0 + 1 + i for i in idx], get(steps), get(times), get(values))
                if s.pending or (self._device_values
                                 and any(type(v) is _Pending for v in cols[3])):
                    s.pending.extend(zip(*cols, strict=True))
                else:
                    lvl = s.levels[0]
                    lvl.seq.extend(cols[0])
                    lvl.step.extend(cols[1])
                    lvl.time.extend(cols[2])
                    lvl.value.extend(cols[3])
                    if len(lvl) >= self._recent_cap + self._chunk:
                        self._compact(s)
        if self._device_values:
            for s in self._series.values():
                if s.pending:
                    excess = len(s.pending) - _MAX_PENDING
                    self._drain(s, len(s.pending) if readers else excess)

    def _drain(self, s: _Series, wait: int) -> None:
        """Store the values at the head of ``s.pending`` that are on the host, waiting for the
        device for the first ``wait`` of them."""
        lvl = s.levels[0]
        n = 0
        for seq, step, t, v in s.pending:
            if type(v) is _Pending:
                if not (n < wait or v.ready()):
                    break
                v = v.result()
            lvl.seq.append(seq)
            lvl.step.append(step)
            lvl.time.append(t)
            lvl.value.append(v)
            n += 1
        if n:
            del s.pending[:n]
            if len(lvl) >= self._recent_cap + self._chunk:
                self._compact(s)

    def _set_caps(self, n_series: int) -> None:
        """Split ``max_bytes`` between ``n_series`` series: half recent, half thinned levels."""
        budget = self._max_bytes // (_BUDGET_POINT_BYTES * max(1, n_series))
        self._recent_cap = max(16, min(self._recent_points, budget // 2))
        # Points moved per compaction: large enough to amortise, small enough that one
        # compaction stays a short pause on the training thread.
        self._chunk = chunk = max(8, min(4096, self._recent_cap // 8))
        self._level_cap = max(chunk, (budget - self._recent_cap) // LEVELS - chunk)

    def _compact(self, s: _Series) -> None:
        """Move the oldest points of each over-full level into the next, thinned.

        In place (``del`` and ``extend``): fresh arrays would cost page faults every time.
        """
        levels = s.levels
        k = 0
        while k < len(levels):
            lvl = levels[k]
            cap = self._recent_cap if k == 0 else self._level_cap
            n = len(lvl)
            if n < cap + self._chunk:
                break
            m = n - cap
            kept, dropped = _thin(lvl, m)
            self._dropped_max = max(self._dropped_max, dropped)
            if k == LEVELS:  # the coarsest level thins its own oldest points in place
                lvl.replace_head(m, kept)
                break
            lvl.replace_head(m, None)
            if k + 1 == len(levels):
                levels.append(kept)
            else:
                levels[k + 1].extend(kept)
            k += 1

    # ------------------------------------------------------------------ readers

    @property
    def last_seq(self) -> int:
        """The newest seq; 0 when nothing was logged. Stores queued points first."""
        with self._lock:
            self._flush(readers=True)
            return self._seq

    def page(self, after: int, limit: int = schema.MAX_METRICS_POINTS) -> schema.MetricsPage:
        """The points with seq > ``after``: the ``limit`` lowest seqs across all series.

        Safe to call from any thread while :meth:`append` runs. May wait for a GPU to deliver
        values logged as CUDA tensors (on the caller's thread, never the training thread's).

        Args:
            after: the ``next_after`` of the previous page; below 0 counts as 0.
            limit: most points returned, all series together; at least 1.

        Returns:
            A page whose ``next_after`` is the last seq included (``after`` when empty), ``more``
            True when points were left out for the limit, ``thinned`` True when points with
            seq > ``after`` were already thinned away.

        Raises:
            ValueError: ``limit`` < 1.
            TypeError: ``after`` or ``limit`` is not an integer.
        """
        after, cols, cutoff, last_seq, more, thinned = self._select(after, limit)
        series: dict[str, list[schema.MetricPoint]] = {}
        point = schema.MetricPoint
        for name, (seqs, steps, times, vals) in cols.items():
            k = bisect_right(seqs, cutoff)
            if k:
                series[name] = [point(seqs[i], steps[i], times[i], vals[i]) for i in range(k)]
        return schema.MetricsPage(after=after, next_after=cutoff, last_seq=last_seq,
                                  more=more, thinned=thinned, series=series)

    def page_wire(self, after: int, limit: int = schema.MAX_METRICS_POINTS) -> dict:
        """``page(after, limit).to_wire()``, built straight from the columns.

        What the servers send: a poll of a fast run carries thousands of points, and building
        a :class:`~colabtui_remote.schema.MetricPoint` per point first costs the server thread
        (and so, through the GIL, the training thread) about twice as much. Same arguments and
        errors as :meth:`page`.
        """
        after, cols, cutoff, last_seq, more, thinned = self._select(after, limit)
        series: dict[str, list[list]] = {}
        for name, (seqs, steps, times, vals) in cols.items():
            k = bisect_right(seqs, cutoff)
            if not k:
                continue
            if k < len(seqs):
                seqs, steps, times, vals = seqs[:k], steps[:k], times[:k], vals[:k]
            rounded = [round(t, 3) for t in times]
            if math.isfinite(sum(vals)):  # no NaN or ±inf (a sum past 1e308: the slow way)
                series[name] = list(map(list, zip(seqs, steps, rounded, vals, repeat(None))))
            else:
                series[name] = [schema.MetricPoint(*row).to_wire()
                                for row in zip(seqs, steps, times, vals, strict=True)]
        return {"protocol": schema.PROTOCOL_VERSION, "after": after, "next_after": cutoff,
                "last_seq": last_seq, "more": more, "thinned": thinned, "series": series}

    def _select(self, after: int, limit: int) -> tuple[int, dict, int, int, bool, bool]:
        """What a page holds: ``(after, columns by series, cutoff seq, last seq, more,
        thinned)``; each series' columns may run past the cutoff."""
        limit = operator.index(limit)
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        after = max(0, operator.index(after))
        with self._lock:
            self._flush(readers=True)
            cols: dict[str, tuple[list, list, list, list]] = {}
            for name, s in self._series.items():
                seqs: list[int] = []
                steps: list[int] = []
                times: list[float] = []
                vals: list[float] = []
                remaining = limit + 1  # one over: tells whether anything is left for later
                for lvl in reversed(s.levels):  # oldest level first
                    n = len(lvl)
                    lo = bisect_right(lvl.seq, after, 0, n)
                    j = min(n, lo + remaining)
                    if j > lo:
                        seqs.extend(lvl.seq[lo:j])
                        steps.extend(lvl.step[lo:j])
                        times.extend(lvl.time[lo:j])
                        vals.extend(lvl.value[lo:j])
                        remaining -= j - lo
                        if not remaining:
                            break
                if seqs:
                    cols[name] = (seqs, steps, times, vals)
            last_seq = self._seq
            thinned = self._dropped_max > after
        total = sum(len(c[0]) for c in cols.values())
        if total > limit:
            cutoff = sorted(q for c in cols.values() for q in c[0])[limit - 1]
        elif total:
            cutoff = max(c[0][-1] for c in cols.values())
        else:
            cutoff = after
        return after, cols, cutoff, last_seq, total > limit, thinned

    def latest(self) -> dict[str, float]:
        """The newest value of each series (NaN/±inf kept), by name. May wait for a GPU."""
        with self._lock:
            self._flush(readers=True)
            return {name: s.levels[0].value[-1] for name, s in self._series.items()
                    if len(s.levels[0])}

    def memory_bytes(self) -> int:
        """What the store holds, in bytes: every column's allocation (over-allocation included),
        the queue and per-series bookkeeping."""
        with self._lock:
            self._flush(readers=True)
            total = (sys.getsizeof(self) + sys.getsizeof(self._series)
                     + sys.getsizeof(self._names) + sys.getsizeof(self._queue))
            for name, s in self._series.items():
                total += sys.getsizeof(name) + sys.getsizeof(s) + sys.getsizeof(s.pending)
                total += sys.getsizeof(s.levels)
                total += sum(lvl.nbytes() + sys.getsizeof(lvl) for lvl in s.levels)
            return total

    def __len__(self) -> int:
        """Points stored now, all series together (thinned levels included)."""
        with self._lock:
            self._flush(readers=True)
            return sum(sum(len(lvl) for lvl in s.levels) for s in self._series.values())
