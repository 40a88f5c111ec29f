"""What ``Monitor.track()`` takes is saved and restored exactly, or refused at ``track()``; a
state that cannot be captured is a failed save, reported; state-dict wrapper prefixes.

Real torch on CPU, real checkpoint files in tmp_path, the Monitor's own resume; the capture
failure is read over real HTTP from a Monitor training the digits model.
"""

from __future__ import annotations

import logging
import random
import time
import uuid

import numpy as np
import pytest
import torch
from colabtui_remote import Monitor, schema
from colabtui_remote.checkpoint import CheckpointError, capture_state, restore
from colabtui_remote.checkpoint.trackable import ACCEPTED
from digits_training import save_over_http, status_over_http, wait_for


def monitor(folder, **kw) -> Monitor:
    return Monitor(run="tracking", checkpoint_dir=folder, autosave_every=None,
                   handle_sigterm=False, **kw)


def as_bytes(value) -> bytes:
    """What a draw is, bit for bit (a tensor, an array, a float or an int)."""
    if isinstance(value, torch.Tensor):
        return value.numpy().tobytes()
    return np.asarray(value).tobytes()


# --------------------------------------------------------------------------- what is saved


class Shuffler:
    """A user object with its own state dict: a position and a private torch generator."""

    def __init__(self, seed: int) -> None:
        self.position = 0
        self.gen = torch.Generator().manual_seed(seed)

    def draw(self) -> torch.Tensor:
        self.position += 1
        return torch.randperm(8, generator=self.gen) + self.position

    def state_dict(self) -> dict:
        return {"position": self.position, "gen": self.gen.get_state()}

    def load_state_dict(self, sd: dict) -> None:
        self.position = sd["position"]
        self.gen.set_state(sd["gen"])


# kind → (make(seed), draw(obj)): each draws from the object's own state only.
KINDS = {
    "torch_generator": (lambda s: torch.Generator().manual_seed(s),
                        lambda g: torch.randn(5, generator=g)),
    "numpy_generator": (np.random.default_rng, lambda g: g.standard_normal(5)),  # PCG64
    "numpy_generator_philox": (lambda s: np.random.Generator(np.random.Philox(s)),
                               lambda g: g.integers(0, 2**62, 5)),
    "numpy_random_state": (np.random.RandomState,
                           lambda r: (r.randn(3), r.randint(0, 1000, 3))),  # gauss cached
    "python_random": (random.Random, lambda r: (r.random(), r.gauss(0, 1), r.getrandbits(64))),
    "state_dict": (Shuffler, lambda s: s.draw()),
}


def draws(draw, obj) -> bytes:
    out = draw(obj)
    return b"".join(as_bytes(v) for v in (out if isinstance(out, tuple) else (out,)))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_trackable_kind_resumes_bitwise_through_a_checkpoint(tmp_path, kind):
    make, draw = KINDS[kind]
    obj = make(1)
    draws(draw, obj)  # not at its seed's start
    mon = monitor(tmp_path)
    mon.track(x=obj)
    for _ in mon.steps(3):
        draws(draw, obj)
    status = mon.status().checkpoint
    mon.close()
    assert status.last_error is None and status.last is not None and status.last.step == 3
    expected = [draws(draw, obj) for _ in range(3)]  # what the run would have drawn next

    saved = torch.load(status.last.path, weights_only=True)  # plain types and tensors only
    assert saved["tracked"]["x"]["kind"] == kind.replace("_philox", "")

    other = make(2)
    resumed = monitor(tmp_path)
    resumed.track(x=other)
    assert resumed.resume() == 3
    assert [draws(draw, other) for _ in range(3)] == expected
    resumed.close()


def test_plain_values_come_back_in_extras_bitwise(tmp_path):
    values = {"best": 0.1 + 0.2, "count": 2**70, "name": "run-α", "raw": b"\x00\xff",
              "np_scalar": np.float32(0.3), "flag": True, "nothing": None,
              "nested": {"ids": [1, 2, (3, 4)], "w": torch.randn(3, dtype=torch.float64)}}
    mon = monitor(tmp_path)
    mon.track(**values)
    for _ in mon.steps(1):
        pass
    mon.close()
    resumed = monitor(tmp_path)
    resumed.track(**dict.fromkeys(values))  # placeholders, as a fresh notebook has them
    resumed.resume()
    got = resumed.extras
    resumed.close()
    assert as_bytes(got["best"]) == as_bytes(0.1 + 0.2)
    assert got["np_scalar"] == float(np.float32(0.3))  # a plain float now
    assert (got["count"], got["name"], got["raw"], got["flag"], got["nothing"]) == (
        2**70, "run-α", b"\x00\xff", True, None)
    assert got["nested"]["ids"] == [1, 2, (3, 4)]
    assert torch.equal(got["nested"]["w"], values["nested"]["w"])


