"""Data order that resumes: a tracked ``DataLoader`` continues at the next unseen batch.

``mon.track(train_loader=loader)`` (any keyword) puts a :class:`ResumableSampler` in front of
the loader's index sampler (its ``batch_sampler``, or its ``sampler`` without automatic
batching); the loop goes on iterating the loader itself. The sampler counts the batches each
epoch hands out and remembers the random state its epoch's order was drawn from; a checkpoint
holds both. After a resume, the next time the loader is iterated:

1. the torch CPU generator (and the loader's or sampler's own ``generator``) is set back to
   where it was when the interrupted epoch drew its order, so the shuffle is the same;
2. the batches already trained on are skipped as indices: nothing is loaded for them;
3. the torch CPU generator is set to what the checkpoint holds, so what comes next (the next
   batch's random transforms in the main process, dropout) draws exactly what an uninterrupted
   run draws, whatever the making of the iterator drew meanwhile.

Each sample is seen exactly once per epoch. A checkpoint saved after an epoch's last batch
resumes into that epoch with nothing left to load, so the code after the inner loop (the
evaluation, ``scheduler.step()``) runs as it would have. With ``persistent_workers`` the next
epoch's order is drawn as an uninterrupted run draws it (a persistent iterator is reset, not
made again).

Not covered: the random state *inside* worker processes (``num_workers > 0``): workers of a
resumed run are seeded afresh, so random augmentations done in workers differ from an
uninterrupted run (the data order does not). An ``IterableDataset`` has no sampler to resume:
it is refused at ``track()``.

Why a sampler and not a wrapper or torchdata: the loop keeps the loader it already has (no new
object to iterate, ``len(loader)`` and ``DistributedSampler.set_epoch`` unchanged), skipping
happens before any index reaches a worker, and it needs nothing beyond torch. A torchdata
``StatefulDataLoader`` is a ``DataLoader`` and is resumed the same way (its own
``state_dict`` is not used).
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["ResumableSampler", "is_data_loader", "make_resumable"]


def is_data_loader(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.utils.data.DataLoader`` (a torchdata ``StatefulDataLoader``
    included), without importing torch when it was never imported."""
    import sys

    data = sys.modules.get("torch.utils.data")
    return data is not None and isinstance(obj, data.DataLoader)


def make_resumable(name: str, loader: Any) -> ResumableSampler:
    """Put a :class:`ResumableSampler` in front of ``loader``'s index sampler (once; a loader
    tracked again keeps the one it has) and return it: what a checkpoint tracks for the loader.

    Raises:
        TypeError: the loader iterates an ``IterableDataset`` (no sampler to resume), or it has
            been iterated with persistent workers already (its iterator holds the old sampler).
    """
    from torch.utils.data import IterableDataset

    if isinstance(loader.dataset, IterableDataset):
        raise TypeError(f"{name}: a DataLoader over an IterableDataset has no sampler whose "
                        "position can be saved; track the dataset's own state (an object with "
                        "state_dict()/load_state_dict()) instead")
    current = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    if isinstance(current, ResumableSampler):
        return current
    if getattr(loader, "_iterator", None) is not None:
        raise TypeError(f"{name}: track the DataLoader before its first epoch: with "
                        "persistent_workers its iterator already holds the old sampler")
    gens = []
    for g in (loader.generator, getattr(loader.sampler, "generator", None)):
        if g is not None and all(g is not h for h in gens):
            gens.append(g)
    wrapped = ResumableSampler(current, gens, loader)
    make_iterator = loader._get_iterator

    def get_iterator() -> Any:  # DataLoader.__iter__ calls self._get_iterator()
        it = make_iterator()
        wrapped.iterator = weakref.ref(it)  # its _num_yielded: batches the loop has taken
        return it

    loader._get_iterator = get_iterator
    # DataLoader refuses these attributes after __init__; the index sampler is read through
    # them each time an iterator is made (DataLoader._index_sampler), so this is the seam.
    attr = "batch_sampler" if loader.batch_sampler is not None else "sampler"
    object.__setattr__(loader, attr, wrapped)
    return wrapped


