"""The HTTP server: stdlib ``ThreadingHTTPServer`` on daemon threads, quiet, quick to stop, and
hard to hold or break from outside.

The socket plumbing lives here; what each route answers lives in :mod:`.api`. What a client
gets, whatever it sends:

- every reply has a status line and a JSON body (a garbled or HTTP/0.9-style request line
  included; HEAD gets the head only), and a client's input never gets a 500;
- a request's line, headers and body must arrive within :data:`REQUEST_DEADLINE_S` (a client
  that trickles bytes gets a 408 and is cut off); a kept-alive connection may then wait
  :data:`IDLE_TIMEOUT_S` for its next request;
- framing that two parsers could read differently is refused with a 400 and the connection
  closed (RFC 9112 §6.3): two ``Content-Length`` fields, ``Transfer-Encoding`` beside
  ``Content-Length``, a malformed header line, a body shorter than its length;
- at most :data:`MAX_CONNECTIONS` connections are served at once; the next gets a 503;
- nothing a client sends reaches stderr: http.server's request log is off and connection
  errors are logged at DEBUG only.
"""

from __future__ import annotations

import errno
import io
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ... import schema, wire
from .api import Api

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0
"""A kept-alive connection waiting for its next request is closed after this many seconds."""

REQUEST_DEADLINE_S = 5.0
"""Seconds a request has to arrive whole (request line, headers and body), from its first
byte, or for a connection's first request from the accept. The laptop's requests are a few
hundred bytes, well under 64 KiB with a body; one that trickles in slower is answered 408 and
its connection closed, so it holds a thread for this long at most."""

MAX_CONNECTIONS = 32
"""Connections served at once, each on its own thread; one more is answered 503 and closed.
A laptop keeps one or two open per session it watches; the rest is room for a CLI and tools."""

LISTEN_BACKLOG = 128
"""Connections the kernel queues before the server accepts them (``listen()``'s backlog;
Linux caps it at ``net.core.somaxconn``). Past a full queue a connect waits for the client's
SYN retry, about 1 s."""

MAX_LINE_BYTES = 65536
"""Longest request line; longer gets 414 (http.server's own limit for header lines too)."""

_REFUSED_GRACE_S = 1.0
"""How long a connection refused with 503 stays half open, so that the request it sends meanwhile
is read and dropped instead of resetting the connection before the client read the 503."""

_CONTENT_LENGTH = re.compile(r"[0-9]+")

_ERROR_CODES = {408: "timeout", 413: "too_large", 414: "too_large", 431: "too_large",
                500: "internal", 501: "unsupported", 503: "busy", 505: "unsupported"}


class PortInUse(OSError):
    """The port is taken by another program."""


class _TooSlow(Exception):
    """The request did not arrive whole before its deadline."""