def test_a_generator_of_another_kind_or_bit_generator_is_refused_on_resume_untouched(tmp_path):
    mon = monitor(tmp_path)
    mon.track(model=torch.nn.Linear(2, 2), gen=np.random.default_rng(1))
    for _ in mon.steps(1):
        pass
    mon.close()
    for wrong, why in [(np.random.Generator(np.random.MT19937(5)),
                        "gen: saved from a PCG64 bit generator, tracked now with a MT19937"),
                       (torch.Generator(), "gen: saved as a numpy.random.Generator but tracked "
                                           "now as a torch.Generator")]:
        model = torch.nn.Linear(2, 2)
        before = model.weight.detach().clone()
        resumed = monitor(tmp_path)
        resumed.track(model=model, gen=wrong)
        with pytest.raises(CheckpointError, match=why):
            resumed.resume()
        resumed.close()
        assert torch.equal(model.weight, before)  # checked before anything was loaded


# --------------------------------------------------------------------------- what is refused


class SavesOnly:
    def state_dict(self) -> dict:
        return {}


looped: list = [1]
looped.append(looped)


@pytest.mark.parametrize(("make", "type_name", "hint"), [
    (lambda f: (lambda batch: batch), "builtins.function", "track the values it works with"),
    (lambda f: f, "_io.TextIOWrapper", "track its name and position (f.name, f.tell())"),
    (lambda f: np.zeros(3), "numpy.ndarray", "torch.from_numpy(x) or x.tolist()"),
    (lambda f: random.SystemRandom(), "random.SystemRandom", "use random.Random(seed)"),
    (lambda f: np.random.PCG64(1), "numpy.random._pcg64.PCG64",
     "track numpy.random.Generator(bit_generator) instead"),
    (lambda f: SavesOnly(), "test_state_tracking.SavesOnly",
     "it has state_dict() but no load_state_dict()"),
    (lambda f: object(), "builtins.object",
     "wrap its state in an object with state_dict() and load_state_dict()"),
])
def test_what_cannot_be_saved_is_refused_at_track(tmp_path, make, type_name, hint):
    mon = monitor(tmp_path)
    with open(tmp_path / "data.txt", "w") as f, pytest.raises(TypeError) as err:
        mon.track(lr=3e-4, x=make(f))
    message = str(err.value)
    assert message.startswith(f"track(x=...): a {type_name} cannot be saved in a checkpoint; ")
    assert hint in message and message.endswith(f"track() takes {ACCEPTED}")
    assert mon.extras == {}  # nothing of the refused call is tracked
    mon.close()


@pytest.mark.parametrize(("value", "where"), [
    ({"lr": 0.1, "schedule": [1, lambda step: step]}, "x['schedule'][1] is a builtins.function"),
    ({"stats": np.ones(2)}, "x['stats'] is a numpy.ndarray"),
    ({(1, 2): 0.5}, "x has the key (1, 2), a builtins.tuple"),
    (looped, "x[1] contains itself"),
])
def test_a_plain_value_is_refused_where_its_bad_part_is(tmp_path, value, where):
    mon = monitor(tmp_path)
    with pytest.raises(TypeError) as err:
        mon.track(x=value)
    assert str(err.value).startswith(f"track(x=...): {where}")
    mon.close()


def test_data_loaders_are_taken_as_they_are(tmp_path):
    class Resumable(torch.utils.data.DataLoader):  # as torchdata's StatefulDataLoader is
        def state_dict(self) -> dict:
            return {}

    mon = monitor(tmp_path)
    plain = torch.utils.data.DataLoader(list(range(8)), batch_size=2)
    mon.track(loader=plain, resumable=Resumable(list(range(8))))  # neither is refused
    assert mon.extras == {}  # neither is a plain value: each is tracked by its data order
    from colabtui_remote.data_order import ResumableSampler
    assert isinstance(plain.batch_sampler, ResumableSampler)
    assert [type(mon._tracked[k]) for k in ("loader", "resumable")] == [ResumableSampler] * 2
    mon.close()


# --------------------------------------------------------------------------- a failed capture


class Broken:
    """Tracked fine; its state cannot be read when a save comes."""

    def state_dict(self) -> dict:
        raise RuntimeError("no state today")

    def load_state_dict(self, sd: dict) -> None:
        pass


def captures_logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "could not capture the training state" in r.getMessage()]


