"""History writes while another process holds the SQLite file's write lock: a real file, a
second connection holding ``BEGIN EXCLUSIVE`` far longer than the busy timeout."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager

import pytest
from colabtui_remote import schema

from colabtui.ledger import BUSY_TIMEOUT_S, Ledger, LedgerBusy, iter_pages
from colabtui.ledger_writes import QueuedWrites


def status(step: int, session_id: str = "s-1", state: str = "running") -> schema.Status:
    return schema.Status(protocol=schema.PROTOCOL_VERSION, run="r", session_id=session_id,
                         label="l", state=state, step=step)


def pages(first: int, n: int, per_page: int):
    """``n`` points of ``loss`` at steps (and seqs) ``first``…, ``per_page`` a page."""
    return list(iter_pages("r", {"loss": [(s, 1.0 / (s + 1)) for s in range(first, first + n)]},
                           start_seq=first, page_size=per_page))


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite3") as led:
        yield led


@contextmanager
def locked(ledger: Ledger):
    """Another connection holds the file's write lock until the block ends."""
    other = sqlite3.connect(ledger.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def steps(ledger: Ledger) -> list[int]:
    return [p.step for p in ledger.load_series("r").get("loss", [])]


def test_a_write_into_a_locked_file_raises_ledger_busy_and_changes_nothing(ledger):
    assert BUSY_TIMEOUT_S <= 0.5, "a write gives up quickly"
    with locked(ledger):
        with pytest.raises(LedgerBusy, match="locked by another connection"):
            ledger.add_points("r", "s-1", pages(1, 5, 5)[0])
        with pytest.raises(sqlite3.OperationalError):  # LedgerBusy is one
            ledger.record_status("k", "http://x", "l", status(5), 10.0)
        assert ledger.sessions() == [] and steps(ledger) == [], "reads go on"
    ledger.add_points("r", "s-1", pages(1, 5, 5)[0])
    assert steps(ledger) == [1, 2, 3, 4, 5]


def test_writes_wait_in_order_while_locked_and_all_land_once_it_is_free(ledger):
    writes = QueuedWrites(ledger)
    first, *later = pages(1, 30, 10)
    assert writes.add_points("r", "s-1", first) and writes.note is None
    with locked(ledger):
        assert not writes.record_status("k", "http://x", "l", status(20), 10.0)
        assert not writes.record_status("k", "http://x", "l", status(30), 11.0)
        for page in later:
            assert not writes.add_points("r", "s-1", page)
        assert writes.pending == 3, "a newer status replaced the older kept one"
        assert writes.queued_points == 20
        assert writes.note == "history file locked: 20 points kept, retrying"
        assert writes.last_seq("s-1") == 30, "fetching continues after the kept pages"
        assert not writes.flush()
        assert steps(ledger) == list(range(1, 11))
    assert writes.flush() and writes.pending == 0 and writes.note is None
    assert steps(ledger) == list(range(1, 31)), "every point, in order, none twice"
    assert ledger.last_seq("s-1") == 30
    (row,) = ledger.sessions()
    assert (row.step, row.last_seen) == (30, 11.0), "the latest status"


def test_a_kept_status_alone_is_said_so(ledger):
    writes = QueuedWrites(ledger)
    with locked(ledger):
        writes.record_status("k", "http://x", "l", status(3), 1.0)
        assert writes.note == "history file locked: the status kept, retrying"
    assert writes.record_status("k", "http://x", "l", status(4), 2.0)
    assert writes.pending == 0 and ledger.sessions()[0].step == 4


def test_full_asks_the_poller_to_fetch_no_more(ledger):
    writes = QueuedWrites(ledger, max_points=15)
    with locked(ledger):
        for page in pages(1, 20, 10):
            writes.add_points("r", "s-1", page)
        assert writes.full
    writes.flush()
    assert not writes.full and steps(ledger) == list(range(1, 21))


def test_an_error_other_than_the_lock_is_raised_and_keeps_nothing_out_of_order(
        ledger, monkeypatch):
    writes = QueuedWrites(ledger)
    one, two = pages(1, 20, 10)
    with locked(ledger):
        writes.add_points("r", "s-1", one)  # kept
    real = Ledger.add_points

    def disk_full(self, run, session_id, page):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Ledger, "add_points", disk_full)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        writes.add_points("r", "s-1", two)
    assert writes.pending == 1, "the kept page stays first; the new one is not kept"
    monkeypatch.setattr(Ledger, "add_points", real)
    assert writes.add_points("r", "s-1", two)  # the caller makes the failed write again
    assert steps(ledger) == list(range(1, 21))
