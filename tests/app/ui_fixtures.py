"""Fixed, realistic data for the UI's snapshot tests and screenshots: three sessions on
different GPUs, one unreachable CPU session, a frozen clock.

Nothing here is a fake server: the data are :mod:`colabtui_remote.schema` objects, fed to the
panels exactly as a poll would deliver them (``SessionPanel.apply``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from colabtui_remote.schema import (
    PROTOCOL_VERSION,
    CheckpointInfo,
    CheckpointStatus,
    GpuStats,
    MetricPoint,
    RankInfo,
    ReplicaCopy,
    ReplicaStatus,
    SaveProgress,
    Status,
    UploadProgress,
    WorldStatus,
)

from colabtui.client import SessionError
from colabtui.config import Config, SessionConfig, Settings, save_config
from colabtui.curves import ResumeMark
from colabtui.widgets.session_panel import PollResult

NOW = 1_760_000_000.0
"""The frozen clock (Unix seconds) of every fixed-data test."""

GIB = 2**30
MB = 1_000_000


def frozen_clock() -> float:
    return NOW


def loss_curve(n: int, *, every: int = 10, start: float = 2.3, floor: float = 0.08,
               tau: float = 2500.0, seed: int = 0, nan_at: tuple[int, ...] = (),
               spike_at: tuple[int, ...] = (), first_seq: int = 1) -> list[MetricPoint]:
    """A decaying noisy loss, ``n`` points every ``every`` steps; NaN and spikes where asked
    (indices into the points)."""
    rng = random.Random(seed)
    pts = []
    for i in range(n):
        step = i * every
        value = floor + (start - floor) * math.exp(-step / tau)
        value *= 1 + 0.08 * rng.gauss(0, 1)
        if i in spike_at:
            value *= 3.5
        if i in nan_at:
            value = math.nan
        pts.append(MetricPoint(first_seq + i, step, NOW - (n - i) * 0.2, value))
    return pts


@dataclass
class FixedSession:
    """A session config and what its polls deliver."""

    config: SessionConfig
    status: Status
    series: dict[str, list[MetricPoint]] = field(default_factory=dict)
    error: SessionError | None = None
    error_since: float | None = None
    resumes: tuple[ResumeMark, ...] = ()


def _status(label: str, run: str, step: int, total: int | None, *, epoch: int,
            rate: float, gpus: list[GpuStats], checkpoint: CheckpointStatus,
            loss: float, started_ago: float, gpu_error: str | None = None,
            state: str = "running") -> Status:
    return Status(protocol=PROTOCOL_VERSION, run=run, session_id=f"sess-{run}", label=label,
                  state=state, step=step, total_steps=total, epoch=epoch, steps_per_s=rate,
                  metrics={"loss": loss}, last_seq=step // 10, started_at=NOW - started_ago,
                  uptime_s=started_ago, server_time=NOW, gpus=gpus, gpu_error=gpu_error,
                  checkpoint=checkpoint)


def three_sessions() -> list[FixedSession]:
    """Colab T4 saving fine, a Colab A100 in the middle of a save with 34 min at risk, a
    Kaggle P100 without power readings whose last save failed."""
    t4 = FixedSession(
        SessionConfig("http://127.0.0.1:8701", "tok-t4-0123456789abcdef", "resnet50 · T4"),
        _status("resnet50 · T4", "resnet50-lr3e-4", 8420, 20000, epoch=12, rate=6.3,
                gpus=[GpuStats(0, "Tesla T4", "GPU-1", 97.0, int(13.1 * GIB), int(15.0 * GIB),
                               71.0, 68.2, 70.0)],
                checkpoint=CheckpointStatus(
                    dir="/content/drive/MyDrive/colabtui/resnet50",
                    last=CheckpointInfo(8000, "/ck/step-8000.pt", 180 * MB, "ab", NOW - 240,
                                        3.2, 12),
                    next_autosave_at=NOW + 360, autosave_every_s=600, count=3),
                loss=0.41, started_ago=5400),
        {"loss": loss_curve(842, seed=1, nan_at=(500, 501), spike_at=(300,))},
        resumes=(ResumeMark(5200, NOW - 3600),),  # a second session, resumed from step 5,200
    )
    a100 = FixedSession(
        SessionConfig("http://127.0.0.1:8702", "tok-a100-0123456789abcdef", "vit-small · A100"),
        _status("vit-small · A100", "vit-small-bs512", 15300, 50000, epoch=3, rate=11.8,
                gpus=[GpuStats(0, "NVIDIA A100-SXM4-40GB", "GPU-2", 88.0, int(31.2 * GIB),
                               int(40.0 * GIB), 58.0, 287.0, 400.0)],
                checkpoint=CheckpointStatus(
                    last=CheckpointInfo(12000, "/ck/step-12000.pt", 330 * MB, "cd",
                                        NOW - 34 * 60, 8.1, 2),
                    in_progress=SaveProgress(15300, "writing", 210 * MB, 330 * MB, NOW - 4),
                    count=2),
                loss=1.12, started_ago=3 * 3600),
        {"loss": loss_curve(1530, seed=2, start=6.9, floor=0.9, tau=6000),
         "val_loss": loss_curve(31, every=500, seed=3, start=7.0, floor=1.0, tau=6000)},
    )
    p100 = FixedSession(
        SessionConfig("http://127.0.0.1:8703", "tok-p100-0123456789abcdef", "bert-ft · Kaggle"),
        _status("bert-ft · Kaggle", "bert-base-ft", 2210, None, epoch=1, rate=0.8,
                gpus=[GpuStats(0, "Tesla P100-PCIE-16GB", "GPU-3", 64.0, int(9.8 * GIB),
                               int(16.0 * GIB), 49.0, None, None,
                               {"power_w": "NVML_ERROR_NOT_SUPPORTED"})],
                checkpoint=CheckpointStatus(
                    last=CheckpointInfo(2000, "/ck/step-2000.pt", 1_300 * MB, "ef", NOW - 420,
                                        21.0, 1),
                    last_error="OSError: [Errno 28] No space left on device",
                    last_error_at=NOW - 60, count=1),
                loss=0.093, started_ago=2900),
        {"loss": loss_curve(221, seed=4, start=0.9, floor=0.05, tau=800)},
    )
    return [t4, a100, p100]


def drive_sessions() -> list[FixedSession]:
    """Two Colab runs watched through Drive mailboxes: one whose checkpoints go to Drive through
    the API (step 9,000 written locally and uploading, step 8,000 verified on Drive), one whose
    mounted Drive dropped under a save (two checkpoints on local disk only, retry scheduled)."""
    api = FixedSession(
        SessionConfig("gdrive://1AbCdEfGhIjKlMnOp/llama-lora/mailbox", "", "llama-lora · L4"),
        _status("llama-lora · L4", "llama-lora-r16", 9310, 30000, epoch=1, rate=2.4,
                gpus=[GpuStats(0, "NVIDIA L4", "GPU-5", 99.0, int(21.7 * GIB), int(22.5 * GIB),
                               74.0, 71.5, 72.0)],
                checkpoint=CheckpointStatus(
                    dir="/content/colabtui-checkpoints/llama-lora-r16",
                    last=CheckpointInfo(9000, "/content/colabtui-checkpoints/llama-lora-r16/"
                                        "ckpt-000009000.pt", 640 * MB, "aa", NOW - 130, 6.0, 1),
                    next_autosave_at=NOW + 470, autosave_every_s=600, count=3,
                    replica=ReplicaStatus(
                        dest="gdrive://1AbCdEfGhIjKlMnOp/llama-lora", kind="drive",
                        state="uploading",
                        verified=ReplicaCopy(8000, "ckpt-000008000.pt", 640 * MB, "b" * 32,
                                             NOW - 560, "1XyZ", NOW - 730),
                        uploading=UploadProgress(9000, 416 * MB, 640 * MB, NOW - 120),
                        pending=1)),
                loss=1.31, started_ago=2 * 3600),
        {"loss": loss_curve(931, seed=7, start=2.9, floor=1.2, tau=4000)},
    )
    mount = FixedSession(
        SessionConfig("mailbox:/home/me/GoogleDrive/MyDrive/colabtui/unet/mailbox", "",
                      "unet · T4"),
        _status("unet · T4", "unet-seg", 4100, 12000, epoch=8, rate=5.1,
                gpus=[GpuStats(0, "Tesla T4", "GPU-6", 93.0, int(11.9 * GIB), int(15.0 * GIB),
                               69.0, 66.0, 70.0)],
                checkpoint=CheckpointStatus(
                    dir="/content/colabtui-checkpoints/unet-seg",
                    last=CheckpointInfo(4000, "/content/colabtui-checkpoints/unet-seg/"
                                        "ckpt-000004000.pt", 120 * MB, "cc", NOW - 200, 1.9, 8),
                    next_autosave_at=NOW + 400, autosave_every_s=600, count=3,
                    replica=ReplicaStatus(
                        dest="/content/drive/MyDrive/colabtui/unet", kind="mount",
                        state="offline",
                        verified=ReplicaCopy(3000, "ckpt-000003000.pt", 120 * MB, "d" * 32,
                                             NOW - 1380, None, NOW - 1400),
                        pending=2,
                        last_error="OSError: [Errno 107] Transport endpoint is not connected: "
                                   "'/content/drive/MyDrive/colabtui/unet'",
                        last_error_at=NOW - 200, next_retry_at=NOW + 25)),
                loss=0.22, started_ago=3000),
        {"loss": loss_curve(410, seed=8, start=0.9, floor=0.15, tau=1500)},
    )
    return [api, mount]


def distributed_sessions() -> list[FixedSession]:
    """Two torchrun jobs: DDP on a Kaggle 2×T4 notebook, training; FSDP on two rented
    nodes of two A10Gs each, failed because rank 3's process ended."""
    t4s = [GpuStats(i, "Tesla T4", f"GPU-k{i}", u, int(m * GIB), int(15.0 * GIB), t, p, 70.0,
                    rank=i)
           for i, u, m, t, p in ((0, 96.0, 11.2, 69.0, 66.0), (1, 94.0, 11.0, 67.0, 64.5))]
    ddp_world = WorldStatus(size=2, nodes=1, checkpoint_kind="replicated",
                            ranks=[RankInfo(r, r, "kaggle-7f3", 4100 + r, f"GPU-k{r}", 5120)
                                   for r in range(2)])
    ddp = FixedSession(
        SessionConfig("http://127.0.0.1:8707", "tok-ddp-0123456789abcdef", "resnet · 2×T4 DDP"),
        replace(_status("resnet · 2×T4 DDP", "resnet-ddp", 5120, 12000, epoch=7, rate=4.1,
                        gpus=t4s,
                        checkpoint=CheckpointStatus(
                            last=CheckpointInfo(4800, "/kaggle/working/ck/ckpt-000004800.pt",
                                                190 * MB, "aa", NOW - 75, 2.4, 7),
                            next_autosave_at=NOW + 525, autosave_every_s=600, count=3),
                        loss=0.52, started_ago=1300), world=ddp_world),
        {"loss": loss_curve(512, seed=8, start=2.3, floor=0.4, tau=2000)},
    )
    a10s = [GpuStats(i % 2, "NVIDIA A10G", f"GPU-a{i}", u, int(m * GIB), int(22.0 * GIB), 61.0,
                     150.0, 300.0, rank=i, host=("node-a" if i < 2 else "node-b"))
            for i, u, m in ((0, 0.0, 17.5), (1, 0.0, 17.4), (2, 0.0, 17.6))]
    lost = "its process (pid 5312 on node-b) ended"
    fsdp_world = WorldStatus(size=4, nodes=2, checkpoint_kind="sharded", ranks=[
        RankInfo(r, r % 2, "node-a" if r < 2 else "node-b", 5300 + r, f"GPU-a{r}", 2210,
                 lost if r == 3 else None) for r in range(4)])
    fsdp = FixedSession(
        SessionConfig("http://127.0.0.1:8708", "tok-fsdp-0123456789abcdef", "llama-1b · FSDP"),
        replace(_status("llama-1b · FSDP", "llama-1b-fsdp", 2210, 10000, epoch=0, rate=0.9,
                        gpus=a10s,
                        checkpoint=CheckpointStatus(
                            last=CheckpointInfo(2000, "/mnt/shared/ck/ckpt-000002000",
                                                7_400 * MB, "bb", NOW - 260, 4.0, 0),
                            count=2),
                        loss=2.71, started_ago=2500, state="failed"),
                world=fsdp_world, error=f"rank 3 lost: {lost}"),
        {"loss": loss_curve(221, seed=9, start=10.5, floor=2.6, tau=900)},
    )
    return [ddp, fsdp]


