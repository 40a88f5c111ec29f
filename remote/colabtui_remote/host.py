"""What the status says about the machine a run is on: Python, torch, platform, hostname."""

from __future__ import annotations

import platform
import socket
import sys

from . import schema

__all__ = ["host_info"]

_PLATFORM: tuple[str, str, str] | None = None


def host_info() -> schema.HostInfo:
    """The host block of the status. torch is reported once the training code imported it;
    it is never imported here."""
    global _PLATFORM
    if _PLATFORM is None:  # platform.platform() runs subprocess-like probes: once is enough
        _PLATFORM = (platform.python_version(), platform.platform(terse=True), socket.gethostname())
    torch = sys.modules.get("torch")
    return schema.HostInfo(python=_PLATFORM[0], torch=getattr(torch, "__version__", None),
                           platform=_PLATFORM[1], hostname=_PLATFORM[2])
