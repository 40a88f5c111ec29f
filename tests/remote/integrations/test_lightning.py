"""Lightning with ColabtuiCallback: real lightning.pytorch on the CPU, the real digits data, real
checkpoint folders. In-process tests use a tiny Trainer; the exactness test runs
remote/examples/train_digits_lightning.py as new processes (a new process is a new runtime)."""

from __future__ import annotations

import os
import shutil
import sys

import httpx
import lightning.pytorch as L
import pytest
import torch
from colabtui_remote import Monitor
from colabtui_remote.checkpoint import CheckpointWarning, read_manifest
from colabtui_remote.integrations import IntegrationError
from colabtui_remote.integrations.lightning import ColabtuiCallback, resume_checkpoint
from framework_runs import EXAMPLES, metrics, outcome, send, status, wait_step
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

sys.path.insert(0, str(EXAMPLES))
import train_digits_lightning as pl  # noqa: E402  (the example's model)


@pytest.fixture(scope="module")
def digits():
    from colabtui_remote.examples.digits import load_digits_data

    data, target = load_digits_data()
    return TensorDataset(torch.tensor(data[:256], dtype=torch.float32) / 16.0,
                         torch.tensor(target[:256], dtype=torch.long))


def monitor(tmp_path, **kw) -> Monitor:
    return Monitor(run="pl", checkpoint_dir=kw.pop("checkpoint_dir", tmp_path / "run"),
                   autosave_every=None, handle_sigterm=False, **kw)


def fit(mon, digits, *, steps=8, callbacks=None, ckpt_path=None, model=None, **kw) -> L.Trainer:
    L.seed_everything(0, verbose=False)
    model = model or pl.DigitsMLP()
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=callbacks if callbacks is not None else [ColabtuiCallback(mon)],
                        **{"enable_checkpointing": False, **kw})
    trainer.fit(model, StatefulDataLoader(digits, batch_size=16, shuffle=True),
                ckpt_path=ckpt_path)
    return trainer


def test_a_callback_without_a_monitor_says_what_to_pass():
    with pytest.raises(TypeError, match=r"needs the run's colabtui Monitor"):
        ColabtuiCallback()


def test_two_colabtui_callbacks_on_one_trainer_are_refused_before_training(tmp_path, digits):
    mon = monitor(tmp_path)
    with pytest.raises(IntegrationError, match="two colabtui callbacks on one Trainer"):
        fit(mon, digits, callbacks=[ColabtuiCallback(mon), ColabtuiCallback(mon)])
    assert read_manifest(mon.checkpointer.directory) is None
    mon.close()


def test_a_monitor_without_checkpoints_or_an_unwritable_folder_is_refused(tmp_path, digits):
    bare = Monitor(run="pl", autosave_every=None, handle_sigterm=False)
    with pytest.raises(IntegrationError, match="has no checkpoint_dir"):
        fit(bare, digits)
    mon = monitor(tmp_path)
    shutil.rmtree(tmp_path / "run")
    (tmp_path / "run").write_text("a file where the folder was")
    with pytest.raises(IntegrationError, match="cannot write checkpoints in"):
        fit(mon, digits)
    mon.close()


def test_enable_checkpointing_false_says_so_and_the_end_of_fit_saves(tmp_path, digits, capsys):
    mon = monitor(tmp_path)
    url = mon.serve(port=0, quiet=True)
    fit(mon, digits)
    assert "enable_checkpointing=False: Lightning saves only when colabtui asks" in \
        capsys.readouterr().out
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {mon.token}"}) as c:
        series, s = metrics(c), status(c)
    assert [p.step for p in series["loss"]] == list(range(1, 9))
    assert (s.state, s.step, s.total_steps, s.checkpoint.last.step) == ("finished", 8, 8, 8)
    last = s.checkpoint.last.path
    assert last == str(tmp_path / "run" / "ckpt-000000008")
    assert s.checkpoint.last.bytes == os.path.getsize(os.path.join(last, "model.ckpt"))
    mon.close()


