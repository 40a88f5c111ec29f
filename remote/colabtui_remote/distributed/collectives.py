"""The job's own process groups and the collectives the Monitor makes on them.

Three gloo groups are made beside the program's own (``torch.distributed.new_group``, which
every rank calls, in the same order, when the job starts):

- the *control* group, on the training thread: the flags agreed at each step boundary
  (:class:`Agreement`), and the small objects a save or a resume passes between ranks;
- the *checkpoint* group, on ``torch.distributed.checkpoint``'s own thread: an ``async_save``
  plans and finishes there while training goes on, so it must not share a group with the
  training thread's collectives;
- the *parts* group, on a thread of its own: each rank's part of a sharded checkpoint (its
  RNG states, its data order) gathered on rank 0 while training goes on.

gloo carries CPU tensors whatever the program's backend (NCCL included), so an agreement never
synchronises a CUDA stream.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FLAGS", "Agreement", "JobGroups", "MeanOfRanks"]

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
        self.parts = dist.new_group(backend="gloo")
        self._gatherer: Any = None

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (a list by rank), None on the others; pickled, so
        only for the job's own values."""
        out = [None] * self.dist.get_world_size() if self.dist.get_rank() == 0 else None
        self.dist.gather_object(obj, out, dst=0, group=self.control)
        return out

    def gather_later(self, obj: Any) -> Any:
        """:meth:`gather` on a thread of its own (the *parts* group; one gather at a time, in
        the order asked, the same on every rank): a ``concurrent.futures.Future`` of the
        list on rank 0 (None on the others). The training thread does not wait for it."""
        if self._gatherer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._gatherer = ThreadPoolExecutor(1, thread_name_prefix="colabtui-gather")
        dist = self.dist

        def gather() -> list[Any] | None:
            out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
            dist.gather_object(obj, out, dst=0, group=self.parts)
            return out

        return self._gatherer.submit(gather)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        self.dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def destroy(self) -> None:
        if self._gatherer is not None:
            self._gatherer.shutdown(wait=False)
        for group in (self.control, self.checkpoint, self.parts):
            try:
                self.dist.destroy_process_group(group)
            except Exception:  # the job is ending; a group already gone is no loss
                pass


AGREE_INTERVAL_S = 0.1
"""With the adaptive cadence, the time between agreements rank 0 aims for: a command from the
laptop is carried out 0.1–0.2 s after it arrives, and a 2 ms step pays one collective in
fifty. (One gloo all-reduce of a few ints costs 0.4–1.5 ms on a busy 2-core machine, measured
by ``bench/bench_distributed.py``: more than a small step.)"""

MAX_EVERY = 1000
"""The most boundaries between two agreements."""


