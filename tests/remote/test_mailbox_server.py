"""The notebook side of the Drive mailbox, one round at a time (``tick()``), on a real folder.

Rounds are driven by the test (no thread), so what a round sees is exact: a half-synced file
in one round and the whole one in the next.
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import pytest
from colabtui_remote import Monitor, schema
from colabtui_remote.transport.mailbox.layout import LocalFolder, parse_chunk_name
from colabtui_remote.transport.mailbox.server import GARBAGE_AFTER, MailboxServer


@pytest.fixture
def box(tmp_path):
    mon = Monitor(run="digits", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    folder = tmp_path / "RUN"
    storage = LocalFolder(folder)
    storage.create()
    server = MailboxServer(mon, storage, interval_s=60)
    return mon, server, folder


def _drop(folder, name: str, data: bytes) -> None:
    (folder / "commands").mkdir(exist_ok=True)
    (folder / "commands" / name).write_bytes(data)


def _record(folder, cid: str) -> schema.CommandRecord | None:
    path = folder / "records" / f"{cid}.json"
    return schema.parse_command(json.loads(path.read_bytes())) if path.exists() else None


def test_a_round_writes_status_and_checkpoints_as_the_http_routes(box):
    mon, server, folder = box
    mon.log(step=0, loss=2.5)
    server.tick()
    status = schema.parse_status(json.loads((folder / "status.json").read_bytes()))
    assert (status.session_id, status.run, status.metrics["loss"]) == (mon.session_id, "digits", 2.5)
    listing = schema.parse_checkpoint_list(json.loads((folder / "checkpoints.json").read_bytes()))
    assert listing.checkpoints == []
    assert not [p.name for p in folder.rglob(".*")], "no temporary file left behind"


def test_a_half_synced_command_is_read_again_and_then_taken(box):
    mon, server, folder = box
    whole = json.dumps({"id": "c-1", "action": "save"}).encode()
    _drop(folder, "c-1.json", whole[:9])  # the sync client has written part of it
    server.tick()
    assert mon.commands.get("c-1") is None and _record(folder, "c-1") is None
    _drop(folder, "c-1.json", whole)
    server.tick()
    assert mon.commands.get("c-1").state == "pending"
    assert _record(folder, "c-1").state == "pending"


def test_garbage_gets_a_failed_record_logged_once_and_the_file_stays(box, caplog):
    mon, server, folder = box
    _drop(folder, "junk-7.json", b"\x00\xffnot json at all")
    with caplog.at_level(logging.WARNING, logger="colabtui_remote"):
        for _ in range(GARBAGE_AFTER + 3):
            server.tick()
    record = _record(folder, "junk-7")
    assert record.state == "failed"
    assert "commands/junk-7.json" in record.error and "not valid JSON" in record.error
    assert sum("junk-7" in r.getMessage() for r in caplog.records) == 1
    assert (folder / "commands" / "junk-7.json").exists(), "the laptop's file is not deleted"
    assert mon.commands.get("junk-7") is None and not mon.commands.has_pending()


def test_unknown_action_and_a_mismatched_id_are_answered_as_failed(box):
    mon, server, folder = box
    _drop(folder, "u-1.json", b'{"id": "u-1", "action": "explode"}')
    _drop(folder, "u-2.json", b'{"id": "other", "action": "save"}')
    _drop(folder, "u-3.json", b'["save"]')
    for _ in range(GARBAGE_AFTER):
        server.tick()
    assert "unknown action 'explode'" in _record(folder, "u-1").error
    assert "holds id 'other'" in _record(folder, "u-2").error
    assert "(JSON list, not an object)" in _record(folder, "u-3").error
    assert not mon.commands.has_pending()


def test_the_same_id_twice_is_one_command_and_a_final_record_is_never_redone(box, tmp_path):
    mon, server, folder = box
    _drop(folder, "s-1.json", b'{"id": "s-1", "action": "save"}')
    server.tick()
    _drop(folder, "s-1.json", b'{"id": "s-1", "action": "save"}')  # a retry
    server.tick()
    assert len(mon.commands.take_pending()) == 1
    mon.commands.finish("s-1", error="no checkpoint_dir")
    server.tick()
    assert _record(folder, "s-1").state == "failed"
    # a new session of the run on the same folder does not act on it again
    mon2 = Monitor(run="digits", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    MailboxServer(mon2, LocalFolder(folder), interval_s=60).tick()
    assert mon2.commands.get("s-1") is None and not mon2.commands.has_pending()


def test_a_stop_sent_to_an_earlier_session_does_not_end_this_one(box):
    mon, server, folder = box
    old = mon._started_at - 3600
    _drop(folder, "x-1.json", json.dumps({"id": "x-1", "action": "stop", "sent_at": old}).encode())
    server.tick()
    assert not mon.commands.has_pending()
    assert "earlier session" in _record(folder, "x-1").error


def test_metric_chunks_stay_within_bounds_and_read_back_in_order(tmp_path):
    from colabtui.mailbox_client import MailboxClient  # the laptop reads what the runtime wrote

    mon = Monitor(run="digits", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    storage = LocalFolder(tmp_path / "RUN")
    storage.create()
    server = MailboxServer(mon, storage, interval_s=60, max_chunk_files=12)
    step = 0
    for _ in range(40):  # 40 rounds of 25 points: compaction merges the old small chunks
        for _ in range(25):
            mon.log(step=step, loss=1.0 / (step + 1))
            step += 1
        server.tick()
    names = [n for n in storage.list("metrics") if parse_chunk_name(n)]
    assert len(names) <= 12

    import asyncio

    async def read_all():
        client = MailboxClient(tmp_path / "RUN")
        after, seen, thinned = 0, [], False
        while True:
            page = await client.metrics(after)
            seen += [p.seq for p in page.series.get("loss", [])]
            thinned |= page.thinned
            after = page.next_after
            if not page.more:
                return seen, thinned

    seqs, thinned = asyncio.run(read_all())
    assert seqs == list(range(1, 1001)) and not thinned


def test_old_chunks_beyond_the_byte_bound_go_and_the_reader_sees_a_gap(tmp_path):
    from colabtui.mailbox_client import MailboxClient

    mon = Monitor(run="digits", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    storage = LocalFolder(tmp_path / "RUN")
    storage.create()
    server = MailboxServer(mon, storage, interval_s=60, max_metrics_bytes=20_000)
    for step in range(3000):
        mon.log(step=step, loss=float(step))
        if step % 100 == 99:
            server.tick()
    total = sum(p.stat().st_size for p in (tmp_path / "RUN" / "metrics").iterdir())
    assert total <= 20_000

    import asyncio

    page = asyncio.run(MailboxClient(tmp_path / "RUN").metrics(0))
    assert page.thinned and page.series["loss"][0].seq > 1


def test_a_folder_that_disappears_is_logged_once_and_never_raises(box, caplog):
    mon, server, folder = box
    server.tick()
    shutil.rmtree(folder)  # the mount dropped
    with caplog.at_level(logging.WARNING, logger="colabtui_remote"):
        for _ in range(3):
            server.tick()
    assert sum("does not exist" in r.getMessage() for r in caplog.records) == 1
    folder.mkdir()  # back again
    server.tick()
    assert (folder / "status.json").exists()


def test_a_monitor_serves_the_mailbox_that_colabtui_launch_names_in_its_environment(
        tmp_path, monkeypatch):
    from colabtui_remote.transport.mailbox import serve

    MAILBOX_ENV, MAILBOX_INTERVAL_ENV = serve.MAILBOX_ENV, serve.MAILBOX_INTERVAL_ENV
    from_environment = serve.from_environment

    assert from_environment({}) is None
    assert from_environment({MAILBOX_ENV: "/content/colabtui"}) == ("/content/colabtui", 5.0)
    for bad in ("fast", "0", "nan", "1e309", "-1"):
        with pytest.raises(ValueError, match="from 0.05 to 86400"):
            from_environment({MAILBOX_ENV: "/x", MAILBOX_INTERVAL_ENV: bad})
    folder = tmp_path / "launched"
    monkeypatch.setenv(MAILBOX_ENV, str(folder))
    monkeypatch.setenv(MAILBOX_INTERVAL_ENV, "0.05")
    mon = Monitor(run="digits", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    try:
        mon.resume()
        mon.log(step=0, loss=1.5)
        time.sleep(0.3)
        assert not folder.exists()  # not announced before its first step (it may still resume)
        mon.at_step_boundary(1)
        for _ in range(200):
            if (folder / "status.json").exists():
                break
            time.sleep(0.05)
        status = schema.parse_status(json.loads((folder / "status.json").read_bytes()))
        assert status.session_id == mon.session_id
    finally:
        mon.close()
    monkeypatch.setenv(MAILBOX_INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match="COLABTUI_MAILBOX_INTERVAL='soon'"):
        Monitor(run="digits", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
