"""Which ranks of the job are alive: heartbeats through the job's store, and a watchdog.

Every rank's watchdog thread writes ``colabtui/<run>/beat/<rank>`` in the store the process
group was made with (torchrun's, held by its agent) every :data:`BEAT_S` seconds, and reads
every other rank's. A rank is *lost* when

- its process is gone (same host: its pid no longer runs, or is a zombie), seen within
  :data:`BEAT_S`; or
- its heartbeat has not changed for ``timeout_s`` (another host, or a process stopped or
  wedged), measured on this process's monotonic clock, so clocks need not agree;

unless it said it was done (``done/<rank>``: its Monitor closed). The store itself failing for
``timeout_s`` (its host died) loses every rank that is not this one.

When a rank is lost, ``on_lost(rank, why)`` is called once for it (rank 0 reports it and the
run fails), and after ``exit_grace_s`` more seconds a survivor still running is ended with
``os._exit(EXIT_RANK_LOST)``: it is most likely blocked in a collective that will never
complete, and nothing else would end it before the process group's own timeout (30 min for
gloo and NCCL by default).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .ranks import Ranks

__all__ = ["BEAT_S", "EXIT_RANK_LOST", "RankWatchdog", "process_gone"]

log = logging.getLogger("colabtui_remote.distributed")

BEAT_S = 1.0
"""Seconds between heartbeats (and between checks of the other ranks)."""

EXIT_RANK_LOST = 75
"""The exit status of a survivor the watchdog ends (75: ``EX_TEMPFAIL``, a job to start
again)."""


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` of this host has ended (no such process, or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class RankWatchdog:
    """Heartbeats of this rank and watch over the others (see the module).

    Args:
        store: a ``torch.distributed.Store`` shared by the job.
        ranks: this process's ranks.
        prefix: the key prefix (``colabtui/<run>/``).
        timeout_s: seconds without a heartbeat before a rank is lost.
        exit_grace_s: seconds from a loss to ``os._exit`` of a survivor still running.
        on_lost: ``on_lost(rank, why)``, once per lost rank, on the watchdog's thread.
        step: returns this rank's step (sent with the heartbeat).
        extra: returns a JSON-able value published with the heartbeat (the node's GPUs), or
            None; read back by :meth:`published`.
    """

    def __init__(self, store: Any, ranks: Ranks, prefix: str, *, timeout_s: float,
                 exit_grace_s: float, on_lost: Callable[[int, str], None],
                 step: Callable[[], int], extra: Callable[[], Any] | None = None) -> None:
        self.store = store
        self.ranks = ranks
        self.prefix = prefix
        self.timeout_s = float(timeout_s)
        self.exit_grace_s = float(exit_grace_s)
        self.on_lost = on_lost
        self._step = step
        self._extra = extra
        self.peers: dict[int, dict] = {}
        """What each rank said of itself when it started: pid, host, local_rank, gpu_uuid."""
        self.lost: dict[int, str] = {}
        """Lost ranks and why."""
        self.published: dict[int, Any] = {}
        """The latest ``extra`` of each rank."""
        self.beat_steps: dict[int, int] = {}
        """The step each rank's latest heartbeat carried."""
        self._seen: dict[int, tuple[bytes, float]] = {}
        self._store_ok_at = time.monotonic()
        self._lost_at: float | None = None
        self._beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _key(self, kind: str, rank: int) -> str:
        return f"{self.prefix}{kind}/{rank}"

    def start(self, about: dict) -> None:
        """Publish ``about`` (this rank's pid, host, GPU…), wait until every rank has, then
        start the thread. Called by every rank when the job starts.

        Raises:
            RuntimeError: the store does not answer, or not every rank published (within
                ``timeout_s``).
        """
        r = self.ranks.rank
        self.store.set(self._key("about", r), json.dumps(about))
        self._beat()
        keys = [self._key("about", i) for i in range(self.ranks.world_size)]
        self.store.wait(keys, _timedelta(self.timeout_s))
        for i, raw in enumerate(self.store.multi_get(keys)):
            self.peers[i] = json.loads(bytes(raw).decode())
        now = time.monotonic()
        self._seen = {i: (b"", now) for i in range(self.ranks.world_size)}
        self._thread = threading.Thread(target=self._run, name="colabtui-rank-watchdog",
                                        daemon=True)
        self._thread.start()

    def done(self) -> None:
        """This rank ends on purpose: no survivor is to count it lost. Stops the thread."""
        self._stop.set()
        try:
            self.store.set(self._key("done", self.ranks.rank), "1")
        except Exception:  # the store is gone with the job: nobody is left to count us
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * BEAT_S)

    def failed(self, why: str) -> None:
        """This rank ends by an exception: the others count it lost, with ``why``."""
        try:
            self.store.set(self._key("failed", self.ranks.rank), why)
        except Exception:  # the store is gone: the others see the process end instead
            pass

    def steps(self) -> dict[int, int]:
        """The step of each rank's latest heartbeat."""
        return dict(self.beat_steps)

    def check_now(self) -> dict[int, str]:
        """Check the other ranks at once (an exception out of a collective: was a rank lost?)
        and return :attr:`lost`."""
        try:
            self._check(time.monotonic())
        except Exception as exc:  # the store went with a lost host
            log.debug("colabtui_remote: rank check failed: %s", exc)
        return self.lost

    # ------------------------------------------------------------------ the thread

    def _beat(self) -> None:
        self._beats += 1
        extra = self._extra() if self._extra is not None else None
        value = json.dumps({"n": self._beats, "step": self._step(), "extra": extra})
        self.store.set(self._key("beat", self.ranks.rank), value)

    def _run(self) -> None:
        while not self._stop.wait(BEAT_S):
            now = time.monotonic()
            try:
                self._beat()
                self._check(now)
                self._store_ok_at = now
            except Exception as exc:
                if self._stop.is_set():
                    return
                if now - self._store_ok_at >= self.timeout_s:
                    for i in range(self.ranks.world_size):
                        if i != self.ranks.rank:
                            self._lose(i, f"the job's store has not answered for "
                                          f"{now - self._store_ok_at:.0f} s ({exc})", now)
            if self._lost_at is not None and now - self._lost_at >= self.exit_grace_s:
                log.error("colabtui_remote: rank %d ends: %s", self.ranks.rank,
                          "; ".join(f"rank {r} lost ({why})" for r, why in self.lost.items()))
                os._exit(EXIT_RANK_LOST)

    def _check(self, now: float) -> None:
        others = [i for i in range(self.ranks.world_size) if i != self.ranks.rank
                  and i not in self.lost]
        if not others:
            return
        beats = self.store.multi_get([self._key("beat", i) for i in others])
        for i, raw in zip(others, beats, strict=True):
            raw = bytes(raw)
            if self.store.check([self._key("failed", i)]):
                why = bytes(self.store.get(self._key("failed", i))).decode(errors="replace")
                self._lose(i, f"it failed: {why}", now)
                continue
            if self.store.check([self._key("done", i)]):
                continue  # it closed its Monitor: ended on purpose
            last, since = self._seen.get(i, (b"", now))
            if raw != last:
                self._seen[i] = (raw, now)
                since = now
                try:
                    beat = json.loads(raw.decode())
                    self.published[i] = beat.get("extra")
                    if isinstance(beat.get("step"), int):
                        self.beat_steps[i] = beat["step"]
                except (ValueError, AttributeError):
                    pass
            peer = self.peers.get(i, {})
            if peer.get("host") == self.ranks.host and isinstance(peer.get("pid"), int) \
                    and process_gone(peer["pid"]):
                self._lose(i, f"its process (pid {peer['pid']} on {peer['host']}) ended", now)
            elif now - since >= self.timeout_s:
                self._lose(i, f"no heartbeat for {now - since:.0f} s "
                              f"(pid {peer.get('pid')} on {peer.get('host')})", now)

    def _lose(self, rank: int, why: str, now: float) -> None:
        if rank in self.lost:
            return
        self.lost[rank] = why
        if self._lost_at is None:
            self._lost_at = now
        log.error("colabtui_remote: rank %d lost: %s", rank, why)
        try:
            self.on_lost(rank, why)
        except Exception:  # a report must never keep the watchdog from ending the rank
            log.exception("colabtui_remote: reporting the lost rank failed")


def _timedelta(seconds: float) -> Any:
    import datetime

    return datetime.timedelta(seconds=seconds)
