"""MetricsStore: the bounded in-memory store behind ``Monitor.log()`` and ``GET /v1/metrics``.

Every logged value gets a sequence number (``seq``), global across series and starting at 1, so a
client asks for "everything after seq N" and never sees a point twice.

Memory stays bounded however long a run is. The newest ``recent_points`` points of each series
are kept at full resolution; older ones move, a chunk at a time, into coarser levels. Each move
keeps, per bucket of :data:`BUCKET` points, the minimum and the maximum and the first NaN, +inf
and -inf, so spikes and divergence survive; the points kept are real points with their original
seq, step and time. Storage is columnar (``array('q')``/``array('d')``): 32 bytes a point.

Threads: :meth:`MetricsStore.append` runs on the training thread and is the hot path: no I/O, no
``.item()`` on a GPU tensor, and a lock that only appenders take (so it is uncontended when one
thread logs). Readers (:meth:`~MetricsStore.page`, :meth:`~MetricsStore.latest`) take no lock:
the appender publishes immutable level tuples and appends the ``seq`` column last, so a reader
always sees a consistent prefix. This relies on the GIL making one ``array.append`` atomic.
"""

from __future__ import annotations

import logging
import math
import numbers
import operator
import sys
import threading
import time
from array import array
from bisect import bisect_right
from typing import Any

from colabtui_remote import schema

__all__ = ["MetricsStore", "BUCKET", "LEVELS"]

log = logging.getLogger(__name__)

BUCKET = 8
"""Points per thinning bucket. A bucket keeps at most 5 (min, max, NaN, +inf, -inf) and
usually 2, so each level is about 4x coarser than the one before."""

LEVELS = 6
"""Thinned levels above the recent one. With the defaults the coarsest holds one point in
about 4**6 = 4096 of those logged; beyond it the oldest points are re-thinned in place."""

_POINT_BYTES = 32
"""Bytes a stored point takes: seq (int64), step (int64), time (float64), value (float64)."""

_BUDGET_POINT_BYTES = 36
"""What a point is charged against ``max_bytes``: 32 bytes plus ``array``'s ~6 % over-allocation
and the slack of chunks waiting to move."""

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

    def slice(self, i: int, j: int) -> _Level:
        return _Level(self.seq[i:j], self.step[i:j], self.time[i:j], self.value[i:j])

    def concat(self, other: _Level) -> _Level:
        return _Level(self.seq + other.seq, self.step + other.step,
                      self.time + other.time, self.value + other.value)

    def nbytes(self) -> int:
        return (sys.getsizeof(self.seq) + sys.getsizeof(self.step)
                + sys.getsizeof(self.time) + sys.getsizeof(self.value))


class _Pending:
    """A 0-d tensor on an accelerator whose value is not on the host yet.

    For CUDA the constructor starts a non-blocking copy to (pinned) host memory and records an
    event after it, so :meth:`ready` asks the event without waiting and :meth:`result` waits only
    for that copy, not for the work queued after it. Other accelerators (XLA, MPS) have no such
    event here: their value is read by a reader thread, or when too many are pending.
    """

    __slots__ = ("_tensor", "_event", "_value")

    def __init__(self, tensor: Any) -> None:
        t = tensor.detach()
        self._event = None
        self._value: float | None = None
        if t.device.type == "cuda":
            import torch

            self._tensor = t.to("cpu", non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(t.device))
        else:
            self._tensor = t

    def ready(self) -> bool:
        """True when :meth:`result` would not wait for the device."""
        if self._value is not None:
            return True
        return self._event is not None and self._event.query()

    def result(self) -> float:
        """The value as a float; waits for the device when it is not there yet."""
        if self._value is None:
            try:
                if self._event is not None:
                    self._event.synchronize()
                self._value = float(self._tensor.item())
            except Exception as exc:  # a device error must not break a reader or the loop
                log.warning("could not read a logged device value, stored as NaN: %s", exc)
                self._value = math.nan
            self._tensor = None
        return self._value


class _Series:
    __slots__ = ("name", "levels", "recent", "pending")

    def __init__(self, name: str) -> None:
        self.name = name
        self.recent = _Level()
        self.levels: tuple[_Level, ...] = (self.recent,)
        # (seq, step, time, float | _Pending); replaced, never mutated, so readers may hold it.
        self.pending: tuple[tuple[int, int, float, Any], ...] = ()