def unreachable_session() -> FixedSession:
    """A CPU runtime (no NVML) last seen 3 minutes ago: values kept, shown dimmed."""
    return _answered_at(FixedSession(
        SessionConfig("http://127.0.0.1:8704", "tok-cpu-0123456789abcdef", "mlp · laptop CPU"),
        _status("mlp · laptop CPU", "digits-mlp", 640, 3000, epoch=5, rate=42.0, gpus=[],
                gpu_error="NVML Shared Library Not Found",
                checkpoint=CheckpointStatus(
                    last=CheckpointInfo(600, "/ck/step-600.pt", 2 * MB, "01", NOW - 300, 0.1, 5),
                    count=1),
                loss=0.21, started_ago=400),
        {"loss": loss_curve(64, seed=5, start=2.3, floor=0.1, tau=200)},
        error=SessionError("unreachable", "connection refused"),
        error_since=NOW - 185,
    ), NOW - 190)


LAUNCHED_ENDPOINT = "gpu-t4-s-3kq8v2rf1x7z"


def launched_session() -> FixedSession:
    """A session ``colabtui launch`` started on a Colab T4 whose runtime ended 6 minutes ago
    (no longer assigned): the app offers R to relaunch it."""
    return _answered_at(FixedSession(
        SessionConfig(f"colab://{LAUNCHED_ENDPOINT}/content/colabtui", "", "digits 2"),
        _status("digits 2", "digits-lr1e-3", 4210, 6000, epoch=7, rate=18.5,
                gpus=[GpuStats(0, "Tesla T4", "GPU-7", 64.0, int(2.1 * GIB), int(15.0 * GIB),
                               62.0, 41.0, 70.0)],
                checkpoint=CheckpointStatus(
                    dir="gdrive://1AbCdEfGhIjKlMnOp/digits",
                    last=CheckpointInfo(4000, "/ck/step-4000.pt", 6 * MB, "0d", NOW - 420,
                                        0.4, 8),
                    count=3),
                loss=0.18, started_ago=4 * 3600),
        {"loss": loss_curve(421, seed=8, start=2.3, floor=0.15, tau=900)},
        error=SessionError("unreachable", f"runtime {LAUNCHED_ENDPOINT} is no longer assigned "
                           "to your account"),
        error_since=NOW - 360,
    ), NOW - 365)


