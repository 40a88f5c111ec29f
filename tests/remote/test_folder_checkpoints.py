"""Folder checkpoints (what a framework writes: the Trainer's ``checkpoint-N/``): made durable,
listed file by file, pruned with the framework's rotation, skipped when half-written, packed to
a mounted Drive folder and to Drive (the stand-in), and fetched back in a new runtime. Real
files, real folders; no framework needed here (tests/remote/integrations/ run the real ones)."""

from __future__ import annotations

import json
import os
import shutil
import tarfile

import pytest
from colabtui_remote import Monitor
from colabtui_remote.checkpoint import CheckpointWarning, ManifestUnreadable, read_manifest
from colabtui_remote.checkpoint.destinations import CheckpointDestination, for_framework
from colabtui_remote.checkpoint.errors import CheckpointError
from colabtui_remote.checkpoint.folders import make_durable
from colabtui_remote.checkpoint.manifest import MANIFEST, parse_entries, read_trees
from colabtui_remote.checkpoint.resume import (
    download_newest,
    find_resumable_folder,
    newest_folder,
)
from colabtui_remote.checkpoint.writer import Checkpointer
from drive_standin import DriveStandin
from framework_folders import save_folder, write_folder

FAST = {"retry_min_s": 0.05, "retry_max_s": 0.3}


def test_a_folder_is_listed_with_each_file_only_once_durable(tmp_path):
    ckpt = Checkpointer(tmp_path / "run", keep=3)
    path = write_folder(ckpt.directory, "checkpoint-20", 20)
    info, error = save_folder(ckpt, path, 20)
    assert error is None and info.path == path and info.step == 20
    [entry] = parse_entries((tmp_path / "run" / MANIFEST).read_bytes(), "m")
    assert entry.file == "checkpoint-20" and entry.tree.framework == "transformers"
    assert [f.path for f in entry.tree.files] == ["model.safetensors", "sub/rng.pth",
                                                  "trainer_state.json"]
    assert entry.bytes == sum(os.path.getsize(os.path.join(path, f.path))
                              for f in entry.tree.files) == info.bytes
    assert entry.sha256 == make_durable(path).sha256
    assert ckpt.last == info  # the status shows it like any checkpoint
    ckpt.close()


