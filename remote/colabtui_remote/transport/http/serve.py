"""Serving a run over HTTP: the server registry of this process, the bearer token, the line the
laptop pastes, the optional tunnel, and the linger that lets a polling laptop see the end.

``Monitor.serve()`` is a thin call of :func:`start`; everything about the socket is here.
"""

from __future__ import annotations

import secrets
import shlex
import threading
import time
from collections.abc import Callable

from ..source import RunSource
from .api import Api
from .server import Server

__all__ = ["DEFAULT_PORT", "LINGER_S", "RECENT_POLL_S", "TOKEN_BYTES", "HttpService",
           "connect_line", "linger", "new_token", "start", "stop"]

DEFAULT_PORT = 8765
"""Port ``Monitor.serve()`` binds unless told otherwise (fixed, so ``ssh -L`` and tunnels
can be set up once)."""

TOKEN_BYTES = 24
"""Random bytes in a generated token: 192 bits (the protocol asks for at least 128)."""

LINGER_S = 1.0
"""After the run ends, ``Monitor.close()`` keeps serving up to this many seconds, until a
laptop that is polling has seen the final state and every command's outcome (a stop's "done"
included); the laptop polls every second. :func:`stop` and :func:`linger` take another limit
as ``linger_s``/``limit_s``."""

RECENT_POLL_S = 3.0
"""A laptop counts as polling, for the linger, when a status snapshot went out within this many
seconds; with none, :func:`stop` closes at once."""

_LIVE: dict[tuple[str, int], tuple[Server, str]] = {}
"""Servers this process runs, by address, so that re-running a notebook cell replaces the old
server instead of failing with "address already in use"."""
_LIVE_LOCK = threading.Lock()


def new_token() -> str:
    """A random bearer token of :data:`TOKEN_BYTES` bytes, URL-safe base64, never starting with
    ``-`` (so ``--token TOKEN`` on a command line is not taken for an option)."""
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def connect_line(url: str, token: str, label: str) -> str:
    """The line to paste on the laptop: ``colabtui connect URL --token TOKEN --label LABEL``,
    quoted for a POSIX shell (a user's token or label may start with ``-`` or hold spaces)."""
    token_arg = f"--token={shlex.quote(token)}" if token.startswith("-") else f"--token {shlex.quote(token)}"
    label_arg = f"--label={shlex.quote(label)}" if label.startswith("-") else f"--label {shlex.quote(label)}"
    return f"colabtui connect {url} {token_arg} {label_arg}"


class HttpService:
    """A run served over HTTP: its server, token and tunnel.

    Attributes:
        server: the :class:`~.server.Server`.
        token: the bearer token.
        url: the server's local URL (``http://127.0.0.1:8765``).
        tunnel: the :class:`~.tunnel.QuickTunnel`, or None.
    """

    def __init__(self, server: Server, token: str, url: str) -> None:
        self.server = server
        self.token = token
        self.url = url
        self.tunnel = None


def start(source: RunSource, label: str, host: str, port: int, token: str | None, *,
          quiet: bool, tunnel: str | None, replacing: HttpService | None) -> HttpService:
    """Serve ``source`` on ``host:port`` and print the line to paste on the laptop.

    A server this process already runs on that address (a re-run notebook cell) is closed
    first and its token kept unless ``token`` is given; so is ``replacing`` (this run's
    earlier service).

    Args:
        source: the run.
        label: what the laptop shows for the session (in the printed line).
        host: address to bind.
        port: TCP port; 0 picks a free one.
        token: the bearer token; a new one (:func:`new_token`) when None.
        quiet: print nothing.
        tunnel: ``"cloudflared"`` for a quick tunnel, or None.
        replacing: the service this one replaces.

    Raises:
        PortInUse: another program holds the port.
        ValueError: ``tunnel`` is not None or ``"cloudflared"``.
    """
    if tunnel is not None and tunnel != "cloudflared":
        raise ValueError(f"tunnel={tunnel!r} is not supported: use tunnel='cloudflared' "
                         "or leave it out")
    if replacing is not None:
        replacing.server.close()
        _close_tunnel(replacing)
    with _LIVE_LOCK:
        previous = _LIVE.pop((host, port), None) if port else None
        if previous is not None:
            previous[0].close()
            token = token or previous[1]
        token = token or new_token()
        server = Server(Api(source, token), host=host, port=port)
        _LIVE[(host, server.port)] = (server, token)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    service = HttpService(server, token, f"http://{shown}:{server.port}")
    if tunnel is not None:
        from .tunnel import TERMS_WARNING, TunnelError, start_quick_tunnel

        try:
            service.tunnel = start_quick_tunnel(server.port, host=shown)
        except TunnelError as exc:  # the notebook goes on; the server runs locally
            print(f"colabtui: the tunnel did not start: {exc}\n"
                  f"colabtui: the server runs locally at {service.url}", flush=True)
        else:
            if not quiet:
                print(connect_line(service.tunnel.url, token, label), flush=True)
            print(TERMS_WARNING, flush=True)
            return service
    if not quiet:
        print(connect_line(service.url, token, label), flush=True)
    return service


def _close_tunnel(service: HttpService) -> None:
    if service.tunnel is not None:
        service.tunnel.close()
        service.tunnel = None


def stop(service: HttpService, *, seen: Callable[[], bool] | None = None,
         linger_s: float | None = None) -> None:
    """Stop serving: first linger while a laptop is watching, then close the server and its
    tunnel and forget the address.

    The linger (:func:`linger`) happens only when ``seen`` is given and a status snapshot went
    out in the last :data:`RECENT_POLL_S` seconds; it ends as soon as ``seen()`` is true.

    Args:
        service: what :func:`start` returned.
        seen: true once the polling laptop saw the final status and every command's outcome;
            None not to linger.
        linger_s: the longest linger, seconds; None for :data:`LINGER_S`. So ``stop`` returns
            within about ``linger_s`` + 0.5 s.
    """
    if seen is not None and service.server.api.polled_within(RECENT_POLL_S):
        linger(seen, linger_s)
    with _LIVE_LOCK:
        key = (service.server.host, service.server.port)
        if key in _LIVE and _LIVE[key][0] is service.server:
            del _LIVE[key]
    service.server.close()
    _close_tunnel(service)


def linger(seen: Callable[[], bool], limit_s: float | None = None) -> None:
    """Wait until ``seen()`` is true (a polling client saw the final status and every
    command's outcome), checking every 50 ms, for up to ``limit_s`` seconds (None for
    :data:`LINGER_S`, read at the call)."""
    deadline = time.monotonic() + (LINGER_S if limit_s is None else limit_s)
    while time.monotonic() < deadline:
        if seen():
            return
        time.sleep(0.05)
