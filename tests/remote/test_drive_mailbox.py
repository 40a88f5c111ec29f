"""DriveMailbox: the mailbox layout in a Drive folder through the API, against the Drive v2
stand-in on loopback, and a real MailboxServer and MailboxClient talking through it."""

from __future__ import annotations

import asyncio
import time

import pytest
from colabtui_remote import Monitor, schema, wire
from colabtui_remote.drive import (
    DriveError,
    DriveFolder,
    DriveNotFound,
    DriveUnavailable,
    connect,
)
from colabtui_remote.drive.errors import FileTooLarge
from colabtui_remote.transport.mailbox.drive_storage import DriveMailbox
from colabtui_remote.transport.mailbox.layout import MAX_FILE_BYTES
from colabtui_remote.transport.mailbox.server import MailboxServer

WAIT_S = 60.0
"""Bound on each wait (a bound, not an assertion about speed)."""


@pytest.fixture
def top(standin, creds) -> str:
    """The id of the user's ``colabtui`` folder on the stand-in."""
    return standin.create_folder("colabtui")


@pytest.fixture
def box(top) -> DriveMailbox:
    storage = DriveMailbox(f"gdrive://{top}/RUN")
    storage.create()
    return storage


def _folder_id(standin, parent: str, title: str) -> str:
    (fid,) = standin.ids_titled(title, parent)
    return fid


def _api_calls(standin) -> int:
    return sum(1 for _, p in standin.requests if p.startswith(("/drive/", "/upload/")))


# ------------------------------------------------------------------------------ the contract


def test_check_and_create(standin, top):
    missing = DriveMailbox(f"gdrive://{top}/RUN")
    with pytest.raises(FileNotFoundError, match="no folder 'RUN'"):
        missing.check()
    missing.create()
    missing.check()
    assert standin.children(top) == ["RUN"]
    with pytest.raises(FileNotFoundError, match="1NoSuchFolderAtAll does not exist"):
        DriveMailbox("gdrive://1NoSuchFolderAtAll/RUN").check()
    with pytest.raises(ValueError, match="not a Drive folder id"):
        DriveMailbox("gdrive://bad")
    assert repr(missing) == f"DriveMailbox('gdrive://{top}/RUN')"


def test_write_read_list_remove(box, standin, top):
    with pytest.raises(FileNotFoundError, match="status.json"):
        box.read("status.json")
    assert box.list("commands") == []
    box.write("status.json", b'{"step": 1}')
    box.write("status.json", b'{"step": 2}')
    assert box.read("status.json") == b'{"step": 2}'
    run = _folder_id(standin, top, "RUN")
    assert len(standin.ids_titled("status.json", run)) == 1, "updated in place, never a second"
    box.write("commands/c-1.json", b'{"id": "c-1"}')
    box.write("commands/c-2.json", b'{"id": "c-2"}')
    standin.put_file(".c-3.json.tmp", b"partial", _folder_id(standin, run, "commands"))
    assert box.list("commands") == ["c-1.json", "c-2.json"], "temporary names left out"
    assert box.read("commands/c-2.json") == b'{"id": "c-2"}'
    box.remove("commands/c-1.json")
    box.remove("commands/c-1.json")  # missing: not an error
    box.remove("records/never.json")  # missing folder: not an error
    assert box.list("commands") == ["c-2.json"]
    with pytest.raises(FileNotFoundError):
        box.read("commands/c-1.json")
    with pytest.raises(FileNotFoundError):
        box.read("records/r-1.json")
    assert sorted(standin.children(run)) == ["commands", "status.json"]


def test_bad_names_are_value_errors(box):
    for bad in ("", "a/b/c", "../x.json", "commands/", "/status.json", "commands/.."):
        with pytest.raises(ValueError, match="bad mailbox file name"):
            box.read(bad)
        with pytest.raises(ValueError, match="bad mailbox file name"):
            box.write(bad, b"{}")
    with pytest.raises(ValueError, match="bad mailbox folder name"):
        box.list("a/b")


