"""What a checkpoint holds: capture on the training thread, restore on resume.

A checkpoint state is a plain nested structure (dicts, lists, tuples, numbers, strings and CPU
tensors) that ``torch.load(weights_only=True)`` reads back without unpickling any class::

    {"format": "colabtui-checkpoint", "format_version": 1,
     "step": 1200, "epoch": 3, "captured_at": 1700000000.0, "torch": "2.4.0",
     "tracked": {"model": {"kind": "state_dict", "state": {...}},
                 "gen": {"kind": "torch_generator", "device": "cpu", "state": <uint8 tensor>},
                 "best_acc": {"kind": "value", "value": 0.91}, ...},
     "rng": {"python": [...], "numpy": {...} or None, "torch_cpu": <uint8 tensor>,
             "cuda": [<uint8 tensor>, ...] or None}}

The kinds of the ``tracked`` entries, and the check ``Monitor.track()`` makes, are
:mod:`.trackable`'s; fitting a saved state dict to its module or optimizer is
:mod:`.state_dicts`'.

torch is imported only when a state is captured or restored, so the package imports without it.
Writing a state to a file (:func:`save_state`) and reading one back (:func:`load_state`) live
here too: every torch import of the checkpoint wing is in this module (the two above use the
objects they are given).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from .errors import CheckpointError
from .state_dicts import check_optimizer_state, fit_module_state
from .trackable import (
    GENERATOR_KINDS,
    PLAIN_SCALARS,
    capture_generator,
    check_generator,
    describe_kind,
    kind_of,
    numpy_scalar,
    restore_generator,
)

logger = logging.getLogger("colabtui_remote.checkpoint")

FORMAT = "colabtui-checkpoint"
FORMAT_VERSION = 1

def require_torch() -> Any:
    """Import torch on first use.

    Raises:
        ImportError: torch is not installed.
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError("checkpoints need torch: pip install torch") from exc
    return torch


# --------------------------------------------------------------------------- capture


def capture_state(tracked: dict[str, Any], step: int, epoch: int | None) -> dict:
    """Copy everything a checkpoint holds to CPU, on the calling (training) thread.

    Tensors are copied (``detach().clone()`` on CPU, ``detach().to("cpu")`` elsewhere) so later
    training steps cannot change what is written. Tensors shared between entries (tied weights)
    stay shared in the copy.

    Args:
        tracked: name → object. Objects with ``state_dict()`` (model, optimizer, scheduler,
            ``torch.amp.GradScaler``, user extras) are stored by their state dict; a
            ``torch.Generator``, ``numpy.random.Generator`` or ``RandomState`` and a
            ``random.Random`` by their generator state (see :mod:`.trackable`); anything else
            must be a plain value (numbers, strings, bytes, lists, tuples, dicts, tensors).
            ``None`` entries are skipped.
        step: the training step the state belongs to.
        epoch: the epoch, or ``None``.

    Returns:
        The checkpoint state (see the module docstring), CPU tensors and plain types only.

    Raises:
        ImportError: torch is not installed.
        CheckpointError: a value cannot be stored as a plain type (e.g. a NumPy array or an
            arbitrary object), or a ``state_dict()`` or generator state call raised; the
            message names where it is.
    """
    torch = require_torch()
    copier = _Copier(torch)
    out: dict[str, Any] = {}
    for name, obj in tracked.items():
        if obj is None:
            continue
        if not isinstance(name, str):
            raise CheckpointError(f"tracked names must be strings, got {name!r}")
        kind = kind_of(obj)
        if kind == "state_dict":
            try:
                sd = obj.state_dict()
            except Exception as exc:
                raise CheckpointError(f"{name}: state_dict() failed: {exc}") from exc
            out[name] = {"kind": "state_dict", "state": copier.copy(sd, name)}
        elif kind in GENERATOR_KINDS:
            try:
                out[name] = capture_generator(kind, obj)
            except Exception as exc:
                raise CheckpointError(f"{name}: cannot read the {kind} state: {exc}") from exc
        else:
            out[name] = {"kind": "value", "value": copier.copy(obj, name)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "epoch": None if epoch is None else int(epoch),
        "captured_at": time.time(),
        "torch": str(torch.__version__),
        "tracked": out,
        "rng": _capture_rng(torch),
    }


