"""The crash log: a traceback written to a file the user can send, named on stderr by
:func:`colabtui.app.run_app`."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from colabtui.config import log_dir

__all__ = ["write_crash_log"]


def write_crash_log(error: BaseException) -> Path:
    """Write ``error``'s traceback to a new file in :func:`colabtui.config.log_dir` (created,
    mode 0o700) and return its path.

    Raises:
        OSError: the folder or the file could not be written.
    """
    from colabtui import __version__

    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"crash-{stamp}-{os.getpid()}.log"
    text = (f"colabtui {__version__} crashed at {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
            f"python {sys.version.split()[0]} on {sys.platform}\n\n"
            + "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    path.write_text(text, encoding="utf-8")
    return path