def test_a_file_over_the_mailbox_bound_is_refused(box, standin, top):
    run = _folder_id(standin, top, "RUN")
    standin.put_file("status.json", b" " * (MAX_FILE_BYTES + 1), run)
    with pytest.raises(FileTooLarge):
        box.read("status.json")


def test_a_cached_id_costs_one_request_and_a_replaced_file_is_found_again(box, standin, top):
    box.write("status.json", b"1")
    before = _api_calls(standin)
    assert box.read("status.json") == b"1"
    assert _api_calls(standin) - before == 1
    # another client deleted it and made a new file with the same title (a new id)
    run = _folder_id(standin, top, "RUN")
    (old,) = standin.ids_titled("status.json", run)
    DriveFolder(run, connect()).delete(old)
    standin.put_file("status.json", b"2", run)
    assert box.read("status.json") == b"2"
    box.write("status.json", b"3")
    assert [standin.content(i) for i in standin.ids_titled("status.json", run)] == [b"3"]


def test_a_deleted_subfolder_is_made_again_on_the_next_write(box, standin, top):
    box.write("commands/a.json", b"1")
    run = _folder_id(standin, top, "RUN")
    DriveFolder(run, connect()).delete(_folder_id(standin, run, "commands"))
    assert box.list("commands") == []
    box.write("commands/b.json", b"2")
    assert box.list("commands") == ["b.json"]


def test_storage_failures_are_os_errors(box, standin):
    box.write("status.json", b"1")
    standin.fail_next(1, 503)
    with pytest.raises(DriveUnavailable) as info:
        box.read("status.json")
    assert isinstance(info.value, OSError)
    standin.stop()
    for call in (box.check, lambda: box.read("status.json"), lambda: box.list("commands"),
                 lambda: box.write("status.json", b"2"), lambda: box.remove("status.json")):
        with pytest.raises(DriveError):
            call()


def test_a_drive_folder_given_open(standin, creds, top):
    folder = DriveFolder.open(f"gdrive://{top}/RUN", create=True)
    box = DriveMailbox(folder)
    box.create()
    box.write("mailbox.json", b"{}")
    assert box.read("mailbox.json") == b"{}"
    assert box.url == folder.url


def test_the_mailbox_folder_gone_is_not_found(box, standin, top):
    box.write("status.json", b"1")
    standin.trash(_folder_id(standin, top, "RUN"))
    with pytest.raises(DriveNotFound):
        box.check()
    with pytest.raises(DriveNotFound):
        box.list("commands")


# ------------------------------------------------------------------------------ end to end


class _Trainer:
    """A training loop on a thread: steps, logs a loss, saves when asked (real checkpoints)."""

    def __init__(self, mon: Monitor) -> None:
        import threading

        self.mon = mon
        self.exit = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        step = 0
        while not self.exit.is_set():
            self.mon.log(step=step, loss=1.0 / (step + 1))
            step += 1
            self.mon.at_step_boundary(step)
            time.sleep(0.005)

    def __enter__(self) -> _Trainer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.exit.set()
        self.thread.join(WAIT_S)


async def _until(what: str, probe):
    from colabtui.client import SessionError

    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            value = await probe()
        except SessionError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


