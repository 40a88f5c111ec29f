"""The runtime's platform, age and limits (colabtui_remote.runtime), the save ahead of a known
limit (Saver.limit_at, with a real checkpoint folder and a real training loop), and the
status's ``runtime`` object on the wire."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from colabtui_remote import Monitor, schema, wire
from colabtui_remote.checkpoint.writer import Checkpointer
from colabtui_remote.commands import CommandBook
from colabtui_remote.runtime import (
    COLAB_FREE_MAX_S,
    COLAB_IDLE_TIMEOUT_S,
    KAGGLE_IDLE_TIMEOUT_S,
    KAGGLE_MAX_S,
    MAX_S_ENV,
    RuntimeClock,
    detect_platform,
    runtime_age_s,
)
from colabtui_remote.saving import Saver

# The variables each platform's notebook image sets (see detect_platform's docstring).
COLAB_ENV = {"COLAB_RELEASE_TAG": "release-colab_20240626-060133_RC00", "COLAB_GPU": "1"}
KAGGLE_ENV = {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "KAGGLE_URL_BASE": "https://www.kaggle.com"}


@pytest.mark.parametrize(("env", "colab_module", "platform"), [
    (COLAB_ENV, False, "colab"),
    ({"COLAB_GPU": "0"}, False, "colab"),
    ({"COLAB_RELEASE_TAG": "release-colab_20240626"}, False, "colab"),
    ({}, True, "colab"),  # the google.colab package alone
    (KAGGLE_ENV, False, "kaggle"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, False, "kaggle"),
    ({"KAGGLE_URL_BASE": "https://www.kaggle.com"}, False, "kaggle"),
    ({"HOME": "/root", "COLAB_RELEASE_TAG": ""}, False, "other"),
])
def test_the_platform_comes_from_the_documented_variables(env, colab_module, platform):
    assert detect_platform(env, colab_module=colab_module) == platform


def test_the_platform_here_is_other_without_google_colab():
    assert detect_platform({}) == "other"  # the laptop and CI have no google.colab


@pytest.mark.parametrize(("env", "max_s", "idle_s", "note"), [
    (COLAB_ENV, COLAB_FREE_MAX_S, COLAB_IDLE_TIMEOUT_S, "up to 12 h free, 24 h paid"),
    (KAGGLE_ENV, KAGGLE_MAX_S, KAGGLE_IDLE_TIMEOUT_S, "12 h a CPU/GPU session"),
    ({}, None, None, None),
    ({**COLAB_ENV, MAX_S_ENV: "86400"}, 86400.0, COLAB_IDLE_TIMEOUT_S, "max set by"),
    ({MAX_S_ENV: "3600"}, 3600.0, None, "max set by COLABTUI_RUNTIME_MAX_S"),
    ({**KAGGLE_ENV, MAX_S_ENV: "0"}, None, KAGGLE_IDLE_TIMEOUT_S, "max set by"),
    ({**COLAB_ENV, MAX_S_ENV: "a day"}, COLAB_FREE_MAX_S, COLAB_IDLE_TIMEOUT_S, "12 h free"),
    ({**COLAB_ENV, MAX_S_ENV: "-5"}, COLAB_FREE_MAX_S, COLAB_IDLE_TIMEOUT_S, "12 h free"),
])
def test_the_limits_are_the_documented_ones_unless_configured(env, max_s, idle_s, note):
    clock = RuntimeClock(now=0.0, env=env, colab_module=False)
    assert (clock.max_s, clock.idle_timeout_s) == (max_s, idle_s)
    assert (clock.limit_note is None) if note is None else (note in clock.limit_note)


def fake_proc(tmp_path, uptime_s: float, pid1_start_s: float, name: str = "docker-init"):
    """A procfs folder: ``uptime`` and ``1/stat`` as proc(5) lays them out."""
    ticks = int(pid1_start_s * os.sysconf("SC_CLK_TCK"))
    (tmp_path / "1").mkdir()
    (tmp_path / "uptime").write_text(f"{uptime_s:.2f} 12.00\n")
    fields = ["S", "0", "1", "1", "0", "-1", "4194560"] + ["0"] * 12 + [str(ticks), "0", "0"]
    (tmp_path / "1" / "stat").write_text(f"1 ({name}) " + " ".join(fields) + "\n")
    return tmp_path


def test_the_age_is_the_uptime_less_pid_1s_start(tmp_path):
    proc = fake_proc(tmp_path, uptime_s=40_000.0, pid1_start_s=3_000.0, name="a (b) c")
    assert runtime_age_s(proc) == pytest.approx(37_000.0, abs=0.02)


def test_the_age_falls_back_to_the_uptime_then_to_unknown(tmp_path):
    (tmp_path / "uptime").write_text("5000.50 1.00\n")
    assert runtime_age_s(tmp_path) == 5000.5  # no 1/stat: since boot
    assert runtime_age_s(tmp_path / "none") is None  # no procfs (macOS)


def test_the_real_proc_gives_an_age_no_greater_than_the_uptime():
    age = runtime_age_s()
    if os.path.exists("/proc/uptime"):
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        assert 0.0 <= age <= uptime + 1.0
    else:
        assert age is None


def test_the_save_is_due_the_margin_before_the_maximum_less_the_age(tmp_path):
    proc = fake_proc(tmp_path, uptime_s=11 * 3600.0, pid1_start_s=600.0)  # 10 h 50 min old
    clock = RuntimeClock(900.0, now=1000.0, env=COLAB_ENV, proc=proc, colab_module=False)
    age0 = 11 * 3600.0 - 600.0
    assert clock.age_s(1000.0) == pytest.approx(age0, abs=0.02)
    assert clock.age_s(1060.0) == pytest.approx(age0 + 60.0, abs=0.02)
    assert clock.save_at == pytest.approx(1000.0 + 12 * 3600 - 900 - age0, abs=0.02)
    unknown = RuntimeClock(900.0, now=50.0, env=KAGGLE_ENV, proc=tmp_path / "none")
    assert unknown.age_s(60.0) is None
    assert unknown.save_at == 50.0 + KAGGLE_MAX_S - 900.0  # counted from the Monitor's start
    assert RuntimeClock(now=0.0, env={}, colab_module=False).save_at is None


# --------------------------------------------------------------------------- the policy


def tiny_state():
    model = torch.nn.Linear(3, 2)
    return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}


def saver_on(tmp_path, autosave_every, limit_at):
    ckpt = Checkpointer(tmp_path / "ckpt", keep=10)
    state = {"s": "running"}
    tracked = tiny_state()
    saver = Saver(ckpt, CommandBook(), lambda: tracked, lambda: state["s"],
                  lambda s: state.update(s=s), autosave_every, 0.0, limit_at=limit_at)
    return saver, ckpt


def run_boundaries(saver, ckpt, times):
    """Call the saver at step boundaries 1, 2… at the given monotonic times; the steps saved."""
    for step, now in enumerate(times, start=1):
        if now >= saver.next_autosave or saver.commands.has_pending():
            saver.act(now, step, None)
            ckpt.wait()
    return [c.step for c in ckpt.list()]


def test_the_limit_brings_the_autosave_forward_once(tmp_path):
    saver, ckpt = saver_on(tmp_path, autosave_every=1000.0, limit_at=100.0)
    assert saver.next_autosave == 100.0
    saved = run_boundaries(saver, ckpt, [50.0, 99.0, 100.0, 101.0, 500.0, 1099.0, 1100.0])
    assert saved == [3, 7]  # at the limit, then autosave_every after it: not twice
    assert saver.limit_at == float("inf") and saver.next_autosave == 2100.0
    ckpt.close()


def test_the_limit_saves_with_autosave_off_and_a_save_before_it_keeps_it(tmp_path):
    saver, ckpt = saver_on(tmp_path, autosave_every=None, limit_at=100.0)
    saver.commands.submit("c1", "save")
    saved = run_boundaries(saver, ckpt, [10.0, 20.0, 100.0, 200.0, 10_000.0])
    assert saved == [1, 3]  # the command's save, then the limit's
    assert saver.next_autosave == float("inf")
    ckpt.close()


def test_a_limit_already_passed_is_due_at_the_first_boundary(tmp_path):
    saver, ckpt = saver_on(tmp_path, autosave_every=600.0, limit_at=-50.0)
    assert run_boundaries(saver, ckpt, [0.5, 1.0, 2.0]) == [1]
    assert saver.next_autosave == 600.5
    ckpt.close()


# --------------------------------------------------------------------------- the Monitor


def train(mon, steps):
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mon.track(model=model, optimizer=opt)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in mon.steps(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        mon.log(loss=loss.detach())


def test_a_monitor_past_its_configured_limit_saves_at_the_first_boundary(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_S_ENV, "1")  # a runtime older than 1 s less the margin: due now
    mon = Monitor(run="limit", checkpoint_dir=tmp_path / "ckpt", autosave_every=None,
                  handle_sigterm=False, limit_margin_s=0.5)
    try:
        before = mon.status()
        assert before.runtime.max_s == 1.0 and "COLABTUI_RUNTIME_MAX_S" in before.runtime.limit_note
        assert before.checkpoint.next_autosave_at <= before.server_time  # due now
        assert before.checkpoint.autosave_every_s is None
        train(mon, 6)
        steps = [c.step for c in mon.checkpointer.list()]
        assert steps == [1, 6]  # ahead of the limit at step 1, once; the last at the end
        assert mon.status().checkpoint.next_autosave_at is None  # finished
    finally:
        mon.close()


def test_a_monitor_far_from_its_limit_reports_it_and_saves_on_its_schedule(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_S_ENV, str(10**9))
    mon = Monitor(run="far", checkpoint_dir=tmp_path / "ckpt", autosave_every=None,
                  handle_sigterm=False)
    try:
        status = mon.status()
        assert status.runtime.platform == detect_platform()
        age = status.runtime.age_s
        assert age is None or age >= 0
        assert status.checkpoint.next_autosave_at > status.server_time + 10**9 - 900 - (
            age or 0) - 60
        train(mon, 4)
        assert [c.step for c in mon.checkpointer.list()] == [4]
    finally:
        mon.close()


def test_the_runtime_object_round_trips_the_wire(monkeypatch):
    monkeypatch.delenv(MAX_S_ENV, raising=False)
    mon = Monitor(run="wire", autosave_every=None, handle_sigterm=False)
    try:
        sent = mon.status()
        parsed = schema.parse_status(wire.loads(wire.dumps(schema.status_to_wire(sent))))
        assert parsed.runtime == sent.runtime and parsed.runtime.invalid == ()
        kaggle = schema.RuntimeInfo(platform="kaggle", age_s=3600.5, max_s=KAGGLE_MAX_S,
                                    idle_timeout_s=1200.0, limit_note="Kaggle: 12 h")
        doc = schema.status_to_wire(sent)
        doc["runtime"] = schema.status_to_wire(schema.Status(
            protocol=3, run="r", session_id="s", label="", state="running", step=0,
            runtime=kaggle))["runtime"]
        assert schema.parse_status(wire.loads(wire.dumps(doc))).runtime == kaggle
        del doc["runtime"]  # an older session: no runtime object
        assert schema.parse_status(wire.loads(wire.dumps(doc))).runtime is None
    finally:
        mon.close()
