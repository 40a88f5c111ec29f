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
import platform
import re
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from . import schema
from .api import Api
from .checkpoint import (
    Checkpointer,
    CheckpointError,
    load_resumable,
    load_verified,
    on_mounted_filesystem,
    read_manifest,
    restore,
)
from .checkpoint_state import saved_values
from .commands import INTERNAL_PREFIX, CommandBook
from .gpu import GpuSampler
from .metrics import MetricsStore
from .server import Server

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
"""Port :meth:`Monitor.serve` binds unless told otherwise (fixed, so ``ssh -L`` and tunnels
can be set up once)."""

TOKEN_BYTES = 24
"""Random bytes in a generated token: 192 bits (the protocol asks for at least 128)."""

LINGER_S = 5.0
"""After the run ends, :meth:`Monitor.close` keeps serving up to this long, until a polling
client has seen the final state and every command's outcome (a stop's "done" included)."""


def new_token() -> str:
    """A random bearer token of :data:`TOKEN_BYTES` bytes, URL-safe base64, never starting with
    ``-`` (so ``--token TOKEN`` on a command line is not taken for an option)."""
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def connect_line(url: str, token: str, label: str) -> str:
    """The line to paste on the laptop: ``colabtui connect URL --token TOKEN --label LABEL``,
    quoted for a POSIX shell (a user's token or label may start with ``-`` or hold spaces)."""
    token_arg = f"--token={shlex.quote(token)}" if token.startswith("-") else f"--token {shlex.quote(token)}"
    label_arg = f"--label={shlex.quote(label)}" if label.startswith("-") else f"--label {shlex.quote(label)}"
    return f"colabtui connect {url} {token_arg} {label_arg}"


