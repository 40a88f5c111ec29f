"""Sessions that train and save in a loop with a Checkpointer, to be killed by the tests of
bounded checkpoint folders (test_bounded_folders.py).

Importing torch takes seconds, so this process imports it once and forks one session per
request (a session is a process of its own: its own pid, start time and writer lock; SIGKILL
ends it like a runtime that dies). It talks JSON lines: requests on stdin, events on stdout.

Requests::

    {"run": {"folder": ..., "keep": 3, "dim": 2048, ...}}   fork a session (see session())
    {"reap": PID}                                              wait for a killed session
    {"quit": true}

Events (one JSON object per line; a session's carry its pid)::

    {"ready": PID}              this process is ready
    {"pid": PID}                a session was forked
    {"pid": PID, "resumed": STEP or null}
    {"pid": PID, "saving": STEP}
    {"pid": PID, "saved": STEP, "wall_s": s, "bytes": n, "reclaimed": [files, bytes] or null,
     "blocked": why or null}
    {"pid": PID, "paused": NAME}    a write into the folder paused after ``pause_after`` bytes
    {"pid": PID, "error": traceback}
    {"reaped": PID}
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings


def emit(**event) -> None:
    # One write per line, under PIPE_BUF: lines of several sessions never interleave.
    os.write(1, (json.dumps(event) + "\n").encode())


class _PausingFile:
    """A file that, after ``after`` bytes, flushes and sleeps: a save alive but not done."""

    def __init__(self, f, after: int, name: str) -> None:
        self._f, self._after, self._name, self._n = f, after, name, 0

    def write(self, data) -> int:
        n = self._f.write(data)
        self._n += memoryview(data).nbytes
        if self._n >= self._after:
            self._f.flush()
            os.fsync(self._f.fileno())
            emit(pid=os.getpid(), paused=self._name)
            time.sleep(3600)
        return n

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def session(folder: str, keep: int = 3, dim: int = 2048, saves: int | None = None,
            pause_after: int | None = None, fallback_dir: str | None = None,
            retry_s: float = 0.05) -> None:
    """Resume from ``folder`` if it holds a checkpoint, then train a ``dim``×``dim`` linear
    layer with Adam (its state is 3 × dim² float32: 50 MB for 2048) and save after every
    step, ``saves`` times (None: until killed).

    ``pause_after``: a checkpoint file written into ``folder`` (a save, or a copy back from
    ``fallback_dir``) stops after that many bytes, its process alive. ``fallback_dir``: as the
    Checkpointer's; the mount replica retries every ``retry_s`` seconds.
    """
    import torch
    from colabtui_remote.checkpoint import Checkpointer, FolderIO, load_resumable, restore

    torch.set_num_threads(1)
    pid = os.getpid()
    io = None
    if pause_after is not None:
        class Pausing(FolderIO):
            def open(self, path, mode):
                f = super().open(path, mode)
                if mode == "xb" and os.path.basename(path).startswith(".ckpt-"):
                    return _PausingFile(f, pause_after, os.path.basename(path))
                return f

        io = Pausing()
    torch.manual_seed(0)
    model = torch.nn.Linear(dim, dim, bias=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tracked = {"model": model, "optimizer": opt}
    ck = Checkpointer(folder, keep=keep, io=io, fallback_dir=fallback_dir,
                      mount_retry_s=(retry_s, retry_s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # leftovers of the last kill are warned about
        found = load_resumable(folder)
    step = 0
    if found is not None:
        state, info = found
        restore(tracked, state)
        ck.resumed_from(info)
        step = info.step
    emit(pid=pid, resumed=None if found is None else step)
    x = torch.randn(8, dim)
    done = 0
    while saves is None or done < saves:
        step += 1
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()
        state = ck.capture(tracked, step, None)
        outcome: list = []
        emit(pid=pid, saving=step)
        t0 = time.perf_counter()
        assert ck.submit(state, step, None, lambda info, err, out=outcome: out.append((info, err)))
        ck.wait()
        info, err = outcome[0]
        if err is not None:
            raise RuntimeError(err)
        last = getattr(ck, "last_reclaim", None)  # absent before bounded folders
        emit(pid=pid, saved=step, wall_s=time.perf_counter() - t0, bytes=info.bytes,
             reclaimed=None if last is None else [last.count, last.bytes],
             blocked=None if last is None else last.blocked)
        done += 1
    if fallback_dir and ck.mount_replica is not None:
        ck.mount_replica.wait_idle(3600)  # a pause in a copy back stops here
    ck.close()


def main() -> None:
    # Imported once here, before any fork: torch, and what an optimizer pulls in on first use
    # (seconds). One thread, so no thread pool is forked.
    import colabtui_remote.checkpoint  # noqa: F401
    import torch

    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    emit(ready=os.getpid())
    for line in sys.stdin:
        request = json.loads(line)
        if "run" in request:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    sys.stdin.close()
                    session(**request["run"])
                except BaseException:
                    emit(pid=os.getpid(), error=traceback.format_exc())
                    code = 1
                finally:
                    os._exit(code)
            emit(pid=pid)
        elif "reap" in request:
            os.waitpid(request["reap"], 0)
            emit(reaped=request["reap"])
        elif "quit" in request:
            break


if __name__ == "__main__":
    main()
