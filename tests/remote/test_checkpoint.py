"""Checkpoints: durable writes, the manifest, exact restore, and resume past damaged files.

Real torch on CPU, a small model trained on scikit-learn's digits, real files in tmp_path.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from colabtui_remote.checkpoint import (
    MANIFEST,
    Checkpointer,
    CheckpointError,
    CheckpointWarning,
    load_resumable,
    restore,
    saved_values,
)
from colabtui_remote.checkpoint.lock import LOCK_NAME
from colabtui_remote.checkpoint.state import capture_state
from digits_training import digits_data as digits


def make_tracked(seed: int = 0, model: torch.nn.Module | None = None) -> dict:
    torch.manual_seed(seed)
    model = model if model is not None else torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    return {"model": model, "optimizer": opt, "scheduler": sched, "scaler": scaler}


def train(tracked: dict, steps: int) -> None:
    """Batches drawn with torch's RNG, so an exact resume repeats them."""
    x, y = digits()
    model, opt, sched, scaler = (tracked[k] for k in ("model", "optimizer", "scheduler", "scaler"))
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,))
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()


def save(ck: Checkpointer, tracked: dict, step: int, epoch: int | None = 0):
    outcome: list = []
    assert ck.submit(ck.capture(tracked, step, epoch), step, epoch,
                     lambda info, err: outcome.append((info, err)))
    assert ck.wait(30)
    info, err = outcome[0]
    assert err is None, err
    return info


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --------------------------------------------------------------------------- save and restore


def test_save_is_listed_in_the_manifest_and_restores_exactly(tmp_path):
    tracked = make_tracked(seed=0)
    train(tracked, 5)
    tracked["best_acc"] = np.float32(0.5)  # a NumPy scalar becomes a plain float
    tracked["history"] = [0.9, 0.7, {"lr": 0.01}]
    random.seed(1)
    np.random.seed(2)
    ck = Checkpointer(tmp_path / "ckpts", keep=3)

    torch_rng = torch.get_rng_state()
    state = ck.capture(tracked, step=5, epoch=1)
    expected_draws = (random.random(), float(np.random.rand()), torch.rand(3))
    torch.set_rng_state(torch_rng)  # so the straight run below draws the batches a resume will
    at_capture = params(tracked["model"])
    opt_at_capture = copy.deepcopy(tracked["optimizer"].state_dict())
    lr_at_capture = tracked["scheduler"].get_last_lr()
    done: list = []
    assert ck.submit(state, 5, 1, lambda info, err: done.append((info, err)))
    ck.wait()
    train(tracked, 3)  # the run goes on: this is what a straight run reaches
    straight = params(tracked["model"])

    info, err = done[0]
    assert err is None and ck.last_error is None
    assert info.path == str(tmp_path / "ckpts" / "ckpt-000000005.pt")
    doc = json.loads((tmp_path / "ckpts" / MANIFEST).read_text())
    [entry] = doc["checkpoints"]
    assert entry["file"] == "ckpt-000000005.pt"
    assert (entry["step"], entry["epoch"]) == (5, 1)
    assert entry["bytes"] == os.path.getsize(info.path) == info.bytes
    assert entry["sha256"] == sha(info.path) == info.sha256
    assert entry["saved_at"] == info.saved_at and entry["seconds"] > 0
    assert ck.last == info and ck.list() == [info]

    fresh = make_tracked(seed=99)
    fresh.update(best_acc=None, history=[])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, loaded_info = load_resumable(tmp_path / "ckpts")
    assert loaded_info == info
    notes = restore(fresh, loaded)
    assert notes == []
    assert_same_params(params(fresh["model"]), at_capture)
    opt_sd = fresh["optimizer"].state_dict()
    for i, s in opt_at_capture["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_sd["state"][i][key], s[key])
            assert opt_sd["state"][i][key].device == next(fresh["model"].parameters()).device
    assert opt_sd["param_groups"] == opt_at_capture["param_groups"]
    assert fresh["scheduler"].get_last_lr() == lr_at_capture
    assert fresh["scaler"].get_scale() == tracked["scaler"].get_scale()
    assert fresh["best_acc"] == 0.5 and type(fresh["best_acc"]) is float
    assert fresh["history"] == [0.9, 0.7, {"lr": 0.01}]
    assert saved_values(loaded) == {"best_acc": 0.5, "history": [0.9, 0.7, {"lr": 0.01}]}
    assert (random.random(), float(np.random.rand())) == expected_draws[:2]
    assert torch.equal(torch.rand(3), expected_draws[2])

    restore(fresh, loaded)  # rewinds the RNGs too, so the same batches come next
    train(fresh, 3)
    assert_same_params(params(fresh["model"]), straight)
    ck.close()


def test_checkpoint_file_loads_with_weights_only_and_holds_only_plain_types(tmp_path):
    tracked = make_tracked()
    train(tracked, 2)
    tracked["ema"] = torch.ones(4)
    tracked["meta"] = {"name": "run", "sizes": (1, 2), "blob": b"\x00\x01", "dtype": torch.float16}
    ck = Checkpointer(tmp_path)
    info = save(ck, tracked, step=2)

    state = torch.load(info.path, weights_only=True)

    def walk(obj, where="state"):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{where}[{k!r}]")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")
        else:
            assert isinstance(obj, (type(None), bool, int, float, str, bytes, torch.Tensor,
                                    torch.dtype)), (where, type(obj))
            if isinstance(obj, torch.Tensor):
                assert obj.device.type == "cpu", where
    walk(state)
    assert state["rng"]["numpy"]["algorithm"] == "MT19937"
    assert len(state["rng"]["numpy"]["keys"]) == 624
    assert state["tracked"]["meta"]["value"]["sizes"] == (1, 2)
    ck.close()


