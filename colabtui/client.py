"""HTTP client for one session's ``/v1`` API.

One long-lived :class:`httpx.AsyncClient` per session, explicit timeouts, bearer token. Every
body is parsed with :mod:`colabtui_remote.schema`; every failure becomes a :class:`SessionError`
whose message a user understands (a refused connection, a tunnel's HTML error page, a token the
session refused…). Text from a session is untrusted: it stays a plain ``str`` (the UI renders it
literally), cleaned and bounded in length by the schema; an error's message is cleaned the same
way (:func:`colabtui_remote.wire.clean_text`) whatever it quotes.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import uuid
from http import HTTPStatus
from typing import Any

import httpx
from colabtui_remote import schema, wire

from colabtui.config import mask_token

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Largest body read from a session, bytes. A real answer is far smaller (a metrics page stays
under 256 KB, see ``schema.MAX_METRICS_POINTS``); anything bigger is refused unread."""

KINDS = ("unreachable", "token_refused", "protocol", "bad_response")


class SessionError(Exception):
    """A session could not be asked, or its answer was unusable.

    Attributes:
        kind: ``"unreachable"`` (refused, DNS, timeout, dropped connection), ``"token_refused"``
            (401/403), ``"protocol"`` (the session speaks another protocol version) or
            ``"bad_response"`` (an HTML page from a tunnel, 5xx, malformed JSON, schema error).
        message: words a user understands, one line of plain text (cleaned by
            :func:`colabtui_remote.wire.clean_text`); never holds the token.
        status_code: the HTTP status, when there was one.
    """

    def __init__(self, kind: str, message: str, status_code: int | None = None) -> None:
        self.kind = kind
        self.message = wire.clean_text(message)  # it may quote a session, a tunnel, Drive
        self.status_code = status_code
        super().__init__(self.message)


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        for sub in getattr(exc, "exceptions", None) or ():  # an ExceptionGroup from anyio
            yield from _chain(sub)
        exc = exc.__cause__ or exc.__context__


def _host_of(url: str) -> str:
    try:
        return httpx.URL(url).host or url
    except Exception:  # noqa: BLE001 - only used for a message
        return url