class Agreement:
    """The flags every rank acts on at a boundary: one ``all_reduce(MAX)`` of a few int32
    (a logical OR of what each rank asks for), pipelined, at a cadence all ranks agree on.

    At a boundary that takes part, every rank settles (:meth:`settle`) the reduction it
    launched at the previous one (it has had at least a whole step to travel), acts on the
    flags, then launches (:meth:`launch`) the next. Every rank gets the same flags at the same
    boundary, so a command is carried out by every rank at the same step.

    The cadence: with ``every=None`` (adaptive) rank 0 proposes, in each reduction, how many
    boundaries to the next one (:data:`AGREE_INTERVAL_S` of its steps; 1 for steps of 0.1 s
    or more), and all ranks take it when the reduction settles; an int fixes it.

    Args:
        groups: the job's groups (the control group is used).
        every: boundaries between agreements (≥ 1), or None for the adaptive cadence.
    """

    def __init__(self, groups: JobGroups, every: int | None = None) -> None:
        if every is not None and every < 1:
            raise ValueError(f"agree_every must be ≥ 1 or None, got {every}")
        self.groups = groups
        self.every = every
        self._count = 0
        self._next = 1
        self._work: Any = None
        torch = groups.torch
        self._buffer = torch.zeros(len(FLAGS) + 2, dtype=torch.int32)  # + cadence, means

    def due(self) -> bool:
        """Counts a boundary; True when this one takes part."""
        self._count += 1
        if self._count < self._next:
            return False
        self._count = 0
        return True

    def propose(self, step_s: float | None) -> int:
        """Rank 0's proposal for the boundaries to the next agreement, from its step time."""
        if self.every is not None:
            return self.every
        if not step_s or step_s <= 0:
            return 1
        return max(1, min(MAX_EVERY, int(AGREE_INTERVAL_S / step_s)))

    def launch(self, asked: tuple[int, ...], every: int = 0, means: bool = False) -> None:
        """Start the reduction of this rank's flags (one int per name of :data:`FLAGS`, 0 or
        1) and, from rank 0, the cadence proposed and whether it has values to average (others
        send 0); :meth:`settle` must come first when one is in flight."""
        assert self._work is None, "settle() the reduction in flight first"
        buf = self._buffer
        for i, value in enumerate((*asked, every, int(means))):
            buf[i] = value
        dist = self.groups.dist
        self._work = dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=self.groups.control,
                                     async_op=True)

    def settle(self) -> dict[str, bool]:
        """Wait for the reduction in flight, if any, and return its flags (all false when
        none was in flight); the cadence it carried applies from here. Called before any
        other collective on the control group, and when the loop ends."""
        work, self._work = self._work, None
        if work is None:
            return dict.fromkeys(FLAGS, False)
        work.wait()
        values = self._buffer.tolist()
        self._next = self.every or max(1, min(MAX_EVERY, values[len(FLAGS)]))
        self.means_asked = bool(values[len(FLAGS) + 1])
        return {name: bool(v) for name, v in zip(FLAGS, values, strict=False)}

    means_asked = False
    """Rank 0 had values for :class:`MeanOfRanks` at the last reduction settled."""


class MeanOfRanks:
    """Metric values averaged across the ranks, beside each agreement: one ``all_reduce(SUM)``
    of float64 (each name's value and a count of 1 from each rank that has one), launched and
    settled with the flags' reduction.

    Args:
        groups: the job's groups (the control group is used).
    """

    def __init__(self, groups: JobGroups) -> None:
        self.groups = groups
        self._work: Any = None
        self._names: list[str] = []
        self._buffer: Any = None
        self.step = 0

    def launch(self, names: list[str], pending: dict[str, Any], step: int) -> None:
        """Start the reduction of this rank's latest ``pending`` values of ``names`` (the same
        list on every rank: rank 0's, agreed), taken out of ``pending``.

        Raises:
            TypeError: a value is neither a number nor a 0-d tensor.
        """
        torch = self.groups.torch
        values = []
        for name in names:
            value = pending.pop(name, None)
            if value is None:
                values.append((0.0, 0.0))
                continue
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise TypeError(f"log_mean({name}=...): a tensor of {value.numel()} "
                                    "elements; give a 0-d tensor or a number")
                value = value.detach().double().cpu().item()
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"log_mean({name}=...): {type(value).__name__} is not a "
                                "number or a 0-d tensor")
            values.append((float(value), 1.0))
        self._names, self.step = names, step
        self._buffer = torch.tensor([v for pair in values for v in pair], dtype=torch.float64)
        dist = self.groups.dist
        self._work = dist.all_reduce(self._buffer, op=dist.ReduceOp.SUM,
                                     group=self.groups.control, async_op=True)

    def settle(self) -> dict[str, float]:
        """Wait for the reduction in flight; the mean of each name some rank had."""
        work, self._work = self._work, None
        if work is None:
            return {}
        work.wait()
        flat = self._buffer.tolist()
        return {name: flat[2 * i] / flat[2 * i + 1] for i, name in enumerate(self._names)
                if flat[2 * i + 1]}
