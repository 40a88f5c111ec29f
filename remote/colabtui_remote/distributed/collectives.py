"""The job's own process groups and the collectives the Monitor makes on them.

Two gloo groups are made beside the program's own (``torch.distributed.new_group``, which
every rank calls, in the same order, when the job starts):

- the *control* group, on the training thread: the flags agreed at each step boundary
  (:class:`Agreement`), and the small objects a save or a resume passes between ranks;
- the *checkpoint* group, on ``torch.distributed.checkpoint``'s own thread: an ``async_save``
  plans and finishes there while training goes on, so it must not share a group with the
  training thread's collectives.

gloo carries CPU tensors whatever the program's backend (NCCL included), so an agreement never
synchronises a CUDA stream.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FLAGS", "Agreement", "JobGroups"]

FLAGS = ("save", "stop", "sigterm", "sigint")
"""What a rank can ask for at a boundary, in the order of the agreed tensor. ``save`` and
``stop`` come from rank 0 (the laptop's commands, the autosave); ``sigterm`` and ``sigint``
from any rank (a signal)."""


class JobGroups:
    """The control and checkpoint groups of one job.

    Raises:
        RuntimeError: ``torch.distributed`` is not initialised (the message says what to call).
    """

    def __init__(self, world_size: int) -> None:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError(
                f"this is rank of a {world_size}-process job (torchrun set $WORLD_SIZE) but "
                "torch.distributed is not initialised: call "
                "torch.distributed.init_process_group() before the training loop starts")
        self.torch = torch
        self.dist = dist
        self.control = dist.new_group(backend="gloo")
        self.checkpoint = dist.new_group(backend="gloo")

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (a list by rank), None on the others; pickled, so
        only for the job's own values."""
        out = [None] * self.dist.get_world_size() if self.dist.get_rank() == 0 else None
        self.dist.gather_object(obj, out, dst=0, group=self.control)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        self.dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def destroy(self) -> None:
        for group in (self.control, self.checkpoint):
            try:
                self.dist.destroy_process_group(group)
            except Exception:  # the job is ending; a group already gone is no loss
                pass


class Agreement:
    """The flags every rank acts on at a boundary: one ``all_reduce(MAX)`` of a few int32
    (a logical OR of what each rank asks for), pipelined.

    At boundary *k* every rank settles (:meth:`settle`) the reduction launched at boundary
    *k - 1* (it has had a whole step to travel), acts on the flags, then launches boundary
    *k*'s. Every rank gets the same flags at the same boundary, so a command is carried out
    one step after rank 0 saw it, by every rank at the same step. With ``every`` > 1 only every
    ``every``-th boundary takes part (fewer collectives; a command waits that many steps more).

    Args:
        groups: the job's groups (the control group is used).
        every: boundaries between exchanges (≥ 1).
    """

    def __init__(self, groups: JobGroups, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"agree_every must be ≥ 1, got {every}")
        self.groups = groups
        self.every = every
        self._count = 0
        self._work: Any = None
        torch = groups.torch
        self._buffer = torch.zeros(len(FLAGS), dtype=torch.int32)

    def due(self) -> bool:
        """Counts a boundary; True when this one takes part."""
        self._count += 1
        return self._count % self.every == 0

    def launch(self, asked: tuple[int, ...]) -> None:
        """Start the reduction of this rank's flags (one int per name of :data:`FLAGS`, 0 or
        1); :meth:`settle` must come first when one is in flight."""
        assert self._work is None, "settle() the reduction in flight first"
        buf = self._buffer
        for i, value in enumerate(asked):
            buf[i] = value
        dist = self.groups.dist
        self._work = dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=self.groups.control,
                                     async_op=True)

    def settle(self) -> dict[str, bool]:
        """Wait for the reduction in flight, if any, and return its flags (all false when
        none was in flight). Called before any other collective on the control group, and
        when the loop ends."""
        work, self._work = self._work, None
        if work is None:
            return dict.fromkeys(FLAGS, False)
        work.wait()
        return {name: bool(v) for name, v in zip(FLAGS, self._buffer.tolist(), strict=True)}
