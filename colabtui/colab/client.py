"""The session client for ``colab://ENDPOINT[/path]``: a
:class:`~colabtui.mailbox_client.MailboxClient` over :class:`~.contents.ContentsMailbox`
(transport ``colab``). Nothing is contacted until the first poll, which runs on a worker
thread like every mailbox read."""

from __future__ import annotations

import asyncio
import time

from colabtui_remote import schema

from colabtui.client import SessionError
from colabtui.colab.contents import TIMEOUT_S, ContentsMailbox
from colabtui.colab.proxy import RuntimeProxy
from colabtui.colab.url import parse_colab_url
from colabtui.mailbox_client import MailboxClient

MIN_POLL_INTERVAL_S = 1.0
"""Shortest wait between status polls, seconds: the files live on the runtime's own disk (no
sync delay), so a poll a second keeps a save's round trip within the runtime's mailbox interval
plus about a second. A poll is three or four small requests through Colab's proxy."""

KEEP_ALIVE_S = 300.0
"""Seconds between keep-alives to Colab while the run trains, saves or stops: Colab's VS Code
extension sends one every 5 minutes for a runtime in use (``sendKeepAlive``), so that Colab
does not take an idle-looking runtime back while a detached script trains."""

TRAINING_STATES = ("running", "saving", "stopping")
"""States in which a session's runtime is kept alive (never a finished or stopped run's: it
burns units for nothing)."""


class ColabMailboxClient(MailboxClient):
    """A mailbox on a Colab runtime's disk, through its Jupyter contents API.

    Args:
        url: ``colab://ENDPOINT[/path]``.
        proxy: the runtime's proxy (default: a :class:`~.proxy.RuntimeProxy` on the stored
            Colab sign-in).
        timeout_s: the longest one request through the proxy may take, its answer read, s.
        keep_alive_s: seconds between keep-alives while the run trains (``None``: none).

    Raises:
        ValueError: ``url`` is not a well-formed ``colab://`` URL.
    """

    transport = "colab"
    min_poll_interval_s = MIN_POLL_INTERVAL_S

    def __init__(self, url: str, proxy: RuntimeProxy | None = None, *,
                 timeout_s: float = TIMEOUT_S, keep_alive_s: float | None = KEEP_ALIVE_S
                 ) -> None:
        endpoint, path = parse_colab_url(url)
        self.endpoint, self.path = endpoint, path
        self.proxy = proxy or RuntimeProxy(endpoint)
        self.keep_alive_s = keep_alive_s
        self.keep_alives = 0
        """Keep-alives Colab accepted."""
        self.keep_alive_error: str | None = None
        """Why the last keep-alive failed (``None`` after one that was accepted)."""
        self._kept_alive_at = -1e18
        super().__init__(url.strip(), storage=ContentsMailbox(self.proxy, path,
                                                              timeout_s=timeout_s))

    def __repr__(self) -> str:
        return f"ColabMailboxClient({str(self.folder)!r})"

    async def status(self) -> schema.Status:
        """As :meth:`MailboxClient.status`; while the run trains, saves or stops, also tells
        Colab the runtime is in use every :attr:`keep_alive_s` (on a worker thread; a refused
        keep-alive is kept in :attr:`keep_alive_error` and never fails the poll)."""
        status = await super().status()
        now = time.monotonic()
        if self.keep_alive_s is not None and status.state in TRAINING_STATES \
                and now >= self._kept_alive_at + self.keep_alive_s:
            self._kept_alive_at = now
            try:
                await asyncio.to_thread(self.proxy.keep_alive)
            except OSError as exc:  # a ColabError, or the network
                self.keep_alive_error = str(exc)
            else:
                self.keep_alives += 1
                self.keep_alive_error = None
        return status

    async def aclose(self) -> None:
        self.storage.close()

    def _unreachable(self, exc: OSError) -> SessionError:
        if getattr(exc, "session_error_kind", None) is not None:  # sign-in, token, gone
            return super()._unreachable(exc)
        if isinstance(exc, FileNotFoundError):
            return SessionError("unreachable", f"no mailbox folder /{self.path} on runtime "
                                f"{self.endpoint} yet: has the notebook called "
                                f"mon.serve_mailbox('/{self.path}')?")
        return SessionError("unreachable", f"runtime {self.endpoint}: {exc}")
