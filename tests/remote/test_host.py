"""The status's host block starts no process: its first use is on a server thread, often while
the training thread forks DataLoader workers, and a worker forked while a child's pipe is open
keeps that pipe for the whole run (``platform.platform()``'s ``uname -p`` then never returned,
and no status ever went out: a CI run's ``test_data_order`` with ``--workers 1`` caught it)."""

from __future__ import annotations

import platform
import subprocess

import colabtui_remote.host as host


def test_host_info_starts_no_process_and_names_the_platform_as_platform_does(monkeypatch):
    expected = platform.platform(terse=True)  # this one may start `uname -p`: before the trap

    def no_process(*args, **kwargs):
        raise AssertionError(f"host_info started a process: {args!r}")

    monkeypatch.setattr(host, "_PLATFORM", None)
    monkeypatch.setattr(platform, "_uname_cache", None)  # as in a fresh training process
    monkeypatch.setattr(platform, "_platform_cache", {})
    monkeypatch.setattr(subprocess, "Popen", no_process)
    info = host.host_info()
    assert info.platform == expected
    assert info.python == platform.python_version() and info.hostname
