"""SIGTERM as a request to save and stop: what a runtime sends before it is taken away
(Kaggle, a VM's shutdown, ``kill``). Installed only on the main thread; a second SIGTERM, or one
when there is nothing left to save, behaves as the handler that was there before."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SigtermHandler"]


class SigtermHandler:
    """Calls ``request()`` on SIGTERM; when it returns False (a stop is under way already, or
    the run ended), the previous handler runs instead (or ``SystemExit(143)``).

    Args:
        request: called in the signal handler (on the main thread, between bytecodes): set a
            flag, nothing more. Returns whether the request was taken.
    """

    def __init__(self, request: Callable[[], bool]) -> None:
        self._request = request
        self._previous: Any = None

    def install(self) -> None:
        """Install the handler (once; only on the main thread: elsewhere it does nothing)."""
        if self._previous is not None or threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):  # not allowed here (some embedded interpreters)
            self._previous = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self._request():
            return
        if callable(self._previous):
            self._previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    def restore(self) -> None:
        """Put the previous handler back."""
        if self._previous is not None:
            try:
                signal.signal(signal.SIGTERM, self._previous)
            except (ValueError, OSError):
                pass
            self._previous = None
