"""The session client for ``colab://ENDPOINT[/path]``: a
:class:`~colabtui.mailbox_client.MailboxClient` over :class:`~.contents.ContentsMailbox`
(transport ``colab``). Nothing is contacted until the first poll, which runs on a worker
thread like every mailbox read."""

from __future__ import annotations

from colabtui.client import SessionError
from colabtui.colab.contents import TIMEOUT_S, ContentsMailbox
from colabtui.colab.proxy import RuntimeProxy
from colabtui.colab.url import parse_colab_url
from colabtui.mailbox_client import MailboxClient

MIN_POLL_INTERVAL_S = 1.0
"""Shortest wait between status polls, seconds: the files live on the runtime's own disk (no
sync delay), so a poll a second keeps a save's round trip within the runtime's mailbox interval
plus about a second. A poll is three or four small requests through Colab's proxy."""


class ColabMailboxClient(MailboxClient):
    """A mailbox on a Colab runtime's disk, through its Jupyter contents API.

    Args:
        url: ``colab://ENDPOINT[/path]``.
        proxy: the runtime's proxy (default: a :class:`~.proxy.RuntimeProxy` on the stored
            Colab sign-in).
        timeout_s: the longest one request through the proxy may take, its answer read, s.

    Raises:
        ValueError: ``url`` is not a well-formed ``colab://`` URL.
    """

    transport = "colab"
    min_poll_interval_s = MIN_POLL_INTERVAL_S

    def __init__(self, url: str, proxy: RuntimeProxy | None = None, *,
                 timeout_s: float = TIMEOUT_S) -> None:
        endpoint, path = parse_colab_url(url)
        self.endpoint, self.path = endpoint, path
        super().__init__(url.strip(), storage=ContentsMailbox(proxy or RuntimeProxy(endpoint),
                                                              path, timeout_s=timeout_s))

    def __repr__(self) -> str:
        return f"ColabMailboxClient({str(self.folder)!r})"

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
