"""What the app and ``colabtui status`` ask of a session's client, whatever the transport.

Four clients implement :class:`SessionClient`: :class:`~colabtui.client.RemoteClient` (HTTP),
:class:`~colabtui.mailbox_client.MailboxClient` (a mailbox folder synced to this machine),
:class:`~colabtui.drive_mailbox.DriveMailboxClient` (a mailbox on Drive through its API) and
:class:`~colabtui.colab.client.ColabMailboxClient` (a mailbox on a Colab runtime's disk). Each
sets every member itself, so the panel and the CLI read them directly, never with a fallback.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from colabtui_remote import schema

TRANSPORTS = ("http", "mailbox", "drive", "colab")
"""The values of :attr:`SessionClient.transport`."""


@runtime_checkable
class SessionClient(Protocol):
    """One session's client: the ``/v1`` routes the panel and the CLI use, and how fresh its
    answers are. Every method raises :class:`~colabtui.client.SessionError` only (and
    ``ValueError`` for a programming error, as documented on each client).
    """

    @property
    def transport(self) -> str:
        """How the session is reached: one of :data:`TRANSPORTS`."""
        ...

    @property
    def status_age_s(self) -> float | None:
        """Age of the last status read, seconds, by our clock now; ``None`` when the answer is
        fresh by construction (HTTP) or no status was read yet."""
        ...

    @property
    def stale(self) -> bool:
        """The last status read is older than the runtime's refresh allows (it may be dead);
        always ``False`` over HTTP."""
        ...

    @property
    def min_poll_interval_s(self) -> float:
        """Shortest wait between two status polls, seconds; ``0.0`` for no limit."""
        ...

    async def status(self) -> schema.Status:
        """The session's current status (``GET /v1/status``)."""
        ...

    async def metrics(self, after: int) -> schema.MetricsPage:
        """The metric points logged after sequence number ``after``."""
        ...

    async def send_command(self, action: str,
                           command_id: str | None = None) -> schema.CommandRecord:
        """Ask for ``"save"`` or ``"stop"``; the same ``command_id`` twice acts once."""
        ...

    async def get_command(self, command_id: str) -> schema.CommandRecord:
        """Where the command ``command_id`` stands."""
        ...

    async def aclose(self) -> None:
        """Release the connection, if any."""
        ...

    async def __aenter__(self) -> SessionClient: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
