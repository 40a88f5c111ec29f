"""Exact resume across processes: the training example, stopped and started again."""

from __future__ import annotations

import os
import uuid

import httpx
import torch
from colabtui_remote.checkpoint import load_resumable
from digits_training import wait_for

TOTAL = 400


def _status(session):
    r = httpx.get(session.url + "/v1/status", headers={"Authorization": f"Bearer {session.token}"})
    return r.json()


def _stop(session):
    r = httpx.post(session.url + "/v1/commands", json={"id": str(uuid.uuid4()), "action": "stop"},
                   headers={"Authorization": f"Bearer {session.token}"})
    assert r.status_code == 202


def _final_state(folder):
    state, info = load_resumable(folder)
    return state, info


def test_stop_and_resume_in_a_new_process_is_bitwise_identical_to_training_straight(digits_session):
    straight = digits_session(name="straight", steps=TOTAL, step_delay=0)
    assert straight.wait(120) == 0, straight.stderr()

    interrupted = digits_session(name="interrupted", steps=TOTAL, step_delay=0.01)
    wait_for(lambda: _status(interrupted)["step"] >= 40, timeout=60)
    _stop(interrupted)
    assert interrupted.wait(60) == 0, interrupted.stderr()
    _, stopped_at = load_resumable(interrupted.checkpoint_dir)
    assert 40 <= stopped_at.step < TOTAL

    interrupted.args[interrupted.args.index("--step-delay") + 1] = "0"
    interrupted.start()  # a new session of the same run, in a new process
    assert interrupted.wait(120) == 0, interrupted.stderr()
    assert f"resumed interrupted at step {stopped_at.step}" in interrupted.stdout()

    a, a_info = _final_state(straight.checkpoint_dir)
    b, b_info = _final_state(interrupted.checkpoint_dir)
    assert a_info.step == b_info.step == TOTAL
    model_a, model_b = (s["tracked"]["model"]["state"] for s in (a, b))
    assert model_a.keys() == model_b.keys()
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), key  # bitwise, not allclose
    opt_a, opt_b = (s["tracked"]["optimizer"]["state"] for s in (a, b))
    assert [g["lr"] for g in opt_a["param_groups"]] == [g["lr"] for g in opt_b["param_groups"]]
    for index, per_param in opt_a["state"].items():
        for key, value in per_param.items():
            assert torch.equal(value, opt_b["state"][index][key]), (index, key)
    assert a["tracked"]["scheduler"]["state"] == b["tracked"]["scheduler"]["state"]


def test_a_truncated_newest_checkpoint_resumes_from_the_previous_one(digits_session):
    session = digits_session(name="trunc", step_delay=0.01)
    wait_for(lambda: _status(session)["step"] >= 20, timeout=60)
    _stop(session)
    assert session.wait(60) == 0
    _, first = load_resumable(session.checkpoint_dir)

    session.start()
    wait_for(lambda: _status(session)["step"] >= first.step + 20, timeout=60)
    _stop(session)
    assert session.wait(60) == 0
    _, second = load_resumable(session.checkpoint_dir)
    assert second.step > first.step

    with open(second.path, "r+b") as f:  # the runtime died while Drive was syncing it
        f.truncate(second.bytes // 2)
    session.start()
    wait_for(lambda: "resumed" in session.stdout(), timeout=60)
    assert f"resumed trunc at step {first.step}" in session.stdout()
    # The unusable newest one is no longer reported as the last durable checkpoint.
    wait_for(lambda: _status(session)["checkpoint"]["last"] is not None, timeout=30)
    assert _status(session)["checkpoint"]["last"]["step"] == first.step
    assert os.path.exists(second.path), "nothing is deleted"
    assert "ckpt" in session.stderr().lower() and "warn" in session.stderr().lower()


def test_a_new_runtime_resumes_from_drive_bitwise_identical_to_training_straight(
        digits_session, tmp_path, monkeypatch):
    """Checkpoints go to Drive through the API (the stand-in); the second session runs on a new
    runtime whose local disk is empty, and resumes from the newest checkpoint verified there."""
    from colabtui_remote.checkpoint.destinations import list_verified
    from drive_standin import DriveStandin

    with DriveStandin(tmp_path / "standin") as drive:
        monkeypatch.setenv("COLABTUI_DRIVE_API", drive.api_endpoint)
        monkeypatch.setenv("COLABTUI_DRIVE_CREDENTIALS",
                           str(drive.make_credentials_file(tmp_path / "creds.json")))
        url = f"gdrive://{drive.create_folder('colabtui')}/runs/digits"
        straight = digits_session(name="straight", steps=TOTAL, step_delay=0)
        assert straight.wait(120) == 0, straight.stderr()

        monkeypatch.setenv("COLABTUI_LOCAL_CHECKPOINTS", str(tmp_path / "runtime-1"))
        session = digits_session(name="ondrive", steps=TOTAL, step_delay=0.01,
                                 extra=["--checkpoint-dir", url])
        wait_for(lambda: _status(session)["step"] >= 40, timeout=60)
        _stop(session)
        assert session.wait(60) == 0, session.stderr()  # close() waited for the upload
        [stopped_at] = list_verified(url)
        assert 40 <= stopped_at.step < TOTAL
        assert (tmp_path / "runtime-1" / "ondrive" / stopped_at.file).exists()

        monkeypatch.setenv("COLABTUI_LOCAL_CHECKPOINTS", str(tmp_path / "runtime-2"))
        session.args[session.args.index("--step-delay") + 1] = "0"
        session.start()
        assert session.wait(120) == 0, session.stderr()
        out = session.stdout()
        assert f"downloaded step {stopped_at.step} from {url}/{stopped_at.file}" in out
        assert f"resumed ondrive at step {stopped_at.step}" in out
        assert [e.step for e in list_verified(url)] == [stopped_at.step, TOTAL]

    a, _ = _final_state(straight.checkpoint_dir)
    b, b_info = _final_state(tmp_path / "runtime-2" / "ondrive")
    assert b_info.step == TOTAL
    model_a, model_b = (s["tracked"]["model"]["state"] for s in (a, b))
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), key  # bitwise, not allclose
    opt_a, opt_b = (s["tracked"]["optimizer"]["state"] for s in (a, b))
    for index, per_param in opt_a["state"].items():
        for key, value in per_param.items():
            assert torch.equal(value, opt_b["state"][index][key]), (index, key)