class _DeadlineReader(io.RawIOBase):
    """A connection's bytes for ``rfile``. While :attr:`deadline` is set (a request is being
    read), each read waits only for what is left of it and raises :class:`_TooSlow` past it;
    otherwise a read waits up to the socket's idle timeout."""

    def __init__(self, sock: socket.socket, idle_s: float) -> None:
        super().__init__()
        self._sock = sock
        self._idle_s = idle_s
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.deadline is None:
            return self._sock.recv_into(buffer)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _TooSlow
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            raise _TooSlow from None
        finally:
            self._sock.settimeout(self._idle_s)  # writes keep the idle timeout


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the laptop polls every second
    # parse_request starts from this version, and http.server writes no status line for
    # "HTTP/0.9": so an error found before the version is read still gets one.
    default_request_version = "HTTP/1.0"
    server_version = "colabtui-remote"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle on, the second waits for the client's
    # delayed ACK (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    server: _QuietServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain reader http.server made; ours keeps the deadline
        self._reader = _DeadlineReader(self.connection, self.timeout)
        self._reader.deadline = time.monotonic() + self.server.request_deadline_s
        self.rfile = io.BufferedReader(self._reader)
        self._replied = False

    def log_message(self, format, *args):  # noqa: A002 — http.server prints each request otherwise
        pass

    def handle_one_request(self) -> None:
        """http.server's loop step, with the request deadline, an answer to every request
        line (HTTP/0.9 and garbage too), and no exception out of it."""
        reader = self._reader
        self.command = None
        self.request_version = self.default_request_version
        self.requestline = ""
        self._replied = False
        try:
            if reader.deadline is None:  # kept alive: wait, idle, for the next request
                if not self.rfile.peek(1):
                    self.close_connection = True
                    return
                reader.deadline = time.monotonic() + self.server.request_deadline_s
            line = self.rfile.readline(MAX_LINE_BYTES + 1)
            while line in (b"\r\n", b"\n"):  # RFC 9112 §2.2: empty lines before a request line
                line = self.rfile.readline(MAX_LINE_BYTES + 1)
            self.raw_requestline = line
            if not line:
                self.close_connection = True
                return
            if not line.split():
                self.send_error(400, "the request line is blank")
                return
            if len(line) > MAX_LINE_BYTES:
                self.send_error(414, f"request line over {MAX_LINE_BYTES} bytes")
                return
            if len(line.split()) == 2:  # "GET /path": HTTP/0.9, whose replies have no head
                self.requestline = str(line, "iso-8859-1").rstrip("\r\n")
                self.send_error(400, "HTTP/0.9 requests are not served: send "
                                "'GET /v1/status HTTP/1.1' and headers")
                return
            if not self.parse_request():
                return
            if self.headers.defects:  # e.g. "Content-Length : 5", which the parser drops
                self.send_error(400, "a header line is malformed (RFC 9112 §5)")
                return
            handler = getattr(self, f"do_{self.command}", None)
            if handler is None:
                self.send_error(501, f"unsupported method {self.command[:20]!r}")
                return
            handler()
            self.wfile.flush()
        except _TooSlow:
            self.close_connection = True
            if not self._replied:
                self.send_error(408, f"the request did not arrive whole within "
                                f"{self.server.request_deadline_s:g} s")
        except OSError:  # reset, broken pipe, or idle past the timeout
            self.close_connection = True
        except Exception:  # our bug: the client gets an answer, the notebook no traceback
            log.debug("colabtui_remote: error while answering a request", exc_info=True)
            self.close_connection = True
            if not self._replied:
                self.send_error(500, "the session failed to answer this request")
        finally:
            reader.deadline = None

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_HEAD(self):
        self._send(405, schema.error_body("method_not_allowed", "use GET or POST"), close=True,
                   body=False)

    def do_OPTIONS(self):
        self._send(405, schema.error_body("method_not_allowed", "use GET or POST"), close=True)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, headers too long, unsupported
        method or version) and ours before a route is reached, as JSON like every other
        answer, on a connection then closed."""
        text = message or explain or self.responses.get(code, ("error",))[0]
        try:
            self._send(code, schema.error_body(_ERROR_CODES.get(code, "bad_request"),
                                               f"HTTP {code}: {text}"[:wire.MAX_TEXT]),
                       close=True, body=self.command != "HEAD")
        except OSError:
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            return
        status, obj = self.server.api.handle(method, self.path, self.headers.get("Authorization"), body)
        # No kept-alive connection for a client without the token.
        self._send(status, obj, close=status == 401)

    def _read_body(self) -> bytes | None:
        """The request's body, or None when its framing was refused (the answer is sent)."""
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get_all("Transfer-Encoding"):
            if lengths:
                self._refuse(400, "Transfer-Encoding and Content-Length together (RFC 9112 §6.1)")
            else:
                self._refuse(411, "chunked bodies are not supported: send Content-Length",
                             "length_required")
            return None
        if not lengths:
            return b""
        if len(lengths) > 1:
            self._refuse(400, "more than one Content-Length (RFC 9112 §6.3)")
            return None
        value = lengths[0].strip()
        if not _CONTENT_LENGTH.fullmatch(value):
            self._refuse(400, "Content-Length must be a non-negative decimal integer")
            return None
        if len(value) > 20 or int(value) > schema.MAX_REQUEST_BYTES:
            # Do not read it: answer and drop the connection.
            self._refuse(413, f"request body over {schema.MAX_REQUEST_BYTES} bytes", "too_large")
            return None
        length = int(value)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self._refuse(400, f"the body ended after {len(body)} of its {length} bytes")
            return None
        return body

    def _refuse(self, status: int, message: str, code: str = "bad_request") -> None:
        self._send(status, schema.error_body(code, message), close=True)

    def _send(self, status: int, obj, close: bool = False, body: bool = True) -> None:
        data = wire.dumps(obj)
        self._replied = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(data)


