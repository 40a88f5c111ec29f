"""A run's life in a notebook kernel or a script: interrupts, exceptions, re-run cells.

- :class:`InterruptGuard`: while the loop trains, the first SIGINT (Colab's stop button, the
  kernel's interrupt, Ctrl-C) is taken as "stop at the next step boundary": the run shows
  ``interrupted`` at once, a checkpoint is saved at that boundary, and ``KeyboardInterrupt``
  is raised from there. A second SIGINT before that boundary interrupts at once, as Python
  would (nothing saved).
- :func:`watch_cells`: in IPython, an exception that ends a cell while a run trains marks it
  ``failed`` with the exception's type and message (``interrupted`` for ``KeyboardInterrupt``);
  in a script, ``sys.excepthook`` does the same for an uncaught exception.
- :func:`replace_live`: a new Monitor for a run this process already watches closes the old
  one first (its server or mailbox included), so a re-run cell leaves no orphan for the laptop.

Only the main thread can install a signal handler; elsewhere SIGINT is left as it is.
"""

from __future__ import annotations

import signal
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["InterruptGuard", "replace_live", "watch_cells"]


class InterruptGuard:
    """SIGINT as a request to stop at the next step boundary, while installed.

    Args:
        request: called in the signal handler on the first SIGINT (set flags, nothing more).
            Returns False to let SIGINT through as before (nothing is training).
    """

    def __init__(self, request: Callable[[], bool]) -> None:
        self._request = request
        self._previous: Any = None
        self._installed = False
        self.requested = False
        """True between the first SIGINT and :meth:`clear`."""

    def install(self) -> None:
        """Install (idempotent; only on the main thread, elsewhere it does nothing)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        except (ValueError, OSError):  # not allowed here (some embedded interpreters)
            return
        self._installed = True

    def uninstall(self) -> None:
        """Put the previous handler back (idempotent)."""
        if not self._installed:
            return
        self._installed = False
        try:
            signal.signal(signal.SIGINT, self._previous
                          if self._previous is not None else signal.default_int_handler)
        except (ValueError, OSError):
            pass

    def clear(self) -> None:
        """Forget a request (the boundary took it, or a new loop starts)."""
        self.requested = False

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if not self.requested and self._request():
            self.requested = True
            return
        self.uninstall()  # a second one: at once, as Python would
        raise KeyboardInterrupt


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
