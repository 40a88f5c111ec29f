"""Sharded checkpoints through ``torch.distributed.checkpoint`` (DCP), for state held as
DTensors (FSDP2's ``fully_shard``, tensor parallelism).

A sharded checkpoint is a folder ``ckpt-000000500`` in the run's checkpoint folder:

- DCP's files (``__0_0.distcp``, ``__1_0.distcp``…, ``.metadata``): the model's and the
  optimizers' state dicts as ``torch.distributed.checkpoint.state_dict.get_model_state_dict`` /
  ``get_optimizer_state_dict`` give them (fully qualified names, so DCP can reshard them onto
  another world size);
- ``colabtui-state.pt``: a colabtui checkpoint state (:mod:`..checkpoint.state`) of everything
  else tracked (scheduler, plain values, the run's own state), the RNG states of every rank and
  each rank's data order (``"ranks"``), and which tracked names DCP holds (``"dcp"``).

Every rank writes its shards with ``async_save`` (the training stall is the staging copy);
rank 0 then writes ``colabtui-state.pt`` and hands the folder to the checkpoint writer, which
makes it durable, lists each file with its size and sha256 in the manifest (only now is it a
checkpoint), prunes and replicates it as any folder checkpoint. DCP's finish step gathers
every rank's write results on rank 0 before its ``.metadata`` is written, so rank 0's save
completing means every rank's shards are written.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..checkpoint.errors import CheckpointError
from ..checkpoint.state import capture_state, load_state, require_torch, restore

__all__ = ["FRAMEWORK", "STATE_FILE", "ShardedState", "is_sharded", "load_newest", "load_sharded",
           "newest_sharded", "remove_stale_temporaries"]

FRAMEWORK = "dcp"
"""The ``framework`` of a sharded checkpoint's manifest entry."""

STATE_FILE = "colabtui-state.pt"


def _dtensor_type() -> Any:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without DTensor: nothing is sharded
        return None
    return DTensor


def is_sharded(tracked: dict[str, Any]) -> bool:
    """Whether a tracked module holds DTensor parameters (FSDP2, tensor parallelism)."""
    torch = require_torch()
    dtensor = _dtensor_type()
    if dtensor is None:
        return False
    return any(isinstance(obj, torch.nn.Module)
               and any(isinstance(p, dtensor) for p in obj.parameters())
               for obj in tracked.values())


