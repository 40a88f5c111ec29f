"""The Drive mailbox end to end: the digits example in another process serving only through a
folder (``--mailbox DIR --port -1``), the laptop's :class:`MailboxClient` and the app reading and
writing the same real folder. No timed assertions: every wait is a bounded loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from colabtui.app import ColabTuiApp
from colabtui.cli import main as cli_main
from colabtui.client import SessionError
from colabtui.config import Config, Settings, load_config, mailbox_url, save_config
from colabtui.mailbox_client import MailboxClient

WAIT_S = 60.0
"""Bound on each wait (a bound, not an assertion about speed)."""

INTERVAL_S = 0.2
"""The runtime's mailbox interval in these tests."""


@pytest.fixture
def mailbox_run(tmp_path):
    """Factory: start the digits example serving through a mailbox folder only."""
    procs: list[subprocess.Popen] = []

    def start(name: str = "run") -> tuple[Path, subprocess.Popen, Path]:
        folder = tmp_path / "drive" / name
        stderr_path = tmp_path / f"{name}.stderr.log"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-u", "-m", "colabtui_remote.examples.digits", "--port", "-1",
                 "--mailbox", str(folder), "--mailbox-interval", str(INTERVAL_S),
                 "--checkpoint-dir", str(tmp_path / f"{name}-ckpt"), "--steps", "100000",
                 "--step-delay", "0.01", "--autosave-every", "0", "--run", name],
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        procs.append(proc)
        return folder, proc, stderr_path

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


