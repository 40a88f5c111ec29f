"""Distributed runs under ``torchrun --nproc_per_node=2`` with the gloo backend on the CPU:
remote/examples/train_digits_ddp.py (DDP) and train_digits_fsdp.py (FSDP2), watched and
controlled over HTTP as one session. One server answers for the job; a save is one checkpoint
every rank contributed to; a stop ends every rank at the same step; a stopped and resumed DDP
run ends with the parameters of a straight run (``torch.equal``, every tensor); a sharded
checkpoint resumes on a world size of 1; a killed or wedged rank is named in the status and the
survivor ends within the timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bitwise import assert_same
from torchrun_job import EXAMPLES, Job


def params(folder: Path) -> dict:
    return torch.load(folder / "params.pt", weights_only=True)


@pytest.fixture(scope="module")
def straight_ddp(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("ddp-straight")
    job = Job("train_digits_ddp.py", folder)
    out = job.finish()
    assert job.proc.returncode == 0, out
    return params(folder)


def test_ddp_one_server_save_stop_and_an_exact_resume(tmp_path, straight_ddp):
    job = Job("train_digits_ddp.py", tmp_path, step_delay=0.1)
    st = job.wait_for(lambda s: s.get("step", 0) >= 5, "reached step 5")
    world = st["world"]
    assert world["size"] == 2 and [r["rank"] for r in world["ranks"]] == [0, 1]
    assert all(r["lost"] is None for r in world["ranks"])
    # a save from the laptop: one checkpoint, every rank's part in it
    rec = job.wait_command(job.command("save")["id"])
    assert rec["state"] == "done", rec
    saved = torch.load(rec["checkpoint"]["path"], weights_only=True)
    assert len(saved["ranks"]) == 2
    assert not torch.equal(saved["ranks"][0]["rng"]["torch_cpu"],
                           saved["ranks"][1]["rng"]["torch_cpu"])  # each rank its own
    # the loss averaged across the ranks (log_mean) reaches the laptop beside rank 0's own
    series = job.wait_for(lambda s: "mean_loss" in s.get("metrics", {}), "a mean_loss")
    page = job.client.get("/v1/metrics", params={"after": 0}).json()["series"]
    assert page["mean_loss"] and page["loss"] and series["metrics"]["mean_loss"] > 0
    # a stop: every rank ends at the same step, all exit 0
    before = job.status()["step"]
    stop = job.command("stop")
    st = job.wait_for(lambda s: s.get("state") == "stopped", "stopped")
    out = job.finish()
    assert job.proc.returncode == 0, out
    assert out.count("colabtui connect") == 1  # exactly one server for the job
    assert not (tmp_path / "params.pt").exists()
    stopped_at = st["step"]
    assert stopped_at < 69
    # 0.1 s steps: the adaptive cadence agrees at every step, so the stop is carried out at
    # the boundary after rank 0 took it (the status read before it was sent may be one older)
    assert stopped_at - before <= 3, (before, stopped_at)
    assert stop["id"]
    # resumed under torchrun: the parameters of the straight run, bitwise
    job2 = Job("train_digits_ddp.py", tmp_path)
    out2 = job2.finish()
    assert job2.proc.returncode == 0, out2
    assert f"resumed digits-ddp-lr0.001 at step {stopped_at}" in out2
    assert_same(straight_ddp, params(tmp_path), "params")


@pytest.fixture(scope="module")
def straight_fsdp(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("fsdp-straight")
    job = Job("train_digits_fsdp.py", folder, steps=40)
    out = job.finish()
    assert job.proc.returncode == 0, out
    return params(folder)


def test_fsdp_sharded_checkpoints_stop_resume_and_reshard_onto_one_process(
        tmp_path, straight_fsdp):
    # FSDP2's fully_shard on the CPU with gloo: DTensor parameters and optimizer state
    job = Job("train_digits_fsdp.py", tmp_path, steps=40, step_delay=0.1)
    st = job.wait_for(lambda s: s.get("step", 0) >= 5, "reached step 5")
    assert st["world"]["checkpoint_kind"] == "sharded"
    rec = job.wait_command(job.command("save")["id"])
    assert rec["state"] == "done", rec
    folder = Path(rec["checkpoint"]["path"])
    names = sorted(p.name for p in folder.iterdir())
    assert names == [".metadata", "__0_0.distcp", "__1_0.distcp", "colabtui-state.pt"]
    listed = job.client.get("/v1/checkpoints").json()["checkpoints"]
    assert [c["path"] for c in listed] == [str(folder)]
    job.command("stop")
    st = job.wait_for(lambda s: s.get("state") == "stopped", "stopped")
    out = job.finish()
    assert job.proc.returncode == 0, out
    stopped_at = st["step"]
    # resumed under torchrun: every tensor of a straight run
    job2 = Job("train_digits_fsdp.py", tmp_path, steps=40)
    out2 = job2.finish()
    assert job2.proc.returncode == 0, out2
    assert f"at step {stopped_at} from" in out2
    assert_same(straight_fsdp, params(tmp_path), "params")
    # the job's last checkpoint resumed on a world of one, under torchrun (FSDP2 on a mesh
    # of one) and by a plain process without torchrun: DCP reshards it both ways
    job1 = Job("train_digits_fsdp.py", tmp_path, steps=40, nproc=1)
    out1 = job1.finish()
    assert job1.proc.returncode == 0, out1
    assert "already finished" in out1, out1
    assert_same(straight_fsdp, params(tmp_path), "world of one")
    one = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_digits_fsdp.py"), "--port", "-1", "--mailbox",
         str(tmp_path / "mailbox"), "--steps", "40", "--checkpoint-dir", str(tmp_path / "ckpt"),
         "--autosave-every", "0", "--dump-params", str(tmp_path / "one.pt")],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stdout + one.stderr
    assert "already finished" in one.stdout, one.stdout
    assert_same(straight_fsdp["model"], torch.load(tmp_path / "one.pt",
                                                   weights_only=True)["model"], "one process")


def _gone(pid: int) -> bool:
    from colabtui_remote.distributed.watchdog import process_gone

    return process_gone(pid)


@pytest.mark.parametrize("how", ["killed", "wedged"])
def test_a_lost_rank_is_named_and_the_survivor_ends_within_the_timeout(tmp_path, how):
    timeout = 5.0
    job = Job("train_digits_ddp.py", tmp_path, "--rank-timeout", str(timeout), steps=2000,
              step_delay=0.05)
    st = job.wait_for(lambda s: s.get("step", 0) >= 5, "reached step 5")
    pid0, pid1 = (r["pid"] for r in st["world"]["ranks"])
    os.kill(pid1, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    lost_at = time.monotonic()
    try:
        st = job.wait_for(lambda s: s.get("state") == "failed", "failed", timeout=timeout + 30)
        assert st["error"].startswith("rank 1 lost: "), st["error"]
        assert st["world"]["ranks"][1]["lost"], st["world"]
        assert st["world"]["ranks"][0]["lost"] is None
        if how == "killed":
            assert f"pid {pid1}" in st["error"] and "ended" in st["error"]
        else:
            assert "no heartbeat" in st["error"]
        deadline = lost_at + timeout + 15  # the timeout, then a few seconds for the laptop
        while not _gone(pid0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(pid0), "rank 0 still runs after the timeout"
    finally:
        if how == "wedged":
            os.kill(pid1, signal.SIGKILL)
        job.finish(timeout=60)


def test_sigterm_on_one_rank_saves_and_stops_every_rank(tmp_path):
    job = Job("train_digits_ddp.py", tmp_path, steps=2000, step_delay=0.05)
    st = job.wait_for(lambda s: s.get("step", 0) >= 5, "reached step 5")
    os.kill(st["world"]["ranks"][1]["pid"], signal.SIGTERM)  # not the rank that serves
    st = job.wait_for(lambda s: s.get("state") == "stopped", "stopped")
    out = job.finish()
    assert job.proc.returncode == 0, out
    last = st["checkpoint"]["last"]
    assert last["step"] == st["step"]
    saved = torch.load(last["path"], weights_only=True)
    assert saved["step"] == st["step"] and len(saved["ranks"]) == 2


def test_a_sharded_checkpoint_on_a_mount_is_packed_there_and_a_new_job_resumes_from_it(
        tmp_path, straight_fsdp):
    # checkpoint_dir on a mounted Drive, local_dir the runtime's disk: DCP writes locally, the
    # folder is packed into one tar on the mount (md5-checked); a new runtime with an empty
    # disk fetches it from there, every file's sha256 checked
    mount = tmp_path / "drive" / "run"
    job = Job("train_digits_fsdp.py", tmp_path, "--local-dir", str(tmp_path / "disk-1"),
              steps=40, step_delay=0.1, checkpoint_dir=mount)
    job.wait_for(lambda s: s.get("step", 0) >= 5, "reached step 5")
    job.command("stop")
    st = job.wait_for(lambda s: s.get("state") == "stopped"
                      and (s["checkpoint"]["replica"] or {}).get("verified"), "on the mount")
    out = job.finish()
    assert job.proc.returncode == 0, out
    step = st["step"]
    assert (mount / f"ckpt-{step:09d}.tar").is_file()
    assert not (tmp_path / "disk-2").exists()
    job2 = Job("train_digits_fsdp.py", tmp_path, "--local-dir", str(tmp_path / "disk-2"),
               steps=40, checkpoint_dir=mount)
    out2 = job2.finish()
    assert job2.proc.returncode == 0, out2
    assert f"at step {step} from {tmp_path / 'disk-2'}" in out2
    assert_same(straight_fsdp, params(tmp_path), "params")
