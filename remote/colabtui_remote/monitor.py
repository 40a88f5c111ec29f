"""The one object a training loop talks to.

Usage in a notebook (see the README for the whole cell)::

    mon = Monitor(run="resnet-lr3e-4", checkpoint_dir="/content/drive/MyDrive/colabtui/resnet",
                  autosave_every=600)
    mon.track(model=model, optimizer=opt, scheduler=sched)
    mon.serve()                               # prints the line to paste into colabtui
    for step in mon.steps(total_steps):       # starts after the newest good checkpoint
        loss = train_step()
        mon.log(loss=loss)
    mon.close()

Threads: the training thread calls :meth:`log`, :meth:`steps` / :meth:`at_step_boundary`; the HTTP
thread calls :meth:`status` and records commands; the writer thread writes checkpoints; the GPU
sampler reads NVML. Saves happen only at step boundaries, on the training thread's word.
"""

from __future__ import annotations

import collections
import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from . import schema
from .checkpoint.destinations import CheckpointDestination, open_checkpoints
from .checkpoint.resume import find_resumable
from .checkpoint.state import restore, saved_values
from .checkpoint.writer import Checkpointer
from .commands import INTERNAL_PREFIX, CommandBook
from .gpu import GpuSampler
from .host import host_info
from .metrics import MetricsStore
from .saving import Saver
from .sigterm import SigtermHandler
from .throughput import MARKS, steps_per_s
from .transport.http import serve as http_serve
from .transport.http.serve import DEFAULT_PORT, HttpService
from .transport.mailbox import serve as mailbox_serve
from .wire import split_nonfinite

log = logging.getLogger(__name__)

