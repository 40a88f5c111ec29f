"""A signal taken as a request to act at the next step boundary: SIGTERM (a VM's shutdown,
Kaggle, ``kill``) asks to save and stop; SIGINT (Colab's stop button, the kernel's interrupt,
Ctrl-C) asks to save and raise ``KeyboardInterrupt`` there. Installed only on the main thread.
When the request is not taken (a second signal, or nothing left to save), the handler that was
there before is put back and runs: a second Ctrl-C interrupts at once, as Python would."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SignalRequest"]


class SignalRequest:
    """Calls ``request()`` when ``signum`` arrives; when it returns False, the previous handler
    is put back and run (``SystemExit(128 + signum)`` when it was the default action).

    Args:
        signum: the signal (``signal.SIGTERM``, ``signal.SIGINT``).
        request: runs in the signal handler on the main thread, between bytecodes: set a
            flag, nothing more. Returns whether the request was taken.
    """

    def __init__(self, signum: int, request: Callable[[], bool]) -> None:
        self._signum = signum
        self._request = request
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        """Install the handler (idempotent; only on the main thread: elsewhere it does nothing)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous = signal.signal(self._signum, self._on_signal)
        except (ValueError, OSError):  # not allowed here (some embedded interpreters)
            return
        self._installed = True

    def restore(self) -> None:
        """Put the previous handler back (idempotent)."""
        if not self._installed:
            return
        self._installed = False
        try:
            signal.signal(self._signum, self._previous if self._previous is not None
                          else signal.SIG_DFL)
        except (ValueError, OSError):
            pass

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._request():
            return
        previous = self._previous
        self.restore()
        if callable(previous):
            previous(signum, frame)  # SIGINT's default handler raises KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)
