"""A hostile session seen from the laptop: through the HTTP client (a fake ``/v1`` server and a
real Monitor), a mailbox folder, the ledger, the panel's text, a toast and ``colabtui status``.
Every string comes out inert, every out-of-range number says "invalid", nothing raises."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
from colabtui_remote import Monitor, schema, wire
from colabtui_remote.transport.mailbox.layout import COMMANDS, RECORDS, STATUS
from colabtui_remote.wire import LINE_BREAK, PLACEHOLDER, clean_text
from hostile_session import (
    EVERYTHING,
    LABEL,
    METRIC,
    RUN,
    TOKEN,
    HostileSession,
    encode,
    hostile_command,
    hostile_metrics,
    hostile_status,
)

from colabtui.app import ColabTuiApp
from colabtui.cli import main
from colabtui.client import RemoteClient, SessionError
from colabtui.config import Config, SessionConfig, Settings, save_config
from colabtui.ledger import Ledger
from colabtui.mailbox_client import MailboxClient
from colabtui.widgets.checkpoint_view import checkpoint_lines
from colabtui.widgets.gpu_view import gpu_lines
from colabtui.widgets.progress_view import progress_lines

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                    "\u2066-\u2069\ud800-\udfff]")
INVALID_IN_STATUS = ["gpus[0].memory_used_bytes", "checkpoint.last.bytes", "step", "total_steps"]
WAIT_S = 60.0
"""Bound on each wait (a bound, not an assertion about speed)."""


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value):
        return strings([getattr(value, f.name) for f in dataclasses.fields(value)])
    if isinstance(value, dict):
        return strings(list(value)) + strings(list(value.values()))
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in strings(item)]
    return []


def assert_inert(value) -> None:
    found = strings(value)
    assert found and [s for s in found if UNSAFE.search(s)] == []


@pytest.fixture(scope="module")
def hostile():
    session = HostileSession()
    yield session
    session.close()


# --------------------------------------------------------------------------- HTTP


async def test_the_http_client_gives_inert_text_and_invalid_fields(hostile) -> None:
    async with RemoteClient(hostile.url, TOKEN) as client:
        status = await client.status()
        page = await client.metrics(0)
        sent = await client.send_command("save")
        followed = await client.get_command(sent.id)
    for parsed in (status, page, sent, followed):
        assert_inert(parsed)
    assert status.run == f"RUNMARK{PLACEHOLDER}]52;c;aGVsbG8={PLACEHOLDER}{PLACEHOLDER}]0;pwned" \
        f"{PLACEHOLDER}r{LINE_BREAK}● connected"
    assert schema.invalid_paths(status) == INVALID_IN_STATUS
    assert status.step is None and status.total_steps is None
    assert status.gpus[0].memory_used_bytes is None and status.checkpoint.last.bytes is None
    assert status.checkpoint.last.step == 2  # the rest is kept
    assert list(page.series) == [clean_text(METRIC)]
    assert [p.seq for p in page.series[clean_text(METRIC)]] == [1, 2, 3]
    assert page.invalid == (f"series.{clean_text(METRIC)}[3]",)
    for record in (sent, followed):  # a save reply's bytes: 10**400
        assert record.checkpoint.invalid == ("bytes",) and record.checkpoint.bytes is None


async def test_an_error_body_from_a_session_is_cleaned(hostile) -> None:
    hostile.error_message = f"disk full{EVERYTHING}"
    try:
        async with RemoteClient(hostile.url, TOKEN) as client:
            with pytest.raises(SessionError) as info:
                await client.status()
    finally:
        hostile.error_message = None
    assert info.value.message == f"HTTP 500 (Internal Server Error): {clean_text('disk full' + EVERYTHING)}"
    assert str(info.value) == info.value.message and not UNSAFE.search(info.value.message)


def test_a_session_error_cleans_whatever_it_quotes() -> None:
    error = SessionError("unreachable", f"mailbox folder /x{EVERYTHING} not found")
    assert error.message == clean_text(f"mailbox folder /x{EVERYTHING} not found")


@pytest.fixture(scope="module")
def hostile_monitor(tmp_path_factory):
    """A real Monitor whose run, label and metric name carry the escapes, on HTTP and a
    mailbox folder."""
    mon = Monitor(run=RUN, label=LABEL, checkpoint_dir=None, autosave_every=None,
                  handle_sigterm=False)
    mon.serve(port=0, token=TOKEN, quiet=True)
    folder = tmp_path_factory.mktemp("hostile-mailbox") / "mailbox"
    mon.serve_mailbox(folder, interval_s=0.05, quiet=True)
    for step in range(3):
        mon.log(step, **{METRIC: 1.0 / (step + 1)})
        mon.at_step_boundary(step + 1)
    yield mon, folder
    mon.close()


async def test_a_real_monitor_with_hostile_names_reaches_the_laptop_inert(hostile_monitor) -> None:
    mon, folder = hostile_monitor
    async with RemoteClient(mon.url, TOKEN) as client:
        status, page = await client.status(), await client.metrics(0)
    mailbox = MailboxClient(folder)
    deadline = time.monotonic() + WAIT_S
    while True:  # the mailbox thread writes the status, then the points
        try:
            by_mail = await mailbox.status()
            if by_mail.step == 3 and (mail_page := await mailbox.metrics(0)).series:
                break
        except SessionError:
            pass
        assert time.monotonic() < deadline, "the mailbox never had the status and points"
        time.sleep(0.05)
    for st, pg in ((status, page), (by_mail, mail_page)):
        assert (st.run, st.label) == (clean_text(RUN), clean_text(LABEL))
        assert list(st.metrics) == [clean_text(METRIC)] == list(pg.series)
        assert_inert(st)
        assert_inert(pg)


# --------------------------------------------------------------------------- mailbox files


async def test_a_hostile_mailbox_folder_gives_inert_text_and_invalid_fields(tmp_path) -> None:
    now = time.time()
    (tmp_path / COMMANDS).mkdir()
    (tmp_path / RECORDS).mkdir()
    (tmp_path / STATUS).write_bytes(encode(hostile_status(now)))
    (tmp_path / RECORDS / "done.json").write_bytes(encode(hostile_command("done", now)))
    (tmp_path / COMMANDS / "sent.json").write_text(json.dumps(
        {"id": "sent", "action": f"save{EVERYTHING}", "sent_at": "1e400"}))
    client = MailboxClient(tmp_path)
    status = await client.status()
    done, sent = await client.get_command("done"), await client.get_command("sent")
    assert schema.invalid_paths(status) == INVALID_IN_STATUS
    assert done.checkpoint.invalid == ("bytes",)
    assert sent.action == clean_text(f"save{EVERYTHING}", 40) and sent.state == "pending"
    for parsed in (status, done, sent):
        assert_inert(parsed)


# --------------------------------------------------------------------------- ledger


def test_the_ledger_stores_a_hostile_session_and_never_an_integer_sqlite_refuses(tmp_path):
    status = schema.parse_status(wire.loads(encode(hostile_status(time.time()))))
    page = schema.parse_metrics(hostile_metrics())
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.record_status("k", "http://x", "label", status, 1.0)
        ledger.add_points(status.run, status.session_id, page)
        # objects not from the parse (a bug elsewhere) still never reach SQLite out of range
        wild = dataclasses.replace(status, session_id="wild", run="wild", step=10**30)
        ledger.record_status("k2", "http://y", "wild", wild, 2.0)
        ledger.add_points("wild", "wild", dataclasses.replace(page, next_after=2**70, series={
            "loss": [schema.MetricPoint(1, 1, 1.0, 1.0), schema.MetricPoint(2, 2**70, 2.0, 2.0),
                     schema.MetricPoint(2**64, 3, 3.0, 3.0)]}))
        rows = {row.session_id: row for row in ledger.sessions()}
        assert rows[status.session_id].step is None and rows["wild"].step is None
        assert [p.step for p in ledger.load_series("wild")["loss"]] == [1]
        assert [p.seq for p in ledger.load_series(status.run)[clean_text(METRIC)]] == [1, 2, 3]
        assert rows["wild"].last_seq == 1


def test_text_an_older_version_stored_raw_is_read_back_clean(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    with sqlite3.connect(path) as db:  # as a colabtui without the cleaning parse wrote it
        db.execute("INSERT INTO sessions (session_id, session_key, url, label, run, gpu, state, "
                   "step, ended, last_seq, min_step) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ("old", "k", "http://x", LABEL, RUN, f"T4{EVERYTHING}", f"running{EVERYTHING}",
                    1, f"lost{EVERYTHING}", 1, 1))
        db.execute("INSERT INTO series (run, name) VALUES (?, ?)", (RUN, METRIC))
        sid = db.execute("SELECT id FROM series").fetchone()[0]
        sess = db.execute("SELECT id FROM sessions").fetchone()[0]
        db.execute("INSERT INTO points VALUES (?,?,?,?,?,?,?)", (sid, sess, 1, 1, 1.0, 0.5, None))
        db.execute("INSERT INTO series_sessions VALUES (?,?,?,?,?)", (sid, sess, 1, 1, 1))
    with Ledger(path) as ledger:
        [row] = ledger.sessions()
        assert (row.run, row.label) == (clean_text(RUN), clean_text(LABEL))
        assert_inert(row)
        assert list(ledger.load_series(RUN)) == [clean_text(METRIC)]
        assert ledger.runs() == [clean_text(RUN)]


def test_a_saved_label_is_shown_clean() -> None:
    assert SessionConfig("http://127.0.0.1:1", TOKEN, LABEL).display_label == clean_text(LABEL)


# --------------------------------------------------------------------------- what is shown


def test_the_panels_blocks_say_invalid_and_hold_no_escape() -> None:
    now = time.time()
    status = schema.parse_status(wire.loads(encode(hostile_status(now))))
    gpu = gpu_lines(status.gpus, status.gpu_error, 60).plain
    progress = progress_lines(status, 60).plain
    compact = progress_lines(status, 30).plain
    checkpoint = checkpoint_lines(status, now, 0.0, 30.0).plain
    narrow = checkpoint_lines(status, now, 0.0, 30.0, compact=True).plain
    assert "invalid/16.0 GiB" in gpu
    assert "step invalid/invalid" in progress and "invalid/invalid" in compact
    assert "step 2 · invalid" in checkpoint and "s2 invalid" in narrow
    for text in (gpu, progress, compact, checkpoint, narrow):
        assert not UNSAFE.search(text.replace("\n", ""))


async def test_a_save_whose_reply_is_out_of_range_toasts_invalid(hostile, tmp_path) -> None:
    config = tmp_path / "config.toml"
    save_config(Config([SessionConfig(hostile.url, TOKEN, LABEL)], Settings(poll_interval_s=0.2)),
                config)
    app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
    async with app.run_test(size=(120, 40)) as pilot:
        panel = app.panels[0]
        deadline = time.monotonic() + WAIT_S
        while panel.status is None:
            assert time.monotonic() < deadline, "no status"
            await pilot.pause(0.05)
        await pilot.press("s")
        while not any("written" in n.message for n in app._notifications):
            assert time.monotonic() < deadline, "no toast for the save"
            await pilot.pause(0.05)
        [toast] = [n.message for n in app._notifications if "written" in n.message]
        assert toast == f"{clean_text(LABEL)}: saved — checkpoint at step 3 written (invalid)"
        assert panel.conn_kind == "connected"  # nothing raised in the poll


# --------------------------------------------------------------------------- colabtui status


@pytest.fixture
def status_config(hostile, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("COLABTUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "config" / "config.toml"
    save_config(Config([SessionConfig(hostile.url, TOKEN, LABEL)]), path)
    return path


def test_status_prints_a_hostile_session_inert_with_invalid(status_config, capsys) -> None:
    assert main(["status"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and not UNSAFE.search(out.replace("\n", ""))
    [row] = out.splitlines()[1:]
    assert row.startswith(clean_text(LABEL)) and "running" in row
    assert " invalid/invalid " in row and "step 2, invalid, " in row


def test_status_json_on_a_hostile_session_is_inert_and_names_invalid(status_config,
                                                                     capsys) -> None:
    assert main(["status", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and not UNSAFE.search(out.replace("\n", ""))
    [entry] = json.loads(out)["sessions"]
    assert entry["invalid"] == INVALID_IN_STATUS
    assert (entry["step"], entry["total_steps"], entry["checkpoint"]["bytes"],
            entry["gpu"]["memory_used_bytes"]) == (None, None, None, None)
    assert (entry["label"], entry["run"]) == (clean_text(LABEL), clean_text(RUN))
    assert_inert(entry)


def test_status_on_a_hostile_error_body_exits_1_with_the_message_clean(hostile, status_config,
                                                                       capsys) -> None:
    hostile.error_message = f"boom{EVERYTHING}"
    try:
        assert main(["status"]) == 1
    finally:
        hostile.error_message = None
    out, err = capsys.readouterr()
    assert err == "" and not UNSAFE.search(out.replace("\n", ""))
    assert clean_text(f"boom{EVERYTHING}") in out
