"""colabtui: watch and control training sessions on notebook runtimes from one terminal."""

from __future__ import annotations

import os

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("colabtui")
except PackageNotFoundError:  # a source tree never installed: the one file the version is in
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "remote",
                               "colabtui_remote", "VERSION"), encoding="utf-8") as _f:
            __version__ = _f.read().strip()
    except OSError:
        __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
