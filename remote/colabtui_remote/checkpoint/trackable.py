"""What a checkpoint can hold: the kind of each tracked object, the check ``Monitor.track()``
makes, and the states of random generators as plain types.

Each entry of a checkpoint's ``tracked`` dict has a ``kind``:

============================  ==================================================================
``state_dict``                an object with ``state_dict()``/``load_state_dict()`` (model,
                              optimizer, scheduler, ``GradScaler``…): ``{"state": <its state dict>}``
``torch_generator``           a ``torch.Generator``: ``{"device": "cpu", "state": <uint8 tensor>}``
                              (``get_state()``/``set_state()``)
``numpy_generator``           a ``numpy.random.Generator``: ``{"state": bit_generator.state}``
``numpy_random_state``        a ``numpy.random.RandomState``: ``{"state": get_state(legacy=False)}``
``python_random``             a ``random.Random``: ``{"state": [version, [625 ints], gauss_next]}``
``value``                     a plain value: ``{"value": ...}``
============================  ==================================================================

NumPy arrays inside a bit generator's state are stored as ``{"ndarray": [ints], "dtype":
"uint32"}``, so the file loads with ``torch.load(weights_only=True)`` (no pickled classes).

torch and NumPy are not imported here: an object of theirs exists only once they are, so they
are looked up in ``sys.modules``.
"""

from __future__ import annotations

import io
import random
import sys
from typing import Any, NoReturn

from .errors import CheckpointError

__all__ = ["ACCEPTED", "GENERATOR_KINDS", "PLAIN_SCALARS", "capture_generator", "check_generator", "check_trackable",
           "describe_kind", "kind_of", "numpy_scalar", "restore_generator"]

GENERATOR_KINDS = ("torch_generator", "numpy_generator", "numpy_random_state", "python_random")
"""The kinds restored in place through a generator's own state API."""

ACCEPTED = ("an object with state_dict() and load_state_dict(), a torch.Generator, a "
            "numpy.random.Generator or RandomState, a random.Random, or a plain value (None, "
            "bool, int, float, str, bytes, a tensor, or lists, tuples and dicts of them)")
"""What :func:`check_trackable` accepts, as its error messages say it."""

PLAIN_SCALARS = (type(None), bool, int, float, str, bytes)
"""The scalar types a checkpoint stores as they are."""
_KEY_TYPES = (str, int, float, bool, type(None))


def kind_of(obj: Any) -> str:
    """The kind (see the module docstring) ``obj`` is captured and restored as; ``"value"`` for
    anything that is neither a state-dict object nor a known generator (checked when copied)."""
    if callable(getattr(obj, "state_dict", None)):
        return "state_dict"
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None and isinstance(obj, torch.Generator):
        return "torch_generator"
    if np is not None and isinstance(obj, np.random.Generator):
        return "numpy_generator"
    if np is not None and isinstance(obj, np.random.RandomState):
        return "numpy_random_state"
    if isinstance(obj, random.Random) and not isinstance(obj, random.SystemRandom):
        return "python_random"
    return "value"


def describe_kind(kind: Any) -> str:
    """``kind`` in words, for messages: ``"a torch.Generator"``."""
    return _KIND_WORDS.get(kind, f"an entry of kind {kind!r}")


_KIND_WORDS = {"state_dict": "a state dict", "value": "a plain value",
               "torch_generator": "a torch.Generator", "numpy_generator": "a numpy.random.Generator",
               "numpy_random_state": "a numpy.random.RandomState",
               "python_random": "a random.Random"}


def numpy_scalar(obj: Any) -> Any:
    """A NumPy scalar (``np.float32(0.5)``) as the equivalent Python number, else ``None``."""
    if type(obj).__module__ != "numpy" or not hasattr(obj, "item") or getattr(obj, "ndim", 1) != 0:
        return None
    value = obj.item()
    return value if isinstance(value, (bool, int, float)) else None


# --------------------------------------------------------------------------- the check at track()


def check_trackable(name: str, obj: Any) -> str:
    """Check that ``obj``, given to ``track(name=obj)``, can be saved and restored exactly.

    A torch ``DataLoader`` (and its subclasses, e.g. torchdata's ``StatefulDataLoader``) is let
    through unchecked: its data order is not this module's to save.

    Args:
        name: the keyword it was tracked under.
        obj: the object (not ``None``).

    Returns:
        Its kind (see the module docstring).

    Raises:
        TypeError: it cannot be saved (a function, an open file, a NumPy array, an object with
            ``state_dict()`` but no ``load_state_dict()``…); the message names the keyword, the
            type, and what to pass instead.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.utils.data.DataLoader):
        return kind_of(obj)
    has_sd = callable(getattr(obj, "state_dict", None))
    if has_sd != callable(getattr(obj, "load_state_dict", None)):
        have, lack = ("state_dict", "load_state_dict") if has_sd else ("load_state_dict",
                                                                       "state_dict")
        _refuse(name, name, obj, f"it has {have}() but no {lack}(), so it could not be both "
                                 f"saved and restored: give it a {lack}() method")
    kind = kind_of(obj)
    if kind == "value":
        _check_plain(name, name, obj, torch, set())
    return kind


def _check_plain(name: str, where: str, obj: Any, torch: Any, path: set[int]) -> None:
    """Refuse what the checkpoint's copier would refuse: the same types, found at track()."""
    if isinstance(obj, PLAIN_SCALARS) or numpy_scalar(obj) is not None:
        return
    if torch is not None and isinstance(obj, (torch.Tensor, torch.Size, torch.dtype,
                                              torch.device)):
        return
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in path:
            raise TypeError(f"track({name}=...): {where} contains itself; a checkpoint holds "
                            "a tree of plain values, not a cycle")
        path.add(id(obj))
        if isinstance(obj, dict):
            for key, value in obj.items():
                if not isinstance(key, _KEY_TYPES):
                    raise TypeError(
                        f"track({name}=...): {where} has the key {key!r}, a "
                        f"{_type_name(key)}; checkpoint keys must be str, int, float, bool or "
                        "None")
                _check_plain(name, f"{where}[{key!r}]", value, torch, path)
        else:
            for i, value in enumerate(obj):
                _check_plain(name, f"{where}[{i}]", value, torch, path)
        path.discard(id(obj))
        return
    _refuse(name, where, obj, _hint(obj))


