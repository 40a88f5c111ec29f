"""The ledger's point reductions, in Python: :class:`Bucket` (min, max and first non-finite
point of one roll-up bucket, built per page as points arrive) and :class:`Reducer` (the same per
output bucket of steps, when a curve is read back at a coarser resolution). See
:mod:`colabtui.ledger`."""

from __future__ import annotations

from colabtui_remote import schema, wire

__all__ = ["Bucket", "Reducer"]


class Bucket:
    """Min, max and first non-finite point of one roll-up bucket, built in Python per page."""

    __slots__ = ("n", "lo", "hi", "nf")

    def __init__(self) -> None:
        self.n = 0
        self.lo: tuple | None = None
        self.hi: tuple | None = None
        self.nf: tuple | None = None

    def add(self, v: float | None, marker: str | None, step: int, seq: int, t: float) -> None:
        self.n += 1
        if marker is not None:
            if self.nf is None:
                self.nf = (marker, step, seq, t)
            return
        if self.lo is None or v < self.lo[0]:
            self.lo = (v, step, seq, t)
        if self.hi is None or v > self.hi[0]:
            self.hi = (v, step, seq, t)

    def merge(self, other: Bucket) -> None:
        self.n += other.n
        if other.lo is not None and (self.lo is None or other.lo[0] < self.lo[0]):
            self.lo = other.lo
        if other.hi is not None and (self.hi is None or other.hi[0] > self.hi[0]):
            self.hi = other.hi
        if self.nf is None:
            self.nf = other.nf

    def row(self, series_id: int, session: int, width: int, bucket: int) -> tuple:
        lo = self.lo or (None, None, None, None)
        hi = self.hi or (None, None, None, None)
        nf = self.nf or (None, None, None, None)
        return (series_id, session, width, bucket, self.n, *lo, *hi, *nf)


class Reducer:
    """Keeps, per output bucket of steps, the lowest and highest finite point and the first
    non-finite point of each kind."""

    def __init__(self, lo: int, span: int, nb: int) -> None:
        self.lo, self.span, self.nb = lo, span, nb
        self._lo: dict[int, tuple] = {}
        self._hi: dict[int, tuple] = {}
        self._nf: dict[tuple[int, str], tuple] = {}
        self.keep: set[tuple] = set()

    def add(self, v: float | None, marker: str | None, step: int, seq: int, t: float) -> None:
        b = (step - self.lo) * self.nb // self.span
        if marker is not None:
            key = (b, marker)
            cur = self._nf.get(key)
            if cur is None or (step, seq) < (cur[0], cur[1]):
                self._nf[key] = (step, seq, t, wire.marker_value(marker, None))
            return
        cur = self._lo.get(b)
        if cur is None or v < cur[3]:
            self._lo[b] = (step, seq, t, v)
        cur = self._hi.get(b)
        if cur is None or v > cur[3]:
            self._hi[b] = (step, seq, t, v)

    def points(self) -> list[schema.MetricPoint]:
        # Keyed by (step, seq): NaN != NaN, so the tuples themselves would not deduplicate.
        keep = {(r[0], r[1]): r for r in self.keep}
        for group in (self._lo, self._hi, self._nf):
            keep.update(((r[0], r[1]), r) for r in group.values())
        return [schema.MetricPoint(seq, step, t, v) for (step, seq), (_, _, t, v) in
                sorted(keep.items())]