def write_launches(path: Path, launched: FixedSession) -> None:
    """The launches file ``colabtui launch`` writes, with the record of ``launched``."""
    from colabtui.colab.launches import LaunchRecord, save_launches

    save_launches({launched.config.url: LaunchRecord(
        "/home/you/colabtui/remote/examples/train_digits.py",
        ("--port", "-1", "--checkpoint-dir", "gdrive://1AbCdEfGhIjKlMnOp/digits", "--steps",
         "6000", "--lr", "1e-3"), "T4", launched.config.label)}, path)


def stopped_session() -> FixedSession:
    """A session stopped from the app 3 minutes ago: its final checkpoint holds the last
    step, and its server has closed since (connection refused)."""
    return _answered_at(FixedSession(
        SessionConfig("http://127.0.0.1:8705", "tok-stop-0123456789abcdef", "mlp · stopped"),
        _status("mlp · stopped", "digits-mlp-2", 1200, 3000, epoch=9, rate=40.0, gpus=[],
                gpu_error="NVML Shared Library Not Found",
                checkpoint=CheckpointStatus(
                    last=CheckpointInfo(1200, "/ck/step-1200.pt", 2 * MB, "02", NOW - 190, 0.1,
                                        30),
                    next_autosave_at=NOW + 480, autosave_every_s=600, count=4),
                loss=0.12, started_ago=900, state="stopped"),
        {"loss": loss_curve(120, seed=6, start=2.3, floor=0.1, tau=300)},
        error=SessionError("unreachable", "connection refused"),
        error_since=NOW - 185,
    ), NOW - 190)


