"""The HTTP server against hostile or clumsy clients, on a real loopback port with real sockets:
every malformed request gets a status line and a JSON 4xx (never a 500), framing that could be
read two ways is refused, a client that trickles bytes is cut off, connections are bounded,
nothing reaches stderr, and ``close()`` is quick."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from colabtui_remote import Monitor, wire
from colabtui_remote.transport.http import serve
from colabtui_remote.transport.http import server as http_server
from colabtui_remote.transport.http.api import MAX_QUERY_FIELDS, Api
from colabtui_remote.transport.http.server import Server
from digits_training import wait_for
from test_server import strict_json

TOKEN = "t0ken-" + "x" * 20
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")


@pytest.fixture
def hardened():
    """``start(**server_kwargs) -> (mon, server)``: a Monitor (not training) answered by a
    :class:`Server` on a free loopback port, built with ``server_kwargs`` (a short
    ``request_deadline_s``, a small ``max_connections``). Closed at the end of the test."""
    made = []

    def start(**kw):
        mon = Monitor(run="hardened", autosave_every=None, handle_sigterm=False)
        server = Server(Api(mon, TOKEN), port=0, **kw)
        made.append((mon, server))
        return mon, server

    yield start
    for mon, server in made:
        server.close()
        mon.close()


class Reply:
    """One HTTP reply read off a socket: ``status`` (None without a status line), the
    ``headers`` (lower-cased names), the ``body`` and the ``raw`` bytes."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        match = STATUS_LINE.match(raw)
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if match is None or not sep:
            return
        self.status = int(match.group(1))
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.body = rest[:int(self.headers.get("content-length", len(rest)))]

    def error(self) -> dict:
        """The JSON error body (strictly parsed)."""
        return strict_json(self.body)["error"]

    def __repr__(self) -> str:
        return f"Reply({self.raw[:300]!r})"