async def until(what: str, probe):
    """Call the async ``probe`` until it returns a true value (SessionError counts as not yet)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            value = await probe()
        except SessionError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def test_status_metrics_a_save_sent_twice_saves_once_and_stop_ends_the_run(mailbox_run):
    folder, proc, _ = mailbox_run("e2e")
    client = MailboxClient(folder)

    async def training():
        st = await client.status()
        return st if st.step and st.last_seq else None

    status = await until("status with steps", training)
    assert status.run == "e2e" and status.state == "running"
    page = await client.metrics(0)
    assert page.series["loss"] and page.series["loss"][0].seq >= 1
    assert client.status_age_s is not None and client.interval_s == INTERVAL_S

    cid = str(uuid.uuid4())
    first = await client.send_command("save", cid)
    assert first.state == "pending"
    again = await client.send_command("save", cid)  # a retry with the same id

    async def done(command_id):
        record = await client.get_command(command_id)
        return record if record.state in ("done", "failed") else None

    record = await until("the save to finish", lambda: done(cid))
    assert again.id == cid and record.state == "done" and record.checkpoint is not None
    assert not (folder / "commands" / f"{cid}.json").exists(), "the laptop removed its file"
    assert await client.send_command("save", cid) == record  # answered: never acted on again
    listing = await client.checkpoints()
    assert [c.step for c in listing.checkpoints] == [record.checkpoint.step]

    async def shows_checkpoint():
        st = await client.status()
        return st.checkpoint.last and st.checkpoint.last.step == record.checkpoint.step

    await until("the status to show the checkpoint", shows_checkpoint)

    stop = await client.send_command("stop")
    stopped = await until("the stop to finish", lambda: done(stop.id))
    assert stopped.state == "done"
    assert proc.wait(WAIT_S) == 0
    final = await client.status()
    assert final.state == "stopped"
    await client.aclose()


async def test_a_garbage_command_file_gets_an_error_record_and_training_goes_on(mailbox_run):
    folder, proc, stderr_path = mailbox_run("junk")
    client = MailboxClient(folder)
    before = await until("status", client.status)
    (folder / "commands").mkdir(exist_ok=True)
    (folder / "commands" / "junk-1.json").write_bytes(b"{{{ this is not json")

    async def failed():
        record = await client.get_command("junk-1")
        return record if record.state == "failed" else None

    record = await until("the error record", failed)
    assert "commands/junk-1.json" in record.error and "not valid JSON" in record.error

    async def later():
        st = await client.status()
        return st if st.step > before.step + 5 and st.state == "running" else None

    await until("training to go on", later)
    assert proc.poll() is None
    assert "junk-1.json" in stderr_path.read_text()


async def test_a_missing_folder_is_unreachable_and_garbage_status_a_bad_response(tmp_path):
    with pytest.raises(SessionError) as info:
        await MailboxClient(tmp_path / "nowhere").status()
    assert info.value.kind == "unreachable" and "not found" in info.value.message
    (tmp_path / "box").mkdir()
    with pytest.raises(SessionError) as info:
        await MailboxClient(tmp_path / "box").status()
    assert info.value.kind == "unreachable" and "no status.json yet" in info.value.message
    (tmp_path / "box" / "status.json").write_text("<html>quota exceeded</html>")
    with pytest.raises(SessionError) as info:
        await MailboxClient(tmp_path / "box").status()
    assert info.value.kind == "bad_response" and "status.json" in info.value.message


def test_connect_path_saves_a_mailbox_session_without_a_token(tmp_path, capsys):
    config_path = tmp_path / "config.toml"
    (tmp_path / "box").mkdir()
    assert cli_main(["--config", str(config_path), "connect", str(tmp_path / "box"),
                     "--label", "colab T4"]) == 0
    assert "no status.json yet" in capsys.readouterr().out
    session = load_config(config_path).sessions[0]
    assert (session.url, session.token, session.label) == \
        (mailbox_url(tmp_path / "box"), "", "colab T4")
    assert cli_main(["--config", str(config_path), "connect", str(tmp_path / "nope")]) == 2
    assert "nor an existing folder" in capsys.readouterr().err


async def test_the_app_shows_a_mailbox_session_and_s_saves_through_it(tmp_path, mailbox_run):
    folder, _proc, _ = mailbox_run("app")
    folder.mkdir(parents=True, exist_ok=True)  # synced before the runtime writes there
    config_path = tmp_path / "config.toml"
    save_config(Config([], Settings(poll_interval_s=0.1)), config_path)
    assert await asyncio.to_thread(cli_main, ["--config", str(config_path), "connect",
                                              str(folder)]) == 0
    app = ColabTuiApp(config_path, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
    async with app.run_test(size=(160, 48)) as pilot:
        panel = app.panels[0]

        async def wait(what, condition):
            deadline = time.monotonic() + WAIT_S
            while not condition():
                if time.monotonic() > deadline:
                    raise AssertionError(f"gave up waiting for {what}")
                await pilot.pause(0.05)

        await wait("connected", lambda: panel.conn_kind == "connected" and panel.status.step)
        header = panel.query_one("#header").render().plain
        assert "● connected · mailbox · " in header
        await pilot.press("s")
        await wait("the checkpoint to show", lambda: panel.status.checkpoint.last is not None)
        await wait("the done notification",
                   lambda: any("saved" in n.message for n in app._notifications))
    listing = json.loads((folder / "checkpoints.json").read_text())
    assert len(listing["checkpoints"]) == 1


async def test_a_stale_status_is_still_returned_and_the_header_says_so(tmp_path):
    from colabtui_remote import Monitor

    from colabtui.transport import transport_text

    mon = Monitor(run="old", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    mon.serve_mailbox(tmp_path / "RUN", interval_s=5, quiet=True)
    mon.close()  # a last round, then the runtime writes no more
    now = [time.time() + 60]  # the laptop reads it a minute after the runtime last wrote
    client = MailboxClient(tmp_path / "RUN", clock=lambda: now[0])
    status = await client.status()
    assert status.run == "old" and client.interval_s == 5
    assert client.stale and client.status_age_s >= 59
    assert "mailbox · 1m old, stale" in transport_text(client).plain
    now[0] += 120  # no poll since: the age keeps growing on the laptop's clock
    assert client.status_age_s >= 179 and "mailbox · 3m old, stale" in \
        transport_text(client).plain


def test_bad_mailbox_input_gets_a_clear_error(tmp_path):
    from colabtui.config import ConfigError, validate_url

    with pytest.raises(ConfigError, match="absolute path"):
        validate_url("mailbox:relative/RUN")
    done = subprocess.run([sys.executable, "-m", "colabtui_remote.examples.digits", "--port", "-1",
                           "--checkpoint-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--port -1 (no HTTP) needs --mailbox DIR" in done.stderr


async def test_a_mailbox_status_the_runtime_stopped_refreshing_is_not_shown_as_live(tmp_path):
    from colabtui_remote import Monitor

    from colabtui.config import SessionConfig

    folder = tmp_path / "RUN"
    mon = Monitor(run="old", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    mon.serve_mailbox(folder, interval_s=1, quiet=True)
    mon._mailbox.tick()
    mon._mailbox._exit.set()  # the runtime dies: no last round, nothing written any more
    status = json.loads((folder / "status.json").read_text())
    status["server_time"] -= 600  # written ten minutes ago, still saying "running"
    (folder / "status.json").write_text(json.dumps(status))
    config = tmp_path / "config.toml"
    save_config(Config([SessionConfig(mailbox_url(folder), "", "old")]), config)
    app = ColabTuiApp(config, tmp_path / "ledger.sqlite3")
    async with app.run_test(size=(120, 36)) as pilot:
        panel = app.panels[0]
        for _ in range(300):
            if panel.status is not None:
                break
            await pilot.pause(0.05)
        assert panel.status.state == "running" and panel.conn_kind == "connected"
        assert not panel.live and panel.has_class("-stale")
        await pilot.pause(1.2)
        shown = app.panels[0].query_one("#header").render()
        assert "stale" in str(shown)
    mon.close()
