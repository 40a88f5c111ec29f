"""A checkpoint folder on a mount that drops under a save: the checkpoint goes to local disk,
training goes on, the status says the mount is offline, and the copy lands on the mount (md5
read back, manifest updated) once it answers again.

Real training on the digits data, real files. The FUSE mount cannot run here, so it is played
twice: by a :class:`FolderIO` that answers ``OSError(ENOTCONN)`` like a dropped Drive mount, and
for real by a symlink whose target disappears and comes back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest
import torch
from colabtui_remote import Monitor
from colabtui_remote.checkpoint import MANIFEST, Checkpointer, FolderIO, load_resumable
from colabtui_remote.checkpoint.destinations import list_verified, open_destination
from colabtui_remote.checkpoint.mount import MountedFolder
from colabtui_remote.checkpoint.replica import Replicator
from colabtui_remote.checkpoint.resume import download_newest
from digits_training import make_training, save_over_http, status_over_http, wait_for


class DroppingMount(FolderIO):
    """Answers like a Drive FUSE mount that drops on the ``fail_on``-th checkpoint written into
    it and stays down until :attr:`down` is set False."""

    def __init__(self, root: str, fail_on: int = 3) -> None:
        self.root = root
        self.fail_on = fail_on
        self.saves = 0
        self.down = False
        self.failures = 0
        self._lock = threading.Lock()

    def _check(self, path: str) -> None:
        if self.down and os.path.abspath(path).startswith(self.root):
            self.failures += 1
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", path)

    def open(self, path, mode):
        if mode == "xb" and os.path.basename(path).startswith(".ckpt-"):
            with self._lock:
                self.saves += 1
                if self.saves == self.fail_on:
                    self.down = True
        self._check(path)
        return super().open(path, mode)

    def replace(self, src, dst):
        self._check(dst)
        super().replace(src, dst)

    def remove(self, path):
        self._check(path)
        super().remove(path)

    def listdir(self, path):
        self._check(path)
        return super().listdir(path)

    def fsync_dir(self, path):
        self._check(path)
        super().fsync_dir(path)


def md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def manifest(folder) -> list[dict]:
    return json.loads((folder / MANIFEST).read_text())["checkpoints"]




def test_errno_107_on_the_third_save_lands_locally_and_is_copied_when_the_mount_is_back(
        tmp_path, served):
    mount = tmp_path / "drive" / "run"
    local = tmp_path / "local"
    io = DroppingMount(str(tmp_path / "drive"), fail_on=3)
    ck = Checkpointer(mount, keep=3, fallback_dir=local, io=io, mount_retry_s=(0.05, 0.2))
    mon, client, thread = served(checkpointer=ck)

    saved = []
    for _ in range(3):
        wait_for(lambda n=len(saved): mon.step > 10 * (n + 1))
        record = save_over_http(client)
        assert record.state == "done", record.error
        saved.append(record.checkpoint)
    assert [os.path.dirname(c.path) for c in saved] == [str(mount)] * 2 + [str(local)]
    assert io.down and mon.checkpointer.offline == "[Errno 107] Transport endpoint is not connected"

    # Training goes on; the status says the checkpoint is local only and the mount offline.
    step = mon.step
    wait_for(lambda: mon.step > step + 20)
    assert thread.is_alive() and thread.error is None
    st = status_over_http(client)
    assert st.checkpoint.last.step == saved[2].step and st.checkpoint.last.path == saved[2].path
    assert st.checkpoint.last_error is None  # the save itself succeeded
    replica = wait_for(lambda: (r := status_over_http(client).checkpoint.replica) and r.last_error and r)
    assert (replica.kind, replica.dest, replica.pending) == ("mount", str(mount), 1)
    assert replica.state == "offline" and "Transport endpoint is not connected" in replica.last_error
    assert replica.next_retry_at is not None
    assert [c["step"] for c in manifest(mount)] == [saved[0].step, saved[1].step]

    # A fourth save while the mount is down also goes local.
    record = save_over_http(client)
    assert record.state == "done" and os.path.dirname(record.checkpoint.path) == str(local)
    saved.append(record.checkpoint)

    io.down = False  # the mount answers again: the replica's retry copies what it missed
    assert ck.mount_replica.wait_idle(60)
    listed = manifest(mount)
    assert [c["step"] for c in listed] == [s.step for s in saved[1:]]  # keep=3
    for entry, local_copy in zip(listed[1:], saved[2:], strict=True):
        on_mount = mount / entry["file"]
        assert entry["sha256"] == local_copy.sha256 == sha256(on_mount)
        assert entry["md5"] == md5(local_copy.path) == md5(on_mount)
        assert entry["verified_at"] >= local_copy.saved_at
    assert not (mount / f"ckpt-{saved[0].step:09d}.pt").exists()  # pruned after the listing
    assert not [n for n in os.listdir(mount) if ".tmp-" in n]
    replica = status_over_http(client).checkpoint.replica
    assert (replica.state, replica.pending, replica.verified.step) == ("ok", 0, saved[3].step)
    assert replica.verified.md5 == md5(saved[3].path)
    state, info = load_resumable(mount)
    assert info.step == saved[3].step

    # The mount is used again for the next save, and its manifest keeps the copied entries.
    record = save_over_http(client)
    assert record.state == "done" and os.path.dirname(record.checkpoint.path) == str(mount)
    assert mon.checkpointer.offline is None
    assert [c["step"] for c in manifest(mount)] == [s.step for s in saved[2:]] + [
        record.checkpoint.step]
    assert thread.is_alive() and thread.error is None


def test_a_mount_that_really_drops_and_returns(tmp_path, served):
    """The mount path is a symlink; the mount drops when it points nowhere, returns when it
    points at the folder again. Everything goes through the Monitor."""
    real = tmp_path / "drive-data"
    (real / "run").mkdir(parents=True)
    mnt = tmp_path / "mnt"
    mnt.symlink_to(real)
    local = tmp_path / "local"
    mon, client, thread = served(checkpoint_dir=mnt / "run", local_dir=local)
    ck = mon.checkpointer
    assert ck.fallback_dir == str(local)

    wait_for(lambda: mon.step > 10)
    first = save_over_http(client)
    assert first.state == "done" and first.checkpoint.path == str(mnt / "run" / "ckpt-"
                                                                  f"{first.checkpoint.step:09d}.pt")
    assert status_over_http(client).checkpoint.replica is None  # never needed so far

    mnt.unlink()
    mnt.symlink_to(tmp_path / "nowhere")  # the mount is gone
    wait_for(lambda: mon.step > first.checkpoint.step + 10)
    second = save_over_http(client)
    assert second.state == "done" and os.path.dirname(second.checkpoint.path) == str(local)
    st = status_over_http(client)
    assert st.checkpoint.last.step == second.checkpoint.step
    assert st.checkpoint.replica.kind == "mount"
    wait_for(lambda: status_over_http(client).checkpoint.replica.state == "offline")
    assert not (tmp_path / "nowhere").exists()  # the folder was never re-created there

    mnt.unlink()
    mnt.symlink_to(real)  # back
    wait_for(lambda: mon.step > second.checkpoint.step + 10)
    third = save_over_http(client)  # goes local (the copy is still pending) and wakes the replica
    assert third.state == "done"
    wait_for(lambda: status_over_http(client).checkpoint.replica.state == "ok", timeout=60)
    listed = manifest(real / "run")
    steps = [c["step"] for c in listed]
    assert steps[:2] == [first.checkpoint.step, second.checkpoint.step]
    for entry in listed[1:]:
        assert entry["md5"] == md5(real / "run" / entry["file"])
    assert load_resumable(real / "run")[1].step == steps[-1]
    assert thread.is_alive() and thread.error is None


def test_the_copy_is_verified_by_its_md5_read_back_and_retried_when_it_differs(tmp_path):
    class BitFlip(FolderIO):  # the first read-back of a copied checkpoint returns other bytes
        flips = 1

        def open(self, path, mode):
            f = super().open(path, mode)
            if mode == "rb" and os.path.basename(path).startswith("ckpt-") and self.flips:
                self.flips -= 1
                data = bytearray(f.read())
                f.close()
                data[len(data) // 2] ^= 0xFF
                import io as _io
                return _io.BytesIO(bytes(data))
            return f

    source = tmp_path / "local"
    ck = Checkpointer(source)
    training = make_training()
    tracked = {"model": training.model, "optimizer": training.optimizer}
    assert ck.submit(ck.capture(tracked, 5, None), 5, None)
    assert ck.wait(30)
    info = ck.last
    (tmp_path / "mount").mkdir()
    rep = Replicator(MountedFolder(tmp_path / "mount", io=BitFlip()), keep=2, retry_min_s=0.05,
                     retry_max_s=0.2)
    rep.submit(info)
    assert rep.wait_idle(60)
    [entry] = manifest(tmp_path / "mount")
    assert entry["md5"] == md5(info.path) == md5(tmp_path / "mount" / entry["file"])
    st = rep.status()
    assert st.state == "ok" and "md5" in st.last_error and "not verified" in st.last_error
    rep.close(10)
    ck.close()


def test_an_unparseable_manifest_on_the_mount_is_kept_aside_and_nothing_is_deleted(tmp_path):
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / MANIFEST).write_text("{not json")
    for step in (1, 2, 3, 4):  # files the broken manifest may have listed
        (mount / f"ckpt-{step:09d}.pt").write_bytes(b"old checkpoint %d" % step)
    ck = Checkpointer(tmp_path / "local", keep=5)
    training = make_training()
    rep = Replicator(MountedFolder(mount), keep=2, retry_min_s=0.05, retry_max_s=0.2)
    for step in (1, 2, 3):  # step 1 is also the name of an old file: never overwritten
        assert ck.submit(ck.capture({"model": training.model}, step, None), step, None)
        assert ck.wait(30)
        rep.submit(ck.last)
        assert rep.wait_idle(60)
    asides = [n for n in os.listdir(mount) if n.startswith("manifest.unreadable-")]
    assert len(asides) == 1 and (mount / asides[0]).read_text() == "{not json"
    for step in (1, 2, 3, 4):
        assert (mount / f"ckpt-{step:09d}.pt").read_bytes() == b"old checkpoint %d" % step
    listed = manifest(mount)
    assert [c["file"] for c in listed] == ["ckpt-000000002-2.pt", "ckpt-000000003-2.pt"]
    assert not (mount / "ckpt-000000001-2.pt").exists()  # ours, pruned to keep=2
    note = rep.status().last_error
    assert str(mount / MANIFEST) in note and "not valid JSON" in note and asides[0] in note
    rep.close(10)
    ck.close()


def test_list_and_download_from_a_folder_for_the_laptop(tmp_path):
    folder = tmp_path / "ckpts"
    ck = Checkpointer(folder, keep=2)
    training = make_training()
    for step in (10, 20):
        training.step()
        assert ck.submit(ck.capture({"model": training.model}, step, None), step, None)
        assert ck.wait(30)
    entries = list_verified(str(folder))
    assert [e.step for e in entries] == [10, 20] and entries[-1].sha256 == ck.last.sha256
    dest = tmp_path / "down"
    entry, path = download_newest(str(folder), dest)
    assert entry.step == 20 and sha256(path) == ck.last.sha256
    assert os.path.basename(path) == "ckpt-000000020.pt"
    assert torch.load(path, weights_only=True)["step"] == 20
    assert download_newest(str(folder), dest) == (entry, path)  # same file: not fetched twice
    (dest / "ckpt-000000020.pt").write_bytes(b"something else")
    _, other = download_newest(str(folder), dest)
    assert os.path.basename(other) == "ckpt-000000020-2.pt"
    assert (dest / "ckpt-000000020.pt").read_bytes() == b"something else"
    assert isinstance(open_destination(str(folder)), MountedFolder)
    ck.close()


def test_a_copy_left_behind_by_a_session_that_died_is_resumed_from_and_copied(tmp_path):
    real = tmp_path / "drive-data"
    (real / "run").mkdir(parents=True)
    mnt = tmp_path / "mnt"
    mnt.symlink_to(real)
    local = tmp_path / "local"
    training = make_training()
    tracked = {"model": training.model, "optimizer": training.optimizer,
               "scheduler": training.scheduler}

    def save_with(ck, step):
        training.step()
        assert ck.submit(ck.capture(tracked, step, None), step, None)
        assert ck.wait(30)
        return ck.last

    first = Checkpointer(mnt / "run", fallback_dir=local)
    on_mount = save_with(first, 10)
    mnt.unlink()
    mnt.symlink_to(tmp_path / "nowhere")
    left_behind = save_with(first, 20)
    assert os.path.dirname(left_behind.path) == str(local)
    first.close(replica_timeout=0)  # the runtime dies before the copy

    # The next session starts while the mount is still gone: it is not an error.
    second = Checkpointer(mnt / "run", fallback_dir=local)
    assert second.offline and second.last == left_behind
    second.close(replica_timeout=0)

    mnt.unlink()
    mnt.symlink_to(real)  # and the one after finds it back
    expected = torch.load(left_behind.path, weights_only=True)["tracked"]["model"]["state"]
    mon = Monitor(run="digits", checkpoint_dir=mnt / "run", local_dir=local, autosave_every=None,
                  handle_sigterm=False)
    fresh = make_training(seed=5)
    mon.track(model=fresh.model, optimizer=fresh.optimizer, scheduler=fresh.scheduler)
    try:
        assert mon.resume() == 20  # the fallback's is newer than the mount's
        for key, value in fresh.model.state_dict().items():
            assert torch.equal(value, expected[key]), key
        assert mon.checkpointer.mount_replica.wait_idle(60)
        rs = mon.status().checkpoint.replica
        assert (rs.kind, rs.state, rs.verified.step) == ("mount", "ok", 20)
        assert [c["step"] for c in manifest(real / "run")] == [on_mount.step, 20]
        assert md5(real / "run" / "ckpt-000000020.pt") == md5(left_behind.path)
    finally:
        mon.close()


def test_the_mount_replica_reports_the_newest_checkpoint_durable_in_the_folder(tmp_path, served):
    mount = tmp_path / "drive" / "run"
    io = DroppingMount(str(tmp_path / "drive"), fail_on=3)
    ck = Checkpointer(mount, keep=3, fallback_dir=tmp_path / "local", io=io,
                      mount_retry_s=(0.05, 0.2))
    mon, client, thread = served(checkpointer=ck)
    saved = []
    for _ in range(3):
        wait_for(lambda n=len(saved): mon.step > 10 * (n + 1))
        record = save_over_http(client)
        assert record.state == "done", record.error
        saved.append(record.checkpoint)
    assert io.down

    # The mount dropped under the third save: the second, written straight into the folder
    # (verified by its sha256 read-back), is what is durable there.
    rs = wait_for(lambda: (r := status_over_http(client).checkpoint.replica) and r.last_error and r)
    assert rs.state == "offline" and rs.pending == 1
    v = rs.verified
    assert (v.step, v.name, v.bytes) == (saved[1].step, os.path.basename(saved[1].path),
                                         saved[1].bytes)
    assert v.md5 is None and v.saved_at == saved[1].saved_at and v.file_id is None

    io.down = False  # back: the third is copied there and md5-checked
    assert ck.mount_replica.wait_idle(60)
    v = status_over_http(client).checkpoint.replica.verified
    assert (v.step, v.md5, v.saved_at) == (saved[2].step, md5(saved[2].path), saved[2].saved_at)
    assert v.verified_at >= saved[2].saved_at

    # Later checkpoints go straight onto the mount again: the status follows them.
    for _ in range(2):
        step = mon.step
        wait_for(lambda step=step: mon.step > step + 5)
        record = save_over_http(client)
        assert record.state == "done" and os.path.dirname(record.checkpoint.path) == str(mount)
        rs = status_over_http(client).checkpoint.replica
        assert (rs.state, rs.pending) == ("ok", 0)
        v = rs.verified
        assert (v.step, v.md5, v.saved_at) == (record.checkpoint.step, None,
                                               record.checkpoint.saved_at)


@pytest.mark.parametrize("away", ["missing", "a-file"])
def test_colabtui_local_checkpoints_turns_the_mount_fallback_on_and_a_vanished_folder_is_a_drop(
        tmp_path, served, monkeypatch, away):
    """Not FUSE, no ``local_dir``: the env variable naming a runtime disk is enough. The mount
    goes away as a link pointing at nothing (FileNotFoundError on the write) or at a file
    (NotADirectoryError)."""
    monkeypatch.setenv("COLABTUI_LOCAL_CHECKPOINTS", str(tmp_path / "runtime-disk"))
    real = tmp_path / "drive-data"
    (real / "run").mkdir(parents=True)
    mnt = tmp_path / "mnt"
    mnt.symlink_to(real)
    mon, client, thread = served(checkpoint_dir=mnt / "run")
    local = tmp_path / "runtime-disk" / "digits"
    assert mon.checkpointer.fallback_dir == str(local)

    wait_for(lambda: mon.step > 10)
    first = save_over_http(client)
    assert first.state == "done" and os.path.dirname(first.checkpoint.path) == str(mnt / "run")
    elsewhere = tmp_path / "elsewhere"
    if away == "a-file":
        elsewhere.write_text("not a folder")
    mnt.unlink()
    mnt.symlink_to(elsewhere)
    wait_for(lambda: mon.step > first.checkpoint.step + 5)
    second = save_over_http(client)
    assert second.state == "done", second.error
    assert os.path.dirname(second.checkpoint.path) == str(local)
    rs = wait_for(lambda: (r := status_over_http(client).checkpoint.replica).state == "offline"
                  and r)
    assert rs.pending == 1 and rs.verified.step == first.checkpoint.step
    assert status_over_http(client).checkpoint.last_error is None
    assert away == "a-file" or not elsewhere.exists()  # nothing created where the link points

    mnt.unlink()
    mnt.symlink_to(real)
    assert mon.checkpointer.mount_replica.wait_idle(60)
    assert [c["step"] for c in manifest(real / "run")] == [first.checkpoint.step,
                                                           second.checkpoint.step]
    assert status_over_http(client).checkpoint.replica.verified.step == second.checkpoint.step
    assert thread.is_alive() and thread.error is None


_DOWNLOAD = """
import sys
from colabtui_remote.checkpoint.resume import download_newest
entry, path = download_newest(sys.argv[1], sys.argv[2])
print("took step", entry.step)
"""


def test_a_checkpoint_that_fails_on_download_is_warned_about_once(tmp_path):
    folder = tmp_path / "ckpts"
    ck = Checkpointer(folder, keep=3)
    training = make_training()
    for step in (10, 20):
        training.step()
        assert ck.submit(ck.capture({"model": training.model}, step, None), step, None)
        assert ck.wait(30)
    ck.close()
    with open(folder / "ckpt-000000020.pt", "r+b") as f:  # same size, other bytes
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    # A script with no logging set up, as in a notebook: the user reads the warning once.
    proc = subprocess.run([sys.executable, "-c", _DOWNLOAD, str(folder), str(tmp_path / "down")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "took step 10" in proc.stdout
    assert proc.stderr.count("ckpt-000000020.pt (step 20) is unusable") == 1, proc.stderr
    assert "CheckpointWarning" in proc.stderr and "sha256" in proc.stderr


def test_a_long_outage_does_not_end_the_replica_thread(tmp_path):
    """Over a thousand failed attempts in a row (hours of a dropped mount retried at every
    save) and the copy still lands once the folder is back."""

    class Counting(FolderIO):
        listed = 0

        def listdir(self, path):
            Counting.listed += 1
            return super().listdir(path)

    source = tmp_path / "local"
    ck = Checkpointer(source)
    assert ck.submit(ck.capture({"w": torch.zeros(10)}, 1, None), 1, None)
    assert ck.wait(30)
    mount = tmp_path / "mount"
    rep = Replicator(MountedFolder(mount, io=Counting()), keep=2, retry_min_s=1e-5,
                     retry_max_s=1e-4)
    rep.submit(ck.last)
    wait_for(lambda: Counting.listed > 1200, timeout=120)
    assert rep.status().state == "offline"
    mount.mkdir()
    assert rep.wait_idle(60)
    assert [c["step"] for c in manifest(mount)] == [1]
    rep.close(10)
    ck.close()


def test_a_resume_while_the_mount_is_gone_warns_and_never_unlists_what_is_there(tmp_path,
                                                                                capsys):
    """The mount (a link) drops: 20 and 30 go to the runtime disk and are copied back; 40 and
    50 are then written straight onto it. The runtime restarts while the mount is gone: it can
    only resume from the disk's 30, says loudly that the mount could not be read, and when the
    mount is back its 40 and 50, never looked at, stay listed (keep by saved_at as usual)."""
    real = tmp_path / "drive-data"
    (real / "run").mkdir(parents=True)
    mnt = tmp_path / "mnt"
    mnt.symlink_to(real)
    local = tmp_path / "rtdisk"
    training = make_training()
    tracked = {"model": training.model, "optimizer": training.optimizer,
               "scheduler": training.scheduler}

    def point(target):
        mnt.unlink()
        mnt.symlink_to(target)

    def save_with(ck, step):
        training.step()
        assert ck.submit(ck.capture(tracked, step, None), step, None)
        assert ck.wait(30)
        return ck.last

    first = Checkpointer(mnt / "run", keep=3, fallback_dir=local, mount_retry_s=(0.05, 0.2))
    save_with(first, 10)
    point(tmp_path / "nowhere")
    assert os.path.dirname(save_with(first, 20).path) == str(local)
    thirty = save_with(first, 30)
    assert os.path.dirname(thirty.path) == str(local)
    point(real)
    assert first.mount_replica.wait_idle(60)
    newer = [save_with(first, step) for step in (40, 50)]
    assert all(os.path.dirname(c.path) == str(mnt / "run") for c in newer)
    first.close()
    assert [c["step"] for c in manifest(real / "run")] == [30, 40, 50]

    point(tmp_path / "nowhere")  # the mount is gone when the runtime restarts
    mon = Monitor(run="digits", checkpoint_dir=mnt / "run", local_dir=local, keep=3,
                  autosave_every=None, handle_sigterm=False)
    fresh = make_training(seed=5)
    mon.track(model=fresh.model, optimizer=fresh.optimizer, scheduler=fresh.scheduler)
    try:
        assert mon.resume() == 30
        out = capsys.readouterr().out
        assert f"the checkpoint folder {mnt / 'run'} could not be read" in out
        assert "may hold newer checkpoints" in out and "re-run" in out
        assert f"resumed digits at step 30 from {thirty.path}" in out
        ck = mon.checkpointer
        assert ck.submit(ck.capture(mon._tracked, 31, None), 31, None) and ck.wait(30)
        one = ck.last
        assert (one.step, os.path.dirname(one.path)) == (31, str(local))

        point(real)
        ck.mount_replica.retry_now()
        assert ck.mount_replica.wait_idle(60)
        listed = manifest(real / "run")
        assert [c["step"] for c in listed] == [40, 50, 31]  # 30 pruned there: keep=3
        for entry, info in zip(listed, [*newer, one], strict=True):
            assert entry["sha256"] == info.sha256 == sha256(real / "run" / entry["file"])
        rs = mon.status().checkpoint.replica
        assert (rs.state, rs.pending, rs.verified.step) == ("ok", 0, 31)
        state, info = load_resumable(mnt / "run")
        assert info.step == 31
    finally:
        mon.close()