def test_an_old_manifest_without_folders_still_loads_and_keeps_loading(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    old = {"format": "colabtui-checkpoints", "version": 1, "checkpoints": [
        {"file": "ckpt-000000010.pt", "step": 10, "epoch": None, "bytes": 5, "sha256": "a" * 64,
         "saved_at": 1.0, "seconds": 0.1}]}
    (run / MANIFEST).write_text(json.dumps(old))
    [info] = read_manifest(run)
    assert (info.step, os.path.basename(info.path)) == (10, "ckpt-000000010.pt")
    assert read_trees(run) == {}


@pytest.mark.parametrize("files, why", [
    ([{"path": "../escape", "bytes": 1, "sha256": "a" * 64}], "relative path"),
    ([{"path": "/etc/passwd", "bytes": 1, "sha256": "a" * 64}], "relative path"),
    ([{"path": "x", "bytes": -1, "sha256": "a" * 64}], "bytes"),
    ([{"path": "x", "bytes": 1, "sha256": "nope"}], "sha256"),
    ([], "non-empty list"),
    ([{"path": "x", "bytes": 1, "sha256": "a" * 64}] * 2, "listed twice"),
])
def test_a_malformed_folder_entry_is_refused_with_the_field(files, why):
    doc = {"format": "colabtui-checkpoints", "version": 1, "checkpoints": [
        {"file": "checkpoint-5", "step": 5, "bytes": 1, "sha256": "b" * 64, "saved_at": 1.0,
         "framework": "transformers", "files": files}]}
    with pytest.raises(ManifestUnreadable, match=why):
        parse_entries(json.dumps(doc).encode(), "m")


def test_a_folder_entry_cannot_name_a_path_elsewhere():
    doc = {"format": "colabtui-checkpoints", "version": 1, "checkpoints": [
        {"file": "../checkpoint-5", "step": 5, "bytes": 1, "sha256": "b" * 64, "saved_at": 1.0,
         "files": [{"path": "x", "bytes": 1, "sha256": "a" * 64}]}]}
    with pytest.raises(ManifestUnreadable, match="not a checkpoint folder name"):
        parse_entries(json.dumps(doc).encode(), "m")


def test_only_a_checkpoint_folder_inside_the_folder_can_be_submitted(tmp_path):
    ckpt = Checkpointer(tmp_path / "run")
    with pytest.raises(ValueError, match="directly inside"):
        ckpt.submit_folder(tmp_path / "elsewhere" / "checkpoint-1", 1, 0, "transformers")
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        ckpt.submit_folder(tmp_path / "run" / "my-weights", 1, 0, "transformers")
    ckpt.close()


def test_an_empty_folder_or_a_link_inside_is_a_failed_save_with_the_reason(tmp_path):
    ckpt = Checkpointer(tmp_path / "run")
    empty = os.path.join(ckpt.directory, "checkpoint-1")
    os.makedirs(empty)
    info, error = save_folder(ckpt, empty, 1)
    assert info is None and "holds no file" in error
    linked = write_folder(ckpt.directory, "checkpoint-2", 2)
    os.symlink("/etc/hostname", os.path.join(linked, "link"))
    info, error = save_folder(ckpt, linked, 2)
    assert info is None and "is a link" in error
    assert read_manifest(ckpt.directory) is None and ckpt.last_error == error
    ckpt.close()


def test_pruning_keeps_n_deletes_the_folders_and_follows_the_framework_rotation(tmp_path):
    ckpt = Checkpointer(tmp_path / "run", keep=2)
    paths = [write_folder(ckpt.directory, f"checkpoint-{s}", s) for s in (10, 20)]
    for s, p in zip((10, 20), paths, strict=True):
        save_folder(ckpt, p, s)
    best = paths[0]
    ckpt.protected = lambda path: path == best  # the framework still needs it (best model)
    p30 = write_folder(ckpt.directory, "checkpoint-30", 30)
    save_folder(ckpt, p30, 30)
    listed = [os.path.basename(e.path) for e in ckpt.list()]
    assert listed == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]  # 10 is protected
    ckpt.protected = None
    shutil.rmtree(paths[1])  # the framework rotated checkpoint-20 away itself
    p40 = write_folder(ckpt.directory, "checkpoint-40", 40)
    save_folder(ckpt, p40, 40)
    assert [os.path.basename(e.path) for e in ckpt.list()] == ["checkpoint-30", "checkpoint-40"]
    assert sorted(n for n in os.listdir(ckpt.directory) if n.startswith("checkpoint")) == [
        "checkpoint-30", "checkpoint-40"]  # no folder left that the manifest forgot
    assert set(read_trees(ckpt.directory)) == {"checkpoint-30", "checkpoint-40"}
    ckpt.close()


def test_the_same_folder_saved_again_is_listed_once(tmp_path):
    ckpt = Checkpointer(tmp_path / "run", keep=3)
    path = write_folder(ckpt.directory, "checkpoint-10", 10)
    save_folder(ckpt, path, 10)
    write_folder(ckpt.directory, "checkpoint-10", 10)  # rewritten: a resumed run got there again
    info, _ = save_folder(ckpt, path, 10)
    assert ckpt.list() == [info]
    ckpt.close()


def test_a_half_written_newest_is_skipped_with_a_warning_and_an_unlisted_one_set_aside(tmp_path):
    ckpt = Checkpointer(tmp_path / "run", keep=3)
    for s in (10, 20):
        save_folder(ckpt, write_folder(ckpt.directory, f"checkpoint-{s}", s), s)
    ckpt.close()
    run = tmp_path / "run"
    with open(run / "checkpoint-20" / "model.safetensors", "r+b") as f:
        f.truncate(100)  # the newest listed one is half-written
    write_folder(run, "checkpoint-30", 30)  # a save killed before it was listed
    with pytest.warns(CheckpointWarning) as caught:
        found = newest_folder(run, "transformers")
    assert found.step == 10 and found.path == str(run / "checkpoint-10")
    said = " | ".join(str(w.message) for w in caught)
    assert "checkpoint-20 (step 20) is unusable: model.safetensors has 100 bytes" in said
    assert "checkpoint-30: not listed in the manifest" in said
    assert not (run / "checkpoint-30").exists()  # out of the framework's way, not deleted yet
    [aside] = [n for n in os.listdir(run) if n.startswith(".checkpoint-30.unlisted-")]
    assert newest_folder(run, "lightning") is None  # another framework's checkpoints are not ours
    ckpt = Checkpointer(run, keep=3)
    with pytest.warns(CheckpointWarning, match="checkpoint-20"):
        assert find_resumable_folder(ckpt, "transformers").step == 10
    assert [e.step for e in ckpt.list()] == [10]  # the bad one is off the list, kept on disk
    save_folder(ckpt, write_folder(run, "checkpoint-11", 11), 11)
    assert not (run / aside).exists()  # the next good save removes what was set aside
    ckpt.close()