def read_reply(sock: socket.socket) -> Reply:
    """Read one reply (skipping a ``100 Continue``), up to its Content-Length, or to EOF."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        data += chunk
        if data.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in data:
            data = data.partition(b"\r\n\r\n")[2]
            continue
        reply = Reply(data)
        if not chunk or (reply.status is not None and len(reply.body) >= int(
                reply.headers.get("content-length", 1 << 30))):
            return reply


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> Reply:
    """Send ``raw`` on a new connection, close our side (so nothing waits for more), read the
    reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered early and closed (a line over 64 KiB)
            pass
        return read_reply(sock)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed this connection: the reads end (EOF or reset) before the
    socket's timeout; what the server answered before is read and dropped."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def post(body: bytes, head: bytes = b"") -> bytes:
    return (b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH + head
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def get(target: bytes, head: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + AUTH + head + b"\r\n"


COMMAND = b'{"id": "%s", "action": "save"}'

MALFORMED = {
    # JSON that Python's decoder recurses or grinds on
    "arrays nested 30,000 deep": post(b"[" * 30_000 + b"]" * 30_000),
    "objects nested 10,000 deep": post(b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    "an id nested past the depth limit": post(b'{"id": ' + b"[" * 65 + b"]" * 65 + b"}"),
    "an integer of 5,000 digits": post(b'{"id": ' + b"9" * 5000 + b', "action": "save"}'),
    "a float of 5,000 digits": post(b'{"id": 0.' + b"1" * 5000 + b"}"),
    "a bare NaN": post(b'{"id": NaN}'),
    "a body that is not UTF-8": post(b'{"id": "\xff\xfe"}'),
    # query strings
    "more query fields than the limit": get(b"/v1/metrics?" + b"&".join(
        b"f%d=1" % i for i in range(MAX_QUERY_FIELDS + 12))),
    "an 'after' of 5,000 digits": get(b"/v1/metrics?after=" + b"7" * 5000),
    "an IPv6 target that does not close": get(b"http://[/v1/status"),
    # framing (RFC 9112 §6)
    "two equal Content-Lengths": post(b"{}", b"Content-Length: 2\r\n"),
    "two Content-Lengths that differ": post(b"{}", b"Content-Length: 40\r\n"),
    "a Content-Length list": b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH
    + b"Content-Length: 2, 2\r\n\r\n{}",
    "a signed Content-Length": b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH
    + b"Content-Length: +2\r\n\r\n{}",
    "a Content-Length with an underscore": b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH
    + b"Content-Length: 1_0\r\n\r\n{}",
    "a Content-Length of 5,000 digits": b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH
    + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n{}",
    "Transfer-Encoding beside Content-Length": post(b"0\r\n\r\n",
                                                    b"Transfer-Encoding: chunked\r\n"),
    "a body shorter than its Content-Length": b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH
    + b"Content-Length: 60\r\n\r\n{\"id\"",
    "a space before a header's colon": b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH
    + b"Content-Length : 2\r\n\r\n{}",
    "a first header line that is a continuation": b"GET /v1/status HTTP/1.1\r\n x: y\r\n"
    + AUTH + b"\r\n",
    # request lines http.server answered without a status line
    "a one-word request line": b"garbage\r\n\r\n",
    "an HTTP/0.9 GET": b"GET /v1/status\r\n",
    "an HTTP/0.9 POST": b"POST /v1/commands\r\n",
    "a bad version": b"GET /v1/status HTTP/x\r\n\r\n",
    "four words": b"GET /v1/status now HTTP/1.1\r\n\r\n",
    "a blank request line of spaces": b"   \r\n\r\n",
    "control bytes in the request line": b"\x00\x1b[31m\x07 \x00 HTTP/1.1\r\n\r\n",
    "a request line over 64 KiB": b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    "a header line over 64 KiB": get(b"/v1/status", b"X-Big: " + b"a" * 70_000 + b"\r\n"),
    "more than 100 headers": get(b"/v1/status", b"".join(b"X-%d: y\r\n" % i for i in range(120))),
    "an unknown method": b"BREW /v1/status HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n",
    "HTTP/2.0": b"GET /v1/status HTTP/2.0\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_request_gets_a_status_line_and_a_json_4xx(hardened, name):
    mon, server = hardened()
    reply = exchange(server.port, MALFORMED[name])
    assert reply.status is not None, f"no status line: {reply}"
    assert 400 <= reply.status < 500 or reply.status in (501, 505), reply
    assert reply.error()["message"], reply
    assert not mon.commands.has_pending()
    assert exchange(server.port, get(b"/v1/status")).status == 200


def mutations(seed: int, count: int):
    """``count`` requests made from valid ones by flipping, inserting, duplicating and cutting
    bytes and lines (seeded: the same set every run)."""
    rng = random.Random(seed)
    bases = [post(COMMAND % b"fuzz"), get(b"/v1/metrics?after=0&limit=5"), get(b"/v1/status"),
             get(b"/v1/commands/fuzz")]
    junk = [b"\r\n", b"\n", b"\x00", b" ", b":", b"[", b"{", b"9" * 50, b"%", b"\xff", b"HTTP/1.1",
            b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"?a=1&b=2&c=3"]
    for _ in range(count):
        raw = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw))
            kind = rng.randrange(4)
            if kind == 0:
                raw[at] = rng.randrange(256)
            elif kind == 1:
                raw[at:at] = rng.choice(junk)
            elif kind == 2:
                raw[at:at] = raw[at:at + rng.randint(1, 40)]
            else:
                del raw[at:at + rng.randint(1, 20)]
        yield bytes(raw)


def test_mutated_requests_never_get_a_500_nor_a_reply_without_a_status_line(hardened):
    _, server = hardened(request_deadline_s=2.0)
    for raw in mutations(seed=9, count=300):
        reply = exchange(server.port, raw)
        if not raw.strip(b"\r\n"):
            continue  # nothing but empty lines: no request, nothing to answer
        assert reply.status is not None, (raw, reply)
        assert reply.status != 500, (raw, reply)
        if not raw.startswith(b"HEAD") and reply.status != 100:
            strict_json(reply.body)


@contextlib.contextmanager
def notebook_logging():
    """Logging as a notebook has it by default: no handler on the root logger, so a record
    of WARNING or above goes to stderr through ``logging.lastResort`` (pytest's own capture
    handlers are set aside meanwhile)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_nothing_a_client_sends_reaches_stderr(hardened, capfd):
    _, server = hardened(request_deadline_s=2.0)
    capfd.readouterr()
    with notebook_logging():
        for raw in [*MALFORMED.values(), *mutations(seed=5, count=100)]:
            exchange(server.port, raw)
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(get(b"/v1/status")[:20])  # hangs up mid-request
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(get(b"/v1/metrics?after=0"))  # resets the connection before the reply
        assert exchange(server.port, get(b"/v1/status")).status == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert err == ""


def test_a_bug_while_answering_is_a_500_with_one_escaped_line_and_no_traceback(hardened, capfd):
    mon, server = hardened()

    def broken_status():
        raise RuntimeError("boom \x1b[2J")

    mon.status = broken_status
    capfd.readouterr()
    with notebook_logging():
        reply = exchange(server.port, get(b"/v1/status?x=\x1b[31m"))
    assert reply.status == 500 and reply.error()["code"] == "internal"
    err = capfd.readouterr().err
    assert "Traceback" not in err and "\x1b" not in err
    assert err.count("\n") == 1 and "RuntimeError" in err


def test_a_bug_outside_the_api_still_gets_a_json_answer(hardened, capfd, monkeypatch):
    _, server = hardened()

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(server.api, "handle", broken)
    capfd.readouterr()
    with notebook_logging():
        reply = exchange(server.port, get(b"/v1/status"))
    assert reply.status == 500 and reply.error()["message"]
    assert capfd.readouterr().err == ""


# --------------------------------------------------------------------------- Content-Length

@pytest.mark.parametrize("second", [b"Content-Length: %d\r\n", b"Content-Length: 1%d\r\n"],
                         ids=["equal", "conflicting"])
def test_a_duplicate_content_length_is_refused_and_the_command_not_taken(hardened, second):
    mon, server = hardened()
    body = COMMAND % str(uuid.uuid4()).encode()
    raw = post(body, second % len(body))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)  # our side stays open: the server closes
        reply = read_reply(sock)
        assert reply.status == 400, reply
        assert "Content-Length" in reply.error()["message"]
        assert reply.headers["connection"] == "close"
        assert closed_by_server(sock)
    assert not mon.commands.has_pending()


def test_transfer_encoding_beside_content_length_is_a_400_and_alone_a_411(hardened):
    _, server = hardened()
    both = exchange(server.port, post(b"2\r\n{}\r\n0\r\n\r\n", b"Transfer-Encoding: chunked\r\n"))
    assert both.status == 400 and "Transfer-Encoding" in both.error()["message"]
    alone = exchange(server.port, b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH
                     + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert alone.status == 411 and alone.error()["code"] == "length_required"


def test_a_wrong_token_gets_no_kept_alive_connection(hardened):
    _, server = hardened()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n")
        reply = read_reply(sock)
        assert reply.status == 401 and reply.headers["connection"] == "close"
        assert closed_by_server(sock)


# --------------------------------------------------------------------------- slow clients

def trickle(sock: socket.socket, data: bytes, every_s: float, stop: threading.Event) -> None:
    """Send ``data`` one byte every ``every_s`` seconds until done, ``stop`` or an error."""
    for i in range(len(data)):
        if stop.wait(every_s):
            return
        try:
            sock.send(data[i:i + 1])
        except OSError:
            return


@pytest.mark.parametrize("fast,slow", [
    (b"", get(b"/v1/status")),
    (b"POST /v1/commands HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 40\r\n\r\n",
     b'{"id": "slow", "action": "save"}        '),
], ids=["headers", "body"])
def test_a_client_sending_a_byte_every_half_second_is_cut_off(hardened, fast, slow):
    mon, server = hardened(request_deadline_s=1.5)
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(fast)
        sender = threading.Thread(target=trickle, args=(sock, slow, 0.5, stop), daemon=True)
        sender.start()
        try:
            reply = read_reply(sock)
            assert reply.status == 408, reply  # within the socket's 15 s, for 40+ s of bytes
            assert reply.error()["code"] == "timeout"
            assert closed_by_server(sock)
        finally:
            stop.set()
            sender.join(5)
    assert not mon.commands.has_pending()
    assert exchange(server.port, get(b"/v1/status")).status == 200


def test_a_connection_that_sends_nothing_is_cut_off_at_the_deadline(hardened):
    _, server = hardened(request_deadline_s=1.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        reply = read_reply(sock)
        assert reply.status == 408, reply
        assert closed_by_server(sock)


def test_a_kept_alive_connection_may_idle_past_the_request_deadline(hardened):
    _, server = hardened(request_deadline_s=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(get(b"/v1/status"))
        assert read_reply(sock).status == 200
        time.sleep(1.5)  # idle: the deadline counts only while a request is arriving
        sock.sendall(get(b"/v1/status"))
        assert read_reply(sock).status == 200


def test_the_request_deadline_has_a_documented_default_of_a_few_seconds():
    assert 1.0 <= http_server.REQUEST_DEADLINE_S <= 10.0
    assert http_server.IDLE_TIMEOUT_S > http_server.REQUEST_DEADLINE_S


# --------------------------------------------------------------------------- connections

def test_past_the_connection_bound_a_client_gets_a_json_503(hardened):
    _, server = hardened(max_connections=3)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(3)]
    try:
        for sock in held:  # kept alive, idle: each holds its place
            sock.sendall(get(b"/v1/status"))
            assert read_reply(sock).status == 200
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
            extra.sendall(get(b"/v1/status"))
            reply = read_reply(extra)
            assert reply.status == 503, reply
            assert reply.error()["code"] == "busy" and "3 connections" in reply.error()["message"]
            assert reply.headers["connection"] == "close"
            assert closed_by_server(extra)
        held.pop().close()  # a place frees up
        wait_for(lambda: exchange(server.port, get(b"/v1/status")).status == 200, timeout=10)
        for sock in held:
            sock.sendall(get(b"/v1/status"))
            assert read_reply(sock).status == 200
    finally:
        for sock in held:
            sock.close()


def test_the_connection_bound_is_documented_and_the_default():
    mon = Monitor(run="bound", autosave_every=None, handle_sigterm=False)
    server = Server(Api(mon, TOKEN))
    try:
        assert server._httpd.max_connections == http_server.MAX_CONNECTIONS >= 8
    finally:
        server.close()
        mon.close()


def test_200_back_to_back_connects_fit_the_listen_backlog(hardened, monkeypatch):
    backlogs = []
    listen = socket.socket.listen

    def spy(sock, backlog=None):
        backlogs.append(backlog)
        return listen(sock, backlog)

    monkeypatch.setattr(socket.socket, "listen", spy)
    _, server = hardened(max_connections=256)
    assert backlogs == [http_server.LISTEN_BACKLOG] and http_server.LISTEN_BACKLOG >= 128
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(get(b"/v1/status", b"Connection: close\r\n"))
        assert [read_reply(sock).status for sock in socks] == [200] * 200
    finally:
        for sock in socks:
            sock.close()


# --------------------------------------------------------------------------- close()

def test_close_does_not_linger_when_the_last_poll_is_not_recent(monkeypatch):
    monkeypatch.setattr(serve, "LINGER_S", 30.0)  # a linger would show
    monkeypatch.setattr(serve, "RECENT_POLL_S", 0.3)
    mon = Monitor(run="gone", autosave_every=None, handle_sigterm=False)
    url = mon.serve(port=0, quiet=True)
    assert httpx.get(url + "/v1/status", headers={"Authorization": f"Bearer {mon.token}"}
                     ).status_code == 200
    time.sleep(0.6)  # the laptop went away
    done = threading.Event()
    threading.Thread(target=lambda: (mon.close(), done.set()), daemon=True).start()
    assert done.wait(10), "close() lingered although nobody polled lately"


def test_close_right_after_a_poll_returns_within_two_seconds_by_default():
    assert serve.LINGER_S <= 1.0
    mon = Monitor(run="watched", autosave_every=None, handle_sigterm=False)
    url = mon.serve(port=0, quiet=True)
    assert httpx.get(url + "/v1/status", headers={"Authorization": f"Bearer {mon.token}"}
                     ).status_code == 200  # a laptop polled, and will not poll again
    started = time.monotonic()
    mon.close()
    assert time.monotonic() - started < 3.0  # LINGER_S + shutdown; it was 5.1 s


def test_stop_takes_the_longest_linger_as_a_parameter(monkeypatch):
    monkeypatch.setattr(serve, "LINGER_S", 30.0)
    mon = Monitor(run="param", autosave_every=None, handle_sigterm=False)
    service = serve.start(mon, "param", "127.0.0.1", 0, None, quiet=True, tunnel=None,
                          replacing=None)
    try:
        assert httpx.get(service.url + "/v1/status",
                         headers={"Authorization": f"Bearer {service.token}"}).status_code == 200
        done = threading.Event()
        threading.Thread(target=lambda: (serve.stop(service, seen=lambda: False, linger_s=0.2),
                                         done.set()), daemon=True).start()
        assert done.wait(10), "stop() ignored linger_s"
        with pytest.raises(httpx.TransportError):
            httpx.get(service.url + "/v1/status")
    finally:
        serve.stop(service)
        mon.close()


# --------------------------------------------------------------------------- wire.loads

def test_loads_refuses_deep_nesting_with_a_schema_error():
    with pytest.raises(wire.SchemaError, match="nested deeper than 64"):
        wire.loads("[" * 200_000 + "]" * 200_000)
    with pytest.raises(wire.SchemaError, match="nested deeper"):
        wire.loads(b'{"a":' * 65 + b"1" + b"}" * 65)


def test_loads_decodes_an_overlong_integer_as_a_float_that_no_integer_field_takes():
    # int() of 5,000 digits raises (Python's digit limit) or grinds; float() is linear.
    assert wire.loads("[" + "9" * 5000 + ", -" + "9" * 5000 + "]") == [math.inf, -math.inf]
    assert wire.loads("[" + "1" * 101 + "]") == [float("1" * 101)]
    assert wire.loads("[1e" + "0" * 101 + "]") == [1.0]  # a long exponent is a float anyway
    assert isinstance(wire.loads("-" + "9" * wire.MAX_JSON_DIGITS), int)


def test_loads_takes_what_is_within_the_limits():
    depth = wire.MAX_JSON_DEPTH
    assert wire.loads("[" * depth + "]" * depth) is not None
    assert wire.loads("9" * wire.MAX_JSON_DIGITS) == int("9" * wire.MAX_JSON_DIGITS)
    # Brackets, digits and escaped quotes inside strings are text, not structure.
    text = '"' + "[" * 500 + "\\\"" + "7" * 500 + "{" * 500 + '\\\\"'
    assert wire.loads('{"k": ' + text + ', "n": [[1.5, 2]]}')["n"] == [[1.5, 2]]
    page = {"series": {"loss": [[i, i, 1.7e9 + i, 0.25, None] for i in range(3000)]}}
    assert wire.loads(wire.dumps(page)) == page


def test_a_200000_deep_document_does_not_crash_a_process_with_a_raised_recursion_limit():
    code = ("import sys; sys.setrecursionlimit(10**6)\n"
            "from colabtui_remote import wire\n"
            "try:\n"
            "    wire.loads('[' * 200_000 + ']' * 200_000)\n"
            "except wire.SchemaError as exc:\n"
            "    print('refused:', exc)\n")
    package_root = Path(wire.__file__).parent.parent  # this checkout's colabtui_remote
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(package_root)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused: JSON nested deeper")


def test_the_bounds_check_takes_linear_time_on_unclosed_strings():
    # Each escaped quote after an unclosed one could restart a scan to the end (quadratic:
    # 24 s for this 64 KB body); linear, it takes milliseconds.
    started = time.monotonic()
    with pytest.raises(wire.SchemaError):
        wire.loads('"' + '\\"' * 32_000)
    assert time.monotonic() - started < 2.0
