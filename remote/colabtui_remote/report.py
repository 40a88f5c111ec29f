"""What the transports read of a run: the :class:`~.transport.source.RunSource` side of the
Monitor. Every read is built from attributes and in-memory stores, on the transport's thread;
none waits for the training thread."""

from __future__ import annotations

import math
import time
from typing import Any

from . import schema
from .host import host_info
from .throughput import steps_per_s
from .wire import split_nonfinite

__all__ = ["RunReport"]


class RunReport:
    """The read side of a :class:`~.monitor.Monitor`, which sets the attributes it reads:
    ``run``, ``label``, ``session_id``, ``state``, ``step``, ``total_steps``, ``epoch``,
    ``error``, ``metrics``, ``commands``, ``checkpointer``, ``autosave_every`` and the private
    ``_job`` (a distributed job's ranks and GPUs), ``_http`` (the server), ``_started_at``, ``_started_mono``, ``_boundaries``, ``_gpu``, ``_saver``,
    ``_runtime`` (the runtime's age and limits), ``_status_served_at``."""

    @property
    def tunnel_url(self) -> str | None:
        """The public URL of the tunnel ``serve(tunnel=...)`` started, or ``None``."""
        return self._tunnel.url if self._tunnel is not None else None

    @property
    def url(self) -> str | None:
        """The server's URL once :meth:`serve` ran."""
        return self._http.url if self._http is not None else None

    @property
    def _server(self) -> Any:
        return self._http.server if self._http is not None else None

    @property
    def _tunnel(self) -> Any:
        return self._http.tunnel if self._http is not None else None

    @property
    def started_at(self) -> float:
        """When this session started, Unix seconds."""
        return self._started_at

    def steps_per_s(self) -> float | None:
        """Throughput over the last steps (see :func:`~.throughput.steps_per_s`), steps/s."""
        return steps_per_s(self._boundaries)

    def status(self) -> schema.Status:
        """One snapshot for ``GET /v1/status``."""
        now = time.time()
        metrics, nonfinite = split_nonfinite(self.metrics.latest())
        gpus, gpu_error = self._gpu.snapshot()
        job = self._job
        world = None
        if job is not None:
            gpus, world = job.gpus(gpus), job.world()
        checkpoint = schema.CheckpointStatus()
        if self.checkpointer is not None:
            next_at = None
            if math.isfinite(self._saver.next_autosave) and self.state in ("running", "saving"):
                next_at = now + (self._saver.next_autosave - time.monotonic())
            ckpt = self.checkpointer
            kept = ckpt.list()  # once a poll: last and count from the same reading
            checkpoint = schema.CheckpointStatus(
                dir=str(ckpt.directory), last=kept[-1] if kept else None,
                in_progress=ckpt.progress(), last_error=ckpt.last_error,
                last_error_at=ckpt.last_error_at, next_autosave_at=next_at,
                autosave_every_s=self.autosave_every, count=len(kept),
                replica=ckpt.replica_status())
        return schema.Status(
            protocol=schema.PROTOCOL_VERSION, run=self.run, session_id=self.session_id,
            label=self.label, state=self.state, step=self.step, total_steps=self.total_steps,
            epoch=self.epoch, steps_per_s=self.steps_per_s(), metrics=metrics,
            metrics_nonfinite=nonfinite, last_seq=self.metrics.last_seq,
            started_at=self._started_at, uptime_s=time.monotonic() - self._started_mono,
            server_time=now, gpus=gpus, gpu_error=gpu_error, checkpoint=checkpoint,
            host=host_info(), error=self.error, world=world,
            runtime=self._runtime.info(time.monotonic()))

    def checkpoint_list(self) -> schema.CheckpointList:
        """The manifest for ``GET /v1/checkpoints``."""
        if self.checkpointer is None:
            return schema.CheckpointList(dir=None, checkpoints=[])
        return schema.CheckpointList(dir=str(self.checkpointer.directory),
                                     checkpoints=self.checkpointer.list())

    def _watched_to_the_end(self) -> Any:
        """For :func:`~.transport.http.serve.stop`'s linger: true once a laptop polling now has
        seen the final status and every command's outcome."""
        now = time.monotonic()
        return lambda: (self._status_served_at or 0.0) > now and not self.commands.undelivered()

    def status_served(self) -> None:
        """Called by the API each time a status snapshot goes out (for :meth:`close`)."""
        self._status_served_at = time.monotonic()
