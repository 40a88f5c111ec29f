"""GpuSampler: NVML statistics sampled on a background thread, read from a cache.

NVML comes from nvidia-ml-py (module ``pynvml``), imported only when sampling starts. Every
field is optional: NVML may refuse any one of them (power on some boards, utilization under
MIG), and then that field is ``None`` with NVML's reason in ``GpuStats.unsupported``. No NVML
at all (no package, no driver: a CPU runtime, macOS) is a normal state: no GPUs, and a reason.
"""

from __future__ import annotations

import logging
import threading
import types
from typing import Any

from colabtui_remote import schema

__all__ = ["GpuSampler"]

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    """NVML strings come back as ``bytes`` from old bindings and ``str`` from new ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class GpuSampler:
    """Samples every GPU NVML sees about once per ``interval_s`` on a daemon thread.

    Args:
        interval_s: seconds between samples (NVML's utilization counters cover about the last
            second, hence the default). Above 0.
        nvml: the NVML binding to use, with pynvml's function names, constants and exception
            classes; by default ``pynvml`` is imported in :meth:`start`.

    Raises:
        ValueError: ``interval_s`` is not above 0.
    """

    def __init__(self, interval_s: float = 1.0, nvml: types.ModuleType | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be above 0, got {interval_s}")
        self._interval_s = float(interval_s)
        self._nvml_given = nvml
        self._nvml: Any = None  # the binding, once nvmlInit succeeded
        self._handles: list[tuple[int, Any, str | None, str | None, dict[str, str]]] = []
        self._reason: str | None = "GPU sampling has not started"
        self._snapshot: tuple[list[schema.GpuStats], str | None] = ([], self._reason)
        self._logged: set[tuple[int, str, str]] = set()
        self._lock = threading.Lock()  # start/close/sample_once against each other
        self._exit = threading.Event()
        self._thread: threading.Thread | None = None
        self._init_tried = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Initialise NVML (once) and start the sampling thread; a second call does nothing.

        Takes the first sample before returning, so :meth:`snapshot` has data at once. Never
        raises for a missing or broken NVML: the snapshot says why there are no GPUs.
        """
        with self._lock:
            if self._thread is not None:
                return
            self._exit.clear()
            self._sample_locked()
            if self._nvml is None:
                return  # nothing to sample: no thread
            self._thread = threading.Thread(target=self._run, name="colabtui-gpu-sampler",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread (within about one interval) and shut NVML down. Idempotent.

        Afterwards :meth:`snapshot` reports no GPUs ("GPU sampling has stopped").
        """
        self._exit.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self._interval_s + 10.0)
            if thread.is_alive():
                log.warning("the GPU sampling thread did not stop within %.0f s",
                            self._interval_s + 10.0)
        with self._lock:
            self._thread = None
            nvml, self._nvml = self._nvml, None
            self._handles = []
            self._init_tried = False
            if nvml is not None:
                try:
                    nvml.nvmlShutdown()
                except Exception as exc:  # shutting down must not fail a notebook
                    log.info("nvmlShutdown failed: %s", exc)
            self._reason = "GPU sampling has stopped"
            self._snapshot = ([], self._reason)  # stale figures would read as current

    def _run(self) -> None:
        while not self._exit.wait(self._interval_s):
            with self._lock:
                if self._exit.is_set():
                    return
                try:
                    self._sample_locked()
                except Exception:  # a bug or a dying driver: keep the last sample, say so once
                    if (-1, "thread", "") not in self._logged:
                        self._logged.add((-1, "thread", ""))
                        log.exception("GPU sampling failed; keeping the last sample")

    # ------------------------------------------------------------------ readers

    def snapshot(self) -> tuple[list[schema.GpuStats], str | None]:
        """The latest sample, from the cache (never calls NVML).

        Returns:
            ``(gpus, reason)``: one :class:`schema.GpuStats` per GPU, and when ``gpus`` is empty
            the reason in words (e.g. ``"NVML not available: NVML Shared Library Not Found"``).
        """
        gpus, reason = self._snapshot
        return list(gpus), reason

    def sample_once(self) -> tuple[list[schema.GpuStats], str | None]:
        """Sample now on the caller's thread (initialising NVML if needed) and cache the result.

        Returns:
            As :meth:`snapshot`.
        """
        with self._lock:
            self._sample_locked()
        return self.snapshot()

    # ------------------------------------------------------------------ NVML

    def _init_locked(self) -> None:
        self._init_tried = True
        nvml = self._nvml_given
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                self._reason = ("NVML not available: the nvidia-ml-py package is not installed "
                                "(pip install nvidia-ml-py)")
                return
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, OSError...
            self._reason = f"NVML not available: {_text(exc) or type(exc).__name__}"
            log.info("%s", self._reason)
            return
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            self._reason = f"NVML could not count the GPUs: {_text(exc)}"
            log.warning("%s", self._reason)
            self._shutdown_quietly(nvml)
            return
        handles = []
        for index in range(count):
            unsupported: dict[str, str] = {}
            handle = self._field(nvml, index, "handle", unsupported,
                                 nvml.nvmlDeviceGetHandleByIndex, index)
            name = self._field(nvml, index, "name", unsupported, nvml.nvmlDeviceGetName, handle)
            uuid = self._field(nvml, index, "uuid", unsupported, nvml.nvmlDeviceGetUUID, handle)
            handles.append((index, handle, None if name is None else _text(name),
                            None if uuid is None else _text(uuid), unsupported))
        self._nvml = nvml
        self._handles = handles
        self._reason = None if handles else "NVML found no GPUs"

    @staticmethod
    def _shutdown_quietly(nvml: Any) -> None:
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            log.info("nvmlShutdown failed: %s", exc)

    def _field(self, nvml: Any, index: int, field: str, unsupported: dict[str, str],
               fn: Any, *args: Any) -> Any:
        """Call one NVML query; on failure record why under ``field`` and return ``None``."""
        if field != "handle" and args and args[0] is None:  # no handle: nothing to ask
            unsupported[field] = unsupported.get("handle", "no device handle")
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if isinstance(exc, nvml.NVMLError):
                reason = _text(exc)
            else:  # e.g. AttributeError from a binding too old for this query
                reason = f"{type(exc).__name__}: {exc}"
            unsupported[field] = reason
            key = (index, field, reason)
            if key not in self._logged:  # each (GPU, field, reason) once per sampler
                self._logged.add(key)
                log.info("GPU %d: %s unavailable: %s", index, field, reason)
            return None

    def _sample_locked(self) -> None:
        if self._nvml is None:
            if self._init_tried and self._reason and self._reason.startswith("NVML not"):
                return  # NVML is absent for good: keep the reason, do not retry every second
            self._init_locked()
            if self._nvml is None:
                self._snapshot = ([], self._reason)
                return
        nvml = self._nvml
        gpus = []
        for index, handle, name, uuid, static_unsupported in self._handles:
            unsupported = dict(static_unsupported)
            util = self._field(nvml, index, "utilization_pct", unsupported,
                               nvml.nvmlDeviceGetUtilizationRates, handle)
            mem = self._field(nvml, index, "memory", unsupported,
                              nvml.nvmlDeviceGetMemoryInfo, handle)
            if mem is None:
                reason = unsupported.pop("memory")
                unsupported["memory_used_bytes"] = unsupported["memory_total_bytes"] = reason
            temp = self._field(nvml, index, "temperature_c", unsupported,
                               nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
            power = self._field(nvml, index, "power_w", unsupported,
                                nvml.nvmlDeviceGetPowerUsage, handle)
            limit = self._field(nvml, index, "power_limit_w", unsupported,
                                nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            gpus.append(schema.GpuStats(
                index=index,
                name=name,
                uuid=uuid,
                utilization_pct=None if util is None else float(util.gpu),
                memory_used_bytes=None if mem is None else int(mem.used),
                memory_total_bytes=None if mem is None else int(mem.total),
                temperature_c=None if temp is None else float(temp),
                power_w=None if power is None else power / 1000.0,  # NVML reports milliwatts
                power_limit_w=None if limit is None else limit / 1000.0,
                unsupported=unsupported,
            ))
        self._snapshot = (gpus, self._reason)