class ShardedState:
    """The split of the tracked objects a sharded checkpoint makes.

    Args:
        tracked: name → object, as the Monitor tracks them.

    Raises:
        CheckpointError: no tracked module, or more than one (DCP's state-dict helpers pair
            optimizers with one model: wrap the modules in one).
    """

    def __init__(self, tracked: dict[str, Any]) -> None:
        torch = require_torch()
        modules = [n for n, o in tracked.items() if isinstance(o, torch.nn.Module)]
        if len(modules) != 1:
            raise CheckpointError(
                f"a sharded checkpoint needs exactly one tracked model, got {len(modules)} "
                f"({', '.join(modules) or 'none'}): track the module that holds them all")
        self.model_name = modules[0]
        self.model = tracked[self.model_name]
        self.optimizers = {n: o for n, o in tracked.items()
                           if isinstance(o, torch.optim.Optimizer)}
        self.rest = {n: o for n, o in tracked.items()
                     if n != self.model_name and n not in self.optimizers}

    def state_dict(self) -> dict[str, Any]:
        """The model's and optimizers' state dicts for DCP (DTensors stay sharded)."""
        from torch.distributed.checkpoint.state_dict import (
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        out = {self.model_name: get_model_state_dict(self.model)}
        for name, opt in self.optimizers.items():
            out[name] = get_optimizer_state_dict(self.model, opt)
        return out

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import (
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        set_model_state_dict(self.model, sd[self.model_name])
        for name, opt in self.optimizers.items():
            set_optimizer_state_dict(self.model, opt, sd[name])

    def describe(self) -> dict[str, Any]:
        """What ``colabtui-state.pt`` records of the split (checked at load)."""
        return {"model": self.model_name, "optimizers": sorted(self.optimizers)}

    def capture_rest(self, tracked: dict[str, Any], step: int, epoch: int | None,
                     ranks: list[dict] | None) -> dict:
        """The state of ``colabtui-state.pt``: what ``tracked`` (as a save sees it now, plain
        values and the run's own state included) holds beside the model and optimizers, with
        every rank's part."""
        rest = {n: o for n, o in tracked.items()
                if n != self.model_name and n not in self.optimizers}
        state = capture_state(rest, step, epoch)
        state["dcp"] = self.describe()
        if ranks is not None:
            state["ranks"] = ranks
        return state


def load_sharded(folder: str, tracked: dict[str, Any], *, process_group: Any = None
                 ) -> tuple[dict, list[str]]:
    """Load a sharded checkpoint folder into the tracked objects, on every rank (or in a
    single process: DCP reshards onto whatever world size loads it).

    Returns:
        (the ``colabtui-state.pt`` state, notes of :func:`~..checkpoint.state.restore`).

    Raises:
        CheckpointError: the folder's state file is missing or not ours, it holds another
            split of the tracked objects, or DCP cannot load it into them.
    """
    import torch.distributed.checkpoint as dcp

    split = ShardedState(tracked)
    state = load_state(os.path.join(folder, STATE_FILE))
    if state.get("dcp") != split.describe():
        raise CheckpointError(f"{folder} holds {state.get('dcp')!r}, but what is tracked now "
                              f"is {split.describe()!r}")
    target = split.state_dict()
    try:
        dcp.load(target, checkpoint_id=folder, process_group=process_group)
        split.load_state_dict(target)
    except Exception as exc:
        raise CheckpointError(f"{folder}: torch.distributed.checkpoint could not load it: "
                              f"{type(exc).__name__}: {exc}") from exc
    notes = restore(split.rest, state)
    saved_by = len(state.get("ranks") or [])
    if saved_by > 1 and process_group is None:  # one process: the job's rank 0 part applies
        print(f"colabtui: {folder} was saved by {saved_by} ranks and is resumed by one "
              "process: parameters and optimizer resharded by DCP; the random state and data "
              "order are rank 0's (not an exact resume)", flush=True)
    return state, notes


def newest_sharded(ckpt: Any, newer_than: int | None = None) -> Any:
    """One process: the newest sharded checkpoint listed in the writer's folder that verifies,
    when there is one and it is newer than step ``newer_than`` (the newest checkpoint file);
    else None. A folder with no sharded checkpoint listed is left as it is.

    Raises:
        CheckpointError: the manifest does not parse.
    """
    from ..checkpoint.manifest import read_trees
    from ..checkpoint.resume import newest_folder, unlist_passed_over

    try:
        trees = read_trees(ckpt.directory)
    except (CheckpointError, OSError):
        return None  # find_resumable said why, loudly, already
    if not any(t.framework == FRAMEWORK for t in (trees or {}).values()):
        return None
    info = newest_folder(ckpt.directory, FRAMEWORK)
    if info is None or (newer_than is not None and info.step <= newer_than):
        return None
    unlist_passed_over(ckpt, info)
    return info


def load_newest(dest: Any, tracked: dict[str, Any]) -> tuple[dict, Any, list[str]] | None:
    """One process: the newest checkpoint of a destination that verifies, loaded into the
    tracked objects: a checkpoint file (:func:`~..checkpoint.resume.find_resumable`), or a
    sharded folder a distributed job saved, when newer (DCP reshards it onto this process).

    Returns:
        (state, its CheckpointInfo, notes), or None when there is none.

    Raises:
        CheckpointError: as :meth:`Monitor.resume`.
    """

    from ..checkpoint.resume import find_resumable, unlist_passed_over

    found = find_resumable(dest)
    ckpt = dest.checkpointer
    sharded = newest_sharded(ckpt, newer_than=found[1].step if found else None)
    if sharded is not None:
        state, notes = load_sharded(sharded.path, tracked)
        return state, sharded, notes
    if found is None:
        return None
    state, info = found
    notes = restore(tracked, state)
    unlist_passed_over(ckpt, info)
    return state, info, notes


_TEMPORARY = re.compile(r"^\.dcp-\d{9}\.tmp-[0-9a-f]{8}-\d+$")


def remove_stale_temporaries(directory: str) -> list[str]:
    """Rank 0, when a job starts: remove the temporary folders of sharded saves an earlier
    job was killed in (``.dcp-000000500.tmp-<job>-<n>``: never listed, never loaded; the
    writer holds the folder's lock, so no other job writes there). Returns what went."""
    from ..checkpoint.folders import remove_folder

    gone = []
    for name in os.listdir(directory):
        if _TEMPORARY.match(name) and os.path.isdir(os.path.join(directory, name)):
            remove_folder(os.path.join(directory, name))
            gone.append(name)
    return gone