class ResumableSampler:
    """An index sampler that counts what each epoch handed out and can skip it after a resume.

    Args:
        inner: the loader's batch sampler (or sampler).
        generators: the ``torch.Generator`` objects the order is drawn from besides the torch
            CPU generator (the loader's and the sampler's own), whose state is saved too.
        loader: the DataLoader (to tell whether its next epoch resets a persistent iterator).

    Attributes:
        epoch: epochs started (times the loader was iterated), counted across resumes.
        iterator: a weak reference to the loader's newest iterator, whose ``_num_yielded``
            counts what the loop took (workers fetch ahead of it).
    """

    def __init__(self, inner: Any, generators: list[Any], loader: Any) -> None:
        self.inner = inner
        self._generators = generators
        self._loader = loader
        self.epoch = 0
        self.iterator: Any = None
        self._skipped = 0
        self._start: tuple[Any, list[Any]] | None = None  # the open epoch's states, or None
        self._plan: dict | None = None

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:  # batch_size, drop_last, sampler… of the inner one
        if name in ("inner", "__setstate__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def end_epoch(self) -> None:
        """The loop closed the epoch (after its evaluation and scheduler step): a checkpoint
        from now on resumes into the next epoch, not into this one with nothing left."""
        self._start = None

    def _states(self, torch: Any) -> tuple[Any, list[Any]]:
        return torch.get_rng_state(), [g.get_state() for g in self._generators]

    def _set(self, torch: Any, rng: Any, generators: list[Any]) -> None:
        torch.set_rng_state(rng)
        for g, s in zip(self._generators, generators, strict=True):
            g.set_state(s)

    def __iter__(self):
        import torch

        plan, self._plan = self._plan, None
        into = plan is not None and plan["start"] is not None
        if into:  # back into the interrupted epoch: its order drawn from the same states
            self._set(torch, plan["start"], plan["start_generators"])
        elif plan is not None and plan["reset"]:
            # An uninterrupted run reset its persistent iterator here, drawing nothing before
            # the order; this run made a new one, which drew its base seed: undo that draw.
            self._set(torch, plan["rng"], plan["generators"])
        self._start = self._states(torch)
        self.epoch = plan["epoch"] if into else self.epoch + 1
        self._skipped = 0
        it = iter(self.inner)
        end = object()
        if into:
            for _ in range(plan["taken"]):  # indices only: nothing is loaded for them
                if next(it, end) is end:
                    break
                self._skipped += 1
            first = next(it, end)  # the order is drawn by now, even when nothing was skipped
            torch.set_rng_state(plan["rng"])  # the checkpoint's next draw comes from here
            if first is end:
                return
            yield first
        yield from it

    @property
    def taken(self) -> int:
        """Batches (samples, without automatic batching) the loop took in the current epoch."""
        it = self.iterator() if self.iterator is not None else None
        return self._skipped + int(getattr(it, "_num_yielded", 0) or 0)

    # ---- what a checkpoint holds (plain values and tensors: loads with weights_only=True)

    def state_dict(self) -> dict:
        """The position: ``epoch``, ``taken``; ``start`` and ``start_generators``, the states
        the open epoch's order was drawn from (None once the epoch is closed, or before the
        first); ``rng`` and ``generators``, the states now; ``reset``, whether the next epoch
        resets a persistent iterator. uint8 tensors and plain values."""
        import torch

        rng, gens = self._states(torch)
        start, start_gens = self._start if self._start is not None else (None, [])
        persistent = bool(getattr(self._loader, "persistent_workers", False)) \
            and getattr(self._loader, "num_workers", 0) > 0 \
            and getattr(self._loader, "_iterator", None) is not None
        return {"epoch": self.epoch, "taken": self.taken, "start": start,
                "start_generators": list(start_gens), "rng": rng, "generators": gens,
                "reset": persistent}

    def load_state_dict(self, state: dict) -> None:
        """Plan the resume: the next iteration goes on from the saved position.

        Raises:
            ValueError: ``state`` is not one of :meth:`state_dict`'s, or the loader draws from
                another number of generators than when it was saved.
        """
        try:
            plan = {"epoch": int(state["epoch"]), "taken": int(state["taken"]),
                    "start": state["start"], "start_generators": list(state["start_generators"]),
                    "rng": state["rng"], "generators": list(state["generators"]),
                    "reset": bool(state["reset"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a saved data order: {exc}") from None
        if len(plan["generators"]) != len(self._generators):
            raise ValueError(f"the loader draws from {len(self._generators)} generator(s) "
                             f"besides torch's; the checkpoint has {len(plan['generators'])}")
        self._plan = plan
        self.epoch = plan["epoch"]
        self._start = None
        for g, s in zip(self._generators, plan["generators"], strict=True):
            g.set_state(s)
