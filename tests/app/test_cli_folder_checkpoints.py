"""``colabtui checkpoints`` on a run whose checkpoints a framework wrote as folders
(``checkpoint-N/``): listed with their size, a changed one said NOT verified, the newest
downloaded as a folder whose every file's sha256 was checked. Real folders, no framework."""

from __future__ import annotations

import os

import pytest
from colabtui_remote import Monitor
from colabtui_remote.checkpoint import CheckpointWarning
from framework_folders import save_folder, write_folder  # tests/remote, on the path (conftest)

from colabtui.cli import main


def _run(tmp_path, checkpoint_dir, **kw) -> Monitor:
    mon = Monitor(run="hf", checkpoint_dir=checkpoint_dir, autosave_every=None,
                  handle_sigterm=False, **kw)
    ckpt = mon.framework_checkpointer()
    for s in (10, 20):
        save_folder(ckpt, write_folder(ckpt.directory, f"checkpoint-{s}", s), s)
    if ckpt.replica is not None:
        assert ckpt.replica.wait_idle(30)
    mon.close()
    return mon


def test_a_folder_of_folder_checkpoints_is_listed_and_the_newest_downloaded(tmp_path, capsys):
    _run(tmp_path, tmp_path / "run")
    assert main(["checkpoints", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "yes (sha256)  checkpoint-10" in out and "yes (sha256)  checkpoint-20" in out
    with open(tmp_path / "run" / "checkpoint-20" / "model.safetensors", "ab") as f:
        f.write(b"more")  # changed after it was listed
    with pytest.warns(CheckpointWarning, match="model.safetensors changed since it was listed"):
        assert main(["checkpoints", str(tmp_path / "run"), "--download", "--to",
                     str(tmp_path / "laptop")]) == 0
    out = capsys.readouterr().out
    size = sum(f.stat().st_size for f in (tmp_path / "run" / "checkpoint-20").rglob("*")
               if f.is_file())
    assert f"NO ({size:,} bytes, the manifest says {size - 4:,})  checkpoint-20" in out
    assert f"downloaded step 10 to {tmp_path / 'laptop' / 'checkpoint-10'}" in out
    assert sorted(os.listdir(tmp_path / "laptop" / "checkpoint-10")) == [
        "model.safetensors", "sub", "trainer_state.json"]


def test_folders_packed_on_a_mounted_drive_are_listed_and_downloaded(tmp_path, capsys):
    mount = tmp_path / "drive" / "run"
    _run(tmp_path, mount, local_dir=tmp_path / "disk")
    assert main(["checkpoints", str(mount), "--download", "--to", str(tmp_path / "laptop")]) == 0
    out = capsys.readouterr().out
    assert "checkpoint-20.tar" in out and "NO" not in out
    assert f"downloaded step 20 to {tmp_path / 'laptop' / 'checkpoint-20'}" in out
