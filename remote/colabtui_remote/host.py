"""What the status says about the machine a run is on: Python, torch, platform, hostname.

Nothing here starts a process. ``platform.platform()`` does (``uname -p``, for the processor
field of ``platform.uname()``), and the first status is made on a server thread, often while
the training thread forks a DataLoader's workers: a worker forked while that pipe was open
inherits its write end and keeps it for the whole run, so ``uname -p``'s output never ends,
the request waits for ever, and every later status waits on the same lock
(``functools.cached_property`` of ``uname_result.processor``) — the laptop never got a status
from such a run. The platform string is built from ``os.uname()`` and ``platform.libc_ver()``
(which reads the interpreter's file) instead.
"""

from __future__ import annotations

import os
import platform
import socket
import sys

from . import schema

__all__ = ["host_info", "platform_name"]

_PLATFORM: tuple[str, str, str] | None = None


def platform_name() -> str:
    """``platform.platform(terse=True)``'s form without its probes: ``"Linux-6.8.0-x86_64-with-
    glibc2.35"`` (system, release, machine, and the C library where one is found)."""
    u = os.uname() if hasattr(os, "uname") else None
    if u is None:  # Windows: platform's own answer needs no subprocess there
        return platform.platform(terse=True)
    name = "-".join(p for p in (u.sysname, u.release, u.machine) if p)
    try:
        libc, version = platform.libc_ver()
    except OSError:
        libc, version = "", ""
    return f"{name}-with-{libc}{version}" if libc else name


def host_info() -> schema.HostInfo:
    """The host block of the status. torch is reported once the training code imported it;
    it is never imported here."""
    global _PLATFORM
    if _PLATFORM is None:  # libc_ver() reads the interpreter's file: once is enough
        _PLATFORM = (platform.python_version(), platform_name(), socket.gethostname())
    torch = sys.modules.get("torch")
    return schema.HostInfo(python=_PLATFORM[0], torch=getattr(torch, "__version__", None),
                           platform=_PLATFORM[1], hostname=_PLATFORM[2])
