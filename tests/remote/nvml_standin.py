"""A stand-in for ``pynvml`` (nvidia-ml-py) where no NVIDIA driver is: this test machine.

It speaks pynvml's API for what :class:`colabtui_remote.gpu.GpuSampler` calls: the same
function names and signatures, the same constants, pynvml's own exception classes (re-exported,
so ``except pynvml.NVMLError`` catches them), and pynvml's own ctypes structures for the memory
and utilization results. Each test builds one with :func:`make_nvml` and says how many GPUs,
which (GPU, function) raises which NVML error, and whether strings come back as bytes (bindings
before 11.5) or str.
"""

from __future__ import annotations

import threading
import types
from collections import Counter
from collections.abc import Mapping

import pynvml

_EXPORTED_ERRORS = [name for name in dir(pynvml) if name.startswith("NVMLError")]
_EXPORTED_CONSTANTS = ["NVML_TEMPERATURE_GPU", "NVML_ERROR_NOT_SUPPORTED",
                       "NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED",
                       "NVML_ERROR_GPU_IS_LOST", "NVML_SUCCESS"]


class _Handle:
    """What nvmlDeviceGetHandleByIndex returns (a ``c_void_p`` in pynvml): opaque."""

    def __init__(self, index: int) -> None:
        self.index = index


def make_nvml(
    gpus: int = 2,
    *,
    names_as_bytes: bool = False,
    fail: Mapping[tuple[int, str], type[pynvml.NVMLError]] | None = None,
    init_error: type[pynvml.NVMLError] | None = None,
    name: str = "NVIDIA H100 80GB HBM3",
) -> types.ModuleType:
    """A module with pynvml's interface backed by ``gpus`` simulated GPUs.

    Args:
        gpus: how many GPUs nvmlDeviceGetCount reports.
        names_as_bytes: return names and UUIDs as ``bytes``, as old bindings do.
        fail: ``{(gpu index, pynvml function name): NVMLError subclass}`` to raise, e.g.
            ``{(1, "nvmlDeviceGetPowerUsage"): pynvml.NVMLError_NotSupported}``.
        init_error: nvmlInit raises this (e.g. ``pynvml.NVMLError_DriverNotLoaded``).
        name: the product name every GPU reports.

    The module also carries ``calls`` (a Counter of function names) and ``call_threads`` (the
    set of thread idents that called into it), for tests to check who called NVML.
    """
    fail = dict(fail or {})
    mod = types.ModuleType("nvml_standin")
    for attr in _EXPORTED_ERRORS + _EXPORTED_CONSTANTS:
        setattr(mod, attr, getattr(pynvml, attr))
    mod.calls = Counter()
    mod.call_threads = set()
    state = {"init": 0}

    def _enter(fn: str, index: int | None = None) -> None:
        mod.calls[fn] += 1
        mod.call_threads.add(threading.get_ident())
        if fn not in ("nvmlInit", "nvmlShutdown") and state["init"] <= 0:
            raise pynvml.NVMLError_Uninitialized()
        if index is not None and (index, fn) in fail:
            raise fail[(index, fn)]()

    def _str(value: str) -> str | bytes:
        return value.encode() if names_as_bytes else value

    def nvmlInit() -> None:
        _enter("nvmlInit")
        if init_error is not None:
            raise init_error()
        state["init"] += 1

    def nvmlShutdown() -> None:
        _enter("nvmlShutdown")
        if state["init"] <= 0:
            raise pynvml.NVMLError_Uninitialized()
        state["init"] -= 1

    def nvmlDeviceGetCount() -> int:
        _enter("nvmlDeviceGetCount")
        return gpus

    def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
        _enter("nvmlDeviceGetHandleByIndex", index)
        if not 0 <= index < gpus:
            raise pynvml.NVMLError_InvalidArgument()
        return _Handle(index)

    def nvmlDeviceGetName(handle: _Handle) -> str | bytes:
        _enter("nvmlDeviceGetName", handle.index)
        return _str(name)

    def nvmlDeviceGetUUID(handle: _Handle) -> str | bytes:
        _enter("nvmlDeviceGetUUID", handle.index)
        return _str(f"GPU-00000000-0000-0000-0000-00000000000{handle.index}")

    def nvmlDeviceGetUtilizationRates(handle: _Handle) -> pynvml.c_nvmlUtilization_t:
        _enter("nvmlDeviceGetUtilizationRates", handle.index)
        return pynvml.c_nvmlUtilization_t(gpu=90 + handle.index, memory=40)

    def nvmlDeviceGetMemoryInfo(handle: _Handle, version: int | None = None
                                ) -> pynvml.c_nvmlMemory_t:
        _enter("nvmlDeviceGetMemoryInfo", handle.index)
        total = 80 * 1024**3
        used = (10 + handle.index) * 1024**3
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetTemperature(handle: _Handle, sensor: int) -> int:
        _enter("nvmlDeviceGetTemperature", handle.index)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError_InvalidArgument()
        return 60 + handle.index

    def nvmlDeviceGetPowerUsage(handle: _Handle) -> int:
        _enter("nvmlDeviceGetPowerUsage", handle.index)
        return 250_500  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(handle: _Handle) -> int:
        _enter("nvmlDeviceGetEnforcedPowerLimit", handle.index)
        return 700_000  # milliwatts

    for fn in (nvmlInit, nvmlShutdown, nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex,
               nvmlDeviceGetName, nvmlDeviceGetUUID, nvmlDeviceGetUtilizationRates,
               nvmlDeviceGetMemoryInfo, nvmlDeviceGetTemperature, nvmlDeviceGetPowerUsage,
               nvmlDeviceGetEnforcedPowerLimit):
        setattr(mod, fn.__name__, fn)
    mod.initialised = lambda: state["init"] > 0
    return mod
