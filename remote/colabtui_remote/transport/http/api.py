"""Request handling for wire protocol v1, separate from the socket server.

:class:`Api` turns (method, target, Authorization header, body) into (HTTP status, JSON object).
It never raises: anything a client sends becomes a 4xx with a JSON error, and a bug on our side
becomes a 500 (logged as one warning line; the traceback only at DEBUG), so nothing a client does
reaches the training loop or floods the notebook's output.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ... import schema, wire
from ...commands import CommandConflict
from ..source import RunSource

log = logging.getLogger(__name__)

MAX_QUERY_FIELDS = 8
"""Most ``name=value`` fields a request's query may carry (``/v1/metrics`` reads two); more
gets a 400."""

_COMMAND_PATH = re.compile(r"^/v1/commands/([^/]{1,128})$")


def _error(status: int, code: str, message: str) -> tuple[int, dict]:
    return status, schema.error_body(code, message)


class Api:
    """Routes of DESIGN.md's protocol table, behind a bearer token.

    Args:
        source: the session the API reports on and sends commands to.
        token: the bearer token every request must carry.

    Attributes:
        last_status_at: when a status snapshot last went out, ``time.monotonic()`` seconds,
            or None before the first (how :func:`.serve.stop` tells a laptop is watching).
    """

    def __init__(self, source: RunSource, token: str) -> None:
        self._source = source
        self._token = token.encode("utf-8")
        self.last_status_at: float | None = None

    def polled_within(self, seconds: float) -> bool:
        """Whether a status snapshot went out in the last ``seconds`` seconds."""
        at = self.last_status_at
        return at is not None and time.monotonic() - at <= seconds

    def authorized(self, authorization: str | None) -> bool:
        """``Authorization: Bearer <token>`` (the scheme in any case, RFC 7235), the token
        compared in constant time."""
        scheme, _, given = (authorization or "").strip().partition(" ")
        ok_scheme = scheme.lower() == "bearer"
        same = hmac.compare_digest(given.strip().encode("utf-8", "replace"), self._token)
        return ok_scheme and same

    def handle(self, method: str, target: str, authorization: str | None,
               body: bytes) -> tuple[int, Any]:
        """Answer one request.

        Returns:
            (HTTP status, JSON-able object). 401 for a missing or wrong token (the same body
            either way, and before any route is revealed), 404 unknown route, 405 wrong method,
            400 malformed input, 409 an id reused with another action, 500 our own bug.
        """
        if not self.authorized(authorization):
            return _error(401, "unauthorized",
                          "missing or wrong token: send 'Authorization: Bearer <token>' with the "
                          "token printed by serve()")
        try:
            return self._route(method, target, body)
        except Exception as exc:  # a bug here must not reach the training loop
            # One line where a notebook shows warnings, the client's text escaped by %r; the
            # traceback only for whoever turned DEBUG on.
            log.warning("colabtui_remote: error while answering %s %r: %s %r", method[:10],
                        target[:200], type(exc).__name__, str(exc)[:300])
            log.debug("colabtui_remote: the error's traceback", exc_info=True)
            return _error(500, "internal", "the session failed to answer this request; "
                          "see the notebook's log")

    def _route(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        try:
            parts = urlsplit(target)
        except ValueError:  # e.g. "http://[/v1": an IPv6 host that does not close
            return _error(400, "bad_request", "the request target is not a URL path")
        path = unquote(parts.path).rstrip("/") or "/"
        try:
            query = parse_qs(parts.query, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            return _error(400, "bad_request",
                          f"more than {MAX_QUERY_FIELDS} query fields (the limit)")
        if path == "/v1/status":
            refused = self._only(method, "GET")
            if refused:
                return refused
            body = schema.status_to_wire(self._source.status())
            self.last_status_at = time.monotonic()
            self._source.status_served()
            return 200, body
        if path == "/v1/metrics":
            return self._only(method, "GET") or self._metrics(query)
        if path == "/v1/checkpoints":
            return self._only(method, "GET") or (
                200, schema.checkpoint_list_to_wire(self._source.checkpoint_list()))
        if path == "/v1/commands":
            return self._only(method, "POST") or self._post_command(body)
        match = _COMMAND_PATH.match(path)
        if match:
            return self._only(method, "GET") or self._get_command(match.group(1))
        return _error(404, "not_found", f"no route {path[:100]!r}; this server speaks protocol "
                      f"v{schema.PROTOCOL_VERSION} under /v1/")

    @staticmethod
    def _only(method: str, allowed: str) -> tuple[int, Any] | None:
        if method == allowed:
            return None
        return _error(405, "method_not_allowed", f"use {allowed} on this route, not {method[:10]}")

    def _metrics(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            after = int(query.get("after", ["0"])[0])
            limit = int(query.get("limit", [str(schema.MAX_METRICS_POINTS)])[0])
        except ValueError:
            return _error(400, "bad_request", "'after' and 'limit' must be integers")
        limit = max(1, min(limit, schema.MAX_METRICS_POINTS))
        return 200, self._source.metrics.page_wire(after, limit)

    def _post_command(self, body: bytes) -> tuple[int, Any]:
        try:
            obj = wire.loads(body)
        except schema.SchemaError as exc:
            return _error(400, "bad_request", f"body is {exc}")
        if not isinstance(obj, dict):
            return _error(400, "bad_request", 'body must be an object: {"id": "<uuid>", "action": "save"}')
        try:
            record, _created = self._source.commands.submit(obj.get("id"), obj.get("action"))
        except CommandConflict as exc:
            return _error(409, "conflict", str(exc))
        except ValueError as exc:
            return _error(400, "bad_request", str(exc))
        self._source.commands.delivered(record.id)  # a retry that finds it finished
        return 202, schema.command_to_wire(record)

    def _get_command(self, command_id: str) -> tuple[int, Any]:
        record = self._source.commands.get(command_id)
        if record is None:
            return _error(404, "not_found", f"no command with id {command_id[:128]!r}")
        self._source.commands.delivered(command_id)
        return 200, schema.command_to_wire(record)
