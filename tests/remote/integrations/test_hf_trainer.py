"""The Hugging Face Trainer with ColabtuiCallback: real transformers on the CPU, the real digits
data, real checkpoint folders. In-process tests use a tiny Trainer; the exactness test runs
remote/examples/train_digits_hf.py as new processes (a new process is a new runtime)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys

import pytest
import torch
from colabtui_remote import Monitor, schema
from colabtui_remote.checkpoint import CheckpointWarning, read_manifest
from colabtui_remote.integrations import IntegrationError
from colabtui_remote.integrations.transformers import (
    ColabtuiCallback,
    checkpoint_folder,
    resume_checkpoint,
)
from digits_training import wait_for
from framework_runs import EXAMPLES, metrics, outcome, send, status, wait_step
from transformers import Trainer, TrainerCallback, TrainingArguments

sys.path.insert(0, str(EXAMPLES))
import train_digits_hf as hf  # noqa: E402  (the example's model and data set)


@pytest.fixture(scope="module")
def digits():
    from colabtui_remote.examples.digits import load_digits_data

    data, target = load_digits_data()
    x = torch.tensor(data[:256], dtype=torch.float32) / 16.0
    return hf.Digits(x, torch.tensor(target[:256], dtype=torch.long))


def monitor(tmp_path, **kw) -> Monitor:
    return Monitor(run="hf", checkpoint_dir=kw.pop("checkpoint_dir", tmp_path / "run"),
                   autosave_every=kw.pop("autosave_every", None), handle_sigterm=False, **kw)


def trainer(mon, digits, *, steps=8, callbacks=None, output_dir=None, **kw) -> Trainer:
    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=output_dir or checkpoint_folder(mon), max_steps=steps,
        per_device_train_batch_size=16, logging_steps=2, report_to="none", use_cpu=True,
        disable_tqdm=True, seed=0, **{"save_strategy": "steps", "save_steps": 4, **kw})
    return Trainer(model=hf.DigitsMLP(), args=args, train_dataset=digits,
                   callbacks=callbacks if callbacks is not None else [ColabtuiCallback(mon)])


class StartStep(TrainerCallback):
    """Notes the step training starts at (after the Trainer loaded a checkpoint)."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step


def test_a_callback_without_a_monitor_says_what_to_pass():
    for bad in ((), ("hf",)):
        with pytest.raises(TypeError, match=r"needs the run's colabtui Monitor.*"
                                            r"ColabtuiCallback\(mon\)"):
            ColabtuiCallback(*bad)


def test_checkpoints_going_elsewhere_are_refused_when_the_trainer_is_made(tmp_path, digits):
    mon = monitor(tmp_path)
    with pytest.raises(IntegrationError, match=r"output_dir=checkpoint_folder\(mon\)"):
        trainer(mon, digits, output_dir=str(tmp_path / "trainer_output"))
    mon.close()
    with pytest.raises(IntegrationError, match="has no checkpoint_dir"):
        checkpoint_folder(Monitor(run="x", handle_sigterm=False))


def test_two_colabtui_callbacks_on_one_trainer_are_refused_before_training(tmp_path, digits):
    mon = monitor(tmp_path)
    t = trainer(mon, digits, callbacks=[ColabtuiCallback(mon), ColabtuiCallback(mon)])
    with pytest.raises(IntegrationError, match="two colabtui callbacks on one Trainer"):
        t.train()
    assert not os.listdir(mon.checkpointer.directory) or read_manifest(
        mon.checkpointer.directory) is None  # nothing trained, nothing saved
    mon.close()


def test_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path, digits):
    mon = monitor(tmp_path)
    t = trainer(mon, digits)
    shutil.rmtree(tmp_path / "run")
    (tmp_path / "run").write_text("a file where the folder was")
    with pytest.raises(IntegrationError, match="cannot write checkpoints in .*a folder you can "
                                               "write"):
        t.train()
    mon.close()


def test_metrics_steps_and_the_trainers_own_checkpoints_reach_the_laptop(tmp_path, digits):
    mon = monitor(tmp_path)
    url = mon.serve(port=0, quiet=True)
    t = trainer(mon, digits, steps=12, save_total_limit=2)
    t.train()
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {mon.token}"}) as c:
        series = metrics(c)
        s = status(c)
        listing = schema.parse_checkpoint_list(c.get("/v1/checkpoints").json())
    assert {"loss", "learning_rate", "grad_norm"} <= set(series)
    assert [p.step for p in series["loss"]] == [2, 4, 6, 8, 10, 12]
    assert (s.state, s.step, s.total_steps) == ("finished", 12, 12)
    last = s.checkpoint.last
    run = tmp_path / "run"
    assert (last.step, last.path) == (12, str(run / "checkpoint-12"))
    assert last.bytes == sum(f.stat().st_size for f in (run / "checkpoint-12").iterdir())
    # save_total_limit=2: the Trainer rotated checkpoint-4 away, the manifest agrees.
    assert [c.step for c in listing.checkpoints] == [8, 12]
    assert {p.name for p in run.iterdir() if p.is_dir()} == {
        os.path.basename(c.path) for c in listing.checkpoints}
    mon.close()


