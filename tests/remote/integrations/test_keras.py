"""Keras 3 (the torch backend) with ColabtuiCallback: real keras on the CPU, the real digits
data, real checkpoint folders. In-process tests use a tiny model; the exactness test runs
remote/examples/train_digits_keras.py as new processes (a new process is a new runtime)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import httpx
import keras
import numpy as np
import pytest
import torch
from colabtui_remote import Monitor
from colabtui_remote.checkpoint import CheckpointWarning, read_manifest
from colabtui_remote.integrations import IntegrationError
from colabtui_remote.integrations.keras import (
    METADATA_FILE,
    WEIGHTS_FILE,
    ColabtuiCallback,
    resume_checkpoint,
)
from framework_runs import EXAMPLES, metrics, outcome, send, status, wait_step

sys.path.insert(0, str(EXAMPLES))
import train_digits_keras as kx  # noqa: E402  (the example's model)

assert keras.backend.backend() == "torch"


@pytest.fixture(scope="module")
def digits():
    from colabtui_remote.examples.digits import load_digits_data

    data, target = load_digits_data()
    return (data[:128] / 16.0).astype(np.float32), target[:128]


def monitor(tmp_path, **kw) -> Monitor:
    return Monitor(run="k", checkpoint_dir=kw.pop("checkpoint_dir", tmp_path / "run"),
                   autosave_every=None, handle_sigterm=False, **kw)


def fit(digits, callbacks, *, epochs=2, model=None) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = model or kx.digits_model(1e-3)
    x, y = digits
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=0, callbacks=callbacks)
    return model


def test_a_callback_without_a_monitor_says_what_to_pass():
    with pytest.raises(TypeError, match=r"needs the run's colabtui Monitor"):
        ColabtuiCallback()


def test_two_colabtui_callbacks_in_one_fit_are_refused_before_training(tmp_path, digits):
    mon = monitor(tmp_path)
    with pytest.raises(IntegrationError, match=r"two colabtui callbacks in one fit\(\)"):
        fit(digits, [ColabtuiCallback(mon), ColabtuiCallback(mon)])
    assert read_manifest(mon.checkpointer.directory) is None
    mon.close()
    again = monitor(tmp_path)  # a later fit of the same model with one callback is fine
    fit(digits, [ColabtuiCallback(again)], epochs=1)
    assert again.state == "finished"
    again.close()


def test_a_monitor_without_checkpoints_or_an_unwritable_folder_is_refused(tmp_path, digits):
    with pytest.raises(IntegrationError, match="has no checkpoint_dir"):
        fit(digits, [ColabtuiCallback(Monitor(run="k", handle_sigterm=False))])
    mon = monitor(tmp_path)
    shutil.rmtree(tmp_path / "run")
    (tmp_path / "run").write_text("a file where the folder was")
    with pytest.raises(IntegrationError, match="cannot write checkpoints in"):
        fit(digits, [ColabtuiCallback(mon)])
    mon.close()


def test_batch_logs_steps_and_the_last_checkpoint_reach_the_laptop(tmp_path, digits):
    mon = monitor(tmp_path)
    url = mon.serve(port=0, quiet=True)
    fit(digits, [ColabtuiCallback(mon)])
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {mon.token}"}) as c:
        series, s = metrics(c), status(c)
    assert [p.step for p in series["loss"]] == list(range(1, 9))
    assert (s.state, s.step, s.total_steps, s.checkpoint.last.step) == ("finished", 8, 8, 8)
    folder = s.checkpoint.last.path
    assert sorted(os.listdir(folder)) == [WEIGHTS_FILE, METADATA_FILE]
    with open(os.path.join(folder, METADATA_FILE)) as f:
        assert json.load(f)["epoch"] == 2
    mon.close()


def test_a_save_keras_cannot_write_fails_with_the_reason_and_training_goes_on(tmp_path, digits,
                                                                            monkeypatch):
    mon = monitor(tmp_path)
    mon.commands.submit("save-1", "save")
    model = kx.digits_model(1e-3)

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "save_weights", refuse)
    fit(digits, [ColabtuiCallback(mon)], model=model)
    record = mon.commands.get("save-1")
    assert record.state == "failed" and record.error == (
        "checkpoint at step 1 not saved: model.save_weights failed: OSError: [Errno 28] No "
        "space left on device")
    assert mon.state == "finished" and mon.step == 8  # training went on
    assert not [n for n in os.listdir(tmp_path / "run") if n.startswith("ckpt-")]
    mon.close()


def test_a_stop_saves_then_ends_fit_and_the_next_fit_resumes_from_it(tmp_path, digits):
    mon = monitor(tmp_path)
    mon.commands.submit("stop-1", "stop")
    model = fit(digits, [ColabtuiCallback(mon)])
    record = mon.commands.get("stop-1")
    assert mon.state == "stopped" and record.state == "done" and record.checkpoint.step == 1
    assert int(model.optimizer.iterations) == 1
    assert [c.step for c in read_manifest(tmp_path / "run")] == [1]  # no save at the end
    mon.close()
    again = monitor(tmp_path)
    model = fit(digits, [ColabtuiCallback(again)])
    assert int(model.optimizer.iterations) == 8 and again.state == "finished"
    again.close()


def test_a_half_written_newest_checkpoint_is_skipped_and_the_previous_resumes(tmp_path, digits):
    mon = monitor(tmp_path)
    mon.commands.submit("save-1", "save")
    fit(digits, [ColabtuiCallback(mon)])
    mon.close()
    run = tmp_path / "run"
    assert [c.step for c in read_manifest(run)] == [1, 8]
    with open(run / "ckpt-000000008" / WEIGHTS_FILE, "r+b") as f:
        f.truncate(10)
    again = monitor(tmp_path)
    with pytest.warns(CheckpointWarning, match=r"ckpt-000000008 \(step 8\) is unusable"):
        assert resume_checkpoint(again) == str(run / "ckpt-000000001")
    model = fit(digits, [ColabtuiCallback(again)])
    assert int(model.optimizer.iterations) == 8
    again.close()


def test_stopped_mid_epoch_and_resumed_in_a_new_process_equals_a_straight_run(example,
                                                                             tmp_path):
    """The callback resumes at the checkpoint's epoch with its weights, optimizer and seed
    generators, puts the global generators back as that epoch began (the same data order),
    and passes over the batches already trained: every weight is bitwise equal to a straight
    run on the CPU, dropout included."""
    common = ["--steps", 58, "--autosave-every", 0, "--run", "k"]
    straight = example("train_digits_keras.py", [*common, "--checkpoint-dir", tmp_path / "a",
                                                 "--dump-params", tmp_path / "a.pt"])
    straight.start(serve=False)
    stopped = example("train_digits_keras.py", [*common, "--checkpoint-dir", tmp_path / "b",
                                                "--step-delay", 0.1])
    stopped.start()
    with stopped.client() as c:
        wait_step(c, 33)  # in the second epoch (29 batches each)
        first = send(c, "save", "save-1")
        assert send(c, "save", "save-1") == first  # the same id twice: the same record
        saved = outcome(c, "save-1")
        stop = send(c, "stop")
        done = outcome(c, stop.id)
        assert saved.state == done.state == "done" and 29 < done.checkpoint.step < 58
    assert stopped.wait() == 0, stopped.output()
    assert [c.step for c in read_manifest(tmp_path / "b")] == [saved.checkpoint.step,
                                                              done.checkpoint.step]
    assert straight.wait() == 0, straight.output()
    resumed = example("train_digits_keras.py", [*common, "--checkpoint-dir", tmp_path / "b",
                                                "--dump-params", tmp_path / "b.pt"])
    resumed.start(serve=False)
    assert resumed.wait() == 0, resumed.output()
    assert f"resuming k at step {done.checkpoint.step}" in resumed.output()
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
