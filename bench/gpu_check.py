"""gpu_check: the checks that need a real NVIDIA GPU, in one short run (about a minute).

1. ``/v1/status`` carries real NVML fields (name, utilization %, memory bytes, °C, W) from a
   served Monitor, polled over HTTP as the laptop does.
2. The CUDA RNG state of every device is saved and restored bitwise: draws after a resume equal
   the draws of an uninterrupted run (``torch.equal``).
3. After a resume, the model and the optimizer state (Adam's moments) are back on the GPU.
4. ``Monitor.log()`` of a CUDA 0-d tensor does not synchronise: its time, beside ``.item()``
   of the same kind of tensor (which waits for the queued work) and beside the queued work.
5. The checkpoint stall on the training thread (the capture), beside a plain device-to-host copy
   of the same tensors (ratio).
6. A 1-GPU NCCL ``torch.distributed.checkpoint`` save of an FSDP2 model (a process group of
   one): listed in the manifest, its stall beside a device-to-host copy, resumed bitwise with
   the optimizer state on the GPU.

    python bench/gpu_check.py            # on a machine with CUDA
    python bench/gpu_check.py --device cpu   # a dry run of the same code paths, no GPU

Exits 1 when a check fails, 2 when CUDA is asked for and absent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import httpx
import torch
from colabtui_remote import Monitor

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def info(name: str, ok: bool, detail: str) -> None:
    """A figure shown, not judged (the CPU dry run of a GPU figure)."""
    print(f"  [info] {name}: {detail} (judged on a GPU only)", flush=True)


def make(device: str, seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(),
                                torch.nn.Dropout(0.1), torch.nn.Linear(2048, 512)).to(device)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def train(model, opt, device: str, steps: int) -> torch.Tensor:
    loss = torch.zeros((), device=device)
    for _ in range(steps):
        x = torch.randn(256, 512, device=device)
        loss = (model(x) - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.detach()


def nvml_status(folder: str, device: str) -> None:
    mon = Monitor(run="gpu-check", checkpoint_dir=folder, autosave_every=None,
                  handle_sigterm=False)
    url = mon.serve(port=0, quiet=True)
    try:
        time.sleep(2.5)  # the GPU sampler's first samples (about 1 Hz)
        st = httpx.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {mon.token}"},
                       timeout=10).json()
    finally:
        mon.close()
    gpus = st.get("gpus") or []
    print(f"  /v1/status gpus: {gpus}\n  gpu_error: {st.get('gpu_error')}")
    if device == "cpu":
        check("NVML fields", gpus == [], "no GPU on a CPU dry run: an empty list, no error")
        return
    first = gpus[0] if gpus else {}
    fields = ("name", "memory_used_bytes", "memory_total_bytes", "utilization_percent",
              "temperature_c", "power_w")
    present = {f: first.get(f) for f in fields}
    check("NVML fields", bool(gpus) and all(v is not None for v in present.values()),
          ", ".join(f"{k}={v}" for k, v in present.items()))


def rng_and_resume(folder: str, device: str) -> None:
    # Uninterrupted: 20 steps, then the draws that come next.
    model, opt = make(device)
    train(model, opt, device, 20)
    straight_draws = torch.rand(8, device=device)
    straight_params = [p.detach().clone() for p in model.parameters()]

    # Interrupted at step 20: saved, then resumed in a fresh model and optimizer.
    model, opt = make(device)
    mon = Monitor(run="gpu-rng", checkpoint_dir=folder, autosave_every=None,
                  handle_sigterm=False)
    mon.track(model=model, optimizer=opt)
    for _ in mon.steps(20):
        train(model, opt, device, 1)
    mon.close()  # finished at step 20: a last checkpoint, durable
    torch.manual_seed(1234)  # a new process would start elsewhere
    if device == "cuda":
        torch.cuda.manual_seed_all(1234)
    model, opt = make(device, seed=99)
    mon = Monitor(run="gpu-rng", checkpoint_dir=folder, autosave_every=None,
                  handle_sigterm=False)
    mon.track(model=model, optimizer=opt)
    step = mon.resume()
    draws = torch.rand(8, device=device)
    check("RNG state restored bitwise", step == 20 and torch.equal(draws, straight_draws),
          f"resumed at step {step}; the next draws equal the straight run's: "
          f"{torch.equal(draws, straight_draws)}")
    check("parameters after resume", all(torch.equal(a, b) for a, b in
                                         zip(model.parameters(), straight_params, strict=True)),
          "torch.equal on every parameter")
    on = {t.device.type for s in opt.state.values() for t in s.values()
          if isinstance(t, torch.Tensor) and t.dim() > 0}
    check("optimizer state on the device", on == {device},
          f"Adam moments on {sorted(on)}; model on {next(model.parameters()).device}")
    mon.close()


def log_without_sync(folder: str, device: str) -> None:
    model, opt = make(device)
    mon = Monitor(run="gpu-log", checkpoint_dir=folder, autosave_every=None,
                  handle_sigterm=False)
    log_us, item_us, work_us = [], [], []
    for _ in range(50):
        loss = train(model, opt, device, 1)  # queued, not finished
        t0 = time.perf_counter()
        mon.log(loss=loss)
        t1 = time.perf_counter()
        log_us.append((t1 - t0) * 1e6)
        loss2 = train(model, opt, device, 1)
        t2 = time.perf_counter()
        loss2.item()  # waits for the queued work
        item_us.append((time.perf_counter() - t2) * 1e6)
        if device == "cuda":
            torch.cuda.synchronize()
        t3 = time.perf_counter()
        train(model, opt, device, 1)
        if device == "cuda":
            torch.cuda.synchronize()
        work_us.append((time.perf_counter() - t3) * 1e6)
    page = mon.metrics.page(0)
    mon.close()
    lg, it, wk = (statistics.median(v) for v in (log_us, item_us, work_us))
    check("log() of a CUDA 0-d tensor without a sync",
          len(page.series.get("loss", [])) == 50 and (device == "cpu" or lg < it / 4),
          f"log p50 {lg:.1f} µs; .item() after the same queued step {it:.1f} µs; "
          f"one step synchronised {wk:.1f} µs; all 50 values read back")


def stall_vs_copy(folder: str, device: str) -> None:
    model, opt = make(device)
    train(model, opt, device, 2)
    mon = Monitor(run="gpu-stall", checkpoint_dir=folder, autosave_every=None,
                  handle_sigterm=False)
    mon.track(model=model, optimizer=opt)
    ckpt = mon.checkpointer
    assert ckpt is not None
    tensors = [p for p in model.parameters()] + [t for s in opt.state.values()
                                                 for t in s.values() if isinstance(t, torch.Tensor)]
    stalls, copies = [], []
    for i in range(6):
        for kind in (("capture", "copy") if i % 2 else ("copy", "capture")):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            if kind == "capture":
                ckpt.capture(mon._tracked_for_save(), 2, None)
                stalls.append(time.perf_counter() - t0)
            else:
                [t.detach().to("cpu", copy=True) for t in tensors]
                if device == "cuda":
                    torch.cuda.synchronize()
                copies.append(time.perf_counter() - t0)
    mon.close()
    mb = sum(t.numel() * t.element_size() for t in tensors) / 1e6
    s, c = statistics.median(stalls[1:]), statistics.median(copies[1:])
    check("checkpoint stall vs device-to-host copy", s / c <= 1.5,
          f"{mb:.0f} MB: capture {s * 1e3:.1f} ms, plain copy {c * 1e3:.1f} ms ({s / c:.2f} ×; "
          "target ≤ 1.5 ×)")


def dcp_save(folder: str, device: str) -> None:
    """FSDP2 on one GPU under an NCCL process group of one (gloo on the CPU dry run): a save
    from the laptop is a DCP folder listed in the manifest; the boundary that saved stalls
    about one device-to-host copy; a resume puts every parameter back, on the GPU."""
    import socket

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "cpu:gloo,cuda:nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)
    try:
        mesh = init_device_mesh(device, (1,))

        def sharded() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
                                        torch.nn.Linear(2048, 2048)).to(device)
            for layer in model:
                if isinstance(layer, torch.nn.Linear):
                    fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            return model, torch.optim.Adam(model.parameters(), lr=1e-3)

        model, opt = sharded()
        mon = Monitor(run="gpu-check-dcp", checkpoint_dir=folder, autosave_every=None)
        mon.track(model=model, optimizer=opt)
        url = mon.serve(port=0, quiet=True)
        headers = {"Authorization": f"Bearer {mon.token}"}
        x = torch.randn(64, 2048, device=device)
        times = []
        for step in mon.steps(40):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            if step in (10, 25):  # the first save allocates the staging buffers; the second
                httpx.post(f"{url}/v1/commands",  # copies into them: its stall is measured
                           json={"id": f"dcp-{step}", "action": "save"}, headers=headers,
                           timeout=5)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())
        record = httpx.get(f"{url}/v1/commands/dcp-25", headers=headers, timeout=5).json()
        listed = mon.checkpointer.list()
        mon.close()
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        saved_at = (record.get("checkpoint") or {}).get("step") or 27
        # times[k] is taken in step k's body; the boundary that saved (after step saved_at - 1)
        # falls between times[saved_at - 1] and times[saved_at]
        stall = steps[saved_at - 1] - statistics.median(steps)
        tensors = [v.to_local() for v in model.state_dict().values()]
        tensors += [t for st in opt.state.values() for t in st.values()
                    if torch.is_tensor(t) and t.dim()]
        tensors = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
        t0 = time.perf_counter()
        copies = [t.to("cpu") if device == "cuda" else t.clone() for t in tensors]
        copy_s = time.perf_counter() - t0
        del copies
        ok = record.get("state") == "done" and any(c.path.endswith("0040") for c in listed)
        check("1-GPU DCP save", ok, f"command {record.get('state')}, listed "
              f"{[c.path.rsplit('/', 1)[-1] for c in listed]}")
        judge = check if device == "cuda" else info  # on a CPU the writer shares its cores
        judge("DCP save stall vs device-to-host copy", stall <= 1.5 * copy_s + 0.005,
              f"the step that saved (step {saved_at}) took {stall * 1e3:.1f} ms beyond the "
              f"median step; a plain copy of the model and Adam state {copy_s * 1e3:.1f} ms "
              f"({stall / copy_s:.2f} ×; target ≤ 1.5 ×)")
        resumed, opt2 = sharded()
        mon2 = Monitor(run="gpu-check-dcp", checkpoint_dir=folder, autosave_every=None)
        mon2.track(model=resumed, optimizer=opt2)
        at = mon2.resume()
        same = all(torch.equal(a.to_local(), b.to_local()) for a, b in
                   zip(model.parameters(), resumed.parameters(), strict=True))
        where = {t.device.type for st in opt2.state.values() for t in st.values()
                 if torch.is_tensor(t) and t.dim()}
        mon2.close()
        check("DCP resume", at == 40 and same and where == {device},
              f"step {at}, parameters equal: {same}, optimizer state on {sorted(where)}")
    finally:
        dist.destroy_process_group()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); "
              "run with --device cpu for a dry run", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (dry run)"
    print(f"gpu_check on {name}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        nvml_status(f"{tmp}/nvml", args.device)
        rng_and_resume(f"{tmp}/rng", args.device)
        log_without_sync(f"{tmp}/log", args.device)
        stall_vs_copy(f"{tmp}/stall", args.device)
        dcp_save(f"{tmp}/dcp", args.device)
    print("gpu_check:", "all passed" if not FAILED else f"FAILED: {', '.join(FAILED)}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
