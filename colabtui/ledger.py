"""Local history: the sessions seen and their metric points, in one SQLite file (WAL).

Curves survive restarts of the app and deaths of a runtime, and a run's curve continues across
its sessions: when a later session of the same run starts at an earlier step (a resume from a
checkpoint older than the last logged point), the later session wins from its first step on.

Reading a curve for the first frame must be fast with millions of points, so besides the raw
points the ledger keeps min/max roll-ups per fixed bucket of steps (:data:`ROLLUP_WIDTHS`),
updated as points arrive; :meth:`Ledger.load_series` reads the coarsest roll-up that still gives
about ``max_points`` points and never scans the raw table of a long run.

Non-finite values are stored as ``NULL`` with a marker (``"nan"``, ``"inf"``, ``"-inf"``) beside
them, because SQLite turns NaN into ``NULL``.

What comes from a session is parsed (cleaned, bounded) before it gets here; the ledger still
stores no integer outside SQLite's range (a point outside it is left out, a step is stored as
unknown) and cleans the text it reads back (:func:`colabtui_remote.wire.clean_text`), which an
older colabtui may have written raw.
"""

from __future__ import annotations

import functools
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from colabtui_remote import schema, wire

from colabtui.figures import ENDED_STATES
from colabtui.ledger_history import migrate, note_status
from colabtui.ledger_rollup import Bucket as _Bucket
from colabtui.ledger_rollup import Reducer as _Reducer

ROLLUP_WIDTHS = (32, 1024, 32768)
"""Bucket widths of the roll-ups, in steps. A ratio of 32 between levels bounds what one
:meth:`Ledger.load_series` reads to about 32 × ``max_points`` rows per session."""

END_REASONS = ("finished", "stopped", "failed", "lost")

BUSY_TIMEOUT_S = 0.25
"""How long a write waits for another connection's lock on the file, seconds. Short: a poll
keeps a write that found the file locked and retries it later
(:class:`colabtui.ledger_writes.QueuedWrites`) rather than hold a thread and this ledger's lock."""


class LedgerBusy(sqlite3.OperationalError):
    """Another connection (another process) holds the file's write lock: nothing was written.

    A write that raises it left the ledger as it was; it may be made again later as it is.
    """