def test_an_unreadable_manifest_stops_the_resume_and_changes_nothing(tmp_path):
    run = tmp_path / "run"
    write_folder(run, "checkpoint-10", 10)
    (run / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="fix or move that manifest.json"):
        newest_folder(run, "transformers")
    assert (run / "checkpoint-10").is_dir() and (run / MANIFEST).read_text() == "{not json"


def _replicated(tmp_path, checkpoint_dir: str, **kw) -> Monitor:
    mon = Monitor(run="hf", checkpoint_dir=checkpoint_dir, autosave_every=None,
                  handle_sigterm=False, **kw)
    ckpt = mon.framework_checkpointer()
    for s in (10, 20):
        save_folder(ckpt, write_folder(ckpt.directory, f"checkpoint-{s}", s), s)
    assert ckpt.replica is not None and ckpt.replica.wait_idle(30)
    return mon


def test_a_folder_on_a_mount_is_written_locally_and_packed_to_the_mount(tmp_path):
    mount = tmp_path / "drive" / "run"
    mon = _replicated(tmp_path, str(mount), local_dir=tmp_path / "disk-1")
    ckpt = mon.checkpointer
    assert ckpt.directory == str(tmp_path / "disk-1")  # the framework writes on the local disk
    assert ckpt.replica.dest.kind == "mount" and ckpt.replica.status().verified.step == 20
    mon.close()
    entries = parse_entries((mount / MANIFEST).read_bytes(), "m")
    assert [e.file for e in entries] == ["checkpoint-10.tar", "checkpoint-20.tar"]
    with tarfile.open(mount / "checkpoint-20.tar") as tar:
        assert sorted(tar.getnames()) == ["model.safetensors", "sub/rng.pth",
                                          "trainer_state.json"]
    # A new runtime: an empty local disk, the newest folder fetched from the mount.
    again = Monitor(run="hf", checkpoint_dir=str(mount), local_dir=tmp_path / "disk-2",
                    autosave_every=None, handle_sigterm=False)
    found = find_resumable_folder(again.framework_checkpointer(), "transformers")
    assert found.path == str(tmp_path / "disk-2" / "checkpoint-20") and found.step == 20
    assert make_durable(found.path).sha256 == entries[-1].sha256
    again.close()


def test_a_new_runtime_resumes_a_folder_from_drive_and_skips_a_corrupt_newest(tmp_path,
                                                                             monkeypatch):
    with DriveStandin(tmp_path / "standin") as drive:
        creds = drive.make_credentials_file(tmp_path / "creds.json")
        monkeypatch.setenv("COLABTUI_DRIVE_API", drive.api_endpoint)
        monkeypatch.setenv("COLABTUI_DRIVE_CREDENTIALS", str(creds))
        url = f"gdrive://{drive.create_folder('colabtui')}/runs/hf"
        mon = _replicated(tmp_path, url, local_dir=tmp_path / "disk-1")
        mon.close()
        [tar_id] = [i for i in drive.ids_titled("checkpoint-20.tar")]
        with open(drive.directory / "content" / tar_id, "r+b") as f:
            f.write(b"garbage")  # corrupt on Drive: its md5 no longer matches
        again = Monitor(run="hf", checkpoint_dir=url, local_dir=tmp_path / "disk-2",
                        autosave_every=None, handle_sigterm=False)
        with pytest.warns(CheckpointWarning, match="checkpoint-20.tar"):
            found = find_resumable_folder(again.framework_checkpointer(), "transformers")
        assert found.step == 10 and found.path == str(tmp_path / "disk-2" / "checkpoint-10")
        assert json.loads((tmp_path / "disk-2" / "checkpoint-10" / "trainer_state.json")
                          .read_text()) == {"global_step": 10}
        again.close()
        with pytest.warns(CheckpointWarning, match="checkpoint-20.tar"):
            got = download_newest(url, tmp_path / "laptop")  # colabtui checkpoints --download
        assert got is not None and os.path.isdir(got[1]) and got[0].step == 10


def test_for_framework_leaves_a_plain_folder_as_it_is(tmp_path):
    ckpt = Checkpointer(tmp_path / "run")
    dest = CheckpointDestination(ckpt)
    assert for_framework(dest) is dest
    ckpt.close()