def state_nbytes(state: Any) -> int:
    """Bytes of tensor data in ``state`` (an estimate of the file size; pickled structure
    and zip headers add a little)."""
    torch = require_torch()
    total = 0
    seen: set[int] = set()
    stack = [state]
    while stack:
        obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            if id(obj) not in seen:
                seen.add(id(obj))
                total += obj.untyped_storage().nbytes()
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
    return total


class _Copier:
    """Deep copy into plain types, keeping tensor aliasing (tied weights stay tied)."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.memo: dict[tuple, Any] = {}
        self.keep_alive: list[Any] = []  # addresses in memo stay valid while originals live

    def copy(self, obj: Any, where: str) -> Any:
        torch = self.torch
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            # state_dict() hands out a fresh detached tensor per key, so tied weights are
            # recognised by the memory they view, not by identity.
            key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.dtype,
                   tuple(t.shape), tuple(t.stride()))
            done = self.memo.get(key)
            if done is not None:
                return done
            # clone() on CPU: a plain .to("cpu") would return the same tensor, which the next
            # optimizer step mutates in place while the writer is still reading it.
            copied = t.clone() if t.device.type == "cpu" else t.to("cpu")
            self.memo[key] = copied
            self.keep_alive.append(t)
            return copied
        if isinstance(obj, (*PLAIN_SCALARS, torch.Size, torch.dtype, torch.device)):
            return obj
        if isinstance(obj, dict):
            out = OrderedDict() if isinstance(obj, OrderedDict) else {}
            for key, value in obj.items():
                if not isinstance(key, (str, int, float, bool, type(None))):
                    raise CheckpointError(
                        f"{where}: key {key!r} is a {type(key).__name__}; checkpoint keys must be "
                        "str, int, float, bool or None")
                out[key] = self.copy(value, f"{where}[{key!r}]")
            meta = getattr(obj, "_metadata", None)
            if isinstance(out, OrderedDict) and isinstance(meta, dict):
                # nn.Module state dicts carry per-submodule versions here; load_state_dict
                # uses them to upgrade old layouts (e.g. BatchNorm's num_batches_tracked).
                out._metadata = self.copy(meta, f"{where}._metadata")  # type: ignore[attr-defined]
            return out
        if isinstance(obj, (list, tuple)):
            items = [self.copy(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else tuple(items)
        numpy_item = numpy_scalar(obj)
        if numpy_item is not None:
            return numpy_item
        hint = ""
        if type(obj).__module__ == "numpy":
            hint = "; convert it with torch.from_numpy(x) or x.tolist()"
        raise CheckpointError(
            f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored in a "
            f"checkpoint loadable with torch.load(weights_only=True){hint}")


def saved_values(state: dict) -> dict[str, Any]:
    """The plain-valued entries of a checkpoint state (``{"best_acc": 0.91}``), without torch."""
    tracked = state.get("tracked") if isinstance(state, dict) else None
    if not isinstance(tracked, dict):
        return {}
    return {name: entry.get("value") for name, entry in tracked.items()
            if isinstance(entry, dict) and entry.get("kind") == "value"}


# --------------------------------------------------------------------------- RNG


def _capture_rng(torch: Any) -> dict:
    version, internal, gauss_next = random.getstate()
    rng: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": None,
        "torch_cpu": torch.get_rng_state(),
        "cuda": None,
    }
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        # Plain types: an ndarray would need unsafe unpickling on load.
        rng["numpy"] = {"algorithm": str(name), "keys": [int(k) for k in keys], "pos": int(pos),
                        "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    if torch.cuda.is_available():
        rng["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return rng


def _restore_rng(torch: Any, rng: Any, notes: list[str]) -> None:
    if not isinstance(rng, dict):
        raise CheckpointError("rng: missing or not a dict")
    try:
        version, internal, gauss_next = rng["python"]
        random.setstate((version, tuple(internal), gauss_next))
        torch.set_rng_state(rng["torch_cpu"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"rng: cannot restore the Python/torch RNG state: {exc}") from exc
    state_np = rng.get("numpy")
    if state_np is not None:
        try:
            import numpy as np
        except ImportError:
            np = None
            _note(notes, "rng: NumPy RNG state not restored: numpy is not installed")
        if np is not None:
            try:
                np.random.set_state((state_np["algorithm"], np.array(state_np["keys"], dtype=np.uint32),
                                     state_np["pos"], state_np["has_gauss"], state_np["cached_gaussian"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"rng: cannot restore the NumPy RNG state: {exc}") from exc
    cuda = rng.get("cuda")
    if cuda:
        if not torch.cuda.is_available():
            _note(notes, f"rng: CUDA RNG states of {len(cuda)} device(s) not restored: "
                         "CUDA is not available here")
            return
        count = torch.cuda.device_count()
        for index, state in enumerate(cuda[:count]):
            torch.cuda.set_rng_state(state, index)
        if count != len(cuda):
            _note(notes, f"rng: checkpoint has CUDA RNG states for {len(cuda)} device(s), this "
                         f"runtime has {count}; restored {min(count, len(cuda))}")


# --------------------------------------------------------------------------- restore


def restore(tracked: dict[str, Any], state: dict) -> list[str]:
    """Load a checkpoint state into the tracked objects and set the RNG states.

    Objects with ``load_state_dict()`` get their saved state dict (modules strictly, after
    prefix reconciliation); generators (``torch.Generator``, NumPy ``Generator`` and
    ``RandomState``, ``random.Random``) get their saved state, so their next draws are the ones
    the saved run would have made; plain values are put back into ``tracked`` under their name
    (also where ``tracked`` holds ``None`` as a placeholder; :func:`saved_values` lists them
    all). ``torch.optim.Optimizer.load_state_dict`` moves optimizer state to its parameters'
    device. Presence, kinds, module keys and shapes, optimizer parameter groups and generator
    types are all checked before anything is loaded, so those mismatches leave every object
    untouched.

    Each module whose keys were reconciled (``torch.compile``'s ``_orig_mod.``, DataParallel's
    or DDP's ``module.``; see :func:`~.state_dicts.fit_module_state`) gets one line printed
    (flushed) once everything is loaded, so a notebook shows it, e.g. ``colabtui: model:
    checkpoint keys reconciled (4 keys): stripped prefix module., added prefix _orig_mod.``

    Args:
        tracked: name → object, as given to :func:`capture_state` (``None`` entries skipped).
        state: a checkpoint state, e.g. from :func:`colabtui_remote.checkpoint.resume.load_resumable`.

    Returns:
        Human-readable notes, e.g. ``"model: stripped prefix _orig_mod. from 4 keys"`` (one
        per prefix stripped or added; each is also logged at INFO).

    Raises:
        ImportError: torch is not installed.
        CheckpointError: not a checkpoint state, a tracked object missing from it or saved as
            another kind, a state dict that does not fit its object (keys, shapes, parameter
            groups), or a generator state that does not fit its generator.
    """
    torch = require_torch()
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("not a colabtui checkpoint state (no 'format': "
                              f"{FORMAT!r} field)")
    saved = state.get("tracked")
    if not isinstance(saved, dict):
        raise CheckpointError("checkpoint state has no 'tracked' dict")
    notes: list[str] = []
    reconciled: list[str] = []  # printed once everything is loaded
    plan: list[tuple[str, Any, dict]] = []
    for name, obj in tracked.items():
        entry = saved.get(name)
        if obj is None:
            if isinstance(entry, dict) and entry.get("kind") == "value":
                plan.append((name, None, entry))  # a placeholder for a saved plain value
            continue
        if not isinstance(entry, dict):
            have = ", ".join(sorted(map(str, saved))) or "nothing"
            raise CheckpointError(f"{name}: tracked but not in the checkpoint (it holds: {have})")
        kind, saved_kind = kind_of(obj), entry.get("kind")
        if kind != saved_kind:
            raise CheckpointError(f"{name}: saved as {describe_kind(saved_kind)} but tracked now "
                                  f"as {describe_kind(kind)}")
        if kind == "state_dict" and not callable(getattr(obj, "load_state_dict", None)):
            raise CheckpointError(f"{name}: saved as a state dict but tracked now as an object "
                                  "without load_state_dict()")
        if kind == "state_dict" and isinstance(obj, torch.nn.Module):
            sd, summary = fit_module_state(torch, name, obj, entry.get("state"),
                                           lambda text: _note(notes, text))
            entry = {**entry, "state": sd}
            reconciled += [summary] if summary else []
        elif kind == "state_dict" and isinstance(obj, torch.optim.Optimizer):
            check_optimizer_state(name, obj, entry.get("state"))
        elif kind in GENERATOR_KINDS:
            check_generator(name, obj, entry)
        plan.append((name, obj, entry))
    planned = {name for name, _, _ in plan}
    for name in saved:
        if name not in planned:
            _note(notes, f"{name}: in the checkpoint but not tracked; not restored")
    for name, obj, entry in plan:
        if entry["kind"] == "value":
            tracked[name] = entry.get("value")
            continue
        if entry["kind"] in GENERATOR_KINDS:
            restore_generator(name, obj, entry)
            continue
        sd = entry.get("state")
        if not sd and callable(getattr(obj, "is_enabled", None)):
            # A disabled GradScaler saves {}; its load_state_dict refuses an empty dict.
            if obj.is_enabled():
                _note(notes, f"{name}: saved from a disabled GradScaler; scaler left as it is")
            continue
        try:
            obj.load_state_dict(sd)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{name}: load_state_dict failed: {exc}") from exc
    _restore_rng(torch, state.get("rng"), notes)
    for line in reconciled:
        print(f"colabtui: {line}", flush=True)
    return notes


def _note(notes: list[str], text: str) -> None:
    notes.append(text)
    logger.info("restore: %s", text)


# --------------------------------------------------------------------------- serialize and load

_crc_lock = threading.Lock()


class HashingWriter:
    """The file object torch.save writes to: hashes each chunk as it goes to the file.

    Args:
        f: the binary file written.
        on_bytes: called with the bytes written so far after each chunk (progress).
        writeback: an :class:`~colabtui_remote.checkpoint.fs.EarlyWriteback` on ``f``, or None.

    Attributes:
        sha: the running sha256 of what was written.
        nbytes: bytes written.
        error: the OSError the file raised, if any (torch's zip writer hides it).
    """

    def __init__(self, f: Any, on_bytes: Callable[[int], None], writeback: Any = None) -> None:
        self._f = f
        self._on_bytes = on_bytes
        self._writeback = writeback
        self.sha = hashlib.sha256()
        self.nbytes = 0
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            self._f.write(view)
        except OSError as exc:
            # torch's zip writer turns this into "unexpected pos …"; keep the real reason.
            self.error = exc
            raise
        self.sha.update(view)
        n = view.nbytes
        self.nbytes += n
        self._on_bytes(self.nbytes)
        if self._writeback is not None and self._writeback.wrote(n):
            self._f.flush()
            self._writeback.kick()
        return n

    def flush(self) -> None:
        self._f.flush()


@contextlib.contextmanager
def _zip_crc32_off(torch: Any) -> Iterator[None]:
    """torch.save computes a zip CRC32 of every record; on a 200 MB state that took 0.3 s here,
    three times the write itself, and the sha256 computed while writing covers integrity.
    The switch (torch >= 2.6) is process-wide, so it is held only around our own save."""
    try:
        from torch.utils.serialization import config
        before = config.save.compute_crc32
    except (ImportError, AttributeError):
        yield
        return
    with _crc_lock:
        config.save.compute_crc32 = False
        try:
            yield
        finally:
            config.save.compute_crc32 = before


def save_state(state: dict, out: HashingWriter) -> None:
    """``torch.save`` a captured state into ``out`` (zip CRC32 off: the sha256 covers it).

    Raises:
        OSError: the file failed (the real error, not torch's "unexpected pos").
        Exception: whatever torch.save raises otherwise.
    """
    torch = require_torch()
    try:
        with _zip_crc32_off(torch):
            torch.save(state, out)
    except Exception as exc:
        if out.error is not None and exc is not out.error:
            raise out.error from None
        raise


def load_state(path: str | os.PathLike, step: int | None = None) -> dict:
    """Load a checkpoint file with ``torch.load(weights_only=True)`` (on the CPU) and check it
    is a colabtui checkpoint (holding ``step`` when given). Never falls back to unpickling.

    Raises:
        ImportError: torch is not installed.
        CheckpointError: why it cannot be used (unreadable, unsafe to unpickle, not ours, other
            step).
    """
    torch = require_torch()
    try:
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise CheckpointError(
            f"torch.load(weights_only=True) failed: {type(exc).__name__}: {first}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("not a colabtui checkpoint (no 'format' field)")
    if step is not None and state.get("step") != step:
        raise CheckpointError(f"holds step {state.get('step')!r}, the manifest says {step}")
    return state