def _busy_reply(max_connections: int) -> bytes:
    """The whole 503 a connection past :data:`MAX_CONNECTIONS` gets, head and JSON body."""
    data = wire.dumps(schema.error_body(
        "busy", f"the session serves {max_connections} connections at once and has no room "
        "for another: try again, or close idle clients"))
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nCache-Control: no-store\r\nRetry-After: 1\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("ascii") + data


def _drain(sock: socket.socket) -> bool:
    """Read and drop what a non-blocking socket holds; whether the peer closed its side.
    (Closing a socket with unread bytes sends a reset, which can destroy the reply in flight.)"""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() shuts the open connections down itself
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, api: Api, request_deadline_s: float, max_connections: int):
        self.api = api
        self.request_deadline_s = request_deadline_s
        self.max_connections = max_connections
        self._busy = _busy_reply(max_connections)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._refused: list[tuple[float, socket.socket]] = []  # only the serving thread's
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            room = len(self._connections) < self.max_connections
            if room:
                self._connections.add(request)
        if room:
            super().process_request(request, client_address)
        else:
            self._turn_away(request)

    def _turn_away(self, request: socket.socket) -> None:
        """Answer 503 without a thread and without blocking the accept loop: the reply fits
        the socket's send buffer; the request is drained by :meth:`service_actions`."""
        try:
            request.setblocking(False)
            request.send(self._busy)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        if len(self._refused) >= self.max_connections:  # a flood: no grace for the oldest
            oldest = self._refused.pop(0)[1]
            _drain(oldest)
            oldest.close()
        self._refused.append((time.monotonic() + _REFUSED_GRACE_S, request))

    def service_actions(self) -> None:
        """Between accepts (at least every poll interval): drain the refused connections and
        close those the client closed or whose grace ran out."""
        if not self._refused:
            return
        now = time.monotonic()
        kept = []
        for until, sock in self._refused:
            if _drain(sock) or now >= until:
                sock.close()
            else:
                kept.append((until, sock))
        self._refused = kept

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the handler thread blocked in readline
            except OSError:
                pass
        refused, self._refused = self._refused, []
        for _, sock in refused:
            sock.close()

    def handle_error(self, request, client_address):
        # A client that hangs up mid-answer is normal on flaky tunnels: no traceback in the notebook.
        log.debug("colabtui_remote: connection from %s ended with an error", client_address,
                  exc_info=True)


class Server:
    """An HTTP server for :class:`Api` on a daemon thread.

    Args:
        api: answers the requests.
        host: address to bind; ``127.0.0.1`` unless you mean to expose it.
        port: TCP port; 0 picks a free one (see :attr:`port`).
        request_deadline_s: seconds a request has to arrive whole; None for
            :data:`REQUEST_DEADLINE_S`.
        max_connections: connections served at once, past which a client gets 503; None for
            :data:`MAX_CONNECTIONS`.

    Raises:
        PortInUse: the port is taken by another program (the message says what to do).
        OSError: any other bind failure.
        ValueError: ``request_deadline_s`` or ``max_connections`` is not positive.
    """

    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0, *,
                 request_deadline_s: float | None = None,
                 max_connections: int | None = None) -> None:
        deadline = REQUEST_DEADLINE_S if request_deadline_s is None else request_deadline_s
        bound = MAX_CONNECTIONS if max_connections is None else max_connections
        if not deadline > 0 or bound < 1:
            raise ValueError(f"request_deadline_s={deadline!r} and max_connections={bound!r} "
                             "must be positive")
        try:
            self._httpd = _QuietServer((host, port), api, deadline, bound)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    errno.EADDRINUSE,
                    f"port {port} on {host} is in use by another program; pass another port, "
                    "or port=0 to pick a free one") from None
            raise
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"colabtui-remote-http-{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def api(self) -> Api:
        return self._httpd.api

    def close(self) -> None:
        """Stop serving, drop open connections and join the thread; returns within about 1 s
        even while a client holds an idle keep-alive connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=2)
