"""The Monitor driving real training on the digits data, commanded over real HTTP."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from pathlib import Path

import httpx
import pytest
import torch
from colabtui_remote import Monitor, schema
from colabtui_remote.checkpoint import load_resumable
from digits_training import TrainingThread, make_training, wait_for


@pytest.fixture
def session(tmp_path):
    """A Monitor serving on loopback, with a training thread started by the test."""
    made = []

    def start(total=100_000, delay=0.002, checkpoint_dir="ckpt", **kw):
        mon = Monitor(run="digits", checkpoint_dir=tmp_path / checkpoint_dir if checkpoint_dir else None,
                      autosave_every=kw.pop("autosave_every", None), handle_sigterm=False, **kw)
        training = make_training()
        mon.track(model=training.model, optimizer=training.optimizer, scheduler=training.scheduler)
        url = mon.serve(port=0, quiet=True)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {mon.token}"},
                              timeout=10)
        thread = TrainingThread(mon, training, total, delay)
        thread.start()
        made.append((mon, client, thread))
        return mon, client, thread

    yield start
    for mon, client, thread in made:
        mon._stop = True  # end the loop at its next boundary, whatever state the test left
        thread.join(30)
        client.close()
        mon.close()


def send(client, action, cid=None):
    cid = cid or str(uuid.uuid4())
    r = client.post("/v1/commands", json={"id": cid, "action": action})
    assert r.status_code == 202, r.text
    return cid


def finished(client, cid):
    record = schema.parse_command(client.get(f"/v1/commands/{cid}").json())
    return record if record.state in ("done", "failed") else None


def test_save_command_writes_a_checkpoint_that_loads(session):
    mon, client, thread = session()
    wait_for(lambda: mon.step > 20)
    cid = send(client, "save")
    record = wait_for(lambda: finished(client, cid))
    assert record.state == "done", record.error
    assert record.checkpoint is not None and record.checkpoint.bytes > 0
    state = torch.load(record.checkpoint.path, weights_only=True)
    assert state["step"] == record.checkpoint.step
    listing = schema.parse_checkpoint_list(client.get("/v1/checkpoints").json())
    assert [c.step for c in listing.checkpoints] == [record.checkpoint.step]
    status = schema.parse_status(client.get("/v1/status").json())
    assert status.checkpoint.last.step == record.checkpoint.step
    assert thread.is_alive(), "a save must not end the run"


def test_stop_saves_then_ends_the_loop(session):
    mon, client, thread = session()
    wait_for(lambda: mon.step > 10)
    cid = send(client, "stop")
    thread.join(30)
    assert not thread.is_alive() and thread.error is None
    record = schema.parse_command(client.get(f"/v1/commands/{cid}").json())
    assert record.state == "done"
    assert record.checkpoint.step == mon.step == len(thread.steps_run)
    assert schema.parse_status(client.get("/v1/status").json()).state == "stopped"
    _, info = load_resumable(mon.checkpointer.directory)
    assert info.step == mon.step


def test_after_a_stop_the_server_stays_up_until_the_client_saw_the_outcome(session):
    mon, client, thread = session()
    client.get("/v1/status")  # a laptop is polling
    wait_for(lambda: mon.step > 5)
    cid = send(client, "stop")
    thread.join(30)
    closer = threading.Thread(target=mon.close)  # the notebook's mon.close() right after the loop
    closer.start()
    record = wait_for(lambda: finished(client, cid))
    assert record.state == "done" and record.checkpoint is not None
    assert closer.is_alive(), "close() must wait for the final status to be seen"
    assert client.get("/v1/status").json()["state"] == "stopped"
    closer.join(10)
    assert not closer.is_alive()


def test_close_does_not_linger_when_no_client_is_polling(session):
    mon, client, thread = session()
    mon._stop = True
    thread.join(30)
    closer = threading.Thread(target=mon.close)
    closer.start()
    closer.join(2.5)  # LINGER_S is 5 s: returning well before it shows no wait happened
    assert not closer.is_alive()


def test_the_same_command_id_posted_twice_saves_once(session):
    mon, client, _ = session()
    wait_for(lambda: mon.step > 5)
    cid = str(uuid.uuid4())
    send(client, "save", cid)
    send(client, "save", cid)  # a tunnel dropped the first answer; the client retried
    wait_for(lambda: finished(client, cid))
    wait_for(lambda: mon.step > 50)  # later boundaries would act on a duplicate
    assert len(mon.checkpointer.list()) == 1


def test_a_failed_checkpoint_write_is_reported_and_training_goes_on(session, tmp_path):
    mon, client, thread = session()
    wait_for(lambda: mon.step > 5)
    first = send(client, "save")
    good = wait_for(lambda: finished(client, first))
    assert good.state == "done"
    # The folder vanishes (a Drive mount drops): replace it by a file so nothing can be written.
    folder = Path(mon.checkpointer.directory)
    moved = tmp_path / "moved-away"
    os.rename(folder, moved)
    folder.write_text("not a folder")
    step_at_failure = mon.step
    cid = send(client, "save")
    record = wait_for(lambda: finished(client, cid))
    assert record.state == "failed" and record.error
    status = schema.parse_status(client.get("/v1/status").json())
    assert status.checkpoint.last_error
    wait_for(lambda: mon.step > step_at_failure + 20)
    assert thread.is_alive() and thread.error is None
    # The earlier checkpoint is intact where it was.
    _, info = load_resumable(moved)
    assert info.step == good.checkpoint.step


def test_stop_whose_save_fails_does_not_end_the_run(session, tmp_path):
    mon, client, thread = session()
    wait_for(lambda: mon.step > 5)
    folder = Path(mon.checkpointer.directory)
    os.rename(folder, tmp_path / "gone")
    folder.write_text("not a folder")
    cid = send(client, "stop")
    record = wait_for(lambda: finished(client, cid))
    assert record.state == "failed" and "not stopped" in record.error
    step = mon.step
    wait_for(lambda: mon.step > step + 10)
    assert thread.is_alive()


def test_stop_without_a_checkpoint_folder_still_stops_and_save_says_why(session):
    mon, client, thread = session(checkpoint_dir=None)
    wait_for(lambda: mon.step > 5)
    save = send(client, "save")
    record = wait_for(lambda: finished(client, save))
    assert record.state == "failed" and "checkpoint_dir" in record.error
    stop = send(client, "stop")
    thread.join(30)
    assert not thread.is_alive()
    assert finished(client, stop).state == "done"


def test_autosave_writes_checkpoints_on_schedule(session):
    mon, client, _ = session(autosave_every=0.3)
    wait_for(lambda: len(mon.checkpointer.list()) >= 2)
    status = schema.parse_status(client.get("/v1/status").json())
    assert status.checkpoint.autosave_every_s == 0.3
    assert status.checkpoint.next_autosave_at is not None


def test_a_finished_run_saves_its_last_step(session):
    mon, client, thread = session(total=150, delay=0)
    thread.join(60)
    assert mon.state == "finished" and mon.step == 150
    assert mon.checkpointer.last.step == 150
    assert schema.parse_status(client.get("/v1/status").json()).state == "finished"


def test_status_reports_progress_and_throughput(session):
    mon, client, _ = session(total=100_000)
    wait_for(lambda: mon.step > 50)
    status = schema.parse_status(client.get("/v1/status").json())
    assert status.total_steps == 100_000
    assert status.step >= 50
    assert status.steps_per_s and status.steps_per_s > 0
    assert "loss" in status.metrics and status.last_seq >= 50


def test_log_rejects_a_value_that_is_not_a_number():
    mon = Monitor(run="types", autosave_every=None)
    with pytest.raises(TypeError):
        mon.log(loss="low")
    with pytest.raises(ValueError):
        mon.log(loss=torch.ones(3))
    mon.log(loss=torch.tensor(0.25), acc=1)
    assert mon.metrics.latest() == {"loss": 0.25, "acc": 1.0}


def test_run_name_is_required():
    with pytest.raises(ValueError, match="run"):
        Monitor(run="  ")


def test_sigterm_saves_and_stops(digits_session):
    session = digits_session(name="sigterm", step_delay=0.005)
    headers = {"Authorization": f"Bearer {session.token}"}
    wait_for(lambda: httpx.get(session.url + "/v1/status", headers=headers).json()["step"] > 20)
    session.terminate()
    assert session.wait(60) == 0, session.stderr()
    _, info = load_resumable(session.checkpoint_dir)
    assert info.step > 20
    assert "stopped" in session.stderr()


def test_signal_handler_is_restored_on_close():
    before = signal.getsignal(signal.SIGTERM)
    mon = Monitor(run="sig", autosave_every=None)
    mon.serve(port=0, quiet=True)
    assert signal.getsignal(signal.SIGTERM) != before
    mon.close()
    assert signal.getsignal(signal.SIGTERM) == before
