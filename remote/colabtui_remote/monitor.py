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
import signal
import time
import uuid
from typing import Any

from . import schema
from .checkpoint.destinations import CheckpointDestination, for_framework, open_checkpoints
from .checkpoint.state import saved_values
from .checkpoint.trackable import check_trackable
from .checkpoint.writer import Checkpointer
from .commands import INTERNAL_PREFIX, CommandBook
from .data_order import is_data_loader, make_resumable
from .distributed.job import DEFAULT_RANK_TIMEOUT_S, Job
from .distributed.job_saver import JobSaver
from .distributed.ranks import detect_ranks
from .distributed.sharded import load_newest
from .gpu import GpuSampler
from .lifecycle import replace_live
from .loops import TrainingLoops
from .metrics import MetricsStore
from .report import RunReport
from .runtime import DEFAULT_LIMIT_MARGIN_S, RuntimeClock
from .saving import Saver
from .signals import SignalRequest
from .throughput import MARKS
from .transport.http import serve as http_serve
from .transport.http.serve import DEFAULT_PORT, HttpService
from .transport.mailbox import serve as mailbox_serve

log = logging.getLogger(__name__)

RUN_STATE = "colabtui.run"
"""The tracked name under which a checkpoint holds the run's own state (finished or not)."""

class Monitor(TrainingLoops, RunReport):
    """Reports a training run to colabtui and carries out its commands.

    Args:
        run: the run's name; a run spans sessions (runtimes) and resumes across them.
        checkpoint_dir: where checkpoints go (see :mod:`.checkpoint.destinations`): a folder
            (on a mount that drops, saves go to ``local_dir`` until it is back), or
            ``gdrive://FOLDER_ID[/sub/path]`` (written to ``local_dir``, uploaded, md5-checked;
            needs ``colabtui-remote[drive]``). ``None``: no checkpoints (a save then fails).
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
            :func:`colabtui_remote.drive.auth.connect` finds them; ``$COLABTUI_DRIVE_CREDENTIALS``).
        save_on_interrupt: on an interrupt (the kernel's stop button), save at the next step
            boundary before ``KeyboardInterrupt`` is raised there.
        start_over: load no checkpoint: train from step 0 (a finished run trained again).
        agree_every, rank_timeout_s: a distributed job's (``torchrun``, :mod:`.distributed`)
            step boundaries between agreements on a save or stop (None: about every 0.1 s),
            and seconds without a heartbeat before a rank is lost (the run fails).
        limit_margin_s: the autosave is due this long before the runtime's limit (:mod:`.runtime`).

    A ``$COLABTUI_MAILBOX`` (``colabtui launch`` sets it) is served once the run is resumed
    (:meth:`~.loops.TrainingLoops._serve_launched`).

    Raises:
        ValueError: a bad argument (``run`` empty, a bad ``gdrive://`` URL or
            ``$COLABTUI_MAILBOX_INTERVAL``).
        ImportError: a ``gdrive://`` destination without pydrive2
            (``pip install 'colabtui-remote[drive]'``).
    """

    def __init__(self, run: str, checkpoint_dir: str | os.PathLike | None = None, *,
                 autosave_every: float | None = 600.0, keep: int = 3, label: str | None = None,
                 handle_sigterm: bool = True, local_dir: str | os.PathLike | None = None,
                 drive_credentials: str | os.PathLike | None = None,
                 save_on_interrupt: bool = True, start_over: bool = False,
                 agree_every: int | None = None, limit_margin_s: float = DEFAULT_LIMIT_MARGIN_S,
                 rank_timeout_s: float = DEFAULT_RANK_TIMEOUT_S) -> None:
        if not isinstance(run, str) or not run.strip():
            raise ValueError("run must be a non-empty name, e.g. Monitor(run='resnet-lr3e-4')")
        self._launched = mailbox_serve.from_environment()  # set by `colabtui launch`
        self.run = run
        self.label = label or run
        self.session_id = uuid.uuid4().hex[:16]
        self.metrics = MetricsStore()
        self.commands = CommandBook()
        self._previous = replace_live(run, self)  # a re-run cell: the old one is closed
        ranks = detect_ranks()
        self._job = Job(self, ranks, agree_every=agree_every, rank_timeout_s=rank_timeout_s) \
            if ranks is not None else None
        self._dest: CheckpointDestination | None = None
        if checkpoint_dir and (ranks is None or ranks.is_main):  # rank 0 writes for the job
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
        self._started_at, self._started_mono = time.time(), time.monotonic()
        self._runtime = RuntimeClock(limit_margin_s, now=self._started_mono)
        self._saver = (JobSaver if ranks is not None else Saver)(
            self._dest.checkpointer if self._dest else None, self.commands, self._tracked_for_save,
            lambda: self.state, self._set_state, self.autosave_every, self._started_mono,
            limit_at=self._runtime.save_at)
        self._boundaries: collections.deque[tuple[float, int]] = collections.deque(maxlen=MARKS)
        self._stop = self._sigterm = self._resumed = False
        self._start_over = start_over
        self.finished = False
        """True once the run completed (:meth:`finish`, or the end of :meth:`steps`); a
        finished run resumed again trains nothing unless asked for more steps or epochs."""
        self._sigint = self._closed = False
        self._interrupt = SignalRequest(signal.SIGINT, self._on_sigint)
        self._save_on_interrupt = save_on_interrupt
        self._loaders: list[Any] = []
        self._gpu, self._gpu_started = GpuSampler(), False
        self._http: HttpService | None = None
        self.token: str | None = None
        self._sigterm_handler = (SignalRequest(signal.SIGTERM, self._on_sigterm)
                                 if handle_sigterm else None)
        self._status_served_at: float | None = None
        self._mailbox: Any = None

    @property
    def checkpointer(self) -> Checkpointer | None:
        """The checkpoint writer; None without a ``checkpoint_dir``. May be replaced by one
        built with other options (a plain folder: no Drive replica)."""
        return self._dest.checkpointer if self._dest is not None else None

    @checkpointer.setter
    def checkpointer(self, ckpt: Checkpointer | None) -> None:
        self._dest = CheckpointDestination(ckpt) if ckpt is not None else None
        self._saver.checkpointer = ckpt

    def framework_checkpointer(self) -> Checkpointer | None:
        """The writer for a framework that writes its own checkpoint folders (see
        :mod:`.integrations` and :func:`~.checkpoint.destinations.for_framework`): a folder on
        a mount is then written locally and replicated to the mount. None without a
        ``checkpoint_dir``.

        Raises:
            OSError: the local folder cannot be created.
        """
        if self._dest is not None:
            self._dest = for_framework(self._dest)
            self._saver.checkpointer = self._dest.checkpointer
        return self.checkpointer

    # ------------------------------------------------------------------ set-up

    def track(self, model: Any = None, optimizer: Any = None, scheduler: Any = None,
              scaler: Any = None, **extra: Any) -> Monitor:
        """Name what a checkpoint holds; :meth:`resume` restores each exactly: objects with
        ``state_dict()``/``load_state_dict()``, generators (``torch.Generator``, NumPy
        ``Generator``/``RandomState``, ``random.Random``), a torch ``DataLoader`` (its data
        order: see :mod:`.data_order`) and plain values (numbers, strings, bytes, tensors,
        lists, tuples, dicts), which come back in :attr:`extras`; see
        :mod:`.checkpoint.trackable`. Returns ``self``.

        Raises:
            TypeError: anything else (a lambda, an open file, a NumPy array, a DataLoader over
                an IterableDataset); the message names the keyword, the type and what to pass
                instead. Nothing of that call is tracked.
        """
        given = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler,
                 **extra}
        kinds = {name: check_trackable(name, obj) for name, obj in given.items() if obj is not None}
        loaders = {name: make_resumable(name, given[name]) for name in kinds
                   if is_data_loader(given[name])}
        self._loaders.extend(loaders.values())
        self._tracked.update((name, loaders.get(name, given[name])) for name in kinds)
        self.extras.update({k: v for k, v in extra.items()
                            if kinds.get(k, "value") == "value" and k not in loaders})
        return self

    def resume(self) -> int:
        """Load the newest checkpoint that verifies into the tracked objects.

        Which one is :func:`~.checkpoint.resume.find_resumable`'s choice: the newest that
        verifies locally (the folder or its mount fallback), else for a ``gdrive://``
        destination the newest verified on Drive (downloaded, md5 and sha256 checked). Newer
        listed ones that failed verification, or were saved before this resume at a greater
        step, are unlisted (never deleted; see :meth:`~.checkpoint.writer.Checkpointer.resumed_from`).

        Called again (a re-run cell), it loads nothing and goes on from the step reached;
        either way the loop is on: a stop from the laptop is cleared, state ``running``.

        Returns:
            The step to start from: steps completed by the checkpoint, or 0 with none.

        Raises:
            CheckpointError: a checkpoint verified but does not fit the tracked objects; or the
                Drive destination cannot be read (nothing there is changed).
        """
        if self._resumed:  # a re-run cell: go on from the step reached
            self._start_loop()
            return self.step
        self._resumed = True
        self._start_loop()
        if self._job is not None:  # every rank: the checkpoint rank 0 picked
            loaded = self._job.find_resumable()
        elif self.checkpointer is None or self._start_over:
            return self.step
        else:
            loaded = load_newest(self._dest, self._tracked)
        if loaded is None:
            if self._dest is not None:
                log.info("colabtui_remote: no checkpoint in %s; from step 0", self._dest.where)
            return self.step
        state, info, notes = loaded
        for note in notes:
            log.info("colabtui_remote: %s", note)
        values = saved_values(state)
        run_state = values.pop(RUN_STATE, None)
        self.extras.update(values)
        self.step = info.step
        self.epoch = state.get("epoch", info.epoch)
        self.finished = bool(isinstance(run_state, dict) and run_state.get("finished"))
        if self._job is None or self._job.ranks.is_main:
            print(f"colabtui: resumed {self.run} at step {self.step} from {info.path}", flush=True)
        return self.step

    def serve(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
              *, quiet: bool = False, tunnel: str | None = None) -> str:
        """Start the HTTP server on a daemon thread and print the line to paste on the laptop
        (see :func:`.transport.http.serve.start`). A re-run cell replaces the earlier server
        on that address and keeps its token unless a new one is given.

        Args:
            host: address to bind. ``127.0.0.1`` keeps it private to the runtime (reach it
                through ``ssh -L`` or a tunnel); ``0.0.0.0`` exposes it on every interface.
            port: TCP port; 0 picks a free one.
            token: bearer token; a random 192-bit one when ``None``.
            quiet: do not print the connect line.
            tunnel: ``"cloudflared"``: also a Cloudflare quick tunnel (opt-in, see
                :mod:`.transport.http.tunnel`; waits up to 30 s; on failure it says why and
                the server runs locally).

        Returns:
            The server's local URL, e.g. ``http://127.0.0.1:8765`` (also with a tunnel).

        In a distributed job only global rank 0 serves; the other ranks return ``""``.

        Raises:
            PortInUse: another program holds the port.
            ValueError: ``tunnel`` is not ``None`` or ``"cloudflared"``.
        """
        if self._quiet_rank():
            return ""
        old = self._previous._http if self._previous is not None else None
        if old is not None and self._http is None and port in (0, old.server.port):
            port, token = old.server.port, token or old.token  # the laptop follows the re-run
        self._http = http_serve.start(self, self.label, host, port, token, quiet=quiet,
                                      tunnel=tunnel, replacing=self._http)
        self.token = self._http.token
        self._start_watching()
        return self._http.url

    def serve_mailbox(self, folder: str | os.PathLike, interval_s: float = 5.0, *,
                      quiet: bool = False) -> str:
        """Serve through a mailbox folder (a folder on a mounted Drive, or ``gdrive://ID/path``
        through the Drive API; see :mod:`.transport.mailbox`): every ``interval_s`` a daemon
        thread writes the status and new points and carries out the commands dropped there.
        It can run beside :meth:`serve`; called again, it replaces the earlier mailbox.

        Args:
            folder: the mailbox folder, created if missing: a path, or ``gdrive://ID[/path]``
                (needs ``colabtui-remote[drive]``; in Colab, credentials come from
                ``google.colab.auth.authenticate_user()``; subfolders of ID are created).
            interval_s: seconds between rounds (through the Drive API each file is a request:
                10 s keeps far under the quota).
            quiet: do not print the line to run on the laptop.

        Returns:
            The folder's absolute path, or the ``gdrive://`` URL as given.

        Raises:
            OSError: the folder cannot be created or written (a ``DriveError`` for Drive: a
                folder id that does not exist or is not shared, credentials refused).
            ImportError: a ``gdrive://`` folder without pydrive2 installed.
        """
        if self._quiet_rank():  # rank 0 reports the job
            return ""
        if self._mailbox is not None:
            self._mailbox.close()
            self._mailbox = None
        self._mailbox, where = mailbox_serve.start(self, folder, interval_s, quiet=quiet)
        self._start_watching()
        return where

    def _quiet_rank(self) -> bool:
        """A job's rank other than 0: it serves nothing, but watches signals and GPUs."""
        quiet = self._job is not None and not self._job.ranks.is_main
        if quiet:
            self._start_watching()
        return quiet

    def _start_watching(self) -> None:
        """Once a transport serves: sample the GPUs, and save and stop on SIGTERM."""
        if not self._gpu_started and (self._job is None or self._job.ranks.is_node_main):
            self._gpu.start()
            self._gpu_started = True
        if self._sigterm_handler is not None:
            self._sigterm_handler.install()

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

    def log_mean(self, **values: Any) -> None:
        """In a distributed job, each rank's latest value of each name, averaged across the
        ranks at the next agreement (a CUDA value is read then), is logged by rank 0; outside
        a job it is :meth:`log`. Raises TypeError (when sent) for a non-number."""
        if self._job is None:
            self.log(**values)
        else:
            self._job.pending.update(values)

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
        if self._launched is not None:
            self._serve_launched()
        now = time.monotonic()
        self._boundaries.append((now, step))
        if self._job is not None:  # every rank: one small collective, then the agreed action
            return self._job.at_boundary(now, step)
        if self.commands.has_pending() or self._sigterm or self._sigint \
                or now >= self._saver.next_autosave:
            if self._sigint:
                self._sigint = False
                self._saver.interrupt(step, self.epoch, save=self._save_on_interrupt)
                raise KeyboardInterrupt(f"interrupted at step {step}")
            if self._sigterm and not self._stop:
                self._sigterm = False
                self.commands.submit(f"{INTERNAL_PREFIX}sigterm-{self.session_id}", "stop")
            if self._saver.act(now, step, self.epoch):
                self._stop = True
        return self._stop

    def _tracked_for_save(self) -> dict[str, Any]:
        tracked = dict(self._tracked)
        tracked.update(self.extras)
        tracked[RUN_STATE] = {"finished": self.finished}
        return tracked

    def _set_state(self, state: str) -> None:
        self.state = state

    # ------------------------------------------------------------------ shutdown

    def close(self, linger_s: float | None = None) -> None:
        """Finish a checkpoint in flight, stop the server, the tunnel, the mailbox and the GPU
        sampler. Idempotent.

        With a replica (``gdrive://`` checkpoints, or a mounted Drive that dropped), it first
        lets queued copies reach Drive, up to 300 s (saying so); the server and the mailbox
        keep reporting the upload meanwhile. A copy not verified by then stays on local disk,
        and the message says where. A laptop that polled in the last seconds is given up to
        ``linger_s`` (default 1 s: :data:`~.transport.http.serve.LINGER_S`) to see how the run
        ended."""
        if self._closed:
            return
        self._serve_launched()  # a run that ended before its first step: how it ended
        self._closed = True
        if self._job is not None:
            self._job.end()
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self._http is not None:
            http_serve.stop(self._http, seen=self._watched_to_the_end(), linger_s=linger_s)
        if self._mailbox is not None:
            self._mailbox.close()  # a last round: the final state and every command's outcome
        self._gpu.close()
        if self._sigterm_handler is not None:
            self._sigterm_handler.restore()
        self._interrupt.restore()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None and not isinstance(exc[1], (KeyboardInterrupt, GeneratorExit)):
            if self._job is not None:
                self._job.failed(exc[1])
            if self.state != "failed":
                self.state = "failed"
                self.error = f"{exc[0].__name__}: {exc[1]}"[: schema.MAX_TEXT]
        self.close()