def test_capture_is_a_copy_that_later_training_does_not_change(tmp_path):
    tracked = make_tracked()
    train(tracked, 2)
    ck = Checkpointer(tmp_path)
    before = params(tracked["model"])
    exp_avg_before = tracked["optimizer"].state_dict()["state"][0]["exp_avg"].clone()

    state = ck.capture(tracked, step=2, epoch=None)
    train(tracked, 3)  # in-place updates of the very tensors that were captured
    assert not torch.equal(params(tracked["model"])["0.weight"], before["0.weight"])
    assert ck.submit(state, 2, None)
    ck.wait()

    written = torch.load(ck.last.path, weights_only=True)
    assert_same_params(dict(written["tracked"]["model"]["state"]), before)
    assert torch.equal(written["tracked"]["optimizer"]["state"]["state"][0]["exp_avg"],
                       exp_avg_before)
    ck.close()


def test_tied_weights_stay_shared_in_the_copy(tmp_path):
    emb = torch.nn.Embedding(10, 8)
    head = torch.nn.Linear(8, 10, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    state = Checkpointer(tmp_path).capture({"model": model}, 0, None)
    sd = state["tracked"]["model"]["state"]
    assert sd["emb.weight"] is sd["head.weight"]
    assert sd["emb.weight"].data_ptr() != emb.weight.data_ptr()


def test_keep_prunes_older_checkpoints_only_after_the_new_one_is_published(tmp_path):
    seen_at_prune: list = []

    class Recording(Checkpointer):
        def _prune(self, dropped):
            listed = [c["file"] for c in json.loads((tmp_path / MANIFEST).read_text())["checkpoints"]]
            on_disk = sorted(p for p in os.listdir(tmp_path) if p.endswith(".pt"))
            seen_at_prune.append((listed, on_disk, [os.path.basename(d.path) for d in dropped]))
            super()._prune(dropped)

    tracked = make_tracked()
    ck = Recording(tmp_path, keep=2)
    for step in (1, 2, 3):
        train(tracked, 1)
        save(ck, tracked, step)

    names = [f"ckpt-{s:09d}.pt" for s in (1, 2, 3)]
    listed, on_disk, dropped = seen_at_prune[-1]
    assert listed == names[1:]  # the manifest already lists the new one and no longer the old
    assert on_disk == names  # and the old file was still there
    assert dropped == names[:1]
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".pt")) == names[1:]
    assert [os.path.basename(c.path) for c in ck.list()] == names[1:]
    assert all(os.path.isabs(c.path) for c in ck.list())
    ck.close()

    reopened = Checkpointer(tmp_path, keep=2)
    assert reopened.list() == ck.list() and reopened.last.step == 3