_LIVE: dict[tuple[str, int], tuple[Server, str]] = {}
"""Servers this process runs, by address, so that re-running a notebook cell replaces the old
server instead of failing with "address already in use"."""
_LIVE_LOCK = threading.Lock()


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
            for a folder on a mount; default :func:`default_local_dir`. The mount fallback is
            on for a folder on a FUSE or network filesystem or under ``/content/drive``, and,
            whatever the filesystem, when ``local_dir`` is given or the environment variable
            ``COLABTUI_LOCAL_CHECKPOINTS`` names a runtime disk (then the fallback is
            :func:`default_local_dir`).
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
        self._drive_url: str | None = None
        self._drive_credentials = drive_credentials
        self.checkpointer = (self._make_checkpointer(checkpoint_dir, keep, local_dir)
                             if checkpoint_dir else None)
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
        self._next_autosave = (self._started_mono + self.autosave_every
                               if self.autosave_every else float("inf"))
        self._boundaries: collections.deque[tuple[float, int]] = collections.deque(maxlen=120)
        self._stop = False
        self._sigterm = False
        self._resumed = False
        self._gpu = GpuSampler()
        self._gpu_started = False
        self._server: Server | None = None
        self.token: str | None = None
        self._handle_sigterm = handle_sigterm
        self._previous_sigterm: Any = None
        self._status_served_at: float | None = None
        self._mailbox: Any = None
        self._tunnel: Any = None
        self._closed = False

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

        Returns:
            The step to start from: steps completed by the checkpoint, or 0 with none.

        With a ``gdrive://`` destination and no checkpoint in the local folder, the newest
        checkpoint verified on Drive is downloaded (md5 and sha256 checked; the previous one
        is tried when one fails) and listed locally. With a mount fallback, the newer of the
        folder and the fallback is taken.

        Checkpoints listed with a greater step than the one taken and saved before now are an
        abandoned future, and listed ones that failed verification are unusable: they are
        taken off the manifests (locally now; on Drive or the mount at the next manifest
        written there), never counted toward ``keep``, never reported as verified, and their
        files are never deleted. Only manifests read by then count: when the mount (or Drive)
        cannot be read at resume, what it lists is never unlisted because of this resume, and
        a mount that cannot be read is warned about loudly (printed): it may hold newer
        checkpoints than the one taken.

        Raises:
            CheckpointError: a checkpoint verified but does not fit the tracked objects; or the
                Drive destination cannot be read (not found or not shared, credentials refused,
                unreachable, a manifest that does not parse: nothing there is changed).
        """
        self._resumed = True
        if self.checkpointer is None:
            return self.step
        found = self._find_resumable()
        if found is None:
            log.info("colabtui_remote: no checkpoint in %s; starting at step 0",
                     self._drive_url or self.checkpointer.directory)
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

    def _make_checkpointer(self, checkpoint_dir: str | os.PathLike, keep: int,
                           local_dir: str | os.PathLike | None) -> Checkpointer:
        from .drive.url import is_gdrive_url, parse_gdrive_url

        dest = os.fspath(checkpoint_dir)
        if is_gdrive_url(dest):
            from .drive.client import require_pydrive2

            parse_gdrive_url(dest)  # a bad URL fails here, not on the replica's thread
            require_pydrive2()  # and a missing extra too
            from .replica import Replicator
            from .replica_drive import DriveReplica

            self._drive_url = dest
            replica = Replicator(DriveReplica(dest, credentials_path=self._drive_credentials),
                                 keep=keep, start=False)
            ckpt = Checkpointer(local_dir or default_local_dir(self.run), keep=keep,
                                replica=replica)
            replica.start()  # reads the manifest there: the status shows what is verified
            return ckpt
        fallback = local_dir
        if fallback is None and (on_mounted_filesystem(dest)
                                 or os.environ.get(LOCAL_CHECKPOINTS_ENV)):
            fallback = default_local_dir(self.run)  # the user named a runtime disk
            if os.path.abspath(fallback) == os.path.abspath(dest):
                fallback = None  # checkpoints are on that disk already
        return Checkpointer(dest, keep=keep, fallback_dir=fallback)

    def _find_resumable(self) -> tuple[dict, schema.CheckpointInfo] | None:
        """The newest local checkpoint that verifies (the folder's or the fallback's, newer
        first), else with a ``gdrive://`` destination the newest on Drive. A checkpoint folder
        that cannot be read (a mount that is gone) is warned about loudly: it may hold newer
        checkpoints than the one taken."""
        ckpt = self.checkpointer
        assert ckpt is not None
        found = self._find_local(ckpt)
        if found is None and self._drive_url:
            found = self._resume_from_drive()
        return found

    def _find_local(self, ckpt: Checkpointer) -> tuple[dict, schema.CheckpointInfo] | None:
        unreadable = None
        if ckpt.fallback_dir:
            try:  # the Checkpointer created it: missing now means the mount is gone
                os.listdir(ckpt.directory)
                read_manifest(ckpt.directory)
            except (OSError, CheckpointError) as exc:
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if isinstance(cause, OSError):  # else: read, but its manifest does not parse
                    unreadable = (f"[Errno {cause.errno}] {cause.strerror}"
                                  if cause.errno is not None and cause.strerror else str(cause))
        found = self._newest_local(ckpt)
        if unreadable is not None:
            self._warn_unread_folder(ckpt, unreadable, found)
        return found

    @staticmethod
    def _warn_unread_folder(ckpt: Checkpointer, why: str,
                            found: tuple[dict, schema.CheckpointInfo] | None) -> None:
        took = (f"resuming from step {found[1].step} in {ckpt.fallback_dir}" if found
                else "no checkpoint in the local fallback either: starting at step 0")
        message = (
            f"colabtui: WARNING: the checkpoint folder {ckpt.directory} could not be read "
            f"({why}); it may hold newer checkpoints than this run sees; {took}. To resume "
            "from there, stop now, wait until the mount is back (on Colab: "
            "drive.mount('/content/drive')) and re-run; to go on from here, do nothing: "
            "checkpoints there are not unlisted or deleted because of this resume, and "
            "this run's checkpoints are copied there once it is back.")
        if log.hasHandlers():
            log.warning("%s", message)
        print(message, flush=True)

    def _newest_local(self, ckpt: Checkpointer) -> tuple[dict, schema.CheckpointInfo] | None:
        folders = [ckpt.directory] + ([ckpt.fallback_dir] if ckpt.fallback_dir else [])

        def newest(folder: str) -> float:
            try:
                entries = read_manifest(folder)
            except (CheckpointError, OSError):
                return 0.0
            return entries[-1].saved_at if entries else 0.0

        for folder in sorted(folders, key=newest, reverse=True):
            try:
                found = load_resumable(folder)
            except OSError as exc:
                if folder != ckpt.directory or not ckpt.fallback_dir:
                    raise
                log.warning("colabtui_remote: cannot read %s (%s); resuming from %s", folder,
                            exc, ckpt.fallback_dir)
                continue
            if found is not None:
                return found
        return None

    def _resume_from_drive(self) -> tuple[dict, schema.CheckpointInfo] | None:
        from .replica import ManifestUnreadable, fetch_newest, open_destination

        ckpt = self.checkpointer
        url = self._drive_url
        assert ckpt is not None and url is not None
        dest = open_destination(url, credentials_path=self._drive_credentials)
        unusable: list = []
        try:
            got = fetch_newest(dest, ckpt.directory, unusable=unusable,
                               check=lambda path, entry: load_verified(path, entry.step))
        except ManifestUnreadable as exc:
            raise CheckpointError(
                f"cannot resume from Drive: {exc}. Nothing on Drive was changed. Fix or move "
                f"that manifest.json in {url} (the checkpoints it lists stay where they are), "
                "or give another checkpoint_dir") from None
        except OSError as exc:  # DriveError: not found or not shared, credentials, network
            raise CheckpointError(f"cannot resume from {url}: {exc}") from exc
        finally:
            if unusable and ckpt.replica is not None:
                ckpt.replica.unlist(unusable)  # failed md5/sha256: off the next manifest
        if got is None:
            return None
        entry, tmp, state = got
        info = ckpt.adopt(tmp, step=entry.step, sha256=entry.sha256, saved_at=entry.saved_at,
                          epoch=entry.epoch)
        print(f"colabtui: downloaded step {entry.step} from {url}/{entry.file} (md5 and sha256 "
              f"verified) to {info.path}", flush=True)
        return state, info

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
                (opt-in; see :mod:`.tunnel`) and prints the public connect line with a warning
                about Colab's terms. If the tunnel cannot start, a message says why and the
                server keeps running locally. Waits up to 30 s for the tunnel's URL.

        Returns:
            The server's local URL, e.g. ``http://127.0.0.1:8765`` (also with a tunnel).

        Raises:
            PortInUse: another program holds the port.
            ValueError: ``tunnel`` is not ``None`` or ``"cloudflared"``.
        """
        if tunnel is not None and tunnel != "cloudflared":
            raise ValueError(f"tunnel={tunnel!r} is not supported: use tunnel='cloudflared' "
                             "or leave it out")
        if self._server is not None:
            self._server.close()
        with _LIVE_LOCK:
            previous = _LIVE.pop((host, port), None) if port else None
            if previous is not None:
                previous[0].close()
                token = token or previous[1]
            token = token or new_token()
            self._server = Server(Api(self, token), host=host, port=port)
            _LIVE[(host, self._server.port)] = (self._server, token)
        self.token = token
        if not self._gpu_started:
            self._gpu.start()
            self._gpu_started = True
        self._install_sigterm()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        url = f"http://{shown}:{self._server.port}"
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None
        if tunnel is not None:
            from .tunnel import TERMS_WARNING, TunnelError, start_quick_tunnel

            try:
                self._tunnel = start_quick_tunnel(self._server.port, host=shown)
            except TunnelError as exc:  # the notebook goes on; the server runs locally
                print(f"colabtui: the tunnel did not start: {exc}\n"
                      f"colabtui: the server runs locally at {url}", flush=True)
            else:
                if not quiet:
                    print(connect_line(self._tunnel.url, token, self.label), flush=True)
                print(TERMS_WARNING, flush=True)
                return url
        if not quiet:
            print(connect_line(url, token, self.label), flush=True)
        return url

    def serve_mailbox(self, folder: str | os.PathLike, interval_s: float = 5.0, *,
                      quiet: bool = False) -> str:
        """Serve through a mailbox folder (e.g. the run folder on a mounted Drive, or
        ``gdrive://FOLDER_ID/path`` through the Drive API), for a laptop that reaches the
        runtime only through Drive; see :mod:`.mailbox`.

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
        from .mailbox import MailboxServer
        from .mailbox_store import LocalFolder

        if self._mailbox is not None:
            self._mailbox.close()
            self._mailbox = None
        on_drive = isinstance(folder, str) and folder.startswith("gdrive://")
        if on_drive:
            from .drive.auth import connect
            from .drive.client import DriveFolder
            from .drive.mailbox_storage import DriveMailbox
            from .drive.url import parse_gdrive_url

            parse_gdrive_url(folder)  # a bad URL is said before any login is looked for
            storage: Any = DriveMailbox(DriveFolder.open(folder, connect(), create=True))
            where = folder
        else:
            storage = LocalFolder(os.path.abspath(folder))
            where = str(storage.root)
        storage.create()
        mailbox = MailboxServer(self, storage, interval_s)
        mailbox.start()
        self._mailbox = mailbox
        if not self._gpu_started:
            self._gpu.start()
            self._gpu_started = True
        self._install_sigterm()
        if not quiet:
            there = where if on_drive else _synced_hint(where)
            print(f"colabtui: mailbox {where} (every {interval_s:g} s); on the laptop: "
                  f"colabtui connect {there}", flush=True)
        return where

    @property
    def tunnel_url(self) -> str | None:
        """The public URL of the tunnel ``serve(tunnel=...)`` started, or ``None``."""
        return self._tunnel.url if self._tunnel is not None else None

    @property
    def url(self) -> str | None:
        """The server's URL once :meth:`serve` ran."""
        if self._server is None:
            return None
        host = "127.0.0.1" if self._server.host in ("0.0.0.0", "") else self._server.host
        return f"http://{host}:{self._server.port}"

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
        self._finish()

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
        if self.commands.has_pending() or self._sigterm or now >= self._next_autosave:
            self._act(now)
        return self._stop

    def _act(self, now: float) -> None:
        ckpt = self.checkpointer
        if self._sigterm and not self._stop:
            self._sigterm = False
            self.commands.submit(f"{INTERNAL_PREFIX}sigterm-{self.session_id}", "stop")
        busy = ckpt is not None and ckpt.busy
        if self.commands.has_pending() and not busy:
            records = self.commands.take_pending()
            if any(r.action == "stop" for r in records):
                self._stop_now(records)
            else:
                self._save([r.id for r in records])
            if self.autosave_every:
                self._next_autosave = now + self.autosave_every
        elif now >= self._next_autosave and not busy:
            self._next_autosave = now + self.autosave_every
            self._save([])

    def _save(self, command_ids: list[str], wait: bool = False
              ) -> tuple[schema.CheckpointInfo | None, str | None]:
        """Save at this step for these commands. With ``wait``, block until the write is
        durable and return (info, error); otherwise return at once and let the writer report."""
        ckpt = self.checkpointer
        if ckpt is None:
            error = "no checkpoint_dir was given to Monitor(); nothing to save to"
            if not wait:
                for cid in command_ids:
                    self.commands.finish(cid, error=error)
            return None, error
        last = ckpt.last
        if last is not None and last.step == self.step:
            for cid in command_ids:  # this step is already durable: nothing to write twice
                self.commands.finish(cid, checkpoint=last)
            return last, None
        outcome: dict[str, Any] = {}

        def on_done(info: schema.CheckpointInfo | None, error: str | None) -> None:
            outcome.update(info=info, error=error)
            if error:
                log.warning("colabtui_remote: checkpoint at step %d failed: %s", self.step, error)
            if not wait:
                for cid in command_ids:
                    self.commands.finish(cid, checkpoint=info, error=error)
                if self.state == "saving":
                    self._set_state("running")

        if not wait:
            self._set_state("saving")
        try:
            state = ckpt.capture(self._tracked_for_save(), self.step, self.epoch)
        except Exception as exc:  # a save must never end the run
            log.exception("colabtui_remote: could not capture the training state")
            on_done(None, f"could not capture the training state: {exc}")
            return None, outcome["error"]
        ckpt.submit(state, self.step, self.epoch, on_done)
        if wait:
            ckpt.wait()
        return outcome.get("info"), outcome.get("error")

    def _stop_now(self, records: list[schema.CommandRecord]) -> None:
        """Save, then end the loop. If the save fails the run goes on: stopping then would lose
        the work since the last checkpoint."""
        self._set_state("stopping")
        info, error = self._save([], wait=True)
        no_folder = self.checkpointer is None
        for record in records:
            if error and not (no_folder and record.action == "stop"):
                why = error if record.action == "save" else (
                    f"not stopped: the checkpoint failed ({error})")
                self.commands.finish(record.id, error=why)
            else:
                self.commands.finish(record.id, checkpoint=info)
        if error and not no_folder:
            self._set_state("running")
            return
        self._stop = True
        self._set_state("stopped")

    def _tracked_for_save(self) -> dict[str, Any]:
        tracked = dict(self._tracked)
        tracked.update(self.extras)
        return tracked

    def _finish(self) -> None:
        if self.checkpointer is not None:
            self._set_state("saving")
            self._save([], wait=True)
        self._set_state("finished")

    def _set_state(self, state: str) -> None:
        self.state = state

    # ------------------------------------------------------------------ read by the HTTP thread

    def steps_per_s(self) -> float | None:
        """Throughput over the last steps (up to 120 boundaries, at most 30 s back), steps/s."""
        marks = list(self._boundaries)
        if len(marks) < 2:
            return None
        t_last, s_last = marks[-1]
        horizon = t_last - 30.0
        first = next((m for m in marks if m[0] >= horizon), marks[0])
        if first[0] >= t_last:
            return None
        return (s_last - first[1]) / (t_last - first[0])

    def status(self) -> schema.Status:
        """One snapshot for ``GET /v1/status``."""
        now = time.time()
        latest = self.metrics.latest()
        nonfinite = {}
        metrics = {}
        for name, value in latest.items():
            marker = schema.nonfinite_marker(value)
            if marker:
                nonfinite[name] = marker
            metrics[name] = None if marker else value
        gpus, gpu_error = self._gpu.snapshot()
        ckpt = self.checkpointer
        if ckpt is not None:
            next_at = None
            if self.autosave_every and self.state in ("running", "saving"):
                next_at = now + (self._next_autosave - time.monotonic())
            checkpoint = schema.CheckpointStatus(
                dir=str(ckpt.directory), last=ckpt.last, in_progress=ckpt.progress(),
                last_error=ckpt.last_error, last_error_at=ckpt.last_error_at,
                next_autosave_at=next_at, autosave_every_s=self.autosave_every,
                count=len(ckpt.list()), replica=ckpt.replica_status())
        else:
            checkpoint = schema.CheckpointStatus()
        return schema.Status(
            protocol=schema.PROTOCOL_VERSION, run=self.run, session_id=self.session_id,
            label=self.label, state=self.state, step=self.step, total_steps=self.total_steps,
            epoch=self.epoch, steps_per_s=self.steps_per_s(), metrics=metrics,
            metrics_nonfinite=nonfinite, last_seq=self.metrics.last_seq,
            started_at=self._started_at, uptime_s=time.monotonic() - self._started_mono,
            server_time=now, gpus=gpus, gpu_error=gpu_error, checkpoint=checkpoint,
            host=_host_info(), error=self.error)

    def checkpoint_list(self) -> schema.CheckpointList:
        """The manifest for ``GET /v1/checkpoints``."""
        if self.checkpointer is None:
            return schema.CheckpointList(dir=None, checkpoints=[])
        return schema.CheckpointList(dir=str(self.checkpointer.directory),
                                     checkpoints=self.checkpointer.list())

    # ------------------------------------------------------------------ shutdown

    def _install_sigterm(self) -> None:
        if not self._handle_sigterm or threading.current_thread() is not threading.main_thread():
            return
        if self._previous_sigterm is not None:
            return
        try:
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):  # not allowed here (some embedded interpreters)
            self._previous_sigterm = None

    def _on_sigterm(self, signum, frame) -> None:
        if self._sigterm or self._stop or self.state in ("finished", "stopped"):
            # A second SIGTERM, or nothing left to save: behave as before we were installed.
            previous = self._previous_sigterm
            if callable(previous):
                previous(signum, frame)
            else:
                raise SystemExit(128 + signum)
            return
        self._sigterm = True

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
        if self._server is not None:
            self._linger()
            with _LIVE_LOCK:
                key = (self._server.host, self._server.port)
                if key in _LIVE and _LIVE[key][0] is self._server:
                    del _LIVE[key]
            self._server.close()
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None
        if self._mailbox is not None:
            self._mailbox.close()  # a last round: the final state and every command's outcome
        self._gpu.close()
        if self._previous_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            except (ValueError, OSError):
                pass
            self._previous_sigterm = None

    def _linger(self) -> None:
        """Keep serving briefly so a polling laptop sees how the run ended: the final status
        and the outcome of every command it sent. Returns at once when no client is polling."""
        now = time.monotonic()
        if self._status_served_at is None or now - self._status_served_at > 10.0:
            return
        ended_at = now
        deadline = now + LINGER_S
        while time.monotonic() < deadline:
            seen_end = self._status_served_at is not None and self._status_served_at > ended_at
            if seen_end and not self.commands.undelivered():
                return
            time.sleep(0.05)

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