def test_save_strategy_no_says_so_and_a_save_through_the_mailbox_still_resumes(
        tmp_path, digits, capsys):
    mon = monitor(tmp_path)
    box = tmp_path / "mailbox"
    mon.serve_mailbox(box, interval_s=0.1, quiet=True)
    t = trainer(mon, digits, save_strategy="no", callbacks=[ColabtuiCallback(mon)])
    said = capsys.readouterr().out
    assert "save_strategy='no': the Trainer saves only when colabtui asks" in said
    assert "set save_strategy='steps' or Monitor(autosave_every=600)" in said
    (box / "commands").mkdir(exist_ok=True)
    for _ in range(2):  # the same id twice acts once
        (box / "commands" / "c-1.json").write_text(json.dumps({"id": "c-1", "action": "save"}))
        wait_for(lambda: mon.commands.get("c-1") is not None)
    t.train()
    record = mon.commands.get("c-1")
    run = tmp_path / "run"
    assert record.state == "done" and record.checkpoint.path == str(run / "checkpoint-1")
    assert [os.path.basename(c.path) for c in read_manifest(run)] == ["checkpoint-1"]

    def delivered():
        path = box / "records" / "c-1.json"
        return path.exists() and json.loads(path.read_text())["state"] == "done"

    wait_for(delivered)
    mon.close()
    again = monitor(tmp_path)
    path = resume_checkpoint(again)
    assert path == str(run / "checkpoint-1")
    start = StartStep()
    trainer(again, digits, save_strategy="no",
            callbacks=[ColabtuiCallback(again), start]).train(resume_from_checkpoint=path)
    assert start.step == 1 and again.state == "finished" and again.step == 8
    again.close()


def test_a_stop_saves_then_ends_training_and_the_trainer_resumes_from_it(tmp_path, digits):
    mon = monitor(tmp_path)
    mon.commands.submit("stop-1", "stop")
    out = trainer(mon, digits).train()
    record = mon.commands.get("stop-1")
    assert out.global_step == 1 and mon.state == "stopped" and record.state == "done"
    assert record.checkpoint.path == str(tmp_path / "run" / "checkpoint-1")
    mon.close()
    again = monitor(tmp_path)
    start = StartStep()
    trainer(again, digits, callbacks=[ColabtuiCallback(again), start]).train(
        resume_from_checkpoint=resume_checkpoint(again))
    assert start.step == 1 and again.state == "finished"
    again.close()


def test_a_half_written_newest_checkpoint_is_skipped_and_the_previous_resumes(tmp_path, digits):
    mon = monitor(tmp_path)
    trainer(mon, digits).train()
    mon.close()
    run = tmp_path / "run"
    with open(run / "checkpoint-8" / "model.safetensors", "r+b") as f:
        f.truncate(10)
    shutil.copytree(run / "checkpoint-4", run / "checkpoint-12")  # never listed
    again = monitor(tmp_path)
    with pytest.warns(CheckpointWarning) as caught:
        path = resume_checkpoint(again)
    assert path == str(run / "checkpoint-4")
    said = " | ".join(str(w.message) for w in caught)
    assert "checkpoint-8 (step 8) is unusable: model.safetensors has 10 bytes" in said
    assert "checkpoint-12: not listed in the manifest" in said
    start = StartStep()
    trainer(again, digits, callbacks=[ColabtuiCallback(again), start]).train(
        resume_from_checkpoint=path)
    assert start.step == 4 and again.step == 8
    again.close()


def test_stopped_by_sigterm_and_resumed_in_a_new_process_equals_a_straight_run(example,
                                                                              tmp_path):
    """HF's own resume (model, optimizer, scheduler, RNG states, and skipping the batches of the
    interrupted epoch with ``skip_first_batches``) gives every parameter bitwise equal to a
    straight run on the CPU, dropout included."""
    common = ["--steps", 40, "--save-steps", 1000, "--autosave-every", 0, "--run", "hf"]
    straight = example("train_digits_hf.py", [*common, "--checkpoint-dir", tmp_path / "a",
                                              "--dump-params", tmp_path / "a.pt"])
    straight.start(serve=False)
    stopped = example("train_digits_hf.py", [*common, "--checkpoint-dir", tmp_path / "b",
                                             "--step-delay", 0.1,
                                             "--dump-params", tmp_path / "b.pt"])
    stopped.start()
    with stopped.client() as c:
        wait_step(c, 3)
        first = send(c, "save", "save-1")
        assert send(c, "save", "save-1") == first  # the same id twice: the same record
        done = outcome(c, "save-1")
        assert done.state == "done" and os.path.basename(done.checkpoint.path).startswith(
            "checkpoint-")
        assert status(c).checkpoint.last.path == done.checkpoint.path
        wait_for(lambda: "loss" in metrics(c), timeout=60)  # logging_steps=10
        stopped.signal(signal.SIGTERM)  # a VM being preempted: save, then stop
        assert stopped.wait() == 0
    assert straight.wait() == 0, straight.output()
    said = stopped.output()
    assert "stopped at step" in said and "train_digits_hf: stopped" in said, said
    saved = [c.step for c in read_manifest(tmp_path / "b")]
    assert saved[0] == done.checkpoint.step and len(saved) == 2  # the save acted once
    assert saved[-1] < 40
    resumed = example("train_digits_hf.py", [*common, "--checkpoint-dir", tmp_path / "b",
                                             "--dump-params", tmp_path / "b.pt"])
    resumed.start(serve=False)
    assert resumed.wait() == 0, resumed.output()
    assert f"resuming hf at step {saved[-1]}" in resumed.output()
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