def describe_transport_error(exc: httpx.TransportError, url: str, timeout_s: float) -> str:
    """Words for a failure below HTTP: DNS, refused, timeout, dropped connection."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out connecting after {timeout_s:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s (timeout)"
    for e in _chain(exc):
        if isinstance(e, socket.gaierror):
            return f"cannot resolve host {_host_of(url)}"
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
    text = " ".join(str(e) for e in _chain(exc)).lower()
    if "name or service not known" in text or "nodename nor servname" in text \
            or "name resolution" in text or "getaddrinfo" in text:
        return f"cannot resolve host {_host_of(url)}"
    if "refused" in text:
        return "connection refused"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection closed before a full answer came"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {str(exc)[:200] or type(exc).__name__}"
    return f"connection failed: {str(exc)[:200] or type(exc).__name__}"


def _status_words(code: int) -> str:
    try:
        return f"HTTP {code} ({HTTPStatus(code).phrase})"
    except ValueError:
        return f"HTTP {code}"


class RemoteClient:
    """Talks to one session. Create it once per session and reuse it; close with :meth:`aclose`.

    Args:
        url: the session's base URL, e.g. ``http://127.0.0.1:8765`` (as validated by
            :func:`colabtui.config.validate_url`).
        token: the bearer token.
        timeout_s: limit for each of connect, read, write and pool wait, seconds.
        deadline_s: limit for a whole request (connect, send, headers and body), seconds;
            ``2 * timeout_s`` when not given. httpx's timeouts are per phase and per read, so
            without it an answer trickling in a byte a second would never end.

    Implements :class:`~colabtui.session_client.SessionClient`: an answer over HTTP is the
    session's state when it answered, so it is never old (``status_age_s`` is ``None``, ``stale``
    ``False``) and polls are limited by the app's interval only.
    """

    transport = "http"
    status_age_s: float | None = None
    stale = False
    min_poll_interval_s = 0.0

    def __init__(self, url: str, token: str, *, timeout_s: float = 5.0,
                 deadline_s: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.deadline_s = 2 * timeout_s if deadline_s is None else deadline_s
        self._token = token
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                     "User-Agent": "colabtui"},
            timeout=httpx.Timeout(connect=timeout_s, read=timeout_s, write=timeout_s,
                                  pool=timeout_s),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"RemoteClient({self.url!r}, token={mask_token(self._token)!r})"

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- routes

    async def status(self) -> schema.Status:
        """``GET /v1/status``.

        Raises:
            SessionError: see the class; a 404 here means the URL is not a colabtui session.
        """
        return await self._call("GET", "/v1/status", schema.parse_status, is_status=True)

    async def metrics(self, after: int) -> schema.MetricsPage:
        """``GET /v1/metrics?after=SEQ``: points logged after sequence number ``after``.

        Raises:
            SessionError
        """
        return await self._call("GET", "/v1/metrics", schema.parse_metrics,
                                params={"after": int(after)})

    async def send_command(self, action: str, command_id: str | None = None) -> schema.CommandRecord:
        """``POST /v1/commands``: ask for ``"save"`` or ``"stop"``.

        A new uuid4 is used when ``command_id`` is ``None``. On a transport failure (the answer may
        have been lost on the way back) the same id is sent once more: the server acts once per id.

        Raises:
            ValueError: ``action`` is not one of ``schema.ACTIONS`` (a programming error).
            SessionError
        """
        if action not in schema.ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {schema.ACTIONS}")
        body = {"id": command_id or str(uuid.uuid4()), "action": action}
        try:
            return await self._call("POST", "/v1/commands", schema.parse_command, json=body)
        except SessionError as exc:
            if exc.kind != "unreachable" or exc.status_code is not None:
                raise
        return await self._call("POST", "/v1/commands", schema.parse_command, json=body)

    async def get_command(self, command_id: str) -> schema.CommandRecord:
        """``GET /v1/commands/<id>``.

        Raises:
            SessionError
        """
        return await self._call("GET", f"/v1/commands/{command_id}", schema.parse_command)

    async def checkpoints(self) -> schema.CheckpointList:
        """``GET /v1/checkpoints``: the checkpoint manifest.

        Raises:
            SessionError
        """
        return await self._call("GET", "/v1/checkpoints", schema.parse_checkpoint_list)

    async def aclose(self) -> None:
        await self._client.aclose()

    # ----------------------------------------------------------------- plumbing

    async def _call(self, method: str, path: str, parse, *, is_status: bool = False,
                    **kwargs: Any):
        code, content_type, body = await self._fetch(method, path, **kwargs)
        if code >= 400 or not 200 <= code < 300:
            raise self._http_error(code, content_type, body, path, is_status)
        doc = self._decode(content_type, body)
        try:
            return parse(doc)
        except schema.ProtocolMismatch as exc:
            raise SessionError("protocol", str(exc), code) from None
        except schema.SchemaError as exc:
            if is_status and isinstance(doc, dict) and "protocol" not in doc:
                raise SessionError("bad_response", "answered JSON without a protocol version: "
                                   "not a colabtui session?", code) from None
            raise SessionError("bad_response", f"unexpected answer: {exc}", code) from None

    async def _fetch(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, bytes]:
        try:
            return await asyncio.wait_for(self._read(method, path, **kwargs), self.deadline_s)
        except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11
            raise SessionError("unreachable", f"no complete answer within {self.deadline_s:g} s "
                               "(deadline)") from None

    async def _read(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, bytes]:
        try:
            async with self._client.stream(method, path, **kwargs) as resp:
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise self._too_big(resp.status_code)
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise self._too_big(resp.status_code)
                    chunks.append(chunk)
                return resp.status_code, resp.headers.get("content-type", ""), b"".join(chunks)
        except httpx.TransportError as exc:
            raise SessionError("unreachable",
                               describe_transport_error(exc, self.url, self.timeout_s)) from None
        except httpx.InvalidURL as exc:
            raise SessionError("unreachable", f"invalid URL: {exc}") from None
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise SessionError("unreachable", f"request failed: {type(exc).__name__}") from None

    @staticmethod
    def _too_big(code: int) -> SessionError:
        return SessionError("bad_response", f"answer larger than {MAX_RESPONSE_BYTES // 2**20} MB "
                            "refused (not a colabtui session?)", code)

    @staticmethod
    def _looks_html(content_type: str, body: bytes) -> bool:
        if "html" in content_type.lower():
            return True
        head = body[:256].lstrip().lower()
        return head.startswith(b"<")  # no JSON document starts with "<"

    def _decode(self, content_type: str, body: bytes) -> Any:
        if self._looks_html(content_type, body):
            raise SessionError("bad_response", "answered HTML, not JSON (a tunnel's error page?)", 200)
        if not body.strip():
            raise SessionError("bad_response", "answered with an empty body, not JSON", 200)
        try:
            return wire.loads(body)
        except schema.SchemaError as exc:
            raise SessionError("bad_response", f"malformed JSON: {str(exc)[:200]}", 200) from None

    def _http_error(self, code: int, content_type: str, body: bytes, path: str,
                    is_status: bool) -> SessionError:
        server_msg = None
        if not self._looks_html(content_type, body):
            try:
                server_msg = schema.parse_error(wire.loads(body))
            except schema.SchemaError:
                server_msg = None
        if code in (401, 403):
            return SessionError("token_refused", "token refused"
                                + (f" ({code})" if code == 403 else ""), code)
        if code == 404 and is_status:
            return SessionError("bad_response", "not a colabtui session (404)", code)
        if code in (502, 503, 504):
            return SessionError("bad_response", f"{_status_words(code)} — the tunnel answered but "
                                "the session did not", code)
        words = _status_words(code)
        if server_msg:
            return SessionError("bad_response", f"{words}: {server_msg}", code)
        if self._looks_html(content_type, body):
            return SessionError("bad_response", f"{words}, answered HTML, not JSON "
                                "(a tunnel's error page?)", code)
        return SessionError("bad_response", f"{words} from {path}", code)