def test_a_capture_failure_is_a_failed_save_in_the_status_and_the_command(served, tmp_path,
                                                                             caplog):
    caplog.set_level(logging.INFO)
    mon, client, thread = served(checkpoint_dir=tmp_path)
    mon.track(broken=Broken())
    wait_for(lambda: mon.step > 5)
    before = time.time()
    record = save_over_http(client)
    assert record.state == "failed"
    assert "could not capture the training state: broken: state_dict() failed: no state today" \
        in record.error
    status = status_over_http(client)
    assert status.checkpoint.last_error == record.error
    assert before <= status.checkpoint.last_error_at <= time.time()
    assert status.checkpoint.last is None and status.state == "running"
    assert len(captures_logged(caplog)) == 1  # logged once, not once per layer
    assert thread.is_alive(), "a failed save must not end the run"

    cid = str(uuid.uuid4())  # a stop that cannot save does not stop: the work would be lost
    assert client.post("/v1/commands", json={"id": cid, "action": "stop"}).status_code == 202

    def stopped():
        r = schema.parse_command(client.get(f"/v1/commands/{cid}").json())
        return r if r.state in ("done", "failed") else None

    stop = wait_for(stopped)
    assert stop.state == "failed" and stop.error.startswith("not stopped: the checkpoint failed")
    assert "no state today" in stop.error and thread.is_alive()


def test_a_run_whose_final_save_cannot_capture_says_so(tmp_path, caplog):
    mon = monitor(tmp_path)
    mon.track(model=torch.nn.Linear(2, 2), broken=Broken())
    for _ in mon.steps(2):
        pass
    status = mon.status()
    mon.close()
    assert status.state == "finished" and status.checkpoint.last is None
    assert status.checkpoint.last_error == ("checkpoint at step 2 not saved: could not capture "
                                            "the training state: broken: state_dict() failed: "
                                            "no state today")
    assert len(captures_logged(caplog)) == 1


# --------------------------------------------------------------------------- key prefixes


class Holder(torch.nn.Module):
    """A model whose only child is really called ``module``: every key starts with
    ``module.`` without any wrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))


class WithHead(torch.nn.Module):
    """A child called ``module`` beside another: ``module.`` is not a prefix of every key."""

    def __init__(self) -> None:
        super().__init__()
        self.module = torch.nn.Linear(4, 3)
        self.head = torch.nn.Linear(3, 2)


MODELS = {
    "plain": lambda: torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(),
                                         torch.nn.Linear(3, 2)),
    "child-module": Holder,
    "child-module+head": WithHead,
}

# DataParallel on the CPU is a plain wrapper with DDP's `module.` keys; torch.compile wraps
# in an OptimizedModule (keys `_orig_mod.`) and compiles only on the first call, never made.
WRAPS = {
    "plain": lambda m: m,
    "compiled": lambda m: torch.compile(m, backend="eager"),
    "ddp": torch.nn.DataParallel,
    "compiled(ddp)": lambda m: torch.compile(torch.nn.DataParallel(m), backend="eager"),
    "ddp(compiled)": lambda m: torch.nn.DataParallel(torch.compile(m, backend="eager")),
}
PREFIX_OF = {"plain": "", "compiled": "_orig_mod.", "ddp": "module.",
             "compiled(ddp)": "_orig_mod.module.", "ddp(compiled)": "module._orig_mod."}


def trained(make, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = make()
    for m in model.modules():  # buffers too: BatchNorm's running stats and count
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.num_batches_tracked.fill_(seed)
    return model


@pytest.mark.parametrize(("family", "saved_with", "loaded_into"), [
    pytest.param(family, saved, loaded, id=f"{family}: {saved} into {loaded}")
    for family in MODELS for saved in WRAPS for loaded in WRAPS])
def test_every_wrapper_layout_loads_into_every_other_bitwise(family, saved_with, loaded_into):
    source, target = trained(MODELS[family], 1), trained(MODELS[family], 2)
    saved_model = WRAPS[saved_with](source)
    assert all(k.startswith(PREFIX_OF[saved_with]) for k in saved_model.state_dict())
    state = capture_state({"model": saved_model}, 0, None)
    restore({"model": WRAPS[loaded_into](target)}, state)
    want, got = source.state_dict(), target.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_resume_prints_one_line_per_reconciled_module(tmp_path, capsys):
    model, ema = trained(MODELS["plain"], 1), trained(MODELS["plain"], 3)
    mon = monitor(tmp_path)
    mon.track(model=torch.nn.DataParallel(model), ema=torch.compile(ema, backend="eager"),
              bias=torch.nn.Linear(2, 2))
    for _ in mon.steps(1):
        pass
    mon.close()
    capsys.readouterr()

    model2, ema2 = trained(MODELS["plain"], 2), trained(MODELS["plain"], 4)
    resumed = monitor(tmp_path)
    resumed.track(model=torch.compile(model2, backend="eager"),
                  ema=torch.nn.DataParallel(torch.compile(ema2, backend="eager")),
                  bias=torch.nn.Linear(2, 2))
    resumed.resume()
    resumed.close()
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if "reconciled" in line] == [
        "colabtui: model: checkpoint keys reconciled (4 keys): stripped prefix module., "
        "added prefix _orig_mod.",
        "colabtui: ema: checkpoint keys reconciled (4 keys): added prefix module."]
    for a, b in ((model, model2), (ema, ema2)):
        for key, value in a.state_dict().items():
            assert torch.equal(b.state_dict()[key], value), key
