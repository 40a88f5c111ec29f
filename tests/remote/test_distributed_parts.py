"""The distributed wing's parts in one process: ranks from torchrun's environment, the rank
watchdog over a real ``torch.distributed.TCPStore`` (two watchdogs, as rank 0 and rank 1),
process ends seen (a zombie included), and every GPU of a job merged with its rank."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch.distributed as dist
from colabtui_remote import schema
from colabtui_remote.distributed.collectives import AGREE_INTERVAL_S, MAX_EVERY, Agreement
from colabtui_remote.distributed.job import Job
from colabtui_remote.distributed.ranks import Ranks, detect_ranks
from colabtui_remote.distributed.watchdog import RankWatchdog, process_gone
from ports import free_port


def test_ranks_come_from_torchruns_environment():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
           "GROUP_RANK": "1"}
    r = detect_ranks(env)
    assert (r.rank, r.world_size, r.local_rank, r.local_world_size, r.node) == (3, 4, 1, 2, 1)
    assert not r.is_main and not r.is_node_main and r.host == socket.gethostname()
    assert detect_ranks({}) is None  # a notebook
    assert detect_ranks({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: no job
    with pytest.raises(ValueError, match=r"\$RANK='x' is not an integer"):
        detect_ranks({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="rank 2 is not in 0…1"):
        detect_ranks({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="rank None"):
        detect_ranks({"WORLD_SIZE": "2"})


def test_the_adaptive_cadence_aims_at_a_tenth_of_a_second_and_is_bounded():
    a = Agreement.__new__(Agreement)
    a.every = None
    assert a.propose(None) == 1 and a.propose(0.0) == 1
    assert a.propose(0.002) == int(AGREE_INTERVAL_S / 0.002)
    assert a.propose(1.0) == 1 and a.propose(1e-9) == MAX_EVERY
    a.every = 4
    assert a.propose(0.002) == 4
    with pytest.raises(ValueError, match="agree_every"):
        Agreement(SimpleNamespace(torch=None), every=0)


def test_process_gone_sees_an_ended_process_and_a_zombie():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert not process_gone(proc.pid)
    proc.kill()
    deadline = time.monotonic() + 10
    while not process_gone(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process_gone(proc.pid)  # not reaped yet: a zombie
    proc.wait()
    assert process_gone(proc.pid)


def _ranks(rank: int) -> Ranks:
    return Ranks(rank=rank, world_size=2, local_rank=rank, local_world_size=2, node=0,
                 host="this-host")


@pytest.fixture
def store():
    """The job's store, and a second client of it for "rank 1" (one client per process, as
    in a job: a client's calls are serialised)."""
    port = free_port()
    master = dist.TCPStore("127.0.0.1", port, world_size=1, is_master=True,
                           wait_for_workers=False)
    return master, dist.TCPStore("127.0.0.1", port, is_master=False)


def _watchdogs(stores, timeout_s: float, lost: list):
    dogs = [RankWatchdog(stores[r], _ranks(r), "colabtui/t/", timeout_s=timeout_s,
                         exit_grace_s=1e9, on_lost=lambda r, why: lost.append((r, why)),
                         step=lambda: 7, extra=(lambda: [{"index": 0}]) if r else None)
            for r in (0, 1)]
    return dogs


def _start(dog, pid: int) -> None:
    dog.start({"pid": pid, "host": "this-host", "local_rank": dog.ranks.rank, "node": 0,
               "gpu_uuid": f"GPU-{dog.ranks.rank}"})


def test_a_rank_that_stops_beating_is_lost_after_the_timeout_and_a_done_one_is_not(store):
    import threading

    lost: list = []
    zero, one = _watchdogs(store, 1.5, lost)
    starter = threading.Thread(target=_start, args=(one, 1))  # pid 1: alive, not ours
    starter.start()
    _start(zero, 1)
    starter.join()
    time.sleep(2.5)
    assert lost == [] and zero.steps() == {1: 7} and zero.published == {1: [{"index": 0}]}
    one._stop.set()  # wedged: its thread no longer beats (its process still runs)
    deadline = time.monotonic() + 10
    while not lost and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lost and lost[0][0] == 1 and "no heartbeat for" in lost[0][1]
    zero.done()


def test_a_rank_that_said_done_is_never_lost_and_a_failed_one_is_named(store):
    import threading

    lost: list = []
    zero, one = _watchdogs(store, 1.0, lost)
    t = threading.Thread(target=_start, args=(one, 1))
    t.start()
    _start(zero, 1)
    t.join()
    one.done()
    time.sleep(2.5)
    assert lost == []
    store[0].set("colabtui/t/failed/1", "RuntimeError: out of memory")
    store[0].delete_key("colabtui/t/done/1")
    zero.check_now()
    assert lost == [(1, "it failed: RuntimeError: out of memory")]
    zero.done()


def test_a_jobs_gpus_are_this_nodes_and_the_others_published_each_with_its_rank():
    own = [schema.GpuStats(0, "A10G", "GPU-a0"), schema.GpuStats(1, "A10G", "GPU-a1")]
    other = [{"index": 0, "name": "A10G\x1b]0;x\x07", "uuid": "GPU-b0", "rank": 99},
             {"index": 1, "name": "A10G", "uuid": "GPU-b1", "utilization_pct": "bad"}]
    peers = {r: {"host": "a" if r < 2 else "b", "node": r // 2, "gpu_uuid": u}
             for r, u in enumerate(["GPU-a0", "GPU-a1", "GPU-b0", "GPU-b1"])}
    job = Job.__new__(Job)
    job.ranks = Ranks(0, 4, 0, 2, 0, "a")
    job.watchdog = SimpleNamespace(peers=peers, published={2: other, 3: None})
    gpus = job.gpus(own)
    assert [(g.uuid, g.rank, g.host) for g in gpus] == [
        ("GPU-a0", 0, "a"), ("GPU-a1", 1, "a"), ("GPU-b0", 2, "b")]  # a bad one is left out
    assert gpus[2].name == "A10G�]0;x�"  # a peer's text is parsed as a session's
