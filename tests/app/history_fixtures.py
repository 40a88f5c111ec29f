"""Sessions played into a real ledger through :meth:`Ledger.record_status`, status by status,
as the app records each poll: schema.Status objects naming different GPUs, platforms and ends.
For the history's tests, its snapshot and the screenshots (tests/app/ui_fixtures.NOW is "now").
"""

from __future__ import annotations

from colabtui_remote.schema import (
    PROTOCOL_VERSION,
    CheckpointInfo,
    CheckpointStatus,
    GpuStats,
    ReplicaCopy,
    ReplicaStatus,
    RuntimeInfo,
    Status,
)
from ui_fixtures import NOW

from colabtui.ledger import Ledger, iter_pages

COLAB = "colab"
KAGGLE = "kaggle"


def play_session(ledger: Ledger, *, run: str, session_id: str, label: str, gpu: str | None,
                 platform: str | None, started_at: float, lifetime_s: float, rate: float,
                 first_step: int = 0, end: str = "finished", ckpt_every_s: float = 600,
                 poll_s: float = 60, replica: bool = False, gpus: int = 1) -> int:
    """Record a session's statuses, one every ``poll_s`` seconds of its life, as polls would.

    Args:
        end: ``"finished"``, ``"stopped"``, ``"failed"``, ``"interrupted"`` (its last status
            says so), ``"lost"`` (the statuses stop while it trains) or ``"running"``.
        ckpt_every_s: seconds between its checkpoints (a save at each multiple).
        replica: its checkpoints go to Drive; the newest verified there lags one save behind.

    Returns:
        The last step it reached.
    """
    last_ckpt: CheckpointInfo | None = None
    prev: CheckpointInfo | None = None
    if first_step:  # resumed: it first shows the checkpoint it resumed from
        last_ckpt = CheckpointInfo(first_step, f"/ck/step-{first_step}.pt", 50_000_000, "aa",
                                   started_at - 120, 2.0)
    t = 0.0
    step = first_step
    while True:
        t = min(t + poll_s, lifetime_s)
        step = first_step + int(rate * t)
        if t // ckpt_every_s > (t - poll_s) // ckpt_every_s and t < lifetime_s:
            prev, last_ckpt = last_ckpt, CheckpointInfo(
                step, f"/ck/step-{step}.pt", 50_000_000, "bb", started_at + t, 2.0)
        final = t >= lifetime_s
        state = end if final and end in ("finished", "stopped", "failed", "interrupted") \
            else "running"
        if final and end in ("finished", "stopped"):
            prev, last_ckpt = last_ckpt, CheckpointInfo(
                step, f"/ck/step-{step}.pt", 50_000_000, "cc", started_at + t, 2.0)
        rep = None
        if replica:
            v = prev if not final or end == "lost" else last_ckpt
            rep = ReplicaStatus("gdrive://F/run", "drive", "ok", verified=None if v is None else
                                ReplicaCopy(v.step, v.path, v.bytes, "x", started_at + t,
                                            saved_at=v.saved_at))
        status = Status(
            protocol=PROTOCOL_VERSION, run=run, session_id=session_id, label=label, state=state,
            step=step, steps_per_s=rate * (1 + 0.02 * ((int(t) // 60) % 3 - 1)),
            started_at=started_at, uptime_s=t, server_time=started_at + t,
            gpus=[GpuStats(i, gpu, f"GPU-{i}") for i in range(gpus)] if gpu else [],
            gpu_error=None if gpu else "NVML Shared Library Not Found",
            checkpoint=CheckpointStatus(last=last_ckpt, replica=rep),
            runtime=None if platform is None else RuntimeInfo(platform, age_s=t + 40))
        ledger.record_status(session_id, f"http://127.0.0.1/{session_id}", label, status,
                             started_at + t + 0.5)
        if final:
            return step


def fill_history(ledger: Ledger) -> None:
    """Two runs over a week: resnet50 on T4s, an A100, a P100 and a CPU runtime (one T4 lost
    with work after its last checkpoint, one A100 still running); bert on Kaggle P100s."""
    day = 86_400.0
    s = play_session(ledger, run="resnet50-lr3e-4", session_id="r1", label="resnet50 · T4",
                     gpu="Tesla T4", platform=COLAB, started_at=NOW - 6 * day,
                     lifetime_s=4 * 3600 + 600, rate=6.2, end="lost", replica=True,
                     ckpt_every_s=1800)
    s = play_session(ledger, run="resnet50-lr3e-4", session_id="r2", label="resnet50 · T4",
                     gpu="Tesla T4", platform=COLAB, started_at=NOW - 5 * day,
                     lifetime_s=11 * 3600, rate=6.4, first_step=s - 3000, end="stopped",
                     poll_s=300)
    s = play_session(ledger, run="resnet50-lr3e-4", session_id="r3", label="resnet50 · P100",
                     gpu="Tesla P100-PCIE-16GB", platform=COLAB, started_at=NOW - 4 * day,
                     lifetime_s=2 * 3600, rate=8.9, first_step=s, end="interrupted")
    s = play_session(ledger, run="resnet50-lr3e-4", session_id="r4", label="resnet50 · CPU",
                     gpu=None, platform=None, started_at=NOW - 3 * day, lifetime_s=1800,
                     rate=0.4, first_step=s, end="failed")
    s = play_session(ledger, run="resnet50-lr3e-4", session_id="r5", label="resnet50 · T4",
                     gpu="Tesla T4", platform=COLAB, started_at=NOW - 2 * day,
                     lifetime_s=5 * 3600, rate=6.1, first_step=s, end="stopped", poll_s=300)
    play_session(ledger, run="resnet50-lr3e-4", session_id="r6", label="resnet50 · A100",
                 gpu="NVIDIA A100-SXM4-40GB", platform=COLAB, started_at=NOW - 3 * 3600,
                 lifetime_s=3 * 3600 - 30, rate=21.5, first_step=s, end="running", poll_s=300)
    s = play_session(ledger, run="bert-base-ft", session_id="b1", label="bert-ft · Kaggle",
                     gpu="Tesla P100-PCIE-16GB", platform=KAGGLE, started_at=NOW - 4 * day,
                     lifetime_s=9 * 3600, rate=0.8, end="stopped", poll_s=600)
    play_session(ledger, run="bert-base-ft", session_id="b2", label="bert-ft · Kaggle 2×T4",
                 gpu="Tesla T4", gpus=2, platform=KAGGLE, started_at=NOW - 2 * day,
                 lifetime_s=9 * 3600, rate=1.1, first_step=s, end="finished", poll_s=600)


LEARNING_RATES = (1e-3, 3e-3, 1e-2)
"""The demo's three runs (colabtui.demo.LEARNING_RATES)."""


def fill_learning_rates(ledger: Ledger) -> None:
    """The demo's three digits runs as a compare view sees them: 1,500 steps each, a run per
    learning rate on a different GPU; lr=3e-3 was resumed once (its first session lost at step
    900 after a save at 700); lr=1e-2 logged two NaN losses."""
    import math
    import random

    gpus = {1e-3: "Tesla T4", 3e-3: "NVIDIA L4", 1e-2: "NVIDIA A100-SXM4-40GB"}
    for i, lr in enumerate(LEARNING_RATES):
        rng = random.Random(i)
        run = f"digits-lr{lr:.0e}".replace("e-0", "e-")
        speed = {1e-3: 1.0, 3e-3: 2.2, 1e-2: 3.5}[lr]
        rate = {1e-3: 4.0, 3e-3: 6.0, 1e-2: 15.0}[lr]

        def value(step: int, lr: float = lr, rng=rng, speed=speed) -> float:
            if lr == 1e-2 and step in (1100, 1110):
                return math.nan
            floor = {1e-3: 0.2, 3e-3: 0.12, 1e-2: 0.04}[lr]
            v = floor + 2.2 * math.exp(-step * speed / 600) + 0.03 * rng.random()
            return v * (1.0 + (0.6 if lr == 1e-2 and step % 170 == 85 else 0.0))

        parts = [("a", 0, 1500)] if lr != 3e-3 else [("a", 0, 900), ("b", 700, 1500)]
        t = NOW - 4 * 3600 + i * 900
        for tag, lo, hi in parts:
            sid = f"{run}-{tag}"
            play_session(ledger, run=run, session_id=sid, label=f"digits lr={lr:g}",
                         gpu=gpus[lr], platform=COLAB, started_at=t,
                         lifetime_s=(hi - lo) / rate, rate=rate, first_step=lo,
                         end="stopped" if hi == 1500 else "lost", poll_s=30)
            pages = iter_pages(run, {"loss": [(s, value(s)) for s in range(lo, hi, 5)]},
                               t0=t - lo / rate)
            for page in pages:
                # time runs at the session's own rate: step / rate seconds after its start
                page.series["loss"] = [p.__class__(p.seq, p.step, t + (p.step - lo) / rate,
                                                   p.value) for p in page.series["loss"]]
                ledger.add_points(run, sid, page)
            t += (hi - lo) / rate + 1800