class Monitor:
    """Reports a training run to colabtui and carries out its commands.

    Args:
        run: the run's name; a run spans sessions (runtimes) and resumes across them.
        checkpoint_dir: where checkpoints go. A folder (e.g. on a mounted Drive: if the mount
            fails under a save, that checkpoint and the next go to ``local_dir`` and are copied
            back when it answers again), or ``gdrive://FOLDER_ID[/sub/path]``: written to
            ``local_dir`` first, then uploaded through the Drive API and verified by md5
            (needs ``colabtui-remote[drive]``). ``None``: no checkpoints; a save command then
            fails with a clear reason.
        autosave_every: seconds between automatic checkpoints; ``None`` or 0 turns it off.
        keep: checkpoints kept in the folder (the newest ``keep``).
        label: what the laptop shows for this session; defaults to ``run``.
        handle_sigterm: on SIGTERM, save and stop at the next step boundary (main thread only).
        local_dir: local folder for a ``gdrive://`` destination's checkpoints, and the fallback
            for a folder on a mount; default
            :func:`~.checkpoint.destinations.default_local_dir`. The mount fallback is on for
            a folder on a FUSE or network filesystem or under ``/content/drive``, and, whatever
            the filesystem, when ``local_dir`` is given or ``$COLABTUI_LOCAL_CHECKPOINTS``
            names a runtime disk.
        drive_credentials: credentials file for a ``gdrive://`` destination (default: as
            :func:`colabtui_remote.drive.auth.connect` finds them; env
            ``COLABTUI_DRIVE_CREDENTIALS``).

    Raises:
        ValueError: a bad argument (``run`` empty, a ``gdrive://`` URL that is not valid).
        ImportError: a ``gdrive://`` destination without pydrive2
            (``pip install 'colabtui-remote[drive]'``).
    """

    def __init__(self, run: str, checkpoint_dir: str | os.PathLike | None = None, *,
                 autosave_every: float | None = 600.0, keep: int = 3, label: str | None = None,
                 handle_sigterm: bool = True, local_dir: str | os.PathLike | None = None,
                 drive_credentials: str | os.PathLike | None = None) -> None:
        if not isinstance(run, str) or not run.strip():
            raise ValueError("run must be a non-empty name, e.g. Monitor(run='resnet-lr3e-4')")
        self.run = run
        self.label = label or run
        self.session_id = uuid.uuid4().hex[:16]
        self.metrics = MetricsStore()
        self.commands = CommandBook()
        self._dest: CheckpointDestination | None = None
        if checkpoint_dir:
            self._dest = open_checkpoints(checkpoint_dir, run, keep=keep, local_dir=local_dir,
                                          drive_credentials=drive_credentials)
        self.autosave_every = float(autosave_every) if autosave_every else None
        self.step = 0
        """Steps completed so far (the index of the next step to run)."""
        self.epoch: int | None = None
        self.total_steps: int | None = None
        self.state = "running"
        self.error: str | None = None
        self.extras: dict[str, Any] = {}
        """Plain-valued extras given to :meth:`track`; restored by :meth:`resume`."""
        self._tracked: dict[str, Any] = {}
        self._started_at = time.time()
        self._started_mono = time.monotonic()
        self._saver = Saver(self._dest.checkpointer if self._dest else None, self.commands, self._tracked_for_save,
                            lambda: self.state, self._set_state, self.autosave_every,
                            self._started_mono)
        self._boundaries: collections.deque[tuple[float, int]] = collections.deque(maxlen=MARKS)
        self._stop = False
        self._sigterm = False
        self._resumed = False
        self._gpu = GpuSampler()
        self._gpu_started = False
        self._http: HttpService | None = None
        self.token: str | None = None
        self._sigterm_handler = SigtermHandler(self._on_sigterm) if handle_sigterm else None
        self._status_served_at: float | None = None
        self._mailbox: Any = None
        self._closed = False

    @property
    def checkpointer(self) -> Checkpointer | None:
        """The checkpoint writer; None without a ``checkpoint_dir``. May be replaced by one
        built with other options (a plain folder: no Drive replica)."""
        return self._dest.checkpointer if self._dest is not None else None

    @checkpointer.setter
    def checkpointer(self, ckpt: Checkpointer | None) -> None:
        self._dest = CheckpointDestination(ckpt) if ckpt is not None else None
        self._saver.checkpointer = ckpt

    # ------------------------------------------------------------------ set-up

    def track(self, model: Any = None, optimizer: Any = None, scheduler: Any = None,
              scaler: Any = None, **extra: Any) -> Monitor:
        """Name what a checkpoint holds. Objects with ``state_dict()``/``load_state_dict()`` are
        saved through them; other extras must be plain values (numbers, strings, lists, dicts,
        tensors) and come back in :attr:`extras` after :meth:`resume`. Returns ``self``."""
        for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler),
                          ("scaler", scaler), *extra.items()):
            if obj is not None:
                self._tracked[name] = obj
        self.extras.update({k: v for k, v in extra.items() if not hasattr(v, "state_dict")})
        return self

    def resume(self) -> int:
        """Load the newest checkpoint that verifies into the tracked objects.

        Which one is :func:`~.checkpoint.resume.find_resumable`'s choice: the newest that
        verifies locally (the folder or its mount fallback), else for a ``gdrive://``
        destination the newest verified on Drive (downloaded, md5 and sha256 checked). Newer
        listed ones that failed verification, or were saved before this resume at a greater
        step, are unlisted (never deleted; see :meth:`~.checkpoint.writer.Checkpointer.resumed_from`).

        Returns:
            The step to start from: steps completed by the checkpoint, or 0 with none.

        Raises:
            CheckpointError: a checkpoint verified but does not fit the tracked objects; or the
                Drive destination cannot be read (nothing there is changed).
        """
        self._resumed = True
        if self.checkpointer is None:
            return self.step
        assert self._dest is not None
        found = find_resumable(self._dest)
        if found is None:
            log.info("colabtui_remote: no checkpoint in %s; starting at step 0", self._dest.where)
            return self.step
        state, info = found
        notes = restore(self._tracked, state)
        try:
            self.checkpointer.resumed_from(info)  # newer listed ones failed verification
        except OSError as exc:
            log.warning("colabtui_remote: could not unlist unusable checkpoints: %s", exc)
        for note in notes:
            log.info("colabtui_remote: %s", note)
        self.extras.update(saved_values(state))
        self.step = info.step
        self.epoch = state.get("epoch", info.epoch)
        print(f"colabtui: resumed {self.run} at step {self.step} from {info.path}", flush=True)
        return self.step

    def serve(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
              *, quiet: bool = False, tunnel: str | None = None) -> str:
        """Start the HTTP server on a daemon thread and print the line to paste on the laptop.

        Running the cell again in the same process replaces the earlier server on that address
        and keeps its token unless a new one is given, so a connected laptop keeps working.

        Args:
            host: address to bind. ``127.0.0.1`` keeps it private to the runtime (reach it
                through ``ssh -L`` or a tunnel); ``0.0.0.0`` exposes it on every interface.
            port: TCP port; 0 picks a free one.
            token: bearer token; a random 192-bit one when ``None``.
            quiet: do not print the connect line.
            tunnel: ``"cloudflared"`` also exposes the server through a Cloudflare quick tunnel
                (opt-in; see :mod:`.transport.http.tunnel`) and prints the public connect line with a warning
                about Colab's terms. If the tunnel cannot start, a message says why and the
                server keeps running locally. Waits up to 30 s for the tunnel's URL.

        Returns:
            The server's local URL, e.g. ``http://127.0.0.1:8765`` (also with a tunnel).

        Raises:
            PortInUse: another program holds the port.
            ValueError: ``tunnel`` is not ``None`` or ``"cloudflared"``.
        """
        self._http = http_serve.start(self, self.label, host, port, token, quiet=quiet,
                                      tunnel=tunnel, replacing=self._http)
        self.token = self._http.token
        self._start_watching()
        return self._http.url

    def serve_mailbox(self, folder: str | os.PathLike, interval_s: float = 5.0, *,
                      quiet: bool = False) -> str:
        """Serve through a mailbox folder (e.g. the run folder on a mounted Drive, or
        ``gdrive://FOLDER_ID/path`` through the Drive API), for a laptop that reaches the
        runtime only through Drive; see :mod:`.transport.mailbox`.

        A daemon thread writes the status and new metric points every ``interval_s`` seconds
        and carries out the commands the laptop drops there. It can run beside :meth:`serve`.
        Calling it again replaces the earlier mailbox.

        Args:
            folder: the mailbox folder, created if missing: a path, or ``gdrive://ID[/path]``
                (needs ``colabtui-remote[drive]``; in Colab, credentials come from
                ``google.colab.auth.authenticate_user()``; subfolders of ID are created).
            interval_s: seconds between rounds (each writes a few small files; through the
                Drive API, each file is a request: 10 s keeps far under the quota).
            quiet: do not print the line to run on the laptop.

        Returns:
            The folder's absolute path, or the ``gdrive://`` URL as given.

        Raises:
            OSError: the folder cannot be created or written (a ``DriveError`` for Drive: a
                folder id that does not exist or is not shared, credentials refused).
            ImportError: a ``gdrive://`` folder without pydrive2 installed.
        """
        if self._mailbox is not None:
            self._mailbox.close()
            self._mailbox = None
        self._mailbox, where = mailbox_serve.start(self, folder, interval_s, quiet=quiet)
        self._start_watching()
        return where

    def _start_watching(self) -> None:
        """Once a transport serves: sample the GPUs, and save and stop on SIGTERM."""
        if not self._gpu_started:
            self._gpu.start()
            self._gpu_started = True
        if self._sigterm_handler is not None:
            self._sigterm_handler.install()

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

    # ------------------------------------------------------------------ the training thread

    def log(self, step: int | None = None, **values: Any) -> None:
        """Record metric values (floats, ints or 0-d tensors) at ``step`` (default: the current
        step). No I/O, no contended lock, no GPU synchronisation: it appends to memory.

        Raises:
            TypeError: a value is not a number or a 0-d tensor.
        """
        if step is None:
            step = self.step
        append = self.metrics.append
        for name, value in values.items():
            append(name, value, step)

    def steps(self, total: int) -> Iterator[int]:
        """Yield step indices from the resumed step to ``total - 1``.

        Between steps it carries out commands and autosaves; when asked to stop it saves and
        ends early. At the end it saves a last checkpoint, so a finished run is not redone.
        """
        self.total_steps = int(total)
        if not self._resumed:
            self.resume()
        self._set_state("running")
        step = self.step
        while step < total:
            yield step
            step += 1
            if self.at_step_boundary(step):
                return
        self._saver.finish(self.step, self.epoch)

    @property
    def stop_requested(self) -> bool:
        """True once a stop command (or SIGTERM) has been carried out: end the loop."""
        return self._stop

    def at_step_boundary(self, step: int, epoch: int | None = None) -> bool:
        """Tell the monitor ``step`` steps are complete; save or stop here if asked or due.

        This is the only place a save happens. Cheap when nothing is due (a few attribute reads).

        Args:
            step: steps completed so far (the index of the next step).
            epoch: the current epoch, if the loop counts them.

        Returns:
            True when the loop should end now (a stop was carried out).
        """
        self.step = step
        if epoch is not None:
            self.epoch = epoch
        now = time.monotonic()
        self._boundaries.append((now, step))
        if self.commands.has_pending() or self._sigterm or now >= self._saver.next_autosave:
            if self._sigterm and not self._stop:
                self._sigterm = False
                self.commands.submit(f"{INTERNAL_PREFIX}sigterm-{self.session_id}", "stop")
            if self._saver.act(now, step, self.epoch):
                self._stop = True
        return self._stop

    def _tracked_for_save(self) -> dict[str, Any]:
        tracked = dict(self._tracked)
        tracked.update(self.extras)
        return tracked

    def _set_state(self, state: str) -> None:
        self.state = state

    # ------------------------------------------------------------------ read by the HTTP thread

    def steps_per_s(self) -> float | None:
        """Throughput over the last steps (see :func:`~.throughput.steps_per_s`), steps/s."""
        return steps_per_s(self._boundaries)

    def status(self) -> schema.Status:
        """One snapshot for ``GET /v1/status``."""
        now = time.time()
        metrics, nonfinite = split_nonfinite(self.metrics.latest())
        gpus, gpu_error = self._gpu.snapshot()
        checkpoint = schema.CheckpointStatus()
        if self.checkpointer is not None:
            next_at = None
            if self.autosave_every and self.state in ("running", "saving"):
                next_at = now + (self._saver.next_autosave - time.monotonic())
            checkpoint = self.checkpointer.status(next_at, self.autosave_every)
        return schema.Status(
            protocol=schema.PROTOCOL_VERSION, run=self.run, session_id=self.session_id,
            label=self.label, state=self.state, step=self.step, total_steps=self.total_steps,
            epoch=self.epoch, steps_per_s=self.steps_per_s(), metrics=metrics,
            metrics_nonfinite=nonfinite, last_seq=self.metrics.last_seq,
            started_at=self._started_at, uptime_s=time.monotonic() - self._started_mono,
            server_time=now, gpus=gpus, gpu_error=gpu_error, checkpoint=checkpoint,
            host=host_info(), error=self.error)

    def checkpoint_list(self) -> schema.CheckpointList:
        """The manifest for ``GET /v1/checkpoints``."""
        if self.checkpointer is None:
            return schema.CheckpointList(dir=None, checkpoints=[])
        return schema.CheckpointList(dir=str(self.checkpointer.directory),
                                     checkpoints=self.checkpointer.list())

    # ------------------------------------------------------------------ shutdown

    def _on_sigterm(self) -> bool:
        if self._sigterm or self._stop or self.state in ("finished", "stopped"):
            return False  # a second SIGTERM, or nothing left to save
        self._sigterm = True
        return True

    def close(self) -> None:
        """Finish a checkpoint in flight, stop the server, the tunnel, the mailbox and the GPU
        sampler. Idempotent.

        With a replica (``gdrive://`` checkpoints, or a mounted Drive that dropped), it first
        lets queued copies reach Drive, up to 300 s (saying so); the server and the mailbox
        keep reporting the upload meanwhile. A copy not verified by then stays on local disk,
        and the message says where."""
        if self._closed:
            return
        self._closed = True
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self._http is not None:
            http_serve.stop(self._http, seen=self._watched_to_the_end())
        if self._mailbox is not None:
            self._mailbox.close()  # a last round: the final state and every command's outcome
        self._gpu.close()
        if self._sigterm_handler is not None:
            self._sigterm_handler.restore()

    def _watched_to_the_end(self) -> Any:
        """For :func:`~.transport.http.serve.linger`: a check that a laptop polling now has
        seen the final status and every command's outcome; None when nobody polled lately."""
        now = time.monotonic()
        if self._status_served_at is None or now - self._status_served_at > 10.0:
            return None
        return lambda: self._status_served_at > now and not self.commands.undelivered()

    def status_served(self) -> None:
        """Called by the API each time a status snapshot goes out (for :meth:`close`)."""
        self._status_served_at = time.monotonic()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None and not isinstance(exc[1], (KeyboardInterrupt, GeneratorExit)):
            self.state = "failed"
            self.error = f"{exc[0].__name__}: {exc[1]}"[: schema.MAX_TEXT]
        self.close()