def test_a_real_mailbox_server_and_the_laptop_client_through_drive(standin, creds, top,
                                                                   tmp_path):
    from colabtui.mailbox_client import MailboxClient

    url = f"gdrive://{top}/RUN"
    mon = Monitor(run="digits", checkpoint_dir=tmp_path / "ckpt", autosave_every=None,
                  handle_sigterm=False)
    mon.track(weights=[1.0, 2.0, 3.0])
    runtime = DriveMailbox(url)
    runtime.create()
    server = MailboxServer(mon, runtime, interval_s=0.2)
    server.start()
    laptop = MailboxClient(url, storage=DriveMailbox(url))  # its own connection and caches

    async def follow():
        status = await _until("a status", laptop.status)
        assert status.session_id == mon.session_id and status.run == "digits"
        await _until("a loss", lambda: _has_loss(laptop))
        sent = await laptop.send_command("save")

        async def final():
            record = await laptop.get_command(sent.id)
            return record if record.state in ("done", "failed") else None

        record = await _until("the save's record", final)
        assert record.state == "done", record.error
        assert record.checkpoint is not None and record.checkpoint.step > 0

        async def shown():
            st = await laptop.status()
            return st.checkpoint.last is not None and \
                st.checkpoint.last.step == record.checkpoint.step

        await _until("the checkpoint in the status", shown)
        listing = await laptop.checkpoints()
        assert record.checkpoint.step in [c.step for c in listing.checkpoints]
        return sent.id

    try:
        with _Trainer(mon):
            cid = asyncio.run(follow())
    finally:
        server.close()
        mon.close()
    run = _folder_id(standin, top, "RUN")
    assert {"mailbox.json", "status.json", "checkpoints.json", "records", "metrics"} <= \
        set(standin.children(run))
    records = _folder_id(standin, run, "records")
    assert standin.children(records) == [f"{cid}.json"]
    assert schema.parse_command(wire.loads(
        standin.content(standin.ids_titled(f"{cid}.json", records)[0]))).state == "done"
    commands = _folder_id(standin, run, "commands")
    assert standin.children(commands) == [], "the laptop removed its command once answered"


async def _has_loss(client) -> bool:
    page = await client.metrics(0)
    return bool(page.series.get("loss"))


@pytest.mark.parametrize("status,retry_after,expected", [(429, 7.0, 7.0), (403, None, 0.4)],
                         ids=["429-retry-after", "403-doubling"])
def test_the_runtime_backs_off_when_drive_rate_limits(standin, creds, top, status, retry_after,
                                                      expected):
    mon = Monitor(run="digits", handle_sigterm=False)
    runtime = DriveMailbox(f"gdrive://{top}/RUN")
    runtime.create()
    server = MailboxServer(mon, runtime, interval_s=0.2)
    server.tick()
    assert server.backoff_s == 0.0
    standin.rate_limit(1, status=status, retry_after=retry_after)
    server.tick()  # the round meets the rate limit: nothing raised, the next one waits
    assert server.backoff_s == expected
    if retry_after is None:
        standin.rate_limit(1, status=status)
        server.tick()
        assert server.backoff_s == 2 * expected  # doubles while Drive keeps refusing
    server.tick()
    assert server.backoff_s == 0.0  # a round that went through: back to the interval
    server.close()
    mon.close()


def test_a_mailbox_deleted_on_drive_while_served_is_made_again(standin, creds, top):
    mon = Monitor(run="digits", handle_sigterm=False)
    runtime = DriveMailbox(f"gdrive://{top}/RUN/mailbox")
    runtime.create()
    server = MailboxServer(mon, runtime, interval_s=0.2)
    server.tick()
    (old,) = standin.ids_titled("mailbox")
    DriveFolder.open(f"gdrive://{top}/RUN").delete(old)  # the user deletes it in Drive's web UI
    mon.log(1, loss=0.5)
    server.tick()  # finds it gone, makes it again and writes everything there
    (new,) = standin.ids_titled("mailbox")
    assert new != old
    laptop = DriveMailbox(f"gdrive://{top}/RUN/mailbox")
    status = schema.parse_status(wire.loads(laptop.read("status.json")))
    assert status.session_id == mon.session_id and status.metrics == {"loss": 0.5}
    assert wire.loads(laptop.read("mailbox.json"))["session_id"] == mon.session_id
    server.close()
    mon.close()


def test_a_local_mailbox_folder_that_vanished_is_not_made_again(tmp_path):
    from colabtui_remote.transport.mailbox.layout import LocalFolder

    mon = Monitor(run="digits", handle_sigterm=False)
    folder = tmp_path / "drive" / "RUN"
    storage = LocalFolder(folder)
    storage.create()
    server = MailboxServer(mon, storage, interval_s=0.2)
    server.tick()
    for f in sorted(folder.rglob("*"), reverse=True):
        f.rmdir() if f.is_dir() else f.unlink()
    folder.rmdir()  # a mount that dropped: writing under it would fill the local disk
    server.tick()
    assert not folder.exists()
    server.close()
    mon.close()
