"""A panel's save and stop commands (sent once, followed until done or failed, one of each
action in flight per session), and what the panel tells the app about its session.

Each step of a command arrives at the app as a :class:`CommandUpdate`, which the app shows as
that session's one toast for the action (a later one replaces it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from colabtui_remote.schema import CommandRecord
from textual.message import Message

from colabtui.client import SessionError
from colabtui.session_client import SessionClient

COMMAND_POLL_S = 0.25
"""Seconds between ``get_command`` checks while a save or stop is under way."""

COMMAND_WAIT_S = 900.0
"""How long to follow a command before saying it is still running (15 min: a large
checkpoint to Drive can take minutes)."""


@dataclass
class CommandUpdate(Message):
    """A save or stop sent to a session changed state (or could not be sent).

    Attributes:
        key: the panel's session key.
        label: the session's label (untrusted text).
        action: ``"save"`` or ``"stop"``.
        record: the command as the session reports it, or ``None`` when sending failed.
        error: why sending or following it failed.
        ended: a stop was accepted, and then the session stopped answering: it has ended
            (the expected end of a stop, not a failure to stop).
    """

    key: str
    label: str
    action: str
    record: CommandRecord | None = None
    error: SessionError | None = None
    ended: bool = False


async def follow_command(client: SessionClient, action: str, key: str, label: str,
                         post: Callable[[Message], object]) -> None:
    """Send ``action`` (``"save"`` or ``"stop"``) and follow it until it is done or failed,
    or :data:`COMMAND_WAIT_S` seconds passed, posting a :class:`CommandUpdate` when it is
    accepted and when it ends (or could not be sent). Raises nothing for the session's
    failures: they are posted as the update's ``error``."""
    accepted = False
    try:
        record = await client.send_command(action)
        accepted = True
        if record.state not in ("done", "failed"):
            post(CommandUpdate(key, label, action, record))
        waited = 0.0
        while record.state not in ("done", "failed") and waited < COMMAND_WAIT_S:
            await asyncio.sleep(COMMAND_POLL_S)
            waited += COMMAND_POLL_S
            record = await client.get_command(record.id)
        post(CommandUpdate(key, label, action, record))
    except SessionError as exc:
        # a stopped session closes its server: after an accepted stop, silence is the end
        ended = accepted and action == "stop" and exc.kind == "unreachable"
        post(CommandUpdate(key, label, action, error=exc, ended=ended))


@dataclass
class TokenRefused(Message):
    """The session refused the saved token: the app reads the config again (a new token may
    be there, from ``colabtui connect``).

    Attributes:
        key: the panel's session key.
    """

    key: str
