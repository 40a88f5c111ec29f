"""One runtime's proxy: its URL and token, taken from the account's assignment list and taken
again before the token expires, as the Colab CLI does (``colab_cli.common.State.get_session``:
five minutes ahead). Listing again with the same account returns the same runtime with a fresh
token, without disturbing it (verified live on a Colab Pro T4 by mandipadk/colabctl,
``spikes/PHASE-A-FINDINGS.md``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from colabtui.colab.account import Account, Runtime
from colabtui.colab.errors import NotSignedIn, RuntimeGone

REFRESH_MARGIN_S = 300.0
"""Seconds before the proxy token's expiry at which it is refreshed (the Colab CLI's
``TOKEN_REFRESH_MARGIN``, five minutes)."""


class RuntimeProxy:
    """The proxy URL and token of the runtime ``endpoint``, refreshed when due. Thread-safe.

    Args:
        endpoint: the runtime's id in the assignment list.
        account: returns the :class:`~.account.Account` (called on first use, on the
            caller's thread: it reads the stored sign-in; again after Colab refused it, so
            that a new ``colabtui colab login`` is taken up).
        margin_s: refresh this many seconds before the token expires.
        clock: wall clock, seconds.
        runtime: the runtime as just listed (no second listing until its token is due).
    """

    def __init__(self, endpoint: str, account: Callable[[], Account] = Account, *,
                 margin_s: float = REFRESH_MARGIN_S, clock: Callable[[], float] = time.time,
                 runtime: Runtime | None = None) -> None:
        self.endpoint = endpoint
        self._account_factory = account
        self._account: Account | None = None
        self._margin_s = margin_s
        self._clock = clock
        self._runtime: Runtime | None = runtime
        self._lock = threading.Lock()
        self.refreshes = 0
        """How many times the token was taken from the assignment list (the first time too)."""

    def __repr__(self) -> str:
        return f"RuntimeProxy({self.endpoint!r})"

    @property
    def runtime(self) -> Runtime | None:
        """The runtime as last listed, or ``None`` before the first use."""
        return self._runtime

    def current(self, *, refresh: bool = False) -> Runtime:
        """The runtime with a token good for at least the margin; lists the assignments again
        when it is due (or ``refresh``: the proxy refused the token we had).

        Raises:
            RuntimeGone: the endpoint is no longer in the assignment list.
            NotSignedIn, ColabError, ColabCliMissing: from the account.
        """
        with self._lock:
            rt = self._runtime
            if refresh or rt is None or rt.expires_at - self._clock() <= self._margin_s:
                try:
                    listed = {r.endpoint: r for r in self._the_account().runtimes()}
                except NotSignedIn:  # the next try reads the stored sign-in again (a login)
                    self._account = None
                    raise
                rt = listed.get(self.endpoint)
                self.refreshes += 1
                if rt is None:
                    self._runtime = None
                    raise RuntimeGone(f"runtime {self.endpoint} is no longer assigned to your "
                                      "account (released, timed out or ended; or the name is "
                                      "mistyped): see `colabtui colab list`")
                self._runtime = rt
            return rt

    def keep_alive(self) -> None:
        """Tell Colab this runtime is in use (:meth:`~.account.Account.keep_alive`).

        Raises:
            RuntimeGone, NotSignedIn, ColabError: from the account.
        """
        with self._lock:
            account = self._the_account()
        account.keep_alive(self.endpoint)

    def _the_account(self) -> Account:
        """The account, made on first use (under the lock)."""
        if self._account is None:
            self._account = self._account_factory()
        return self._account
