"""Every client implements :class:`colabtui.session_client.SessionClient` itself, member by
member, so the panel and ``colabtui status`` read them without probing."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from colabtui.client import RemoteClient
from colabtui.config import SessionConfig, mailbox_url
from colabtui.drive_mailbox import MIN_POLL_INTERVAL_S as DRIVE_MIN_POLL_S
from colabtui.drive_mailbox import drive_mailbox_client
from colabtui.mailbox_client import MIN_POLL_INTERVAL_S as MAILBOX_MIN_POLL_S
from colabtui.mailbox_client import MailboxClient
from colabtui.session_client import TRANSPORTS, SessionClient
from colabtui.transport import make_client

MEMBERS = {"transport", "status_age_s", "stale", "min_poll_interval_s", "status", "metrics",
           "send_command", "get_command", "aclose", "__aenter__", "__aexit__"}
"""What the panel and the CLI use; the protocol lists exactly these."""


def protocol_members() -> dict[str, object]:
    """Name → the protocol's declaration (a property or an async function)."""
    return {name: value for name, value in vars(SessionClient).items()
            if isinstance(value, property)
            or (inspect.iscoroutinefunction(value) and name != "__init__")}


def missing_members(client: object) -> list[str]:
    """What ``client`` lacks or declares otherwise than the protocol: an attribute for each
    property (not a method), an async method with the same parameters for each method, and
    nothing inherited from the protocol itself."""
    wrong = []
    for name, declared in protocol_members().items():
        if not hasattr(client, name):
            wrong.append(f"{name}: missing")
            continue
        if isinstance(declared, property):
            if callable(getattr(client, name)):
                wrong.append(f"{name}: a method, not a value")
            continue
        method = getattr(client, name)
        if not inspect.iscoroutinefunction(method):
            wrong.append(f"{name}: not async")
            continue
        want = list(inspect.signature(declared).parameters.values())[1:]  # less self
        got = list(inspect.signature(method).parameters.values())
        if [(p.name, p.kind, p.default) for p in want] != \
                [(p.name, p.kind, p.default) for p in got]:
            wrong.append(f"{name}: parameters {got} instead of {want}")
    if isinstance(client, SessionClient) and SessionClient in type(client).__mro__:
        wrong.append("inherits the protocol (its members would be empty stubs)")
    return wrong


def test_the_protocol_lists_what_the_panel_and_the_cli_use():
    assert set(protocol_members()) == MEMBERS


@pytest.fixture
async def clients(tmp_path: Path):
    made = {
        "http": RemoteClient("http://127.0.0.1:9", "t" * 24),
        "mailbox": MailboxClient(tmp_path / "mailbox"),
        "drive": drive_mailbox_client("gdrive://1AbCdEf/run/mailbox"),  # contacts nothing yet
    }
    yield made
    for client in made.values():
        await client.aclose()


async def test_every_client_implements_every_member(clients):
    for transport, client in clients.items():
        assert isinstance(client, SessionClient), transport
        assert missing_members(client) == [], transport
        assert client.transport == transport and transport in TRANSPORTS
        assert client.status_age_s is None  # nothing read yet (and never old over HTTP)
        assert client.stale is False
    assert clients["http"].min_poll_interval_s == 0.0
    assert clients["mailbox"].min_poll_interval_s == MAILBOX_MIN_POLL_S
    assert clients["drive"].min_poll_interval_s == DRIVE_MIN_POLL_S


async def test_make_client_gives_each_transport_its_client(tmp_path: Path):
    sessions = {
        "http": SessionConfig("http://127.0.0.1:9", "t" * 24, ""),
        "mailbox": SessionConfig(mailbox_url(tmp_path / "mailbox"), "", ""),
        "drive": SessionConfig("gdrive://1AbCdEf/run/mailbox", "", ""),
    }
    for transport, session in sessions.items():
        client = make_client(session)
        try:
            assert client.transport == transport
            assert isinstance(client, SessionClient) and missing_members(client) == []
        finally:
            await client.aclose()


def test_the_check_fails_for_a_client_that_lacks_a_member():
    class NoStale:  # a client written before the protocol, with one attribute short
        transport = "http"
        status_age_s = None
        min_poll_interval_s = 0.0

        async def status(self): ...
        async def metrics(self, after: int): ...
        async def send_command(self, action: str, command_id: str | None = None): ...
        async def get_command(self, command_id: str): ...
        async def aclose(self): ...
        async def __aenter__(self): ...
        async def __aexit__(self, *exc_info: object): ...

    assert not isinstance(NoStale(), SessionClient)
    assert missing_members(NoStale()) == ["stale: missing"]

    class SyncMetrics(NoStale):
        stale = False

        def metrics(self, after: int): ...  # not awaitable: the panel would crash on it

    assert isinstance(SyncMetrics(), SessionClient)  # what runtime_checkable alone misses
    assert missing_members(SyncMetrics()) == ["metrics: not async"]

    class OtherParameters(SyncMetrics):
        async def metrics(self, since: int): ...

    assert missing_members(OtherParameters())[0].startswith("metrics: parameters")