def test_a_second_save_at_the_same_step_gets_its_own_file(tmp_path):
    tracked = make_tracked()
    ck = Checkpointer(tmp_path, keep=3)
    first = save(ck, tracked, 7)
    tracked["note"] = "second"
    second = save(ck, tracked, 7)
    assert os.path.basename(first.path) == "ckpt-000000007.pt"
    assert os.path.basename(second.path) == "ckpt-000000007-2.pt"
    assert sha(first.path) == first.sha256
    state, info = load_resumable(tmp_path)
    assert info == second and saved_values(state) == {"note": "second"}
    ck.close()


def test_submit_refuses_while_a_save_is_in_flight_and_reports_progress(tmp_path):
    tracked = make_tracked()
    ck = Checkpointer(tmp_path)
    gate = threading.Event()
    in_callback = threading.Event()

    def hold(info, err):  # on_done runs before busy clears: the save is still in flight here
        in_callback.set()
        gate.wait(30)

    assert ck.progress() is None and not ck.busy
    assert ck.submit(ck.capture(tracked, 1, None), 1, None, hold)
    assert in_callback.wait(30)
    assert ck.busy
    progress = ck.progress()
    assert (progress.step, progress.phase) == (1, "publishing")
    assert progress.bytes_written == progress.bytes_total == ck.last.bytes
    assert not ck.submit(ck.capture(tracked, 2, None), 2, None)
    gate.set()
    assert ck.wait(30)
    assert not ck.busy and ck.progress() is None
    assert [c.step for c in ck.list()] == [1]
    ck.close()
    assert not ck.submit(ck.capture(tracked, 3, None), 3, None)
    ck.close()  # idempotent


def test_bad_arguments_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        Checkpointer(tmp_path, keep=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        Checkpointer(tmp_path / "file" / "ckpts")
    ck = Checkpointer(tmp_path / "ok")
    with pytest.raises(ValueError, match="capture"):
        ck.submit({"model": 1}, 0, None)
    with pytest.raises(CheckpointError, match=r"table: a numpy\.ndarray cannot be stored.*torch\.from_numpy"):
        ck.capture({"table": np.zeros(3)}, 0, None)
    with pytest.raises(CheckpointError, match=r"opts\['cb'\]: a builtins\.object cannot be stored"):
        ck.capture({"opts": {"cb": object()}}, 0, None)
    assert not ck.busy and os.listdir(tmp_path / "ok") == [LOCK_NAME]  # nothing but its lock


# --------------------------------------------------------------------------- resume past damage


@pytest.fixture
def two_saved(tmp_path):
    """Checkpoints at steps 10 and 20 in tmp_path, and the model parameters of each."""
    tracked = make_tracked()
    ck = Checkpointer(tmp_path, keep=5)
    saved = {}
    for step in (10, 20):
        train(tracked, 2)
        saved[step] = (save(ck, tracked, step), params(tracked["model"]))
    ck.close()
    return tmp_path, saved


def _files(folder) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder))}