def _busy_is_ledger_busy(write: Callable) -> Callable:
    """Raise :class:`LedgerBusy` from ``write`` where SQLite says the file is locked or busy."""

    @functools.wraps(write)
    def wrapper(*args, **kwargs):
        try:
            return write(*args, **kwargs)
        except LedgerBusy:
            raise
        except sqlite3.OperationalError as exc:
            words = str(exc).lower()
            if "locked" in words or "busy" in words:
                raise LedgerBusy(f"the history file is locked by another connection: {exc}"
                                 ) from exc
            raise

    return wrapper

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT NOT NULL UNIQUE,
    session_key TEXT,
    url         TEXT,
    label       TEXT,
    run         TEXT NOT NULL,
    gpu         TEXT,
    started_at  REAL,          -- the session's own start (server clock), if it said
    first_seen  REAL,
    last_seen   REAL,
    state       TEXT,
    step        INTEGER,
    ended       TEXT,          -- finished, stopped, failed, lost
    ended_at    REAL,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    min_step    INTEGER        -- first step with a point: where a resume starts
);
CREATE INDEX IF NOT EXISTS sessions_run ON sessions(run);
CREATE TABLE IF NOT EXISTS series (
    id   INTEGER PRIMARY KEY,
    run  TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (run, name)
);
-- Ordered by step within one session's series: range reads and GROUP BY need no other index.
CREATE TABLE IF NOT EXISTS points (
    series_id  INTEGER NOT NULL,
    session    INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    time       REAL NOT NULL,
    value      REAL,
    marker     TEXT,
    PRIMARY KEY (series_id, session, step, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_sessions (
    series_id INTEGER NOT NULL,
    session   INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    min_step  INTEGER NOT NULL,
    max_step  INTEGER NOT NULL,
    PRIMARY KEY (series_id, session)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup (
    series_id INTEGER NOT NULL,
    session   INTEGER NOT NULL,
    width     INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    min_v REAL, min_step INTEGER, min_seq INTEGER, min_time REAL,
    max_v REAL, max_step INTEGER, max_seq INTEGER, max_time REAL,
    nf_marker TEXT, nf_step INTEGER, nf_seq INTEGER, nf_time REAL,
    PRIMARY KEY (series_id, session, width, bucket)
) WITHOUT ROWID;
-- Each session's last /v1/status as it came (wire JSON): what a session that ended showed
-- last, for the panel and `colabtui status` once its server is gone.
CREATE TABLE IF NOT EXISTS last_status (
    session_id TEXT PRIMARY KEY,
    status     TEXT NOT NULL
) WITHOUT ROWID;
"""

_UPSERT_ROLLUP = """
INSERT INTO rollup VALUES (?,?,?,?,?, ?,?,?,?, ?,?,?,?, ?,?,?,?)
ON CONFLICT (series_id, session, width, bucket) DO UPDATE SET
    n = n + excluded.n,
    min_step = CASE WHEN excluded.min_v IS NOT NULL AND (min_v IS NULL OR excluded.min_v < min_v)
                    THEN excluded.min_step ELSE min_step END,
    min_seq  = CASE WHEN excluded.min_v IS NOT NULL AND (min_v IS NULL OR excluded.min_v < min_v)
                    THEN excluded.min_seq ELSE min_seq END,
    min_time = CASE WHEN excluded.min_v IS NOT NULL AND (min_v IS NULL OR excluded.min_v < min_v)
                    THEN excluded.min_time ELSE min_time END,
    min_v    = CASE WHEN excluded.min_v IS NOT NULL AND (min_v IS NULL OR excluded.min_v < min_v)
                    THEN excluded.min_v ELSE min_v END,
    max_step = CASE WHEN excluded.max_v IS NOT NULL AND (max_v IS NULL OR excluded.max_v > max_v)
                    THEN excluded.max_step ELSE max_step END,
    max_seq  = CASE WHEN excluded.max_v IS NOT NULL AND (max_v IS NULL OR excluded.max_v > max_v)
                    THEN excluded.max_seq ELSE max_seq END,
    max_time = CASE WHEN excluded.max_v IS NOT NULL AND (max_v IS NULL OR excluded.max_v > max_v)
                    THEN excluded.max_time ELSE max_time END,
    max_v    = CASE WHEN excluded.max_v IS NOT NULL AND (max_v IS NULL OR excluded.max_v > max_v)
                    THEN excluded.max_v ELSE max_v END,
    nf_step   = CASE WHEN nf_marker IS NULL THEN excluded.nf_step ELSE nf_step END,
    nf_seq    = CASE WHEN nf_marker IS NULL THEN excluded.nf_seq ELSE nf_seq END,
    nf_time   = CASE WHEN nf_marker IS NULL THEN excluded.nf_time ELSE nf_time END,
    nf_marker = CASE WHEN nf_marker IS NULL THEN excluded.nf_marker ELSE nf_marker END
"""
# SQLite evaluates every SET expression against the row as it was, so the order above is safe.


@dataclass(frozen=True)
class SessionRow:
    """One session as the ledger remembers it. Times are Unix seconds."""

    session_id: str
    session_key: str | None
    run: str
    label: str | None
    url: str | None
    gpu: str | None
    started_at: float | None
    first_seen: float | None
    last_seen: float | None
    state: str | None
    step: int | None
    ended: str | None
    ended_at: float | None
    last_seq: int


def _int64(value: int | None) -> int | None:
    """``value`` when SQLite can store it as an INTEGER, else ``None``."""
    return value if value is None or wire.MIN_INT <= value <= wire.MAX_INT else None


def _clean(text: str | None) -> str | None:
    return None if text is None else wire.clean_text(text)


def _gpu_name(status: schema.Status) -> str | None:
    names = [g.name for g in status.gpus if g.name]
    if not names:
        return None
    if len(set(names)) == 1 and len(names) > 1:
        return f"{len(names)}× {names[0]}"
    return ", ".join(dict.fromkeys(names))


def _session_row(session_id, session_key, run, label, url, gpu, started_at, first_seen,
                 last_seen, state, step, ended, ended_at, last_seq) -> SessionRow:
    """A row of ``sessions`` with its text cleaned (the ids stay keys)."""
    return SessionRow(session_id, session_key, wire.clean_text(run), _clean(label), _clean(url),
                      _clean(gpu), started_at, first_seen, last_seen, _clean(state), step,
                      _clean(ended), ended_at, last_seq)


class Ledger:
    """The history file. Thread-safe: every call takes one lock around one connection.

    Args:
        path: the SQLite file; created with its folder (mode 0o700) and tables if missing.
        busy_timeout_s: how long a statement waits for another connection's lock, seconds.

    Writes raise :class:`LedgerBusy` when another connection holds the file's write lock.

    Raises:
        sqlite3.DatabaseError: the file exists but is not a SQLite database.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a power cut may lose the last transactions, never corrupts.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA busy_timeout={max(0, int(busy_timeout_s * 1000))}")
            self._db.executescript(_SCHEMA)
            migrate(self._db)  # an older file gets the history columns, in place
        except sqlite3.DatabaseError:
            self._db.close()
            raise

    # ----------------------------------------------------------------- writes

    @_busy_is_ledger_busy
    def record_status(self, session_key: str, url: str, label: str, status: schema.Status,
                      now: float) -> None:
        """Insert or update the session's row from one ``/v1/status`` snapshot.

        ``now`` (Unix seconds, the laptop's clock) becomes ``last_seen`` (and ``first_seen``
        the first time). A terminal state (finished, stopped, failed) also records how it ended;
        a session marked "lost" that answers again is no longer lost.
        """
        terminal = status.state if status.state in ("finished", "stopped", "failed") else None
        with self._lock, self._db:
            self._db.execute("BEGIN")
            row = self._db.execute(
                "SELECT ended, ended_at, step FROM sessions WHERE session_id = ?",
                (status.session_id,)).fetchone()
            ended, ended_at, prev_step = row if row else (None, None, None)
            if ended == "lost":  # it answered again
                ended, ended_at = None, None
            if ended is None and terminal:
                ended, ended_at = terminal, now
            self._db.execute(
                """INSERT INTO sessions (session_id, session_key, url, label, run, gpu, started_at,
                       first_seen, last_seen, state, step, ended, ended_at)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (session_id) DO UPDATE SET
                       session_key = excluded.session_key, url = excluded.url,
                       label = excluded.label, run = excluded.run,
                       gpu = COALESCE(excluded.gpu, gpu),
                       started_at = COALESCE(excluded.started_at, started_at),
                       first_seen = COALESCE(first_seen, excluded.first_seen),
                       last_seen = excluded.last_seen, state = excluded.state,
                       step = COALESCE(excluded.step, step),
                       ended = excluded.ended, ended_at = excluded.ended_at""",
                (status.session_id, session_key, url, label or status.label, status.run,
                 _gpu_name(status), status.started_at, now, now, status.state, _int64(status.step),
                 ended, ended_at),
            )
            self._db.execute(
                """INSERT INTO last_status VALUES (?, ?)
                   ON CONFLICT (session_id) DO UPDATE SET status = excluded.status""",
                (status.session_id, wire.dumps(schema.status_to_wire(status)).decode("utf-8")))
            note_status(self._db, status, prev_step=prev_step)

    @_busy_is_ledger_busy
    def record_end(self, session_id: str, how: str, now: float) -> None:
        """Record how a session ended: ``"finished"``, ``"stopped"``, ``"failed"`` or ``"lost"``.

        Raises:
            ValueError: ``how`` is none of those.
        """
        if how not in END_REASONS:
            raise ValueError(f"how must be one of {END_REASONS}, not {how!r}")
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE sessions SET ended = ?, ended_at = ? WHERE session_id = ?",
                             (how, now, session_id))

    @_busy_is_ledger_busy
    def add_points(self, run: str, session_id: str, page: schema.MetricsPage) -> None:
        """Store a ``/v1/metrics`` page. Points at or below the session's stored sequence number
        are skipped, so fetching the same page twice stores it once."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            sess, last_seq, min_step = self._session_for_points(run, session_id)
            new_last = max(last_seq, _int64(page.next_after) or 0)
            page_min = None
            for name, pts in page.series.items():
                fresh = [p for p in pts if last_seq < p.seq <= wire.MAX_INT
                         and wire.MIN_INT <= p.step <= wire.MAX_INT]
                if not fresh:
                    continue
                sid = self._series_id(run, name)
                self._insert_points(sid, sess, fresh)
                lo = min(p.step for p in fresh)
                page_min = lo if page_min is None else min(page_min, lo)
                new_last = max(new_last, max(p.seq for p in fresh))
            if page_min is not None and (min_step is None or page_min < min_step):
                min_step = page_min
            self._db.execute("UPDATE sessions SET last_seq = ?, min_step = ? WHERE id = ?",
                             (new_last, min_step, sess))

    def _session_for_points(self, run: str, session_id: str) -> tuple[int, int, int | None]:
        row = self._db.execute("SELECT id, last_seq, min_step FROM sessions WHERE session_id = ?",
                               (session_id,)).fetchone()
        if row is None:  # points before any status: keep them, the status fills the row later
            cur = self._db.execute("INSERT INTO sessions (session_id, run) VALUES (?, ?)",
                                   (session_id, run))
            return cur.lastrowid, 0, None
        return row

    def _series_id(self, run: str, name: str) -> int:
        self._db.execute("INSERT OR IGNORE INTO series (run, name) VALUES (?, ?)", (run, name))
        return self._db.execute("SELECT id FROM series WHERE run = ? AND name = ?",
                                (run, name)).fetchone()[0]

    def _insert_points(self, sid: int, sess: int, pts: list[schema.MetricPoint]) -> None:
        rows = []
        finest: dict[int, _Bucket] = {}
        width0 = ROLLUP_WIDTHS[0]
        for p in pts:
            v = p.value
            marker = None if math.isfinite(v) else wire.nonfinite_marker(v)
            stored = None if marker else v
            rows.append((sid, sess, p.step, p.seq, p.time, stored, marker))
            b = finest.get(p.step // width0)
            if b is None:
                b = finest[p.step // width0] = _Bucket()
            b.add(stored, marker, p.step, p.seq, p.time)
        self._db.executemany("INSERT OR IGNORE INTO points VALUES (?,?,?,?,?,?,?)", rows)
        # Coarser levels are merged from the finer buckets, not from every point again.
        levels = [finest]
        for prev_w, width in zip(ROLLUP_WIDTHS, ROLLUP_WIDTHS[1:], strict=False):
            coarse: dict[int, _Bucket] = {}
            for key, b in levels[-1].items():
                ck = key * prev_w // width
                c = coarse.get(ck)
                if c is None:
                    c = coarse[ck] = _Bucket()
                c.merge(b)
            levels.append(coarse)
        self._db.executemany(_UPSERT_ROLLUP, (
            b.row(sid, sess, width, key)
            for width, buckets in zip(ROLLUP_WIDTHS, levels, strict=True)
            for key, b in buckets.items()))
        steps = [p.step for p in pts]
        self._db.execute(
            """INSERT INTO series_sessions VALUES (?,?,?,?,?)
               ON CONFLICT (series_id, session) DO UPDATE SET n = n + excluded.n,
                   min_step = min(min_step, excluded.min_step),
                   max_step = max(max_step, excluded.max_step)""",
            (sid, sess, len(pts), min(steps), max(steps)))

    # ----------------------------------------------------------------- reads

    def last_seq(self, session_id: str) -> int:
        """The newest metric sequence number stored for the session (0 if none): the ``after``
        to send to ``/v1/metrics`` to continue after a restart of the app."""
        with self._lock:
            row = self._db.execute("SELECT last_seq FROM sessions WHERE session_id = ?",
                                   (session_id,)).fetchone()
        return row[0] if row else 0

    def sessions(self) -> list[SessionRow]:
        """Every session ever seen, newest first (by last sighting)."""
        with self._lock:
            rows = self._db.execute(
                """SELECT session_id, session_key, run, label, url, gpu, started_at, first_seen,
                          last_seen, state, step, ended, ended_at, last_seq
                   FROM sessions ORDER BY COALESCE(last_seen, first_seen, 0) DESC, id DESC"""
            ).fetchall()
        return [_session_row(*r) for r in rows]

    def ended_status(self, session_key: str) -> tuple[SessionRow, schema.Status] | None:
        """How the newest session seen under ``session_key`` ended, if it did.

        Returns:
            Its row and its last status as it came, parsed again like any answer; ``None``
            when it has not ended (or was lost: its last status is no final word), or its
            last status was not kept or no longer parses (another protocol version).
        """
        with self._lock:
            row = self._db.execute(
                """SELECT s.session_id, session_key, run, label, url, gpu, started_at,
                          first_seen, last_seen, state, step, ended, ended_at, last_seq, l.status
                   FROM sessions s LEFT JOIN last_status l USING (session_id)
                   WHERE session_key = ?
                   ORDER BY COALESCE(last_seen, first_seen, 0) DESC, id DESC LIMIT 1""",
                (session_key,)).fetchone()
        if row is None or row[-1] is None:
            return None
        found = SessionRow(*row[:-1])
        if found.ended not in ("finished", "stopped", "failed") \
                and found.state not in ENDED_STATES:
            return None
        try:
            return found, schema.parse_status(wire.loads(row[-1]))
        except wire.SchemaError:
            return None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one read-only ``sql`` statement (for :mod:`colabtui.history`)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def runs(self) -> list[str]:
        """Names of every run with stored points."""
        with self._lock:
            return [wire.clean_text(r[0])
                    for r in self._db.execute("SELECT DISTINCT run FROM series ORDER BY run")]

    def load_series(self, run: str, max_points: int = 4000, names: Iterable[str] | None = None
                    ) -> dict[str, list[schema.MetricPoint]]:
        """The run's curves across all its sessions, by step.

        Sessions are taken in the order they started; a session's points count only below the
        first step of every later session (a resume from an earlier checkpoint replaces the
        tail the earlier session logged after that checkpoint). A series longer than
        ``max_points`` is cut into ``max_points // 2`` buckets of steps, keeping in each the
        lowest and highest finite point and the first non-finite point of each kind, so spikes
        and divergence stay visible.

        Args:
            names: only these series (cleaned names, as returned); ``None``: every series.

        Returns:
            series name → points sorted by step (then seq). Non-finite values are NaN/±inf.
        """
        wanted = None if names is None else set(names)
        max_points = max(int(max_points), 2)
        with self._lock:
            sessions = self._db.execute(
                """SELECT id, min_step FROM sessions WHERE run = ? AND min_step IS NOT NULL
                   ORDER BY COALESCE(started_at, first_seen, 0), id""", (run,)).fetchall()
            cutoff: dict[int, float] = {}
            limit = math.inf
            for sess, first_step in reversed(sessions):
                cutoff[sess] = limit
                limit = min(limit, first_step)
            series = self._db.execute("SELECT id, name FROM series WHERE run = ? ORDER BY name",
                                      (run,)).fetchall()
            return {wire.clean_text(name): self._load_one(sid, cutoff, max_points)
                    for sid, name in series
                    if wanted is None or wire.clean_text(name) in wanted}

    def _load_one(self, sid: int, cutoff: dict[int, float],
                  max_points: int) -> list[schema.MetricPoint]:
        parts = []  # (session, first step, last kept step, estimated count, cut)
        for sess, n, lo, hi in self._db.execute(
                "SELECT session, n, min_step, max_step FROM series_sessions WHERE series_id = ?",
                (sid,)):
            cut = cutoff.get(sess, math.inf)
            if lo >= cut:
                continue
            if hi >= cut:
                n = max(1, int(n * (cut - lo) / max(1, hi - lo + 1)))
                hi = int(cut) - 1
            parts.append((sess, lo, hi, n, cut))
        if not parts:
            return []
        if sum(p[3] for p in parts) <= max_points:
            out = []
            for sess, _lo, _hi, _n, cut in parts:
                out.extend(self._raw(sid, sess, cut))
            out.sort(key=lambda p: (p.step, p.seq))
            return out

        span_lo = min(p[1] for p in parts)
        span = max(p[2] for p in parts) - span_lo + 1
        nb = max(1, max_points // 2)
        width = span / nb
        reducer = _Reducer(span_lo, span, nb)
        level = max((w for w in ROLLUP_WIDTHS if w <= width), default=None)
        for sess, _lo, _hi, _n, cut in parts:
            if level is None:
                self._reduce_raw(reducer, sid, sess, -math.inf, cut)
                continue
            # Whole buckets come from the roll-up; the bucket the cut falls in, from raw points.
            first_partial = math.inf if cut == math.inf else int(cut) // level
            below = first_partial if first_partial != math.inf else 2**62
            where = (sid, sess, level, below, reducer.lo, reducer.nb, reducer.span)
            # SQL reduces the roll-up rows to output buckets; bare columns beside min()/max()
            # come from the row holding the extreme (documented SQLite behaviour).
            for agg, c in (("min", "min"), ("max", "max")):
                for v, step, seq, t in self._db.execute(
                        f"""SELECT {agg}({c}_v), {c}_step, {c}_seq, {c}_time FROM rollup
                            WHERE series_id = ? AND session = ? AND width = ? AND bucket < ?
                              AND {c}_v IS NOT NULL
                            GROUP BY ({c}_step - ?) * ? / ?""", where):
                    reducer.add(v, None, step, seq, t)
            for marker, step, seq, t in self._db.execute(
                    """SELECT nf_marker, min(nf_step), nf_seq, nf_time FROM rollup
                       WHERE series_id = ? AND session = ? AND width = ? AND bucket < ?
                         AND nf_marker IS NOT NULL
                       GROUP BY (nf_step - ?) * ? / ?, nf_marker""", where):
                reducer.add(None, marker, step, seq, t)
            if first_partial != math.inf:
                self._reduce_raw(reducer, sid, sess, first_partial * level, cut)
        for sess, _lo, _hi, _n, cut in parts:
            self._keep_ends(reducer, sid, sess, cut)
        return reducer.points()

    def _keep_ends(self, reducer: _Reducer, sid: int, sess: int, cut: float) -> None:
        # A segment's first and last points stay whatever the buckets keep: the newest value
        # sits at the right edge of a chart, and a resume shows where it starts.
        hi = cut if cut != math.inf else 2**62
        for order in ("ASC", "DESC"):
            row = self._db.execute(
                f"""SELECT seq, step, time, value, marker FROM points
                    WHERE series_id = ? AND session = ? AND step < ?
                    ORDER BY step {order}, seq {order} LIMIT 1""", (sid, sess, hi)).fetchone()
            if row is not None:
                seq, step, t, v, m = row
                reducer.keep.add((step, seq, t, wire.marker_value(m, v)))

    def _raw(self, sid: int, sess: int, cut: float) -> list[schema.MetricPoint]:
        rows = self._db.execute(
            """SELECT seq, step, time, value, marker FROM points
               WHERE series_id = ? AND session = ? AND step < ?""",
            (sid, sess, cut if cut != math.inf else 2**62))
        return [schema.MetricPoint(seq, step, t, wire.marker_value(m, v))
                for seq, step, t, v, m in rows]

    def _reduce_raw(self, reducer: _Reducer, sid: int, sess: int, lo: float, cut: float) -> None:
        hi = cut if cut != math.inf else 2**62
        lo = lo if lo != -math.inf else -(2**62)
        # SQLite documents that bare columns beside min()/max() come from the row holding it.
        for agg in ("min", "max"):
            for v, step, seq, t in self._db.execute(
                    f"""SELECT {agg}(value), step, seq, time FROM points
                        WHERE series_id = ? AND session = ? AND step >= ? AND step < ?
                          AND value IS NOT NULL
                        GROUP BY (step - ?) * ? / ?""",
                    (sid, sess, lo, hi, reducer.lo, reducer.nb, reducer.span)):
                reducer.add(v, None, step, seq, t)
        for marker, step, seq, t in self._db.execute(
                """SELECT marker, min(step), seq, time FROM points
                   WHERE series_id = ? AND session = ? AND step >= ? AND step < ?
                     AND marker IS NOT NULL
                   GROUP BY (step - ?) * ? / ?, marker""",
                (sid, sess, lo, hi, reducer.lo, reducer.nb, reducer.span)):
            reducer.add(None, marker, step, seq, t)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def iter_pages(run: str, series: dict[str, Iterable[tuple[int, float]]], *, start_seq: int = 1,
               page_size: int = 100_000, t0: float = 0.0) -> Iterable[schema.MetricsPage]:
    """Build :class:`schema.MetricsPage` objects from ``(step, value)`` pairs: for importing
    history and for filling a ledger in tests and benchmarks. Seqs run from ``start_seq`` and
    times are ``t0 + step`` seconds."""
    del run
    seq = start_seq - 1
    items = {name: list(pts) for name, pts in series.items()}
    longest = max((len(v) for v in items.values()), default=0)
    for start in range(0, longest, page_size):
        page: dict[str, list[schema.MetricPoint]] = {}
        first = seq
        for name, pts in items.items():
            chunk = []
            for step, value in pts[start:start + page_size]:
                seq += 1
                chunk.append(schema.MetricPoint(seq, step, t0 + step, value))
            if chunk:
                page[name] = chunk
        yield schema.MetricsPage(after=first, next_after=seq, last_seq=seq, more=False,
                                 thinned=False, series=page)
