"""Bounded checkpoint folders: what killed saves leave (temporary files, complete checkpoints
never listed, checkpoints the manifest no longer lists) is removed by the next good save, only
when provably not being written: older than the newest listed checkpoint, and no other live
writer (the folder's ``writer.lock``). Never a file the manifest lists or retains, never one
that is not ours by name. The same for a mounted Drive folder (the mount replica's copies) and
for ``gdrive://`` (the Drive stand-in).

Real files and real processes: sessions are forked by ``bounded_saver.py`` (torch imported
once) and SIGKILLed at random instants of their saves.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import colabtui_remote
import pytest
from colabtui_remote.checkpoint import MANIFEST, Checkpointer, FolderIO, load_resumable
from colabtui_remote.checkpoint.drive import DriveReplica
from colabtui_remote.checkpoint.lock import LOCK_NAME, LOCK_STALE_S, identity
from colabtui_remote.checkpoint.manifest import is_checkpoint_name
from colabtui_remote.checkpoint.reclaim import is_our_temp
from colabtui_remote.checkpoint.replica import Replicator
from digits_training import make_training

SAVER = Path(__file__).with_name("bounded_saver.py")
KEEP = 3
KILLS = 20
SLACK = 64 * 1024  # the manifest, the lock, a manifest's temporary file: not checkpoints' worth
FAST = {"retry_min_s": 0.05, "retry_max_s": 0.3}


class Sessions:
    """The ``bounded_saver.py`` process and the sessions it forks (see its docstring)."""

    def __init__(self, log: Path) -> None:
        remote_root = str(Path(colabtui_remote.__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [remote_root, *filter(None, [os.environ.get("PYTHONPATH")])]))
        self._stderr = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, "-u", str(SAVER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     env=env)
        self._events: queue.Queue[dict | None] = queue.Queue()
        self._held: list[dict] = []
        self.live: set[int] = set()
        threading.Thread(target=self._pump, daemon=True).start()
        self.expect(lambda e: "ready" in e, timeout=120)

    def _pump(self) -> None:
        for line in self.proc.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:  # what a session printed for the notebook
                self._events.put({"printed": line.rstrip("\n")})
        self._events.put(None)

    def _send(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def expect(self, match, timeout: float = 60.0) -> dict:
        """The first event (held back or new) for which ``match(event)`` is true; a session's
        error fails the test."""
        for event in self._held:
            if match(event):
                self._held.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such event within {timeout} s") from None
            if event is None:
                raise AssertionError("bounded_saver.py ended")
            if "error" in event:
                raise AssertionError(f"session {event['pid']} failed:\n{event['error']}")
            if match(event):
                return event
            self._held.append(event)

    def printed(self) -> list[str]:
        """The lines sessions printed (for the notebook) so far, taken off the events."""
        lines = [e["printed"] for e in self._held if "printed" in e]
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event is None:  # the process ended: leave that for expect()
                self._events.put(None)
                break
            if "printed" in event:
                lines.append(event["printed"])
            else:
                self._held.append(event)
        self._held = [e for e in self._held if "printed" not in e]
        return lines

    def event(self, pid: int, key: str, timeout: float = 60.0) -> dict:
        return self.expect(lambda e: e.get("pid") == pid and key in e, timeout)

    def run(self, **session) -> int:
        """Fork a session (``bounded_saver.session(**session)``); its pid."""
        self._send({"run": session})
        pid = self.expect(lambda e: list(e) == ["pid"])["pid"]
        self.live.add(pid)
        return pid

    def kill(self, pid: int) -> None:
        """SIGKILL: the runtime dies at once, no handler, no atexit."""
        os.kill(pid, signal.SIGKILL)
        self.reap(pid)

    def reap(self, pid: int) -> None:
        self._send({"reap": pid})
        self.expect(lambda e: e.get("reaped") == pid)
        self.live.discard(pid)

    def close(self) -> None:
        for pid in list(self.live):
            try:
                self.kill(pid)
            except (OSError, AssertionError):
                pass
        try:
            self._send({"quit": True})
            self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self._stderr.close()


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    s = Sessions(tmp_path_factory.mktemp("saver") / "stderr.log")
    yield s
    s.close()


def listed(folder) -> list[str]:
    return [c["file"] for c in json.loads((Path(folder) / MANIFEST).read_text())["checkpoints"]]


def retained(folder) -> list[str]:
    doc = json.loads((Path(folder) / MANIFEST).read_text())
    return [r["file"] for r in doc.get("retained", [])]


def leftovers(folder) -> list[str]:
    """Files ours by name that the manifest does not list: what a kill left."""
    names = set(listed(folder))
    return sorted(n for n in os.listdir(folder)
                  if (is_our_temp(n) or is_checkpoint_name(n)) and n not in names)


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def save(ck: Checkpointer, tracked: dict, step: int):
    outcome: list = []
    assert ck.submit(ck.capture(tracked, step, None), step, None,
                     lambda info, err: outcome.append((info, err)))
    assert ck.wait(60)
    info, err = outcome[0]
    assert err is None, err
    return info


def tracked_state() -> dict:
    t = make_training()
    return {"model": t.model, "optimizer": t.optimizer}


def make_old(path: Path, data: bytes, age_s: float = 600.0) -> Path:
    """A file as a killed save left it, ``age_s`` seconds ago."""
    path.write_bytes(data)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def lock_doc(folder) -> dict:
    return json.loads((Path(folder) / LOCK_NAME).read_text())


def proc_start(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


# --------------------------------------------------------------------------- SIGKILL


def test_sigkills_at_random_instants_of_saves_leave_a_bounded_folder_and_good_resumes(
        sessions, tmp_path):
    """20 sessions, each resumed from the folder, saves once (reclaiming what the last kill
    left), starts a second save of a 50 MB state and is SIGKILLed at a random instant of it."""
    folder = tmp_path / "ckpts"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    newest = None
    kills_that_left_files = 0
    reclaimed = 0
    started = time.monotonic()
    for n in range(KILLS):
        pid = sessions.run(folder=str(folder), keep=KEEP)
        assert sessions.event(pid, "resumed")["resumed"] == newest  # the newest listed
        first = sessions.event(pid, "saved")
        assert first["blocked"] is None, first  # the dead session's lock was taken over
        reclaimed += (first["reclaimed"] or [0])[0]
        size = first["bytes"]
        assert size > 45_000_000
        sessions.expect(lambda e, pid=pid, step=first["saved"] + 1:
                        e.get("pid") == pid and e.get("saving") == step)  # the second save
        time.sleep(rng.uniform(0.0, first["wall_s"]))
        sessions.kill(pid)

        left = leftovers(folder)
        kills_that_left_files += bool(left)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state, info = load_resumable(folder)  # every resume is good: the newest listed
        unusable = [str(w.message) for w in caught if "unusable" in str(w.message)]
        assert not unusable, (n, seed, unusable)
        assert os.path.basename(info.path) == listed(folder)[-1] and state["step"] == info.step
        newest = info.step
        assert folder_bytes(folder) <= (KEEP + 1) * size + SLACK, (
            f"kill {n} (seed {seed}): {sorted(os.listdir(folder))}")
    took = time.monotonic() - started
    print(f"{KILLS} kills in {took:.1f} s; {kills_that_left_files} left files behind, "
          f"{reclaimed} files reclaimed by the next sessions")
    assert kills_that_left_files >= KILLS // 3, f"the kills missed the writes (seed {seed})"
    assert reclaimed >= kills_that_left_files - 1
    said = [ln for ln in sessions.printed() if ln.startswith("colabtui: reclaimed ")]
    assert len(said) >= kills_that_left_files - 1  # one line per save that reclaimed
    assert all(ln.endswith(f"left by interrupted saves in {folder}") for ln in said)


# --------------------------------------------------------------------------- the lock


def test_a_live_writers_temp_file_is_never_removed_and_its_lock_is_taken_over_once_it_dies(
        sessions, tmp_path, capsys):
    folder = tmp_path / "ckpts"
    pid = sessions.run(folder=str(folder), dim=1024, pause_after=1 << 20)
    paused = sessions.event(pid, "paused")["paused"]  # alive, its first save half written
    doc = lock_doc(folder)
    assert (doc["host"], doc["pid"], doc["start"]) == (socket.gethostname(), pid, proc_start(pid))

    tracked = tracked_state()
    ck = Checkpointer(folder, keep=KEEP)  # a second writer on the same folder, this host
    first = save(ck, tracked, 100)
    assert (folder / paused).exists()  # older than step 100's file, but its writer is alive
    assert ck.last_reclaim.count == 0 and f"pid {pid}" in ck.last_reclaim.blocked
    assert lock_doc(folder)["pid"] == pid  # a live writer's lock is not taken

    sessions.kill(pid)
    capsys.readouterr()
    second = save(ck, tracked, 101)
    assert not (folder / paused).exists()
    assert ck.last_reclaim.files == (paused,) and ck.last_reclaim.bytes >= 1 << 20
    assert ck.reclaimed_total == (1, ck.last_reclaim.bytes)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "reclaimed" in ln]
    assert lines == [f"colabtui: reclaimed 1 file(s), {ck.last_reclaim.bytes / 1e6:.1f} MB, "
                     f"left by interrupted saves in {folder}"]
    doc = lock_doc(folder)
    assert (doc["pid"], doc["start"]) == (os.getpid(), identity().start)  # taken over
    assert listed(folder) == [os.path.basename(first.path), os.path.basename(second.path)]
    ck.close()
    assert not (folder / LOCK_NAME).exists()


class HeldOpen(FolderIO):
    """A save whose temporary file is created, then waits for :attr:`go` (a write under way)."""

    def __init__(self) -> None:
        self.started, self.go = threading.Event(), threading.Event()

    def open(self, path, mode):
        f = super().open(path, mode)
        if mode == "xb" and os.path.basename(path).startswith(".ckpt-"):
            self.started.set()
            self.go.wait(60)
        return f


def test_a_writer_of_the_same_process_holds_the_folder_while_it_writes_and_keeps_its_own(
        tmp_path):
    """A notebook cell run again: a second Checkpointer on the folder, the first never
    closed. While the first writes, nothing is removed; once it is idle, its lock is taken
    over, and what it lists is still never removed (the two overwrite each other's manifest)."""
    folder = tmp_path / "ckpts"
    tracked = tracked_state()
    io = HeldOpen()
    first = Checkpointer(folder, keep=KEEP, io=io)
    assert first.submit(first.capture(tracked, 1, None), 1, None)
    assert io.started.wait(30)
    [temp] = [n for n in os.listdir(folder) if is_our_temp(n)]

    second = Checkpointer(folder, keep=KEEP)
    save(second, tracked, 100)
    assert (folder / temp).exists()
    assert "another writer of this process" in second.last_reclaim.blocked
    io.go.set()
    assert first.wait(30) and first.last_error is None
    assert listed(folder) == ["ckpt-000000001.pt"]  # the first one's manifest now

    left = make_old(folder / ".ckpt-000000050.pt.tmp-0123abcd", b"t" * 10)
    save(second, tracked, 101)  # the first is idle: its lock is taken over
    assert second.last_reclaim.blocked is None and second.last_reclaim.files == (left.name,)
    assert (folder / "ckpt-000000001.pt").exists()  # listed by the first, still open
    second.close()


def _stale_lock(kind: str, folder: Path) -> None:
    me = identity()
    other = os.getppid()  # alive, and not a writer
    base = {"format": "colabtui-writer-lock", "version": 1, "host": me.host, "pid": other,
            "start": proc_start(other), "boot": me.boot, "pidns": me.pidns,
            "token": "0123456789abcdef", "since": time.time(), "alive_at": time.time()}
    if kind == "reused pid":  # that pid runs another process now (other start time)
        base["start"] = str(int(base["start"]) + 1)
    elif kind == "restarted machine":
        base["boot"] = "00000000-0000-0000-0000-000000000000"
    elif kind == "closed in this process":
        base.update(pid=me.pid, start=me.start)
    if kind == "unreadable and old":
        make_old(folder / LOCK_NAME, b"{half a lock", age_s=LOCK_STALE_S + 60)
    else:
        (folder / LOCK_NAME).write_text(json.dumps(base))


@pytest.mark.parametrize("kind", ["reused pid", "restarted machine", "closed in this process",
                                  "unreadable and old"])
def test_a_stale_lock_is_taken_over_and_only_our_leftovers_are_removed(tmp_path, capsys, kind):
    folder = tmp_path / "ckpts"
    tracked = tracked_state()
    ck0 = Checkpointer(folder, keep=KEEP)
    kept = save(ck0, tracked, 5)
    ck0.close()
    ours = [make_old(folder / ".ckpt-000000007.pt.tmp-0123abcd", b"t" * 3000),
            make_old(folder / "ckpt-000000007.pt", b"c" * 5000),  # complete, never listed
            make_old(folder / ".manifest.json.tmp-89abcdef", b"m" * 100),
            make_old(folder / f".{LOCK_NAME}.tmp-00ff00ff", b"l" * 10)]
    not_ours = [make_old(folder / "notes.txt", b"n"), make_old(folder / "ckpt-7.pt", b"x"),
                make_old(folder / ".status.json.tmp-0123abcd", b"s"),
                make_old(folder / "ckpt-000000008.pt.tmp", b"y"),
                make_old(folder / "manifest.json.bak", b"b")]
    (folder / "ckpt-000000009.pt").symlink_to(folder / "notes.txt")  # a link: never removed
    (folder / "ckpt-000000010.pt").mkdir()  # nor a folder
    _stale_lock(kind, folder)

    ck = Checkpointer(folder, keep=KEEP)
    capsys.readouterr()
    new = save(ck, tracked, 20)
    assert [p.exists() for p in ours] == [False] * 4
    assert all(p.exists() for p in not_ours)
    assert (folder / "ckpt-000000009.pt").is_symlink() and (folder / "ckpt-000000010.pt").is_dir()
    assert listed(folder) == [os.path.basename(kept.path), os.path.basename(new.path)]
    assert ck.last_reclaim.files == tuple(sorted(p.name for p in ours))
    assert ck.last_reclaim.bytes == 3000 + 5000 + 100 + 10 and ck.last_reclaim.blocked is None
    out = capsys.readouterr().out
    assert out.count("colabtui: reclaimed 4 file(s), 0.0 MB, left by interrupted saves") == 1
    assert lock_doc(folder)["pid"] == os.getpid()
    save(ck, tracked, 21)
    assert ck.last_reclaim.count == 0 and "reclaimed" not in capsys.readouterr().out
    ck.close()


def _foreign_lock(folder: Path, silent_s: float) -> bytes:
    then = time.time() - silent_s
    data = json.dumps({"format": "colabtui-writer-lock", "version": 1, "host": "runtime-7f3a",
                       "pid": 4242, "start": "123", "boot": "b", "pidns": "pid:[1]",
                       "token": "feedfacefeedface", "since": then, "alive_at": then}).encode()
    make_old(folder / LOCK_NAME, data, age_s=silent_s)
    return data


def test_another_runtimes_lock_means_nothing_is_removed_and_is_said_once(tmp_path, capsys):
    folder = tmp_path / "ckpts"
    tracked = tracked_state()
    ck0 = Checkpointer(folder, keep=KEEP)
    save(ck0, tracked, 5)
    ck0.close()
    left = make_old(folder / ".ckpt-000000006.pt.tmp-0123abcd", b"t" * 3000)
    lock = _foreign_lock(folder, silent_s=30)  # refreshed 30 s ago: that runtime is alive
    capsys.readouterr()

    ck = Checkpointer(folder, keep=KEEP)
    for step in (10, 11, 12):
        save(ck, tracked, step)
        assert ck.last_reclaim.count == 0 and "host runtime-7f3a" in ck.last_reclaim.blocked
    assert left.exists() and (folder / LOCK_NAME).read_bytes() == lock
    warned = [ln for ln in capsys.readouterr().out.splitlines() if "runtime-7f3a" in ln]
    assert len(warned) == 1 and warned[0].startswith("colabtui: WARNING: ")
    assert "another runtime (host runtime-7f3a, pid 4242) has this folder open" in warned[0]
    ck.close()
    assert (folder / LOCK_NAME).read_bytes() == lock  # not ours to remove


def test_a_lock_its_runtime_stopped_refreshing_long_ago_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "ckpts"
    tracked = tracked_state()
    ck0 = Checkpointer(folder, keep=KEEP)
    save(ck0, tracked, 5)
    ck0.close()
    left = make_old(folder / ".ckpt-000000006.pt.tmp-0123abcd", b"t" * 3000,
                    age_s=LOCK_STALE_S + 600)
    _foreign_lock(folder, silent_s=LOCK_STALE_S + 300)  # a runtime that died 20 min ago
    capsys.readouterr()

    ck = Checkpointer(folder, keep=KEEP)
    out = capsys.readouterr().out
    assert out.count("took over the writer lock") == 1 and "host runtime-7f3a" in out
    save(ck, tracked, 10)
    assert not left.exists() and ck.last_reclaim.files == (left.name,)
    assert lock_doc(folder)["host"] == socket.gethostname()
    ck.close()


# --------------------------------------------------------------------------- what is kept


def test_an_abandoned_future_stays_retained_in_later_sessions(tmp_path):
    """Resume skipped a damaged step 30 and took step 20: 30 is unlisted but kept, by this
    session and, through the manifest's ``retained``, by the sessions after it."""
    folder = tmp_path / "ckpts"
    tracked = tracked_state()
    a = Checkpointer(folder, keep=KEEP)
    for step in (10, 20, 30):
        save(a, tracked, step)
    a.close()
    thirty = folder / "ckpt-000000030.pt"
    thirty.write_bytes(thirty.read_bytes()[:-50])  # damaged on the way
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, took = load_resumable(folder)
    assert took.step == 20
    b = Checkpointer(folder, keep=KEEP)
    b.resumed_from(took)
    assert retained(folder) == ["ckpt-000000030.pt"]
    save(b, tracked, 21)
    assert thirty.exists() and b.last_reclaim.blocked is None
    b.close()

    left = make_old(folder / ".ckpt-000000022.pt.tmp-0123abcd", b"t" * 10)
    c = Checkpointer(folder, keep=KEEP)  # knows nothing of that resume but the manifest
    for step in (22, 23, 24, 25):
        save(c, tracked, step)
    assert thirty.exists() and not left.exists()
    assert retained(folder) == ["ckpt-000000030.pt"]
    assert listed(folder) == ["ckpt-000000023.pt", "ckpt-000000024.pt", "ckpt-000000025.pt"]
    c.close()


def test_checkpoints_found_without_a_readable_manifest_are_retained(tmp_path):
    """They may be what the lost manifest listed (load_resumable rebuilds the list from
    files): never reclaimed."""
    folder = tmp_path / "ckpts"
    tracked = tracked_state()
    a = Checkpointer(folder, keep=KEEP)
    for step in (10, 20):
        save(a, tracked, step)
    a.close()
    (folder / MANIFEST).write_text("{not json")
    left = make_old(folder / ".ckpt-000000030.pt.tmp-0123abcd", b"t" * 10)
    b = Checkpointer(folder, keep=KEEP)
    save(b, tracked, 30)
    assert (folder / "ckpt-000000010.pt").exists() and (folder / "ckpt-000000020.pt").exists()
    assert not left.exists()
    assert retained(folder) == ["ckpt-000000010.pt", "ckpt-000000020.pt"]
    b.close()


# --------------------------------------------------------------------------- a mounted folder


def test_a_mounted_folder_is_bounded_the_same_way(sessions, tmp_path):
    """The mount drops under a save, so the checkpoint goes to the local fallback; the mount
    comes back and the session is SIGKILLed in the middle of the copy back. The next session
    copies it again, and its mount replica reclaims the killed copy's temporary file."""
    real = tmp_path / "drive-data"
    (real / "run").mkdir(parents=True)
    mnt = tmp_path / "mnt"
    mnt.symlink_to(real)
    folder, local = mnt / "run", tmp_path / "local"
    run = {"folder": str(folder), "fallback_dir": str(local), "dim": 1024}

    pid = sessions.run(**run, saves=2)  # straight into the mount
    sessions.event(pid, "saved")
    sessions.event(pid, "saved")
    sessions.reap(pid)
    assert listed(real / "run") == ["ckpt-000000001.pt", "ckpt-000000002.pt"]

    mnt.unlink()
    mnt.symlink_to(tmp_path / "nowhere")  # the mount is gone
    pid = sessions.run(**run, saves=1, pause_after=1 << 20)
    assert sessions.event(pid, "resumed")["resumed"] is None  # nothing readable
    sessions.event(pid, "saved")  # to the fallback
    mnt.unlink()
    mnt.symlink_to(real)  # back: the mount replica copies it...
    paused = sessions.event(pid, "paused")["paused"]
    sessions.kill(pid)  # ...and the runtime dies in the middle of the copy
    assert (real / "run" / paused).exists() and leftovers(real / "run") == [paused]
    size = (real / "run" / "ckpt-000000002.pt").stat().st_size

    ck = Checkpointer(folder, keep=KEEP, fallback_dir=local, mount_retry_s=(0.05, 0.05))
    assert ck.offline  # the fallback's checkpoint is not copied there yet
    assert ck.mount_replica.wait_idle(60)
    assert not (real / "run" / paused).exists()
    done = ck.mount_replica.last_reclaim
    assert done.files == (paused,) and done.bytes >= 1 << 20 and done.where == str(folder)
    assert listed(real / "run") == ["ckpt-000000001.pt", "ckpt-000000002.pt",
                                    "ckpt-000000001-2.pt"]
    assert leftovers(real / "run") == []
    assert folder_bytes(real / "run") <= (KEEP + 1) * size + SLACK
    assert lock_doc(real / "run")["pid"] == lock_doc(local)["pid"] == os.getpid()
    ck.close()


# --------------------------------------------------------------------------- Drive


def local_checkpoints(folder: Path, steps) -> list:
    ck = Checkpointer(folder, keep=len(steps))
    tracked = tracked_state()
    infos = [save(ck, tracked, step) for step in steps]
    ck.close()
    return infos


def drive_listing(standin, folder_id) -> tuple[list[str], list[str]]:
    [mid] = standin.ids_titled(MANIFEST, folder_id)
    doc = json.loads(standin.content(mid))
    return [c["file"] for c in doc["checkpoints"]], [r["file"] for r in doc.get("retained", [])]


def test_a_drive_folder_is_bounded_the_same_way(standin, creds, tmp_path, capsys):
    folder_id = standin.create_folder("colabtui")
    url = f"gdrive://{folder_id}"
    infos = local_checkpoints(tmp_path / "runtime-1", [10, 20, 40])
    a = Replicator(DriveReplica(url), keep=KEEP, **FAST)
    for info in infos:
        a.submit(info)
        assert a.wait_idle(60)
    a.close()
    assert drive_listing(standin, folder_id) == (["ckpt-000000010.pt", "ckpt-000000020.pt",
                                                  "ckpt-000000040.pt"], [])
    # What killed sessions left: an upload done but never listed, a prune never done; and
    # files that are not ours.
    old = time.time() - 600
    standin.put_file("ckpt-000000045.pt", b"u" * 5000, folder_id, created=old)
    standin.put_file("ckpt-000000005.pt", b"p" * 7000, folder_id, created=old)
    for title in ("notes.txt", "ckpt-5.pt", "status.json"):
        standin.put_file(title, b"n", folder_id, created=old)

    # The next session resumed from step 20 (40 is an abandoned future) and saves step 21.
    (b_ckpt,) = local_checkpoints(tmp_path / "runtime-2", [21])
    b = Replicator(DriveReplica(url), keep=KEEP, **FAST)
    b.resumed_from(20)
    capsys.readouterr()
    b.submit(b_ckpt)
    assert b.wait_idle(60)
    assert drive_listing(standin, folder_id) == (
        ["ckpt-000000010.pt", "ckpt-000000020.pt", "ckpt-000000021.pt"], ["ckpt-000000040.pt"])
    assert b.last_reclaim.files == ("ckpt-000000005.pt", "ckpt-000000045.pt")
    assert b.last_reclaim.bytes == 12000 and b.last_reclaim.where == url
    assert capsys.readouterr().out.count(
        f"colabtui: reclaimed 2 file(s), 0.0 MB, left by interrupted saves in {url}") == 1
    b.close()

    # A session after it knows of that resume only through the manifest there.
    standin.put_file("ckpt-000000022.pt", b"u" * 3000, folder_id, created=time.time() - 60)
    (c_ckpt,) = local_checkpoints(tmp_path / "runtime-3", [23])
    c = Replicator(DriveReplica(url), keep=KEEP, **FAST)
    c.submit(c_ckpt)
    assert c.wait_idle(60)
    c.close()
    files, kept = drive_listing(standin, folder_id)
    assert files == ["ckpt-000000020.pt", "ckpt-000000021.pt", "ckpt-000000023.pt"]
    assert kept == ["ckpt-000000040.pt"]
    assert c.last_reclaim.files == ("ckpt-000000022.pt",)
    assert sorted(standin.children(folder_id)) == sorted(
        [MANIFEST, *files, *kept, "notes.txt", "ckpt-5.pt", "status.json"])


def test_nothing_is_reclaimed_on_drive_while_a_manifest_kept_aside_may_list_it(
        standin, creds, tmp_path):
    folder_id = standin.create_folder("colabtui")
    url = f"gdrive://{folder_id}"
    standin.put_file(MANIFEST, b"{not json", folder_id)
    unlisted = standin.put_file("ckpt-000000005.pt", b"u" * 5000, folder_id,
                                created=time.time() - 600)
    infos = local_checkpoints(tmp_path / "runtime-1", [10, 20])
    a = Replicator(DriveReplica(url), keep=KEEP, **FAST)
    a.submit(infos[0])
    assert a.wait_idle(60)
    assert "kept aside as unreadable in this session" in a.last_reclaim.blocked
    a.close()
    b = Replicator(DriveReplica(url), keep=KEEP, **FAST)  # a later session
    b.submit(infos[1])
    assert b.wait_idle(60)
    assert "a manifest kept aside as unreadable is there" in b.last_reclaim.blocked
    b.close()
    assert standin.exists(unlisted) and b.last_reclaim.count == 0