def _coerce(name: str, value: Any) -> float | _Pending:
    """Turn a logged value into a float, or a :class:`_Pending` for an accelerator tensor.

    Raises:
        TypeError: not a real number or a 0-d tensor/array.
        ValueError: a tensor/array that is not 0-d, or an integer too large for a float.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.dim() != 0:
            raise ValueError(
                f"metric {name!r}: expected a number or a 0-d tensor, got a tensor of shape "
                f"{tuple(value.shape)}; log a reduction such as loss.mean()")
        if value.is_complex():
            raise TypeError(f"metric {name!r}: complex tensors are not supported")
        if value.device.type == "cpu":
            return float(value.item())
        return _Pending(value)
    if isinstance(value, numbers.Real):  # int, bool, numpy scalars, Fraction
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"metric {name!r}: {value!r} is too large for a float") from None
    ndim = getattr(value, "ndim", None)
    if ndim is not None and callable(getattr(value, "item", None)):  # numpy 0-d arrays
        if ndim != 0:
            raise ValueError(
                f"metric {name!r}: expected a number or a 0-d array, got an array of shape "
                f"{tuple(getattr(value, 'shape', ()))}")
        return _coerce(name, value.item())
    raise TypeError(
        f"metric {name!r}: expected a number or a 0-d tensor, got {type(value).__name__}")


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


def _thin(lvl: _Level, i: int, j: int, bucket: int = BUCKET) -> tuple[_Level, int]:
    """Thin ``lvl[i:j]`` bucket by bucket (buckets start at ``i``).

    Returns:
        The kept points as a new level, and the largest seq dropped (0 when none was).
    """
    seq, val = lvl.seq, lvl.value
    keep: list[int] = []
    dropped_max = 0
    isfinite = math.isfinite
    for start in range(i, j, bucket):
        chunk = val[start:min(start + bucket, j)]
        if isfinite(sum(chunk)):
            lo = chunk.index(min(chunk))
            hi = chunk.index(max(chunk))
            ks: tuple[int, ...] = (lo,) if lo == hi else ((lo, hi) if lo < hi else (hi, lo))
        else:
            ks = _keep_slow(chunk)
        last = len(chunk) - 1
        if len(ks) <= last:
            while last in ks:
                last -= 1
            dropped_max = seq[start + last]  # later buckets hold larger seqs
        keep.extend(start + k for k in ks)
    step, tim = lvl.step, lvl.time
    kept = _Level(array("q", [seq[k] for k in keep]), array("q", [step[k] for k in keep]),
                  array("d", [tim[k] for k in keep]), array("d", [val[k] for k in keep]))
    return kept, dropped_max


class MetricsStore:
    """Sequence-numbered metric points per series, in bounded memory.

    Args:
        recent_points: points per series kept at full resolution (fewer when ``max_bytes``
            cannot hold them for every series). At least 16.
        max_bytes: approximate bound on what the store holds, all series together, in bytes.
            At least 16 KiB. The default holds 3 series of 10 million points each in about
            15 MB, and 64 series at full resolution for their last ~15 000 points.

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
        self._series: dict[str, _Series] = {}
        self._lock = threading.Lock()  # appenders only; readers never take it
        self._seq = 0  # last seq handed out
        self._committed = 0  # last seq whose point readers can see (pending or stored)
        self._dropped_max = 0  # largest seq thinned away
        self._chunk = max(16, min(4096, self._recent_points // 8))
        self._recent_cap = self._recent_points
        self._level_cap = self._chunk
        self._compact_at = 0
        self._set_caps(1)

    # ------------------------------------------------------------------ hot path

    def append(self, name: str, value: float | int | Any, step: int) -> None:
        """Record one value of series ``name`` at training step ``step``.

        Runs on the training thread: no I/O, no waiting on a GPU. A CUDA 0-d tensor is copied to
        the host without blocking and read later (by a reader, or a few appends on once the copy
        is done). NaN and ±inf are stored as they are.

        Args:
            name: series name, e.g. ``"loss"``; 1 to :data:`schema.MAX_TEXT` characters.
            value: a real number (int, float, numpy scalar) or a 0-d tensor/array.
            step: the training step (an integer).

        Raises:
            TypeError: ``value`` is not a number or 0-d tensor, ``step`` is not an integer, or
                ``name`` is not a string.
            ValueError: ``value`` is a tensor/array that is not 0-d or an int too large for a
                float; ``name`` is empty or too long; more than
                :data:`schema.MAX_METRIC_NAMES` series.
        """
        if type(value) is not float:
            value = _coerce(name, value)
        s = self._series.get(name)
        if s is None:
            s = self._add_series(name)
        with self._lock:
            if s.pending or type(value) is _Pending:
                self._append_pending(s, value, step)
                return
            lvl = s.recent
            try:  # step first: if it is refused nothing else has been appended
                lvl.step.append(step)
            except (TypeError, OverflowError):
                raise TypeError(f"metric {name!r}: step must be an integer in int64 range, "
                                f"got {step!r}") from None
            seq = self._seq + 1
            self._seq = seq
            lvl.value.append(value)
            lvl.time.append(_time())
            lvl.seq.append(seq)  # last: readers size a level by its seq column
            self._committed = seq
            if len(lvl.seq) >= self._compact_at:
                self._compact(s)

    def _append_pending(self, s: _Series, value: float | _Pending, step: int) -> None:
        """Queue behind earlier device values so the series stays in seq order (lock held)."""
        try:
            ok = -(2**63) <= operator.index(step) < 2**63
        except TypeError:
            ok = False
        if not ok:
            raise TypeError(f"metric {s.name!r}: step must be an integer in int64 range, "
                            f"got {step!r}")
        step = operator.index(step)
        seq = self._seq + 1
        self._seq = seq
        s.pending = s.pending + ((seq, step, _time(), value),)
        self._committed = seq
        self._drain(s, force=len(s.pending) > _MAX_PENDING)

    def _drain(self, s: _Series, force: bool = False) -> None:
        """Move resolved values from the head of ``s.pending`` into storage (lock held)."""
        pending = s.pending
        n = 0
        lvl = s.recent
        for seq, step, t, v in pending:
            if type(v) is _Pending:
                if not (v.ready() or (force and n == 0)):
                    break
                v = v.result()
            lvl.step.append(step)
            lvl.value.append(v)
            lvl.time.append(t)
            lvl.seq.append(seq)
            n += 1
        if n:
            # Stored before un-queued: a reader that misses it in one place finds it in the other.
            s.pending = pending[n:]
            if len(lvl.seq) >= self._compact_at:
                self._compact(s)

    # ------------------------------------------------------------------ memory bound

    def _add_series(self, name: str) -> _Series:
        if not isinstance(name, str):
            raise TypeError(f"metric name must be a string, got {type(name).__name__}")
        if not name or len(name) > schema.MAX_TEXT:
            raise ValueError(f"metric name must be 1 to {schema.MAX_TEXT} characters, "
                             f"got {len(name)}")
        with self._lock:
            s = self._series.get(name)
            if s is None:
                if len(self._series) >= schema.MAX_METRIC_NAMES:
                    raise ValueError(f"metric {name!r}: at most {schema.MAX_METRIC_NAMES} series "
                                     "may be logged (the wire protocol's limit)")
                s = _Series(name)
                self._series[name] = s
                self._set_caps(len(self._series))
            return s

    def _set_caps(self, n_series: int) -> None:
        """Split ``max_bytes`` between ``n_series`` series: half recent, half thinned levels."""
        budget = self._max_bytes // (_BUDGET_POINT_BYTES * max(1, n_series))
        chunk = self._chunk
        self._recent_cap = max(chunk, min(self._recent_points, budget // 2))
        self._level_cap = max(chunk, (budget - self._recent_cap) // LEVELS - chunk)
        self._compact_at = self._recent_cap + chunk

    def _compact(self, s: _Series) -> None:
        """Move the oldest chunk of each over-full level into the next, thinned (lock held)."""
        levels = list(s.levels)
        k = 0
        while k < len(levels):
            lvl = levels[k]
            cap = self._recent_cap if k == 0 else self._level_cap
            n = len(lvl)
            if n < cap + self._chunk:
                break
            m = n - cap
            kept, dropped = _thin(lvl, 0, m)
            if dropped > self._dropped_max:  # before publishing: readers then see thinned=True
                self._dropped_max = dropped
            if k == LEVELS:  # the coarsest level thins its own oldest points in place
                levels[k] = kept.concat(lvl.slice(m, n))
                break
            levels[k] = lvl.slice(m, n)
            if k + 1 == len(levels):
                levels.append(kept)
            else:
                levels[k + 1] = levels[k + 1].concat(kept)
            k += 1
        s.levels = tuple(levels)  # one assignment: readers see the old or the new, never a mix
        s.recent = levels[0]

    # ------------------------------------------------------------------ readers

    @property
    def last_seq(self) -> int:
        """The newest seq a reader can see; 0 when nothing was logged."""
        return self._committed

    def page(self, after: int, limit: int = schema.MAX_METRICS_POINTS) -> schema.MetricsPage:
        """The points with seq > ``after``, the ``limit`` lowest seqs across all series.

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
            TypeError: ``after`` is not an integer.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        after = max(0, operator.index(after))
        committed = self._committed  # first: every point up to it is visible from here on
        cols: dict[str, tuple[list, list, list, list]] = {}
        for name, s in list(self._series.items()):
            pending = s.pending  # before the levels, see _drain
            levels = s.levels
            seqs: list[int] = []
            steps: list[int] = []
            times: list[float] = []
            vals: list[Any] = []
            remaining = limit + 1  # one over: tells whether anything is left for the next page
            newest_stored = 0
            for lvl in reversed(levels):  # oldest level first
                n = len(lvl.seq)
                hi = bisect_right(lvl.seq, committed, 0, n)
                if hi:
                    newest_stored = lvl.seq[hi - 1]
                lo = bisect_right(lvl.seq, after, 0, hi)
                j = min(hi, lo + remaining)
                if j > lo:
                    seqs.extend(lvl.seq[lo:j])
                    steps.extend(lvl.step[lo:j])
                    times.extend(lvl.time[lo:j])
                    vals.extend(lvl.value[lo:j])
                    remaining -= j - lo
                if remaining == 0:
                    break
            if remaining:
                floor = max(after, newest_stored)
                for seq, step, t, v in pending:
                    if seq <= floor:
                        continue
                    if seq > committed or remaining == 0:
                        break
                    seqs.append(seq)
                    steps.append(step)
                    times.append(t)
                    vals.append(v)
                    remaining -= 1
            if seqs:
                cols[name] = (seqs, steps, times, vals)
        total = sum(len(c[0]) for c in cols.values())
        more = total > limit
        if total > limit:
            cutoff = sorted(q for c in cols.values() for q in c[0])[limit - 1]
        elif total:
            cutoff = max(c[0][-1] for c in cols.values())
        else:
            cutoff = after
        series: dict[str, list[schema.MetricPoint]] = {}
        for name, (seqs, steps, times, vals) in cols.items():
            k = bisect_right(seqs, cutoff)
            if k:
                series[name] = [
                    schema.MetricPoint(seqs[i], steps[i], times[i],
                                       vals[i].result() if type(vals[i]) is _Pending else vals[i])
                    for i in range(k)]
        return schema.MetricsPage(after=after, next_after=cutoff, last_seq=committed, more=more,
                                  thinned=self._dropped_max > after, series=series)

    def latest(self) -> dict[str, float]:
        """The newest value of each series (NaN/±inf kept), by name. May wait for a GPU."""
        out: dict[str, float] = {}
        for name, s in list(self._series.items()):
            pending = s.pending
            levels = s.levels
            if pending:
                v = pending[-1][3]
                out[name] = v.result() if type(v) is _Pending else v
                continue
            for lvl in levels:  # newest level first
                n = len(lvl.seq)
                if n:
                    out[name] = lvl.value[n - 1]
                    break
        return out

    def memory_bytes(self) -> int:
        """What the store holds, in bytes: every column's allocation (over-allocation included),
        queued device values and per-series bookkeeping."""
        total = sys.getsizeof(self) + sys.getsizeof(self._series)
        for name, s in list(self._series.items()):
            total += sys.getsizeof(name) + sys.getsizeof(s) + sys.getsizeof(s.pending)
            total += sum(lvl.nbytes() + sys.getsizeof(lvl) for lvl in s.levels)
            # A queued entry: its tuple, two numbers and a host copy of the tensor (~250 bytes).
            total += len(s.pending) * 350
        return total

    def __len__(self) -> int:
        """Points stored now, all series together (thinned levels and queued values included)."""
        return sum(sum(len(lvl) for lvl in s.levels) + len(s.pending)
                   for s in list(self._series.values()))
