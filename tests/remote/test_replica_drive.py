"""Checkpoints on Google Drive through its API: written locally first, uploaded (resumable),
verified by Drive's md5, listed in the manifest on Drive; failures keep the local copy, show the
error and are retried; resume downloads the newest verified checkpoint.

Our real code path (pydrive2, googleapiclient, oauth2client, httplib2) talks to the Drive
stand-in on loopback, configured through COLABTUI_DRIVE_API / COLABTUI_DRIVE_CREDENTIALS. Real
training on the digits data, real files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import pytest
import torch
from colabtui_remote import Monitor
from colabtui_remote.checkpoint import MANIFEST, Checkpointer, CheckpointError, load_resumable
from colabtui_remote.checkpoint.destinations import list_verified, open_destination
from colabtui_remote.checkpoint.drive import DriveReplica
from colabtui_remote.checkpoint.errors import ManifestUnreadable
from colabtui_remote.checkpoint.replica import Replicator
from colabtui_remote.checkpoint.resume import download_newest
from colabtui_remote.drive.auth import connect
from colabtui_remote.drive.client import DriveFolder
from digits_training import make_training, save_over_http, status_over_http, wait_for
from drive_standin import DriveStandin

FAST = {"retry_min_s": 0.05, "retry_max_s": 0.3}


@pytest.fixture
def drive(tmp_path, monkeypatch):
    """The stand-in, our env pointing at it, and a shared folder ``colabtui`` (its id)."""
    with DriveStandin(tmp_path / "standin") as standin:
        creds = standin.make_credentials_file(tmp_path / "drive-credentials.json")
        monkeypatch.setenv("COLABTUI_DRIVE_API", standin.api_endpoint)
        monkeypatch.setenv("COLABTUI_DRIVE_CREDENTIALS", str(creds))
        monkeypatch.setenv("COLABTUI_LOCAL_CHECKPOINTS", str(tmp_path / "runtime-disk"))
        standin.folder_id = standin.create_folder("colabtui")
        standin.creds = creds
        yield standin


def md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def drive_manifest(standin, parent) -> list[dict]:
    [mid] = standin.ids_titled(MANIFEST, parent)
    return json.loads(standin.content(mid))["checkpoints"]


def subfolder_id(standin, *titles) -> str:
    parent = standin.folder_id
    for title in titles:
        [parent] = standin.ids_titled(title, parent)
    return parent


def local_checkpoints(tmp_path, steps, keep=5):
    """Real checkpoints of the digits model, written by a Checkpointer."""
    ck = Checkpointer(tmp_path / "local", keep=keep)
    training = make_training()
    infos = []
    for step in steps:
        for _ in range(3):
            training.step()
        tracked = {"model": training.model, "optimizer": training.optimizer}
        assert ck.submit(ck.capture(tracked, step, None), step, None)
        assert ck.wait(30)
        infos.append(ck.last)
    ck.close()
    return infos


# --------------------------------------------------------------------------- the Monitor




def test_checkpoints_are_verified_on_drive_and_a_new_runtime_resumes_from_there(
        drive, served, tmp_path):
    url = f"gdrive://{drive.folder_id}/runs/digits"
    mon, client, thread = served(checkpoint_dir=url, keep=2)
    local = tmp_path / "runtime-disk" / "digits"
    assert mon.checkpointer.directory == str(local)

    saved = []
    for n in range(3):
        wait_for(lambda n=n: mon.step > 10 * (n + 1))
        record = save_over_http(client)
        assert record.state == "done", record.error
        saved.append(record.checkpoint)
        assert os.path.dirname(record.checkpoint.path) == str(local)  # written locally first
    replica = mon.checkpointer.replica
    assert replica.wait_idle(60)
    st = status_over_http(client)
    assert st.checkpoint.last.step == saved[-1].step  # "written locally"
    rs = st.checkpoint.replica
    assert (rs.kind, rs.dest, rs.state, rs.pending) == ("drive", url, "ok", 0)
    assert rs.verified.step == saved[-1].step  # "verified on Drive"
    assert rs.verified.md5 == md5(saved[-1].path) and rs.verified.file_id
    assert rs.uploading is None and rs.last_error is None

    run_folder = subfolder_id(drive, "runs", "digits")
    listed = drive_manifest(drive, run_folder)
    assert [c["step"] for c in listed] == [s.step for s in saved[1:]]  # keep=2 there too
    for entry, info in zip(listed, saved[1:], strict=True):
        assert drive.content(entry["file_id"]) == Path(info.path).read_bytes()
        assert entry["md5"] == drive.item_md5(entry["file_id"]) == md5(info.path)
        assert entry["sha256"] == info.sha256 and entry["file"] == os.path.basename(info.path)
    assert os.path.basename(saved[0].path) not in drive.children(run_folder)  # pruned there
    assert any("uploadType=resumable" in path for _, path in drive.requests)

    # A new runtime: an empty local disk. resume() takes the newest verified one from Drive.
    mon._stop = True
    thread.join(30)
    mon.close()
    expected = torch.load(saved[-1].path, weights_only=True)["tracked"]["model"]["state"]
    mon2 = Monitor(run="digits", checkpoint_dir=url, keep=2, autosave_every=None,
                   handle_sigterm=False, local_dir=tmp_path / "runtime-2")
    training = make_training(seed=7)
    mon2.track(model=training.model, optimizer=training.optimizer, scheduler=training.scheduler)
    try:
        assert mon2.resume() == saved[-1].step
        for key, value in training.model.state_dict().items():
            assert torch.equal(value, expected[key]), key
        last = mon2.checkpointer.last
        assert last.step == saved[-1].step and last.sha256 == saved[-1].sha256
        assert os.path.dirname(last.path) == str(tmp_path / "runtime-2")
        assert load_resumable(tmp_path / "runtime-2")[1] == last
        assert mon2.checkpointer.replica.wait_idle(30)
        assert mon2.status().checkpoint.replica.verified.step == saved[-1].step
    finally:
        mon2.close()


def test_a_folder_that_does_not_exist_or_is_not_shared_says_so(drive, served, tmp_path):
    url = "gdrive://1NoSuchFolderAtAll/x"
    fresh = Monitor(run="other", checkpoint_dir=url, autosave_every=None, handle_sigterm=False,
                    local_dir=tmp_path / "empty")
    try:
        with pytest.raises(CheckpointError, match="1NoSuchFolderAtAll does not exist or is not "
                                                  "shared"):
            fresh.resume()  # bad input at the start: said before any training
        rs = wait_for(lambda: (r := fresh.status().checkpoint.replica).state == "error" and r)
        assert "1NoSuchFolderAtAll" in rs.last_error and "not shared" in rs.last_error
    finally:
        fresh.close()
    with pytest.raises(ValueError, match="not a Drive folder id"):
        Monitor(run="x", checkpoint_dir="gdrive://bad id")

    # A folder that goes away during the run: the checkpoints stay local, training goes on.
    mon, client, thread = served(checkpoint_dir=f"gdrive://{drive.folder_id}")
    mon.checkpointer.replica.retry_max_s = 0.3  # the wait after an "error", short for the test
    wait_for(lambda: mon.step > 10)
    assert save_over_http(client).state == "done"
    assert mon.checkpointer.replica.wait_idle(60)
    DriveFolder("root", connect()).delete(drive.folder_id)  # someone deleted the folder
    wait_for(lambda: mon.step > 20)
    record = save_over_http(client)
    assert record.state == "done" and os.path.exists(record.checkpoint.path)
    rs = wait_for(lambda: (r := status_over_http(client).checkpoint.replica).state == "error" and r)
    assert drive.folder_id in rs.last_error and "not shared" in rs.last_error
    assert rs.pending == 1 and rs.next_retry_at is not None
    assert status_over_http(client).checkpoint.last.step == record.checkpoint.step
    step = mon.step
    wait_for(lambda: mon.step > step + 20)
    assert thread.is_alive() and thread.error is None


# --------------------------------------------------------------------------- failures


def test_a_wrong_md5_from_drive_is_not_verified_and_is_retried(drive, tmp_path):
    [info] = local_checkpoints(tmp_path, [5])
    url = f"gdrive://{drive.folder_id}"
    drive.wrong_md5(os.path.basename(info.path), times=1)
    rep = Replicator(DriveReplica(url), keep=3, **FAST)
    rep.submit(info)
    seen = wait_for(lambda: (s := rep.status()).last_error and s, timeout=60)
    assert "md5" in seen.last_error and os.path.basename(info.path) in seen.last_error
    assert seen.state in ("waiting", "uploading", "ok")
    assert rep.wait_idle(60)
    [entry] = drive_manifest(drive, drive.folder_id)
    assert entry["md5"] == md5(info.path) == drive.item_md5(entry["file_id"])
    assert drive.ids_titled(os.path.basename(info.path), drive.folder_id) == [entry["file_id"]]
    assert rep.status().state == "ok" and rep.status().verified.step == 5
    rep.close(10)


@pytest.mark.parametrize("inject, state, says", [
    (lambda s: s.rate_limit(2, 429, retry_after=0.2), "offline", "429"),
    (lambda s: s.rate_limit(2, 403), "offline", "rate"),
    (lambda s: s.drop_connection_next(4), "offline", ""),
    (lambda s: s.fail_next(3, 503), "offline", "503"),
], ids=["429-retry-after", "403-rate-limit", "network", "5xx"])
def test_transient_failures_show_the_error_and_are_retried(drive, tmp_path, inject, state, says):
    [info] = local_checkpoints(tmp_path, [7])
    rep = Replicator(DriveReplica(f"gdrive://{drive.folder_id}"), keep=3, start=False,
                     retry_min_s=1.0, retry_max_s=2.0)
    inject(drive)
    rep.submit(info)
    rep.start()
    seen = []

    def settled():
        s = rep.status()
        seen.append(s)
        return rep.settled()

    wait_for(settled, timeout=60)
    failed = [s for s in seen if s.last_error]
    assert failed, "no failure was reported"
    assert state in {s.state for s in failed}
    assert says.lower() in failed[0].last_error.lower()
    assert all(s.next_retry_at is not None for s in failed if s.state == state)
    assert os.path.exists(info.path)
    [entry] = drive_manifest(drive, drive.folder_id)
    assert entry["md5"] == md5(info.path)
    final = rep.status()
    assert final.state == "ok" and final.next_retry_at is None and final.verified.step == 7
    rep.close(10)


def test_revoked_credentials_are_an_error_until_the_user_logs_in_again(drive, tmp_path):
    [info] = local_checkpoints(tmp_path, [9])
    drive.revoke_refresh_token()
    rep = Replicator(DriveReplica(f"gdrive://{drive.folder_id}"), keep=3, **FAST)
    rep.submit(info)
    failed = wait_for(lambda: (s := rep.status()).state == "error" and s, timeout=60)
    assert "invalid_grant" in failed.last_error or "log in" in failed.last_error
    assert failed.pending == 1 and os.path.exists(info.path)
    drive.make_credentials_file(drive.creds)  # the user logged in again
    assert rep.wait_idle(60)
    assert drive_manifest(drive, drive.folder_id)[0]["md5"] == md5(info.path)
    rep.close(10)


def test_upload_progress_is_reported_in_bytes(drive, tmp_path):
    big = tmp_path / "local"
    ck = Checkpointer(big)
    assert ck.submit(ck.capture({"w": torch.arange(400_000, dtype=torch.float32)}, 3, None), 3,
                     None)
    assert ck.wait(30)
    info = ck.last
    ck.close()
    chunk = 256 * 1024
    assert info.bytes > 4 * chunk
    rep = Replicator(DriveReplica(f"gdrive://{drive.folder_id}", chunk_bytes=chunk), keep=1,
                     start=False, **FAST)
    drive.hold_chunks()  # the stand-in answers each chunk when the test says: no race
    rep.submit(info)
    rep.start()
    seen = []
    for n in range(1, -(-info.bytes // chunk)):  # every chunk but the last
        drive.release_chunk()
        wait_for(lambda n=n: (u := rep.status().uploading) is not None
                 and u.bytes_sent == n * chunk, 30)
        st = rep.status()
        assert st.state == "uploading" and st.uploading.step == 3
        assert st.uploading.bytes_total == info.bytes
        seen.append(st.uploading.bytes_sent)
        assert st.verified is None  # not before Drive's md5 is checked
    drive.stop_holding()  # the last chunk, then the manifest (pydrive2 uploads it resumably)
    assert rep.wait_idle(30)
    st = rep.status()
    assert st.uploading is None and st.state == "ok" and st.verified.step == 3
    assert seen == [n * chunk for n in range(1, len(seen) + 1)]
    rep.close(10)


# --------------------------------------------------------------------------- bad input


def test_an_unparseable_manifest_on_drive_is_reported_kept_and_never_overwritten(drive, tmp_path):
    url = f"gdrive://{drive.folder_id}"
    broken = b'{"format": "colabtui-checkpoints", "checkpoints": [oops'
    drive.put_file(MANIFEST, broken, drive.folder_id)
    old_id = drive.put_file("ckpt-000000001.pt", b"an older checkpoint", drive.folder_id)
    before = drive.children(drive.folder_id)

    with pytest.raises(ManifestUnreadable, match=rf"{url}/manifest.json \(file id .*not valid JSON"):
        list_verified(url)
    mon = Monitor(run="digits", checkpoint_dir=url, autosave_every=None, handle_sigterm=False,
                  local_dir=tmp_path / "empty")
    try:
        with pytest.raises(CheckpointError, match="manifest.json.*not valid JSON.*Nothing on "
                                                  "Drive was changed"):
            mon.resume()
        assert drive.children(drive.folder_id) == before
    finally:
        mon.close()

    [info] = local_checkpoints(tmp_path, [1])  # same name as the old file
    rep = Replicator(DriveReplica(url), keep=3, **FAST)
    rep.submit(info)
    assert rep.wait_idle(60)
    asides = [t for t in drive.children(drive.folder_id) if t.startswith("manifest.unreadable-")]
    assert len(asides) == 1
    [aside_id] = drive.ids_titled(asides[0], drive.folder_id)
    assert drive.content(aside_id) == broken
    assert drive.content(old_id) == b"an older checkpoint"  # never overwritten
    [entry] = drive_manifest(drive, drive.folder_id)
    assert entry["file"] == "ckpt-000000001-2.pt" and entry["md5"] == md5(info.path)
    note = rep.status().last_error
    assert "not valid JSON" in note and asides[0] in note
    rep.close(10)


def test_resume_skips_a_checkpoint_whose_download_fails_its_md5(drive, tmp_path):
    url = f"gdrive://{drive.folder_id}"
    infos = local_checkpoints(tmp_path, [10, 20])
    rep = Replicator(DriveReplica(url), keep=3, **FAST)
    for info in infos:
        rep.submit(info)
        assert rep.wait_idle(60)
    rep.close(10)
    newest = drive_manifest(drive, drive.folder_id)[-1]
    # Someone else's client rewrites the newest file's content by id: the manifest's md5 no
    # longer matches what comes down.
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not the checkpoint" * 100)
    DriveFolder(drive.folder_id, connect()).upload(garbage, newest["file"],
                                                   file_id=newest["file_id"])

    to = tmp_path / "runtime-2"
    with pytest.warns(UserWarning, match=r"ckpt-000000020\.pt \(step 20\) is unusable: .*md5"):
        entry, path = download_newest(url, to)
    assert entry.step == 10 and md5(path) == md5(infos[0].path)
    assert sorted(os.listdir(to)) == ["ckpt-000000010.pt"]  # no temp files left
    assert [e.step for e in list_verified(open_destination(url))] == [10, 20]  # nothing changed


def saved_on_drive(tmp_path, url, steps, keep=3):
    """Checkpoints of the digits model (model, optimizer, scheduler: a Monitor resumes them)
    at ``steps``, written by a Checkpointer in ``tmp_path/runtime-1`` and verified on Drive."""
    training = make_training()
    tracked = {"model": training.model, "optimizer": training.optimizer,
               "scheduler": training.scheduler}
    ck = Checkpointer(tmp_path / "runtime-1", keep=keep)
    rep = Replicator(DriveReplica(url), keep=keep, **FAST)
    infos = []
    for step in steps:
        training.step()
        assert ck.submit(ck.capture(tracked, step, None), step, None)
        assert ck.wait(30)
        infos.append(ck.last)
        rep.submit(ck.last)
        assert rep.wait_idle(60)
    rep.close(10)
    ck.close()
    return infos


def test_after_a_resume_from_drive_its_abandoned_future_is_unlisted_and_never_counts_toward_keep(
        drive, served, tmp_path):
    url = f"gdrive://{drive.folder_id}/runs/digits"
    infos = saved_on_drive(tmp_path, url, [6334, 8467, 8977])
    run_folder = subfolder_id(drive, "runs", "digits")
    listed = drive_manifest(drive, run_folder)
    assert [c["step"] for c in listed] == [6334, 8467, 8977]
    bad = listed[-1]  # someone else's client replaces its bytes: its md5 is not the manifest's
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not the checkpoint" * 100)
    DriveFolder(run_folder, connect()).upload(garbage, bad["file"], file_id=bad["file_id"])

    mon, client, thread = served(checkpoint_dir=url, keep=3, local_dir=tmp_path / "runtime-2")
    wait_for(lambda: mon.step > 8467, timeout=60)  # resumed at 8467: 8977 failed its md5
    assert thread.error is None
    replica = mon.checkpointer.replica
    assert replica.wait_idle(60)
    v = status_over_http(client).checkpoint.replica.verified
    assert (v.step, v.saved_at, v.md5) == (8467, infos[1].saved_at, listed[1]["md5"])

    record = save_over_http(client)
    assert record.state == "done", record.error
    assert replica.wait_idle(60)
    now = drive_manifest(drive, run_folder)
    assert [c["step"] for c in now] == [6334, 8467, record.checkpoint.step]  # 6334 kept
    assert drive.content(now[0]["file_id"]) == Path(infos[0].path).read_bytes()
    assert drive.content(bad["file_id"]) == garbage.read_bytes()  # unlisted, never deleted
    v = status_over_http(client).checkpoint.replica.verified
    assert (v.step, v.saved_at) == (record.checkpoint.step, record.checkpoint.saved_at)

    for _ in range(2):  # later saves count toward keep=3 with the good ones only
        step = mon.step
        wait_for(lambda step=step: mon.step > step + 5)
        assert save_over_http(client).state == "done"
        assert replica.wait_idle(60)
    assert [c["step"] for c in drive_manifest(drive, run_folder)][0] == record.checkpoint.step
    assert drive.content(bad["file_id"]) == garbage.read_bytes()
    assert bad["file"] in drive.children(run_folder)


def test_a_resume_from_local_disk_unlists_the_abandoned_future_on_drive(drive, served, tmp_path):
    url = f"gdrive://{drive.folder_id}"
    infos = saved_on_drive(tmp_path, url, [10, 20, 30])
    with open(infos[-1].path, "r+b") as f:  # the newest local copy is damaged
        f.truncate(infos[-1].bytes // 2)
    on_drive = drive_manifest(drive, drive.folder_id)

    mon, client, thread = served(checkpoint_dir=url, keep=3, local_dir=tmp_path / "runtime-1")
    wait_for(lambda: mon.step > 20, timeout=60)  # the local 20: step 30 on Drive is not taken
    assert mon.checkpointer.last.step == 20
    replica = mon.checkpointer.replica
    assert replica.wait_idle(60)
    assert status_over_http(client).checkpoint.replica.verified.step == 20
    record = save_over_http(client)
    assert record.state == "done", record.error
    assert replica.wait_idle(60)
    assert [c["step"] for c in drive_manifest(drive, drive.folder_id)] == [
        10, 20, record.checkpoint.step]
    for entry in on_drive:  # nothing deleted there, step 30 included
        assert drive.item_md5(entry["file_id"]) == entry["md5"]
    assert status_over_http(client).checkpoint.replica.verified.step == record.checkpoint.step


def test_resume_against_an_unparseable_manifest_on_drive_says_one_consistent_thing(
        drive, tmp_path, caplog):
    url = f"gdrive://{drive.folder_id}"
    drive.put_file(MANIFEST, b'{"format": "colabtui-checkpoints", oops', drive.folder_id)
    before = drive.children(drive.folder_id)
    caplog.set_level(logging.WARNING)
    mon = Monitor(run="digits", checkpoint_dir=url, autosave_every=None, handle_sigterm=False,
                  local_dir=tmp_path / "empty")
    try:
        note = wait_for(lambda: mon.status().checkpoint.replica.last_error)  # it was read
        with pytest.raises(CheckpointError) as raised:
            mon.resume()
        message = str(raised.value)
        assert f"{url}/manifest.json (file id " in message and "not valid JSON" in message
        assert "Nothing on Drive was changed" in message
        assert f"Fix or move that manifest.json in {url}" in message
        assert "or give another checkpoint_dir" in message
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert not [m for m in said if "another name" in m], said  # nothing promised aloud
        assert "not valid JSON" in note and "Nothing there was changed" in note
        assert drive.children(drive.folder_id) == before
    finally:
        mon.close()


def test_a_drive_destination_without_the_drive_extra_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydrive2", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'colabtui-remote\[drive\]'"):
        Monitor(run="digits", checkpoint_dir="gdrive://1AbCdEfGhIjKlMn/run",
                local_dir=tmp_path / "local", handle_sigterm=False)
    with pytest.raises(ValueError, match="not a Drive folder id"):
        Monitor(run="digits", checkpoint_dir="gdrive://nope", handle_sigterm=False)


def test_a_resume_while_drive_cannot_be_read_never_unlists_what_is_there(drive, served, tmp_path):
    """Drive answers 503 when the runtime restarts: the local 20 is taken (the local 30 is
    damaged), and the 30 listed on Drive, never looked at, stays listed once Drive answers."""
    url = f"gdrive://{drive.folder_id}"
    infos = saved_on_drive(tmp_path, url, [10, 20, 30])
    with open(infos[-1].path, "r+b") as f:
        f.truncate(infos[-1].bytes // 2)
    drive.fail_next(2, 503)
    mon, client, thread = served(checkpoint_dir=url, keep=3, local_dir=tmp_path / "runtime-1")
    wait_for(lambda: mon.step > 20, timeout=60)
    assert mon.checkpointer.last.step == 20
    record = save_over_http(client)
    assert record.state == "done", record.error
    replica = mon.checkpointer.replica

    def settled():
        replica.retry_now()
        return replica.settled()

    wait_for(settled, timeout=60)
    listed = drive_manifest(drive, drive.folder_id)
    assert [c["step"] for c in listed] == [20, 30, record.checkpoint.step]  # keep=3, by saved_at
    assert listed[1]["md5"] == drive.item_md5(listed[1]["file_id"])
    assert drive.content(listed[1]["file_id"]) != b""
    assert status_over_http(client).checkpoint.replica.verified.step == record.checkpoint.step


def test_a_checkpoint_whose_upload_was_killed_is_uploaded_by_the_next_session(drive, tmp_path):
    """The runtime was SIGKILLed while uploading step 30: durable locally, not on Drive. The
    next session, on the same local disk, resumes from it and uploads it."""
    url = f"gdrive://{drive.folder_id}"
    saved_on_drive(tmp_path, url, [10, 20])
    training = make_training(seed=3)
    tracked = {"model": training.model, "optimizer": training.optimizer,
               "scheduler": training.scheduler}
    ck = Checkpointer(tmp_path / "runtime-1", keep=3)  # the upload never finished
    training.step()
    assert ck.submit(ck.capture(tracked, 30, None), 30, None) and ck.wait(30)
    thirty = ck.last
    ck.close()
    assert [c["step"] for c in drive_manifest(drive, drive.folder_id)] == [10, 20]

    mon = Monitor(run="digits", checkpoint_dir=url, keep=3, autosave_every=None,
                  handle_sigterm=False, local_dir=tmp_path / "runtime-1")
    fresh = make_training(seed=5)
    mon.track(model=fresh.model, optimizer=fresh.optimizer, scheduler=fresh.scheduler)
    try:
        assert mon.resume() == 30
        rs = mon.status().checkpoint.replica
        assert rs.pending >= 1 or (rs.uploading and rs.uploading.step == 30) \
            or (rs.verified and rs.verified.step == 30)
        assert mon.checkpointer.replica.wait_idle(60)
        rs = mon.status().checkpoint.replica
        assert (rs.state, rs.pending, rs.verified.step) == ("ok", 0, 30)
        assert rs.verified.md5 == md5(thirty.path)
        listed = drive_manifest(drive, drive.folder_id)
        assert [c["step"] for c in listed] == [10, 20, 30]
        assert drive.content(listed[-1]["file_id"]) == Path(thirty.path).read_bytes()
    finally:
        mon.close()