@pytest.mark.parametrize(("damage", "why"), [
    ("truncate", r"size is \d+ bytes, the manifest says \d+ \(truncated"),
    ("empty", r"size is 0 bytes"),
    ("flip", r"sha256 differs from the manifest"),
])
def test_resume_skips_a_damaged_newest_checkpoint_with_a_warning(two_saved, damage, why):
    folder, saved = two_saved
    newest = folder / "ckpt-000000020.pt"
    data = bytearray(newest.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    else:
        data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    before = _files(folder)

    with pytest.warns(CheckpointWarning, match=rf"ckpt-000000020\.pt \(step 20\) is unusable: {why}"):
        state, info = load_resumable(folder)

    assert info == saved[10][0]
    model = make_tracked(seed=5)
    restore(model, state)
    assert_same_params(params(model["model"]), saved[10][1])
    assert _files(folder) == before  # nothing deleted or rewritten


def test_resume_ignores_a_leftover_temporary_file_with_a_warning(two_saved):
    folder, saved = two_saved
    partial = (folder / "ckpt-000000020.pt").read_bytes()[:1000]
    (folder / ".ckpt-000000030.pt.tmp-deadbeef").write_bytes(partial)
    with pytest.warns(CheckpointWarning, match=r"\.ckpt-000000030\.pt\.tmp-deadbeef: a temporary"):
        _, info = load_resumable(folder)
    assert info == saved[20][0]
    assert (folder / ".ckpt-000000030.pt.tmp-deadbeef").exists()


def test_resume_never_loads_a_checkpoint_the_manifest_does_not_list(two_saved):
    folder, saved = two_saved
    shutil.copy(folder / "ckpt-000000020.pt", folder / "ckpt-000000030.pt")  # valid, but unlisted
    with pytest.warns(CheckpointWarning, match=r"ckpt-000000030\.pt: not listed in the manifest"):
        _, info = load_resumable(folder)
    assert info == saved[20][0]


def test_resume_refuses_a_file_that_needs_unsafe_unpickling(two_saved):
    folder, saved = two_saved
    evil = folder / "ckpt-000000030.pt"
    torch.save({"format": "colabtui-checkpoint", "step": 30, "tracked": {}, "x": np.arange(3)}, evil)
    doc = json.loads((folder / MANIFEST).read_text())
    doc["checkpoints"].append({"file": evil.name, "step": 30, "epoch": None,
                               "bytes": evil.stat().st_size, "sha256": sha(evil),
                               "saved_at": 1.0, "seconds": None})
    (folder / MANIFEST).write_text(json.dumps(doc))
    with pytest.warns(CheckpointWarning, match=r"ckpt-000000030\.pt.*weights_only=True\) failed"):
        _, info = load_resumable(folder)
    assert info == saved[20][0]


@pytest.mark.parametrize("manifest", [b"{not json", b'{"format": "something else"}',
                                      b'{"format": "colabtui-checkpoints", "checkpoints": '
                                      b'[{"file": "../../etc/passwd", "step": 1}]}', None])
def test_resume_without_a_usable_manifest_verifies_each_file_by_loading_it(two_saved, manifest):
    folder, saved = two_saved
    if manifest is None:
        (folder / MANIFEST).unlink()
    else:
        (folder / MANIFEST).write_bytes(manifest)
    newest = folder / "ckpt-000000020.pt"
    newest.write_bytes(newest.read_bytes()[:-100])  # and the newest is damaged too
    with pytest.warns(CheckpointWarning) as record:
        state, info = load_resumable(folder)
    messages = [str(w.message) for w in record]
    state_word = "missing" if manifest is None else "unreadable"
    assert any(f"manifest.json is {state_word}" in m and "rebuilding" in m for m in messages)
    assert any("ckpt-000000020.pt is unusable: torch.load(weights_only=True) failed" in m
               for m in messages)
    assert info.step == 10 and info.path == saved[10][0].path
    assert info.sha256 == saved[10][0].sha256 and info.bytes == saved[10][0].bytes
    assert state["step"] == 10


def test_resume_with_nothing_usable_returns_none(tmp_path_factory, two_saved):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_resumable(elsewhere / "absent") is None
        assert load_resumable(elsewhere) is None
        (elsewhere / "file").write_text("x")
        assert load_resumable(elsewhere / "file") is None

    folder, _ = two_saved
    for name in ("ckpt-000000010.pt", "ckpt-000000020.pt"):
        (folder / name).write_bytes(b"")
    with pytest.warns(CheckpointWarning) as record:
        assert load_resumable(folder) is None
    messages = [str(w.message) for w in record]
    assert sum("is unusable: size is 0 bytes" in m for m in messages) == 2
    assert messages[-1] == f"none of the 2 checkpoint(s) in {folder} could be loaded"
    assert sorted(os.listdir(folder)) == ["ckpt-000000010.pt", "ckpt-000000020.pt", MANIFEST]


# --------------------------------------------------------------------------- key prefixes


def _capture(model: torch.nn.Module) -> dict:
    return capture_state({"model": model}, 0, None)


def _plain(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


@pytest.mark.parametrize(("wrap_saved", "wrap_target", "expected_notes"), [
    ("compile", None, ["model: stripped prefix _orig_mod. from 4 keys"]),
    (None, "compile", ["model: added prefix _orig_mod. to 4 keys"]),
    ("dp", None, ["model: stripped prefix module. from 4 keys"]),
    (None, "dp", ["model: added prefix module. to 4 keys"]),
    ("dp+compile", None, ["model: stripped prefix module. from 4 keys",
                          "model: stripped prefix _orig_mod. from 4 keys"]),
    ("compile", "dp", ["model: stripped prefix _orig_mod. from 4 keys",
                       "model: added prefix module. to 4 keys"]),
])
def test_prefixes_are_reconciled_when_every_key_carries_them(caplog, wrap_saved, wrap_target,
                                                             expected_notes):
    def wrap(model, how):
        if how == "compile":
            return torch.compile(model, backend="eager")  # wraps as _orig_mod; compiles lazily
        if how == "dp":
            return torch.nn.DataParallel(model)  # module.*; a plain wrapper without GPUs
        if how == "dp+compile":
            return torch.nn.DataParallel(torch.compile(model, backend="eager"))
        return model

    source, target = _plain(1), _plain(2)
    state = _capture(wrap(source, wrap_saved))
    caplog.set_level("INFO", logger="colabtui_remote.checkpoint")
    notes = restore({"model": wrap(target, wrap_target)}, state)
    assert notes == expected_notes
    assert all(n in caplog.text for n in expected_notes)
    assert_same_params(params(target), params(source))


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module."])
def test_mixed_prefixes_are_not_reconciled(prefix):
    source, target = _plain(1), _plain(2)
    state = _capture(source)
    sd = state["tracked"]["model"]["state"]
    mixed = OrderedDict((prefix + k if i % 2 else k, v) for i, (k, v) in enumerate(sd.items()))
    state["tracked"]["model"]["state"] = mixed
    before = params(target)
    with pytest.raises(CheckpointError, match=rf"2 of 4 checkpoint keys start with '{prefix}'"
                                              r"; prefixes are reconciled only when every key"):
        restore({"model": target}, state)
    assert_same_params(params(target), before)


def test_restore_mismatches_get_clear_errors_and_change_nothing():
    tracked = make_tracked(seed=1)
    train(tracked, 2)
    state = capture_state(tracked, 2, None)

    other = make_tracked(seed=2)
    before = params(other["model"])
    small = {**other, "model": torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(),
                                                   torch.nn.Linear(16, 10))}
    with pytest.raises(CheckpointError, match=r"model: 3 tensor shape\(s\) differ: 0.weight"):
        restore(small, state)
    with pytest.raises(CheckpointError, match="ema: tracked but not in the checkpoint"):
        restore({**other, "ema": torch.nn.Linear(2, 2)}, state)
    two_groups = torch.optim.Adam([{"params": other["model"][0].parameters()},
                                   {"params": other["model"][2].parameters()}])
    with pytest.raises(CheckpointError, match=r"optimizer: parameter groups differ"):
        restore({**other, "optimizer": two_groups}, state)
    with pytest.raises(CheckpointError, match="not a colabtui checkpoint"):
        restore(other, {"model": {}})
    assert_same_params(params(other["model"]), before)


def test_restore_notes_what_it_could_not_apply():
    tracked = make_tracked()
    tracked["scaler"] = torch.amp.GradScaler("cpu", enabled=False)
    state = capture_state(tracked, 0, None)
    state["rng"]["cuda"] = [torch.get_rng_state()]  # as a one-GPU runtime saves it
    target = make_tracked()
    notes = restore({"model": target["model"], "scaler": target["scaler"]}, state)
    assert "scaler: saved from a disabled GradScaler; scaler left as it is" in notes
    assert "optimizer: in the checkpoint but not tracked; not restored" in notes
    if not torch.cuda.is_available():
        assert "rng: CUDA RNG states of 1 device(s) not restored: CUDA is not available here" in notes


# --------------------------------------------------------------------------- failures


def test_a_write_into_a_vanished_folder_fails_cleanly(tmp_path):
    folder = tmp_path / "ckpts"
    tracked = make_tracked()
    ck = Checkpointer(folder)
    first = save(ck, tracked, 1)
    before = _files(folder)
    folder.rename(tmp_path / "moved")  # Drive unmounted, folder deleted: the path is now a file
    folder.write_text("not a folder")

    outcome: list = []
    assert ck.submit(ck.capture(tracked, 2, None), 2, None,
                     lambda info, err: outcome.append((info, err)))
    assert ck.wait(30)
    [(info, err)] = outcome
    assert info is None
    assert err.startswith("checkpoint at step 2 not saved: NotADirectoryError") and "Not a directory" in err
    assert ck.last_error == err and ck.last_error_at is not None
    assert ck.last == first and ck.list() == [first]
    assert _files(tmp_path / "moved") == before
    ck.close()


_DISK_FULL = r"""
import json, os, resource, signal, sys, torch
from colabtui_remote.checkpoint import Checkpointer
folder = sys.argv[1]
ck = Checkpointer(folder)
outcome = []
ck.submit(ck.capture({"w": torch.zeros(1000)}, 1, None), 1, None, lambda i, e: outcome.append(e))
ck.wait()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
ck.submit(ck.capture({"w": torch.zeros(1_000_000)}, 2, None), 2, None, lambda i, e: outcome.append(e))
ck.wait()
print(json.dumps({"outcome": outcome, "last_error": ck.last_error,
                  "last": ck.last.step, "files": sorted(os.listdir(folder))}))
"""


def test_a_write_that_fails_midway_removes_its_temp_file_and_keeps_the_rest(tmp_path):
    folder = tmp_path / "ckpts"
    proc = subprocess.run([sys.executable, "-c", _DISK_FULL, str(folder)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["outcome"][0] is None
    assert "File too large" in result["outcome"][1] and result["last_error"] == result["outcome"][1]
    assert result["last"] == 1
    assert result["files"] == ["ckpt-000000001.pt", MANIFEST, LOCK_NAME]  # no temp file left
    [entry] = json.loads((folder / MANIFEST).read_text())["checkpoints"]
    assert entry["sha256"] == sha(folder / "ckpt-000000001.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_resumable(folder)[1].step == 1


_NO_TORCH = r"""
import sys
sys.modules["torch"] = None  # as on an image without torch
import colabtui_remote.checkpoint as c
ck = c.Checkpointer(sys.argv[1])
assert ck.last is None and c.load_resumable(sys.argv[1]) is None
try:
    ck.capture({"x": 1}, 0, None)
except ImportError as exc:
    print(exc)
"""


def test_the_module_imports_without_torch_and_says_what_to_install(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "checkpoints need torch: pip install torch"