LOCAL_CHECKPOINTS_ENV = "COLABTUI_LOCAL_CHECKPOINTS"
"""Environment variable naming the folder under which :func:`default_local_dir` puts a run's
local checkpoints."""


def default_local_dir(run: str) -> str:
    """The local folder for a run's checkpoints (staging for Drive, fallback for a mount):
    ``$COLABTUI_LOCAL_CHECKPOINTS/<run>``, else ``/content/colabtui-checkpoints/<run>`` on Colab
    (``/content`` exists), else ``~/.cache/colabtui/checkpoints/<run>``. ``run`` is made safe as
    one path part (``/`` and other characters outside ``[A-Za-z0-9._-]`` become ``_``)."""
    part = re.sub(r"[^A-Za-z0-9._-]", "_", run).lstrip(".") or "run"
    base = os.environ.get(LOCAL_CHECKPOINTS_ENV)
    if not base:
        base = ("/content/colabtui-checkpoints" if os.path.isdir("/content")
                else os.path.join(os.path.expanduser("~"), ".cache", "colabtui", "checkpoints"))
    return os.path.join(base, part)


_PLATFORM: tuple[str, str, str] | None = None


def _synced_hint(folder: str) -> str:
    """What to type on the laptop for a mailbox folder: on a mounted Drive, the same path in
    the user's synced Drive (``<your Drive folder>/MyDrive/colabtui/run``), else the folder."""
    marker = "/MyDrive/"
    if marker in folder:
        return "<your synced Google Drive folder>/MyDrive/" + folder.split(marker, 1)[1]
    return f"{folder} (as synced to the laptop)"


def _host_info() -> schema.HostInfo:
    global _PLATFORM
    if _PLATFORM is None:  # platform.platform() runs subprocess-like probes: once is enough
        _PLATFORM = (platform.python_version(), platform.platform(terse=True), socket.gethostname())
    torch = sys.modules.get("torch")  # reported once the training code imported it; never imported here
    return schema.HostInfo(python=_PLATFORM[0], torch=getattr(torch, "__version__", None),
                           platform=_PLATFORM[1], hostname=_PLATFORM[2])