def test_a_save_that_lightning_cannot_write_fails_with_the_reason_and_training_goes_on(
        tmp_path, digits):
    class Refuses(pl.DigitsMLP):
        def on_save_checkpoint(self, checkpoint):
            raise RuntimeError("disk quota exceeded")

    mon = monitor(tmp_path)
    mon.commands.submit("save-1", "save")
    trainer = fit(mon, digits, model=Refuses())
    record = mon.commands.get("save-1")
    assert record.state == "failed" and record.error == (
        "checkpoint at step 1 not saved: trainer.save_checkpoint failed: RuntimeError: disk "
        "quota exceeded")
    assert trainer.global_step == 8 and mon.state == "finished"  # training went on
    assert "trainer.save_checkpoint failed" in mon.checkpointer.last_error
    assert not [n for n in os.listdir(tmp_path / "run") if n.startswith("ckpt-")]
    mon.close()


def test_a_stop_saves_then_ends_fit_and_lightning_resumes_from_it(tmp_path, digits):
    mon = monitor(tmp_path)
    mon.commands.submit("stop-1", "stop")
    trainer = fit(mon, digits)
    record = mon.commands.get("stop-1")
    assert trainer.global_step == 1 and mon.state == "stopped" and record.state == "done"
    assert record.checkpoint.path == str(tmp_path / "run" / "ckpt-000000001")
    assert [c.step for c in read_manifest(tmp_path / "run")] == [1]  # no save at the end
    mon.close()
    again = monitor(tmp_path)
    path = resume_checkpoint(again)
    assert path == str(tmp_path / "run" / "ckpt-000000001" / "model.ckpt")
    resumed = fit(again, digits, ckpt_path=path)
    assert resumed.global_step == 8 and again.state == "finished"
    again.close()


def test_a_half_written_newest_checkpoint_is_skipped_and_the_previous_resumes(tmp_path, digits):
    mon = monitor(tmp_path)
    mon.commands.submit("save-1", "save")
    fit(mon, digits)
    mon.close()
    run = tmp_path / "run"
    assert [c.step for c in read_manifest(run)] == [1, 8]
    with open(run / "ckpt-000000008" / "model.ckpt", "r+b") as f:
        f.truncate(10)
    again = monitor(tmp_path)
    with pytest.warns(CheckpointWarning, match=r"ckpt-000000008 \(step 8\) is unusable"):
        path = resume_checkpoint(again)
    assert path == str(run / "ckpt-000000001" / "model.ckpt")
    assert fit(again, digits, ckpt_path=path).global_step == 8
    again.close()


def test_stopped_and_resumed_in_a_new_process_equals_a_straight_run(example, tmp_path):
    """Lightning restores model, optimizer, loops and the StatefulDataLoader's position; the
    callback restores the random number generators at the first batch after the resume: every
    parameter is bitwise equal to a straight run on the CPU, dropout included."""
    common = ["--steps", 40, "--autosave-every", 0, "--run", "pl"]
    straight = example("train_digits_lightning.py", [*common, "--checkpoint-dir", tmp_path / "a",
                                                     "--dump-params", tmp_path / "a.pt"])
    straight.start(serve=False)
    stopped = example("train_digits_lightning.py", [*common, "--checkpoint-dir", tmp_path / "b",
                                                    "--step-delay", 0.1])
    stopped.start()
    with stopped.client() as c:
        wait_step(c, 3)
        first = send(c, "stop", "stop-1")
        assert send(c, "stop", "stop-1") == first  # the same id twice: the same record
        done = outcome(c, "stop-1")
        assert done.state == "done" and done.checkpoint.step < 40
    assert stopped.wait() == 0, stopped.output()
    assert [c.step for c in read_manifest(tmp_path / "b")] == [done.checkpoint.step]
    assert straight.wait() == 0, straight.output()
    resumed = example("train_digits_lightning.py", [*common, "--checkpoint-dir", tmp_path / "b",
                                                    "--dump-params", tmp_path / "b.pt"])
    resumed.start(serve=False)
    assert resumed.wait() == 0, resumed.output()
    assert f"resuming pl at step {done.checkpoint.step}" in resumed.output()
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