def _hint(obj: Any) -> str:
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray):
        return "convert it with torch.from_numpy(x) or x.tolist()"
    if np is not None and isinstance(obj, np.random.BitGenerator):
        return "track numpy.random.Generator(bit_generator) instead"
    if isinstance(obj, random.SystemRandom):
        return "it reads os.urandom and has no state to restore: use random.Random(seed)"
    if isinstance(obj, io.IOBase):
        return "track its name and position (f.name, f.tell()) and reopen it after resume()"
    if callable(obj):
        return "track the values it works with instead"
    return "wrap its state in an object with state_dict() and load_state_dict()"


def _refuse(name: str, where: str, obj: Any, hint: str) -> NoReturn:
    subject = f"a {_type_name(obj)}" if where == name else f"{where} is a {_type_name(obj)}, which"
    raise TypeError(f"track({name}=...): {subject} cannot be saved in a checkpoint; {hint}. "
                    f"track() takes {ACCEPTED}")


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# --------------------------------------------------------------------------- generators


def capture_generator(kind: str, obj: Any) -> dict:
    """The checkpoint entry of a generator of ``kind`` (one of :data:`GENERATOR_KINDS`): its
    state as plain types and CPU tensors.

    Raises:
        Exception: whatever the generator's own state call raises.
    """
    if kind == "torch_generator":
        return {"kind": kind, "device": str(obj.device), "state": obj.get_state().clone()}
    if kind == "python_random":
        version, internal, gauss_next = obj.getstate()
        return {"kind": kind, "state": [version, list(internal), gauss_next]}
    state = obj.bit_generator.state if kind == "numpy_generator" else obj.get_state(legacy=False)
    return {"kind": kind, "state": _to_plain(state)}


def check_generator(name: str, obj: Any, entry: dict) -> None:
    """Check, before anything is loaded, that ``entry`` fits the generator ``obj``.

    Raises:
        CheckpointError: another device type, bit generator or state size; the message says
            which.
    """
    kind, state = entry.get("kind"), entry.get("state")
    torch = sys.modules.get("torch")
    if kind == "torch_generator":
        saved_on = str(entry.get("device", "cpu")).split(":")[0]
        if saved_on != obj.device.type:
            raise CheckpointError(f"{name}: saved from a torch.Generator on {saved_on}, tracked "
                                  f"now on {obj.device.type}")
        if not isinstance(state, torch.Tensor) or state.shape != obj.get_state().shape:
            raise CheckpointError(f"{name}: saved torch.Generator state does not fit this one")
    elif kind == "python_random":
        if not (isinstance(state, list) and len(state) == 3 and state[0] == obj.getstate()[0]):
            raise CheckpointError(f"{name}: saved random.Random state is not of this version")
    else:
        now = obj.bit_generator.state if kind == "numpy_generator" else obj.get_state(legacy=False)
        saved = state.get("bit_generator") if isinstance(state, dict) else None
        if saved != now["bit_generator"]:
            raise CheckpointError(f"{name}: saved from a {saved} bit generator, tracked now with "
                                  f"a {now['bit_generator']}")


def restore_generator(name: str, obj: Any, entry: dict) -> None:
    """Set the generator ``obj`` to the state in ``entry`` (checked by :func:`check_generator`),
    so its next draws are those the saved generator would have made.

    Raises:
        CheckpointError: the generator refused the state.
    """
    kind, state = entry["kind"], entry["state"]
    try:
        if kind == "torch_generator":
            obj.set_state(state)
        elif kind == "python_random":
            obj.setstate((state[0], tuple(state[1]), state[2]))
        elif kind == "numpy_generator":
            obj.bit_generator.state = _from_plain(state)
        else:
            obj.set_state(_from_plain(state))
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{name}: cannot restore the generator state: {exc}") from exc


def _to_plain(obj: Any) -> Any:
    """A NumPy bit generator state with its arrays and scalars as Python lists and numbers."""
    np = sys.modules["numpy"]
    if isinstance(obj, dict):
        return {key: _to_plain(value) for key, value in obj.items()}
    if isinstance(obj, np.ndarray):
        return {"ndarray": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _from_plain(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        if set(obj) == {"ndarray", "dtype"}:
            return np.array(obj["ndarray"], dtype=obj["dtype"])
        return {key: _from_plain(value) for key, value in obj.items()}
    return obj
