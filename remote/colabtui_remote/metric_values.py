"""What ``Monitor.log()`` accepts as a value: a real number, or a 0-d tensor or array, turned
into a float on the spot, or for a tensor on an accelerator into a :class:`Pending` read that
does not wait for the device (see :mod:`colabtui_remote.metrics`)."""

from __future__ import annotations

import logging
import math
import numbers
import sys
from typing import Any

__all__ = ["Pending", "coerce"]

log = logging.getLogger(__name__)

_read_failures = 0  # device values that could not be read: warned about once per process


class Pending:
    """A 0-d tensor on an accelerator whose value is not on the host yet.

    For CUDA the constructor starts a non-blocking copy to (pinned) host memory and records an
    event after it, so :meth:`ready` asks the event without waiting and :meth:`result` waits only
    for that copy, not for the work queued after it. Other accelerators (XLA, MPS) have no such
    event here: their value is read by a reader thread, or when too many are pending.
    """

    __slots__ = ("_tensor", "_event", "_value")

    def __init__(self, tensor: Any) -> None:
        t = tensor.detach()
        self._event = None
        self._value: float | None = None
        if t.device.type == "cuda":
            import torch

            self._tensor = t.to("cpu", non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(t.device))
        else:
            self._tensor = t

    def ready(self) -> bool:
        """True when :meth:`result` would not wait for the device."""
        if self._value is not None:
            return True
        return self._event is not None and self._event.query()

    def result(self) -> float:
        """The value as a float; waits for the device when it is not there yet."""
        if self._value is None:
            try:
                if self._event is not None:
                    self._event.synchronize()
                self._value = float(self._tensor.item())
            except Exception as exc:  # a device error must not break a reader or the loop
                global _read_failures
                _read_failures += 1
                log.log(logging.WARNING if _read_failures == 1 else logging.DEBUG,
                        "could not read a logged device value, stored as NaN: %s", exc)
                self._value = math.nan
            self._tensor = None
        return self._value


def coerce(name: str, value: Any) -> float | Pending:
    """Turn a logged value into a float, or a :class:`Pending` for an accelerator tensor.

    Raises:
        TypeError: not a real number or a 0-d tensor/array.
        ValueError: a tensor/array that is not 0-d, or an integer too large for a float.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        # As few calls into torch as possible: right after a training step each one runs with
        # cold caches and costs microseconds (ndim, is_cpu, item: 3 calls, not 5).
        if value.ndim != 0:
            raise ValueError(
                f"metric {name!r}: expected a number or a 0-d tensor, got a tensor of shape "
                f"{tuple(value.shape)}; log a reduction such as loss.mean()")
        if value.is_cpu:
            number = value.item()
            if isinstance(number, complex):
                raise TypeError(f"metric {name!r}: complex tensors are not supported")
            return float(number)
        if value.is_complex():
            raise TypeError(f"metric {name!r}: complex tensors are not supported")
        return Pending(value)
    if isinstance(value, numbers.Real):  # int, bool, numpy scalars, Fraction
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"metric {name!r}: {value!r} is too large for a float") from None
    ndim = getattr(value, "ndim", None)
    if ndim is not None and callable(getattr(value, "item", None)):  # numpy 0-d arrays
        if ndim != 0:
            raise ValueError(
                f"metric {name!r}: expected a number or a 0-d array, got an array of shape "
                f"{tuple(getattr(value, 'shape', ()))}")
        return coerce(name, value.item())
    raise TypeError(
        f"metric {name!r}: expected a number or a 0-d tensor, got {type(value).__name__}")
