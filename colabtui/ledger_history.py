"""What the ledger keeps for the history of sessions (``colabtui history``), and the migration
that adds it to an older ledger file in place.

Schema version 1 (``PRAGMA user_version``) adds to ``sessions``: ``platform`` (the runtime's
platform as it says: ``colab``, ``kaggle``, ``other``), ``first_step`` (the step it resumed from, else the step of its first status), ``uptime_s`` (its own uptime
at its last status, seconds), ``server_time`` (its clock at its last status, Unix seconds),
``checkpoints`` (saves seen by the polls), ``ckpt_saved_at`` (the newest one's ``saved_at``),
``durable_step`` and ``durable_at`` (the newest checkpoint a dying runtime would leave: the one
verified on the replica when there is one, else the newest local one: step, session-clock Unix
seconds); and the table ``session_rates``, a histogram of the throughput each status reported.

Median steps/s comes from the statuses' ``steps_per_s`` (the runtime's own measure, on its
clock), not from the points' (step, time): points may be thinned and are logged at the loop's
pace, while every poll that saw the step advance adds one sample. Samples are kept as counts per
bucket of 1 % width on a log scale (:data:`RATE_BUCKET_RATIO`), so a session's history stays a
few rows however long it runs, and its median is exact to 1 %.

The migration runs in one transaction (an older file is never left half migrated, and nothing
in it is removed); sessions recorded before it get what their last status (``last_status``)
says: one throughput sample, the platform, the uptime, the last checkpoint.
"""

from __future__ import annotations

import math
import sqlite3

from colabtui_remote import schema, wire

from colabtui.figures import LIVE_STATES, throughput

SCHEMA_VERSION = 1
"""The ledger's ``PRAGMA user_version`` once migrated (0: the first schema)."""

MIGRATE_BUSY_TIMEOUT_MS = 10_000
"""How long the migration waits for another connection's write lock, milliseconds."""

RATE_BUCKET_RATIO = 1.01
"""Width of a throughput bucket: each spans a factor of 1.01 (1 %) of steps/s."""

_COLUMNS = (
    ("platform", "TEXT"), ("first_step", "INTEGER"), ("uptime_s", "REAL"),
    ("server_time", "REAL"), ("checkpoints", "INTEGER NOT NULL DEFAULT 0"),
    ("ckpt_saved_at", "REAL"), ("durable_step", "INTEGER"), ("durable_at", "REAL"),
)

_RATES = """
CREATE TABLE IF NOT EXISTS session_rates (
    session_id TEXT NOT NULL,
    bucket     INTEGER NOT NULL,   -- round(log(steps/s) / log(RATE_BUCKET_RATIO))
    n          INTEGER NOT NULL,
    PRIMARY KEY (session_id, bucket)
) WITHOUT ROWID;
"""


_HISTORY_INDEX = """CREATE INDEX IF NOT EXISTS sessions_history
    ON sessions(run, COALESCE(started_at, first_seen, 0), id)"""
"""The order of :func:`colabtui.history.history_page` (run, start, id)."""


def rate_bucket(steps_per_s: float) -> int:
    """The histogram bucket of a throughput (steps/s, > 0)."""
    return round(math.log(steps_per_s) / math.log(RATE_BUCKET_RATIO))


def bucket_rate(bucket: int) -> float:
    """The throughput (steps/s) at the middle of ``bucket``."""
    return RATE_BUCKET_RATIO ** bucket


def median_rate(buckets: list[tuple[int, int]]) -> float | None:
    """The median throughput, steps/s, of ``(bucket, count)`` pairs; ``None`` when empty."""
    total = sum(n for _, n in buckets)
    if total <= 0:
        return None
    seen = 0
    for bucket, n in sorted(buckets):
        seen += n
        if 2 * seen >= total:
            return bucket_rate(bucket)
    return None  # pragma: no cover - the loop always returns


