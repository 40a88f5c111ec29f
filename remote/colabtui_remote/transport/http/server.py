"""The HTTP server: stdlib ``ThreadingHTTPServer`` on daemon threads, quiet, quick to stop.

The socket plumbing lives here; what each route answers lives in :mod:`.api`.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ... import schema, wire
from .api import Api

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0
"""An idle keep-alive connection is closed after this many seconds."""


class PortInUse(OSError):
    """The port is taken by another program."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the laptop polls every second
    server_version = "colabtui-remote"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle on, the second waits for the client's
    # delayed ACK (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    server: _QuietServer

    def log_message(self, format, *args):  # noqa: A002 — http.server prints each request otherwise
        pass

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
        self._send(405, schema.error_body("method_not_allowed", "use GET or POST"), close=True)

    def do_OPTIONS(self):
        self._send(405, schema.error_body("method_not_allowed", "use GET or POST"), close=True)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, headers too long, unsupported
        method or version) as JSON too, like every other answer."""
        try:
            self._send(code, schema.error_body("bad_request" if code < 500 else "unsupported",
                                               f"HTTP {code}: {message or explain or 'error'}"),
                       close=True, body=self.command != "HEAD")
        except OSError:
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        if self.headers.get("Transfer-Encoding"):
            self._send(411, schema.error_body(
                "length_required", "chunked bodies are not supported: send Content-Length"),
                close=True)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self._send(400, schema.error_body(
                "bad_request", "Content-Length must be a non-negative integer"), close=True)
            return
        if length > schema.MAX_REQUEST_BYTES:
            # Do not read it: answer and drop the connection.
            self._send(413, schema.error_body(
                "too_large", f"request body over {schema.MAX_REQUEST_BYTES} bytes"), close=True)
            return
        body = self.rfile.read(length) if length else b""
        status, obj = self.server.api.handle(method, self.path, self.headers.get("Authorization"), body)
        self._send(status, obj)

    def _send(self, status: int, obj, close: bool = False, body: bool = True) -> None:
        data = wire.dumps(obj)
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


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() shuts the open connections down itself
    allow_reuse_address = True

    def __init__(self, address, api: Api):
        self.api = api
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

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

    Raises:
        PortInUse: the port is taken by another program (the message says what to do).
        OSError: any other bind failure.
    """

    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            self._httpd = _QuietServer((host, port), api)
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