def interrupted_session() -> FixedSession:
    """A notebook run interrupted a minute ago (the kernel's stop button): it saved on the way
    out and its server still answers, waiting for the cell to be run again."""
    return FixedSession(
        SessionConfig("http://127.0.0.1:8706", "tok-intr-0123456789abcdef", "mnist · colab"),
        _status("mnist · colab", "mnist-digits-s1", 1300, 2000, epoch=4, rate=12.5, gpus=[],
                gpu_error="NVML Shared Library Not Found",
                checkpoint=CheckpointStatus(
                    last=CheckpointInfo(1300, "/ck/ckpt-000001300.pt", 5 * MB, "03", NOW - 60,
                                        0.1, 4),
                    autosave_every_s=600, count=3),
                loss=0.35, started_ago=1800, state="interrupted"),
        {"loss": loss_curve(130, seed=7, start=2.3, floor=0.2, tau=300)})


def _answered_at(session: FixedSession, at: float) -> FixedSession:
    """The session with its status as sent at ``at`` (its server clock then)."""
    session.status = replace(session.status, server_time=at)
    return session


def write_config(path: Path, sessions: list[FixedSession], **settings) -> None:
    save_config(Config([s.config for s in sessions], Settings(**settings)), path)


def feed(app, sessions: list[FixedSession]) -> None:
    """Apply each session's fixed poll results to its panel, as the poll loop would."""
    for s in sessions:
        panel = app.panel(s.config.key)
        at = NOW if s.error is None else s.error_since - 5
        panel.apply(PollResult(s.config.key, at, status=s.status, history=s.series,
                               resumes=s.resumes))
        if s.error is not None:
            panel.apply(PollResult(s.config.key, s.error_since, error=s.error))
            panel.apply(PollResult(s.config.key, NOW, error=s.error))


def fire_alerts(app, sessions) -> None:
    """The polls the alerts see: a NaN loss, a lost session, a failed save, work at risk."""
    t4, a100, p100, cpu = sessions
    nan = replace(t4.status, metrics={"loss": None}, metrics_nonfinite={"loss": "nan"})
    for s, status, at in ((t4, t4.status, NOW - 240), (t4, nan, NOW - 200),
                          (a100, a100.status, NOW - 120), (p100, p100.status, NOW - 60)):
        app.alerts.observe(s.config, PollResult(s.config.key, at, status=status), None)
    for at in (cpu.error_since, NOW):
        app.alerts.observe(cpu.config, PollResult(cpu.config.key, at, error=cpu.error), None)
    app.alerts.observe(t4.config, PollResult(t4.config.key, NOW, status=t4.status), None)