def migrate(db: sqlite3.Connection) -> None:
    """Bring the ledger's tables to :data:`SCHEMA_VERSION`, in place, in one transaction.

    Safe when another process migrates at the same time: the version is read again under the
    write lock. A file newer than this code is left alone.
    """
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    # Once per file: wait for another writer longer than a poll's write would.
    timeout_ms = db.execute("PRAGMA busy_timeout").fetchone()[0]
    db.execute(f"PRAGMA busy_timeout = {max(timeout_ms, MIGRATE_BUSY_TIMEOUT_MS)}")
    try:
        _migrate(db)
    finally:
        db.execute(f"PRAGMA busy_timeout = {timeout_ms}")


def _migrate(db: sqlite3.Connection) -> None:
    with db:
        db.execute("BEGIN IMMEDIATE")
        if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        have = {r[1] for r in db.execute("PRAGMA table_info(sessions)")}
        for name, kind in _COLUMNS:
            if name not in have:
                db.execute(f"ALTER TABLE sessions ADD COLUMN {name} {kind}")
        db.execute(_RATES)
        db.execute(_HISTORY_INDEX)
        db.execute("UPDATE sessions SET first_step = min_step WHERE first_step IS NULL")
        rows = db.execute("SELECT status FROM last_status").fetchall()
        for (text,) in rows:
            try:
                status = schema.parse_status(wire.loads(text))
            except wire.SchemaError:
                continue  # another protocol's status: the row keeps what it has
            note_status(db, status, prev_step=None, count_rate=True)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _durable(status: schema.Status) -> tuple[int | None, float | None]:
    ck = status.checkpoint
    if ck.replica is not None:
        v = ck.replica.verified
        if v is None:
            return None, None
        return v.step, v.saved_at if v.saved_at is not None else v.verified_at
    if ck.last is None:
        return None, None
    return ck.last.step, ck.last.saved_at


def _int64(value: int | None) -> int | None:
    return value if value is None or wire.MIN_INT <= value <= wire.MAX_INT else None


def note_status(db: sqlite3.Connection, status: schema.Status, *, prev_step: int | None,
                count_rate: bool | None = None) -> None:
    """Update the session's history columns from one status, inside the caller's transaction
    (after its row in ``sessions`` was written).

    Args:
        db: the ledger's connection.
        status: the status just recorded.
        prev_step: the step the ledger held for the session before it.
        count_rate: add its ``steps_per_s`` to the histogram; by default, when the session
            trains (a live state) and its step advanced past ``prev_step`` (a status read twice,
            or a stale mailbox file, counts once).
    """
    step = _int64(status.step)
    if count_rate is None:
        count_rate = status.state in LIVE_STATES and step is not None \
            and (prev_step is None or step > prev_step)
    rate = throughput(status.steps_per_s)
    if count_rate and rate is not None:
        db.execute("""INSERT INTO session_rates VALUES (?, ?, 1)
                      ON CONFLICT (session_id, bucket) DO UPDATE SET n = n + 1""",
                   (status.session_id, rate_bucket(rate)))
    last = status.checkpoint.last
    saved = last.saved_at if last is not None else None
    # A resumed session first shows the checkpoint it resumed from: that one is not its own.
    mine = saved is not None and (status.started_at is None or saved >= status.started_at)
    durable_step, durable_at = _durable(status)
    platform = status.runtime.platform if status.runtime is not None else None
    db.execute(
        """UPDATE sessions SET
               platform = COALESCE(?, platform),
               first_step = COALESCE(first_step, ?),  -- the step it resumed from, or its first
               uptime_s = COALESCE(?, uptime_s),
               server_time = COALESCE(?, server_time),
               checkpoints = checkpoints + (CASE WHEN ? AND ckpt_saved_at IS NOT ?
                                                 THEN 1 ELSE 0 END),
               ckpt_saved_at = CASE WHEN ? THEN ? ELSE ckpt_saved_at END,
               durable_step = COALESCE(?, durable_step),
               durable_at = COALESCE(?, durable_at)
           WHERE session_id = ?""",
        (platform, last.step if last is not None and not mine and saved is not None else step,
         status.uptime_s, status.server_time, mine, saved, mine, saved,
         _int64(durable_step), durable_at if durable_step is not None else None,
         status.session_id))
