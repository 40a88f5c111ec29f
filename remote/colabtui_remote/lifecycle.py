"""A run's life in a notebook kernel or a script: exceptions that end a cell, re-run cells.
(Interrupts are :mod:`.signals`' requests, carried out by :mod:`.loops`.)

- :func:`watch_cells`: in IPython, an exception that ends a cell while a run trains marks it
  ``failed`` with the exception's type and message (``interrupted`` for ``KeyboardInterrupt``);
  in a script, ``sys.excepthook`` does the same for an uncaught exception.
- :func:`replace_live`: a new Monitor for a run this process already watches closes the old
  one first (its server or mailbox included), so a re-run cell leaves no orphan for the laptop.
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

__all__ = ["replace_live", "watch_cells"]


_LIVE: dict[str, weakref.ref] = {}
"""The Monitor of each run this process watches, by run name."""
_LIVE_LOCK = threading.Lock()


def replace_live(run: str, monitor: Any) -> Any:
    """Register ``monitor`` for ``run`` and close the Monitor that had it (returned: its
    server's port and token are what the laptop knows), or return None."""
    with _LIVE_LOCK:
        ref = _LIVE.get(run)
        _LIVE[run] = weakref.ref(monitor)
    old = ref() if ref is not None else None
    if old is None or old is monitor:
        return None
    old.close()
    return old


_WATCHED: weakref.WeakSet = weakref.WeakSet()
_HOOKED = False


def watch_cells(monitor: Any) -> None:
    """Mark ``monitor`` ``failed`` (or ``interrupted``) when an exception ends the notebook
    cell or the script while it trains: through IPython's ``post_run_cell`` event when IPython
    runs this process, else ``sys.excepthook``. The monitor's ``ended_by(exc)`` is called."""
    global _HOOKED
    _WATCHED.add(monitor)
    if _HOOKED:
        return
    _HOOKED = True
    shell = _ipython()
    if shell is not None:
        shell.events.register("post_run_cell", _after_cell)
        return
    previous = sys.excepthook

    def excepthook(kind, exc, tb):  # noqa: ANN001 - sys.excepthook's signature
        _ended_by(exc)
        previous(kind, exc, tb)

    sys.excepthook = excepthook


def _ipython() -> Any:
    module = sys.modules.get("IPython")
    if module is None:
        return None
    try:
        return module.get_ipython()
    except Exception:  # an IPython that cannot say: no hook
        return None


def _after_cell(result: Any) -> None:
    exc = getattr(result, "error_in_exec", None)
    if exc is not None:
        _ended_by(exc)
    for monitor in list(_WATCHED):
        try:
            monitor.cell_ended()
        except Exception:  # a hook must never raise into IPython
            pass


def _ended_by(exc: BaseException | None) -> None:
    for monitor in list(_WATCHED):
        try:
            monitor.ended_by(exc)
        except Exception:  # a hook must never raise into IPython or the interpreter
            pass
