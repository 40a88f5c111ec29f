"""GpuSampler against a pynvml stand-in (no NVIDIA driver here) and against the real pynvml."""

from __future__ import annotations

import logging
import threading
import time

import pynvml
import pytest
from colabtui_remote import schema, wire
from colabtui_remote.gpu import GpuSampler
from nvml_standin import make_nvml

POWER_NOT_SUPPORTED = {(1, "nvmlDeviceGetPowerUsage"): pynvml.NVMLError_NotSupported}


def test_two_gpus_one_without_power_fills_the_rest_and_says_why(caplog):
    nvml = make_nvml(2, fail=POWER_NOT_SUPPORTED)
    sampler = GpuSampler(nvml=nvml)
    with caplog.at_level(logging.INFO, logger="colabtui_remote.gpu"):
        for _ in range(20):
            gpus, reason = sampler.sample_once()
    assert reason is None
    assert [g.index for g in gpus] == [0, 1]
    first, second = gpus
    assert first.power_w == pytest.approx(250.5) and first.unsupported == {}
    assert second.power_w is None
    assert second.unsupported == {"power_w": "Not Supported"}
    for gpu in gpus:
        assert gpu.name == "NVIDIA H100 80GB HBM3"
        assert gpu.uuid.startswith("GPU-")
        assert gpu.utilization_pct == 90 + gpu.index
        assert gpu.memory_used_bytes == (10 + gpu.index) * 1024**3
        assert gpu.memory_total_bytes == 80 * 1024**3
        assert gpu.temperature_c == 60 + gpu.index
        assert gpu.power_limit_w == pytest.approx(700.0)
    logged = [r for r in caplog.records if "power_w" in r.getMessage()]
    assert len(logged) == 1, "each (GPU, field, reason) is logged once"
    assert "GPU 1" in logged[0].getMessage()


def test_the_reason_travels_in_status_json():
    gpus, reason = GpuSampler(nvml=make_nvml(2, fail=POWER_NOT_SUPPORTED)).sample_once()
    status = schema.Status(protocol=schema.PROTOCOL_VERSION, run="r", session_id="s", label="",
                           state="running", step=1, gpus=gpus, gpu_error=reason)
    doc = wire.loads(wire.dumps(status))
    assert doc["gpus"][1]["power_w"] is None
    assert doc["gpus"][1]["unsupported"] == {"power_w": "Not Supported"}
    assert schema.parse_status(doc).gpus == gpus


def test_utilization_unsupported_under_mig_and_memory_failing_split_into_both_fields():
    nvml = make_nvml(1, fail={(0, "nvmlDeviceGetUtilizationRates"): pynvml.NVMLError_NotSupported,
                              (0, "nvmlDeviceGetMemoryInfo"): pynvml.NVMLError_GpuIsLost})
    (gpu,), _ = GpuSampler(nvml=nvml).sample_once()
    assert gpu.utilization_pct is None and gpu.memory_used_bytes is None
    assert gpu.memory_total_bytes is None
    assert gpu.unsupported == {"utilization_pct": "Not Supported",
                               "memory_used_bytes": "GPU is lost",
                               "memory_total_bytes": "GPU is lost"}
    assert gpu.temperature_c == 60 and gpu.power_w == pytest.approx(250.5)


def test_names_and_uuids_as_bytes_are_decoded():
    gpus, _ = GpuSampler(nvml=make_nvml(2, names_as_bytes=True)).sample_once()
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert all(isinstance(g.uuid, str) and g.uuid.startswith("GPU-") for g in gpus)


def test_a_name_nvml_refuses_is_none_with_a_reason():
    nvml = make_nvml(1, fail={(0, "nvmlDeviceGetName"): pynvml.NVMLError_NotSupported})
    (gpu,), _ = GpuSampler(nvml=nvml).sample_once()
    assert gpu.name is None and gpu.unsupported == {"name": "Not Supported"}
    assert gpu.uuid is not None and gpu.utilization_pct == 90


@pytest.mark.parametrize("error, words", [
    (pynvml.NVMLError_DriverNotLoaded, "Driver Not Loaded"),
    (pynvml.NVMLError_LibraryNotFound, "NVML Shared Library Not Found"),
])
def test_nvml_init_failing_is_a_normal_state(error, words):
    nvml = make_nvml(2, init_error=error)
    sampler = GpuSampler(nvml=nvml)
    sampler.start()
    try:
        gpus, reason = sampler.snapshot()
        assert gpus == []
        assert reason == f"NVML not available: {words}"
    finally:
        sampler.close()
    assert nvml.calls["nvmlInit"] == 1 and nvml.calls["nvmlShutdown"] == 0


def test_no_gpus_is_a_normal_state():
    gpus, reason = GpuSampler(nvml=make_nvml(0)).sample_once()
    assert gpus == [] and reason == "NVML found no GPUs"


def test_real_pynvml_without_a_driver_reports_why():
    """The real binding: here there is no driver, so nvmlInit fails and that is said in words.
    On a machine with one, the same call must report its GPUs."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        driver = False
    else:
        driver = True
        pynvml.nvmlShutdown()
    sampler = GpuSampler()
    sampler.start()
    try:
        gpus, reason = sampler.snapshot()
    finally:
        sampler.close()
    if driver:
        assert gpus and reason is None and all(g.name for g in gpus)
    else:
        assert gpus == []
        assert reason.startswith("NVML not available: ")
        assert "NVML Shared Library Not Found" in reason or "Driver Not Loaded" in reason


def test_thread_samples_in_background_and_snapshot_never_calls_nvml():
    nvml = make_nvml(2)
    sampler = GpuSampler(interval_s=0.01, nvml=nvml)
    sampler.start()
    sampler.start()  # idempotent
    try:
        threads = [t for t in threading.enumerate() if t.name == "colabtui-gpu-sampler"]
        assert len(threads) == 1 and threads[0].daemon
        start_calls = nvml.calls["nvmlDeviceGetUtilizationRates"]
        assert start_calls >= 2  # start() took the first sample, one per GPU
        for _ in range(1000):  # until the thread has sampled again (10 ms apart)
            if nvml.calls["nvmlDeviceGetUtilizationRates"] > start_calls:
                break
            time.sleep(0.01)
        assert nvml.calls["nvmlDeviceGetUtilizationRates"] > start_calls
        callers = set(nvml.call_threads)
        nvml.call_threads.clear()
        for _ in range(100):
            gpus, reason = sampler.snapshot()
            assert len(gpus) == 2 and reason is None
        assert threading.get_ident() not in nvml.call_threads
        assert threads[0].ident in callers
    finally:
        sampler.close()
    assert not threads[0].is_alive()
    assert nvml.calls["nvmlInit"] == 1 and nvml.calls["nvmlShutdown"] == 1
    assert not nvml.initialised()


def test_close_returns_within_an_interval_even_with_a_long_interval():
    nvml = make_nvml(1)
    sampler = GpuSampler(interval_s=3600, nvml=nvml)
    sampler.start()
    thread = next(t for t in threading.enumerate() if t.name == "colabtui-gpu-sampler")
    sampler.close()  # an Event wakes the thread: no hour-long join
    assert not thread.is_alive()
    sampler.close()  # idempotent
    assert nvml.calls["nvmlShutdown"] == 1
    assert sampler.snapshot() == ([], "GPU sampling has stopped")


def test_bad_interval_is_refused():
    with pytest.raises(ValueError, match="interval_s"):
        GpuSampler(interval_s=0)
