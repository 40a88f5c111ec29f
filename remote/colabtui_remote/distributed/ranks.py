"""Where this process stands in a distributed job: its global rank, the world size, its rank
on its node, and the node's index.

Read from an initialised ``torch.distributed`` process group, else from the environment
``torchrun`` sets for every worker (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``GROUP_RANK``; see torch's ``torch/distributed/run.py``). Without a
process group, a world of one process is not a distributed job: the Monitor then works as in a
notebook.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Ranks", "detect_ranks"]


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job.

    Attributes:
        rank: global rank, 0 … ``world_size - 1``; rank 0 serves and reports the job.
        world_size: processes in the job (1 for a process group of one).
        local_rank: rank among the processes of this node (the GPU index, by convention).
        local_world_size: processes on this node.
        node: this node's index (torchrun's ``GROUP_RANK``), 0 on a single node.
        host: this machine's host name.
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node: int
    host: str

    @property
    def is_main(self) -> bool:
        """Global rank 0: the one that serves, writes replicated checkpoints and reports."""
        return self.rank == 0

    @property
    def is_node_main(self) -> bool:
        """Local rank 0: the one that samples its node's GPUs."""
        return self.local_rank == 0


def _env_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name}={value!r} is not an integer (is this a torchrun "
                         "worker?)") from None


def detect_ranks(env: Mapping[str, str] | None = None) -> Ranks | None:
    """This process's :class:`Ranks`, or None outside a distributed job: no process group is
    initialised and the environment names no world of 2+ processes. An initialised process
    group (even of one process: FSDP2 on one GPU) wins over the environment; torch is not
    imported for this (only looked up when the program imported it).

    Raises:
        ValueError: ``RANK`` / ``WORLD_SIZE`` are set but not integers, or out of range.
    """
    env = os.environ if env is None else env
    rank = world = None
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()  # a group of one is a job too
    else:
        world = _env_int(env, "WORLD_SIZE", None)
        rank = _env_int(env, "RANK", None)
        if world is not None and world < 2:
            return None
    if world is None or world < 1:
        return None
    if rank is None or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0…{world - 1} ($RANK, $WORLD_SIZE)")
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    local_world = _env_int(env, "LOCAL_WORLD_SIZE", world)
    node = _env_int(env, "GROUP_RANK", 0)
    return Ranks(rank=rank, world_size=world, local_rank=local_rank or 0,
                 local_world_size=local_world or world, node=node or 0,
                 host=socket.gethostname())
