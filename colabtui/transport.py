"""Which client reaches a saved session: HTTP for an ``http(s)://`` URL, a mailbox folder for
a ``mailbox:/path`` URL, a mailbox on Drive through its API for a ``gdrive://ID`` URL, a
mailbox on a Colab runtime's disk through Colab's proxy for ``colab://ENDPOINT``. All four
implement :class:`~colabtui.session_client.SessionClient` and raise the same
:class:`~colabtui.client.SessionError` kinds."""

from __future__ import annotations

from rich.text import Text

from colabtui.client import RemoteClient
from colabtui.config import SessionConfig, is_colab_url, is_gdrive_url, mailbox_path
from colabtui.formatting import fmt_duration
from colabtui.mailbox_client import MailboxClient
from colabtui.session_client import SessionClient


def make_client(session: SessionConfig, *, timeout_s: float = 5.0) -> SessionClient:
    """A new client for ``session``; close it with ``await client.aclose()``.

    Args:
        session: the saved session.
        timeout_s: per-request timeout of an HTTP client or a Colab runtime's proxy, seconds (a
            mailbox folder has none: it reads local files).
    """
    folder = mailbox_path(session.url)
    if folder is not None:
        return MailboxClient(folder)
    if is_gdrive_url(session.url):
        from colabtui.drive_mailbox import drive_mailbox_client

        return drive_mailbox_client(session.url)
    if is_colab_url(session.url):
        from colabtui.colab.client import ColabMailboxClient

        return ColabMailboxClient(session.url, timeout_s=timeout_s)
    return RemoteClient(session.url, session.token, timeout_s=timeout_s)


def transport_text(client: SessionClient, *, ended: bool = False) -> Text | None:
    """What the panel's connection line adds for a transport other than HTTP:
    ``" · mailbox · 4 s"`` (the age of the last status read), in yellow when stale (not once
    the run has ended: its last status is final, not late); ``None`` for HTTP."""
    if client.transport == "http":
        return None
    text = Text(no_wrap=True)
    text.append(f" · {client.transport}", style="dim")
    age = client.status_age_s
    if age is not None:
        stale = client.stale and not ended
        text.append(f" · {fmt_duration(age)}" + (" old, stale" if stale else ""),
                    style="bold yellow" if stale else "dim")
    return text
