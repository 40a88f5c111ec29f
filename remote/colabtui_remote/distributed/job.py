"""A Monitor's distributed job: one voice for every rank of a ``torchrun`` job.

- Global rank 0 serves and reports; the other ranks serve nothing (the Monitor's ``serve``
  returns without starting a server there) but install the SIGTERM handler and, when they
  are their node's local rank 0, sample their node's GPUs.
- At each step boundary every rank takes part in one small collective (:class:`.collectives.
  Agreement`): rank 0 asks for a save or a stop (the laptop's commands, the autosave it times),
  any rank for a stop on SIGTERM or an interrupt on SIGINT; all act on the agreed flags at
  the same step (:class:`.job_saver.JobSaver`).
- A watchdog (:mod:`.watchdog`) says which rank was lost; the run is then ``failed`` with that
  reason, and survivors end within the watchdog's timeout.
- Resume: rank 0 picks the checkpoint (as in one process) and every rank loads it: the state
  broadcast from rank 0 (replicated), or DCP reading its shards (sharded); then each rank's
  own RNG states and data order.

The Monitor attributes it uses: ``run``, ``session_id``, ``step``, ``epoch``, ``commands``,
``checkpointer``, ``extras``, ``_dest``, ``_tracked``, ``_loaders``, ``_saver``,
``_sigterm``, ``_sigint``, ``_stop``, ``_start_over``, ``_save_on_interrupt``, ``_gpu``,
``_set_state``, ``framework_checkpointer()``, ``state``, ``error``.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import time
from typing import Any

from .. import schema
from ..checkpoint.resume import find_resumable, find_resumable_folder, unlist_passed_over
from ..checkpoint.state import capture_state, restore
from ..checkpoint.trackable import GENERATOR_KINDS, kind_of
from ..commands import INTERNAL_PREFIX
from .collectives import Agreement, JobGroups, MeanOfRanks
from .job_saver import JobSaver
from .ranks import Ranks
from .sharded import (
    FRAMEWORK,
    ShardedState,
    is_sharded,
    load_sharded,
    remove_stale_temporaries,
)
from .watchdog import RankWatchdog

__all__ = ["DEFAULT_RANK_TIMEOUT_S", "Job"]

log = logging.getLogger("colabtui_remote.distributed")

DEFAULT_RANK_TIMEOUT_S = 60.0
"""Seconds without a heartbeat before a rank counts as lost (a rank whose process ended on
this host is lost at once)."""

LOST_LINGER_S = 3.0
"""After a rank is lost, rank 0 answers the laptop this long more before it ends (so the
laptop's next poll sees which rank it was)."""


class Job:
    """The distributed side of one Monitor (see the module).

    Args:
        mon: the Monitor.
        ranks: this process's ranks.
        agree_every: step boundaries between agreements (1: every step), or None: adaptive,
            about every :data:`~.collectives.AGREE_INTERVAL_S` seconds of steps.
        rank_timeout_s: seconds without a heartbeat before a rank is lost.
    """

    def __init__(self, mon: Any, ranks: Ranks, *, agree_every: int | None = None,
                 rank_timeout_s: float = DEFAULT_RANK_TIMEOUT_S) -> None:
        if rank_timeout_s <= 0:
            raise ValueError(f"rank_timeout_s must be > 0, got {rank_timeout_s}")
        self.mon = mon
        self.ranks = ranks
        self.agree_every = None if agree_every is None else int(agree_every)
        if self.agree_every is not None and self.agree_every < 1:
            raise ValueError(f"agree_every must be ≥ 1 or None, got {agree_every}")
        self.rank_timeout_s = float(rank_timeout_s)
        self.groups: JobGroups | None = None
        self.agreement: Agreement | None = None
        self.watchdog: RankWatchdog | None = None
        self.split: ShardedState | None = None
        self._taken: list[schema.CommandRecord] | None = None
        self._ended = False
        self.pending: dict[str, Any] = {}
        """:meth:`Monitor.log_mean`'s latest values, sent at the next agreement."""
        self.means: MeanOfRanks | None = None
        self._mean_names: list[str] = []

    @property
    def saver(self) -> JobSaver:
        return self.mon._saver

    @property
    def started(self) -> bool:
        return self.groups is not None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Make the job's groups, agree on what a checkpoint is, start the watchdog. Every
        rank calls it at the same point (the first resume). Idempotent.

        Raises:
            RuntimeError: torch.distributed is not initialised, or the ranks do not all
                answer within the rank timeout.
        """
        if self.groups is not None:
            return
        self.groups = groups = JobGroups(self.ranks.world_size)
        self.agreement = Agreement(groups, self.agree_every)
        mon = self.mon
        sharded = is_sharded(mon._tracked)
        if sharded and self.ranks.is_main and mon.checkpointer is not None:
            mon.framework_checkpointer()  # DCP writes its files into the writer's folder
        agreed = None
        if self.ranks.is_main:
            ckpt = mon.checkpointer
            agreed = {"saves": ckpt is not None, "nonce": secrets.token_hex(4),
                      "directory": ckpt.directory if ckpt is not None else ""}
            if ckpt is not None and sharded:
                remove_stale_temporaries(ckpt.directory)
        agreed = groups.broadcast(agreed)
        saver = self.saver
        saver.job, saver.saves, saver.sharded = self, bool(agreed["saves"]), sharded
        saver.directory, saver.nonce = agreed["directory"], agreed["nonce"]
        if sharded:
            self.split = ShardedState(mon._tracked)
        self._start_watchdog(groups)
        mon._start_watching()  # every rank: SIGTERM saves and stops; node rank 0s sample GPUs
        atexit.register(self.end)

    def _start_watchdog(self, groups: JobGroups) -> None:
        store = _default_store(groups.dist)
        if store is None:
            log.warning("colabtui_remote: the process group has no store to share "
                        "heartbeats through; a lost rank is seen only by the process group's "
                        "own timeout")
            return
        about = {"pid": os.getpid(), "host": self.ranks.host, "local_rank": self.ranks.local_rank,
                 "node": self.ranks.node, "gpu_uuid": _cuda_uuid()}
        # torchrun's store outlives an elastic restart: each attempt has keys of its own
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self.watchdog = RankWatchdog(
            store, self.ranks, f"colabtui/{self.mon.run}/{attempt}/",
            timeout_s=self.rank_timeout_s,
            exit_grace_s=LOST_LINGER_S if self.ranks.is_main else 0.5,
            on_lost=self._on_lost, step=lambda: self.mon.step,
            extra=self._node_gpus if self.ranks.is_node_main and not self.ranks.is_main
            else None)
        self.watchdog.start(about)

    # ------------------------------------------------------------------ resume

    def find_resumable(self) -> tuple[dict, schema.CheckpointInfo, list[str]] | None:
        """Every rank: the checkpoint rank 0 picked, loaded into the tracked objects (each
        rank's own part included), or None to start at step 0.

        Raises:
            CheckpointError: as :meth:`Monitor.resume` (on the rank that could not load it).
        """
        self.start()
        mon, groups, main = self.mon, self.groups, self.ranks.is_main
        if not self.saver.saves or mon._start_over:
            return None
        if self.saver.sharded:
            info = find_resumable_folder(mon.checkpointer, FRAMEWORK) if main else None
            info = groups.broadcast(info)
            if info is None:
                return None
            state, notes = load_sharded(info.path, mon._tracked,
                                        process_group=groups.checkpoint)
            self.saver.saved_step = info.step
        else:
            found = find_resumable(mon._dest) if main else None
            if found is not None:
                unlist_passed_over(mon.checkpointer, found[1])
            found = groups.broadcast(found)
            if found is None:
                return None
            state, info = found
            notes = restore(mon._tracked, state)
        notes += self.restore_rank_part(state)
        return state, info, notes

    def restore_rank_part(self, state: dict) -> list[str]:
        """Restore this rank's RNG states and data order from ``state["ranks"]``; notes."""
        parts = state.get("ranks")
        if not isinstance(parts, list) or not parts:
            return []
        notes = []
        rank = self.ranks.rank
        if len(parts) != self.ranks.world_size:
            notes.append(f"saved by {len(parts)} ranks, resumed on {self.ranks.world_size}: "
                         f"rank {rank} takes rank {rank % len(parts)}'s random state and data "
                         "order (not an exact resume)")
            if self.ranks.is_main:
                print(f"colabtui: {notes[-1]}", flush=True)
        part = parts[rank % len(parts)]
        return notes + restore(_rank_tracked(self.mon), part)

    def rank_part(self, step: int, epoch: int | None) -> dict | str:
        """This rank's own part of a checkpoint (its RNG states, its data loaders' positions,
        its generators), or why it could not be captured."""
        try:
            return capture_state(_rank_tracked(self.mon), step, epoch)
        except Exception as exc:
            return f"could not capture its random state and data order: {exc}"

    # ------------------------------------------------------------------ the boundary

    def at_boundary(self, now: float, step: int) -> bool:
        """Every rank, at each step boundary: exchange the flags, act on those agreed at the
        previous exchange. Returns True when the loop ends (a stop was carried out).

        Raises:
            KeyboardInterrupt: an interrupt (SIGINT on any rank) was agreed: saved first.
        """
        mon = self.mon
        if mon._stop:
            return True
        if self.agreement is None:
            self.start()
        if not self.agreement.due():
            return False
        agreed = self.agreement.settle()
        self._settle_means()
        if any(agreed.values()):
            self._carry_out(agreed, step)
        if not mon._stop:
            main = self.ranks.is_main
            every = self.agreement.propose(_step_s(mon)) if main else 0
            self._launch_means(step)
            self.agreement.launch(self._asked(now), every, main and bool(self.pending))
        return mon._stop

    def _launch_means(self, step: int) -> None:
        """The names :meth:`Monitor.log_mean` was given are agreed once (rank 0's first
        ones, broadcast at the first agreement that has any; a rank that logs none sends
        none), then averaged at each agreement."""
        if not self._mean_names:
            if not self.agreement.means_asked:  # rank 0 said so in the last flags
                return
            self._mean_names = self.groups.broadcast(
                sorted(self.pending) if self.ranks.is_main else None)
            self.means = MeanOfRanks(self.groups)
        self.means.launch(self._mean_names, self.pending, step)

    def _settle_means(self) -> None:
        if self.means is None:
            return
        step = self.means.step
        for name, mean in self.means.settle().items():
            if self.ranks.is_main:
                self.mon.metrics.append(name, mean, step)

    def _asked(self, now: float) -> tuple[int, int, int, int]:
        mon, saver = self.mon, self.saver
        save = stop = 0
        if self.ranks.is_main and self._taken is None and not saver.busy:
            if mon.commands.has_pending():
                self._taken = mon.commands.take_pending()
                stop = int(any(r.action == "stop" for r in self._taken))
                save = 1 - stop
                saver.schedule(now)
            elif now >= saver.next_autosave:
                saver.schedule(now)
                self._taken, save = [], 1
        return save, stop, int(mon._sigterm), int(mon._sigint)

    def _carry_out(self, agreed: dict[str, bool], step: int) -> None:
        mon, saver = self.mon, self.saver
        records, self._taken = self._taken or [], None
        epoch = mon.epoch
        if agreed["sigint"]:
            mon._sigint = False
            saver.interrupt(step, epoch, save=mon._save_on_interrupt)
            for record in records:
                mon.commands.finish(record.id, error="interrupted at this step")
            raise KeyboardInterrupt(f"interrupted at step {step}")
        if agreed["sigterm"] or agreed["stop"]:
            if agreed["sigterm"] and self.ranks.is_main:
                mon.commands.submit(f"{INTERNAL_PREFIX}sigterm-{mon.session_id}", "stop")
                records += mon.commands.take_pending()
            mon._sigterm = False
            if saver.stop(records, step, epoch):
                mon._stop = True
        elif agreed["save"]:
            saver.save([r.id for r in records], step, epoch)

    def settle(self) -> list[schema.CommandRecord]:
        """Before a collective outside the boundary (the last save of a finished loop): the
        reduction in flight is settled; returns the commands rank 0 took for it, which that
        save then answers."""
        if self.agreement is not None:
            self.agreement.settle()
            self._settle_means()
        records, self._taken = self._taken or [], None
        return records

    # ------------------------------------------------------------------ lost ranks, status

    def _on_lost(self, rank: int, why: str) -> None:
        if not self.ranks.is_main:
            return
        mon = self.mon
        if mon.state not in ("finished", "stopped"):
            mon.error = f"rank {rank} lost: {why}"[: schema.MAX_TEXT]
            mon._set_state("failed")

    def failed(self, exc: BaseException) -> None:
        """An exception ended the loop on this rank. The other ranks are told (they count
        this one lost, with the exception), and a collective that failed because another rank
        died is checked at once, so the status names that rank (the run ``failed``)."""
        if self.watchdog is None or self._ended:
            return
        if not isinstance(exc, KeyboardInterrupt):
            self.watchdog.failed(f"{type(exc).__name__}: {exc}"[:200])
        self.watchdog.check_now()
        self._ended = True

    def linger(self) -> None:
        """After a rank was lost: rank 0 waits (up to :data:`LOST_LINGER_S`) until a laptop
        has polled the failed status."""
        lost = self.watchdog.lost if self.watchdog is not None else {}
        if lost and self.ranks.is_main and self.mon._http is not None:
            deadline = time.monotonic() + LOST_LINGER_S
            seen = self.mon._status_served_at or 0.0
            asked = time.monotonic()
            while time.monotonic() < deadline and seen < asked:
                time.sleep(0.05)
                seen = self.mon._status_served_at or 0.0

    def world(self) -> schema.WorldStatus:
        """The job for the status: its ranks, which are lost and why."""
        wd = self.watchdog
        peers = wd.peers if wd is not None else {}
        lost = wd.lost if wd is not None else {}
        beats = wd.steps() if wd is not None else {}
        ranks = [schema.RankInfo(rank=r, local_rank=p.get("local_rank"), host=p.get("host"),
                                 pid=p.get("pid"), gpu_uuid=p.get("gpu_uuid"),
                                 step=self.mon.step if r == self.ranks.rank else beats.get(r),
                                 lost=lost.get(r))
                 for r, p in sorted(peers.items())]
        nodes = len({p.get("node", 0) for p in peers.values()}) or None
        kind = None
        if self.started:
            kind = "sharded" if self.saver.sharded else "replicated"
        return schema.WorldStatus(size=self.ranks.world_size, nodes=nodes, ranks=ranks,
                                  checkpoint_kind=kind)

    def gpus(self, own: list[schema.GpuStats]) -> list[schema.GpuStats]:
        """Every GPU of the job: this node's (sampled here) and the other nodes' (published
        by their local rank 0 with its heartbeat), each with the rank that uses it."""
        import dataclasses

        wd = self.watchdog
        peers = wd.peers if wd is not None else {}
        by_uuid = {(p.get("gpu_uuid")): r for r, p in peers.items() if p.get("gpu_uuid")}
        several = len({p.get("node", 0) for p in peers.values()}) > 1
        out = [dataclasses.replace(g, rank=by_uuid.get(g.uuid),
                                   host=self.ranks.host if several else None) for g in own]
        if wd is not None:
            for rank, published in sorted(wd.published.items()):
                if not isinstance(published, list):
                    continue
                host = peers.get(rank, {}).get("host")
                for i, g in enumerate(published[:16]):
                    try:  # another rank's text: as hostile as a session's
                        gpu = schema.parse_gpu(g, f"rank {rank}'s gpus[{i}]")
                    except schema.SchemaError:
                        continue
                    out.append(dataclasses.replace(gpu, rank=by_uuid.get(gpu.uuid), host=host))
        return out

    def _node_gpus(self) -> list[dict] | None:
        """This node's GPUs, for rank 0 (published with the heartbeat, once a second)."""
        gpus, _ = self.mon._gpu.snapshot()
        return [schema.gpu_to_wire(g) for g in gpus] or None

    # ------------------------------------------------------------------ the end

    def end(self) -> None:
        """This rank ends on purpose (loop over, Monitor closed, process exiting): the
        others do not count it lost. Idempotent."""
        if self._ended:
            return
        self._ended = True
        if self.started and self.saver.sharded:
            self.saver.close_staging()
        if self.watchdog is not None:
            self.watchdog.done()


def _step_s(mon: Any) -> float | None:
    """Rank 0's recent step time, seconds (from its throughput), or None."""
    rate = mon.steps_per_s()
    return 1.0 / rate if rate else None


def _rank_tracked(mon: Any) -> dict[str, Any]:
    """The tracked objects each rank has its own state of: data loaders, generators."""
    loaders = {id(s) for s in mon._loaders}
    return {name: obj for name, obj in mon._tracked.items()
            if id(obj) in loaders or kind_of(obj) in GENERATOR_KINDS}


def _default_store(dist: Any) -> Any:
    """The store the default process group was made with (torchrun's), or None."""
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except Exception:  # a private API: a torch without it has no store to offer us
        return None


def _cuda_uuid() -> str | None:
    """The uuid of this process's current CUDA device, as NVML names it (``GPU-…``)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return f"GPU-{props.uuid}"
    except Exception:
        return None
