"""RemoteClient against the real notebook-side server (an in-process Monitor), and against a
loopback http.server that answers what a broken tunnel or a wrong URL really sends."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from colabtui_remote import Monitor
from colabtui_remote.schema import PROTOCOL_VERSION
from ports import free_port

from colabtui.client import MAX_RESPONSE_BYTES, RemoteClient, SessionError

TOKEN = "test-token-0123456789abcdef"


# --------------------------------------------------------------------------- a real session


@pytest.fixture
def monitor(tmp_path: Path):
    mon = Monitor(run="digits-lr1e-3", checkpoint_dir=tmp_path / "ckpt", autosave_every=None,
                  label="[bold]digits[/", handle_sigterm=False)
    import torch

    model = torch.nn.Linear(4, 2)
    mon.track(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    mon.serve(port=0, token=TOKEN, quiet=True)
    yield mon
    mon.close()


async def test_status_metrics_checkpoints_from_a_real_session(monitor: Monitor) -> None:
    for step in range(5):
        monitor.log(step, loss=1.0 / (step + 1))
        monitor.at_step_boundary(step + 1)
    monitor.log(5, loss=math.nan)
    async with RemoteClient(monitor.url, TOKEN) as client:
        st = await client.status()
        assert (st.protocol, st.run, st.state, st.step) == (PROTOCOL_VERSION, "digits-lr1e-3",
                                                           "running", 5)
        assert st.label == "[bold]digits[/"  # untrusted text stays a plain string
        page = await client.metrics(after=0)
        loss = page.series["loss"]
        assert [p.step for p in loss] == [0, 1, 2, 3, 4, 5]
        assert loss[0].value == 1.0 and math.isnan(loss[-1].value)
        assert (await client.metrics(after=page.next_after)).series.get("loss", []) == []
        assert (await client.checkpoints()).checkpoints == []


async def test_save_command_same_id_acts_once_and_finishes(monitor: Monitor) -> None:
    async with RemoteClient(monitor.url, TOKEN) as client:
        first = await client.send_command("save")
        again = await client.send_command("save", command_id=first.id)
        assert again.id == first.id and again.created_at == first.created_at
        assert first.action == "save" and first.state == "pending"
        record = first
        for step in range(1, 400):  # the training thread reaches a step boundary
            monitor.at_step_boundary(step)
            record = await client.get_command(first.id)
            if record.state in ("done", "failed"):
                break
            await asyncio.sleep(0.01)
        assert record.state == "done", record.error
        assert record.checkpoint is not None
        listing = await client.checkpoints()
        assert [c.step for c in listing.checkpoints] == [record.checkpoint.step]
        with pytest.raises(SessionError) as info:
            await client.get_command("no-such-command")
        assert info.value.kind == "bad_response" and info.value.status_code == 404


async def test_wrong_token_is_refused_and_never_echoed(monitor: Monitor) -> None:
    wrong = "wrong-token-abcdefghijkl"
    async with RemoteClient(monitor.url, wrong) as client:
        with pytest.raises(SessionError) as info:
            await client.status()
    assert info.value.kind == "token_refused"
    assert info.value.message == "token refused"
    assert wrong not in repr(client) and TOKEN not in str(info.value)


async def test_unknown_action_is_a_programming_error(monitor: Monitor) -> None:
    async with RemoteClient(monitor.url, TOKEN) as client:
        with pytest.raises(ValueError, match="unknown action"):
            await client.send_command("format-disk")


# --------------------------------------------------------------------------- broken answers

Route = tuple[int, dict[str, str], bytes] | Callable[[BaseHTTPRequestHandler], None]


class Canned:
    """A loopback HTTP server answering fixed responses per path (port 0)."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str, bytes]] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                canned.requests.append((self.command, self.path, body))
                route = canned.routes.get(self.path.split("?")[0], (404, {}, b"not found"))
                if callable(route):
                    route(self)
                    return
                code, headers, payload = route
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def canned():
    servers: list[Canned] = []

    def start(routes: dict[str, Route]) -> Canned:
        servers.append(Canned(routes))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def status_body(**over) -> bytes:
    doc = {"protocol": PROTOCOL_VERSION, "run": "r", "session_id": "s", "label": "l",
           "state": "running", "step": 3}
    doc.update(over)
    return json.dumps(doc).encode()


JSON = {"Content-Type": "application/json"}
HTML = {"Content-Type": "text/html; charset=utf-8"}
CLOUDFLARE_PAGE = (b"<!DOCTYPE html><html><head><title>Cloudflare Tunnel error</title></head>"
                   b"<body>Error 1033</body></html>")


async def status_error(url: str, timeout_s: float = 5.0) -> SessionError:
    async with RemoteClient(url, TOKEN, timeout_s=timeout_s) as client:
        with pytest.raises(SessionError) as info:
            await client.status()
    return info.value


@pytest.mark.parametrize(("route", "kind", "words"), [
    ((404, HTML, b"<html>nothing here</html>"), "bad_response", "not a colabtui session (404)"),
    ((502, HTML, CLOUDFLARE_PAGE), "bad_response",
     "HTTP 502 (Bad Gateway) — the tunnel answered but the session did not"),
    ((503, {}, b""), "bad_response", "HTTP 503 (Service Unavailable) — the tunnel answered"),
    ((504, JSON, b"{}"), "bad_response", "HTTP 504 (Gateway Timeout) — the tunnel answered"),
    ((200, HTML, CLOUDFLARE_PAGE), "bad_response", "answered HTML, not JSON (a tunnel's error page?)"),
    ((200, {}, b"  <html>no content type</html>"), "bad_response", "answered HTML, not JSON"),
    ((200, JSON, b'{"protocol": 1, "run": '), "bad_response", "malformed JSON"),
    ((200, JSON, b'{"protocol": 1, "x": NaN}'), "bad_response", "malformed JSON"),
    ((200, JSON, b"\xff\xfe"), "bad_response", "malformed JSON"),
    ((200, JSON, b""), "bad_response", "empty body"),
    ((200, JSON, status_body(state="exploding")), "bad_response", "status.state: unknown state"),
    ((200, JSON, status_body(step="three")), "bad_response", "status.step: expected"),
    ((200, JSON, b'{"hello": "world"}'), "bad_response", "without a protocol version"),
    ((200, JSON, b"[1, 2]"), "bad_response", "expected an object"),
    ((200, JSON, status_body(protocol=99)), "protocol", "the session speaks v99"),
    ((401, JSON, b'{"error": {"code": "unauthorized", "message": "bad token"}}'),
     "token_refused", "token refused"),
    ((500, JSON, b'{"error": {"code": "internal", "message": "disk full"}}'), "bad_response",
     "HTTP 500 (Internal Server Error): disk full"),
    ((302, {"Location": "https://accounts.google.com/"}, b""), "bad_response", "HTTP 302"),
])
async def test_bad_answers_become_clear_errors(canned, route, kind: str, words: str) -> None:
    server = canned({"/v1/status": route})
    err = await status_error(server.url)
    assert (err.kind, words in err.message) == (kind, True), err.message
    assert TOKEN not in err.message


async def test_request_carries_bearer_token_and_after(canned) -> None:
    seen = {}

    def record(h: BaseHTTPRequestHandler) -> None:
        seen["auth"], seen["path"] = h.headers.get("Authorization"), h.path
        body = json.dumps({"protocol": PROTOCOL_VERSION, "after": 7, "next_after": 7,
                           "last_seq": 7, "series": {}}).encode()
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    server = canned({"/v1/metrics": record})
    async with RemoteClient(server.url + "/", TOKEN) as client:
        page = await client.metrics(after=7)
    assert seen == {"auth": f"Bearer {TOKEN}", "path": "/v1/metrics?after=7"}
    assert page.next_after == 7 and page.series == {}


@pytest.mark.parametrize("declared", [True, False])
async def test_huge_body_is_refused(canned, declared: bool) -> None:
    size = MAX_RESPONSE_BYTES + 1024

    def huge(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if declared:
            h.send_header("Content-Length", str(size))
        h.end_headers()
        try:
            h.wfile.write(b'{"protocol": 1, "pad": "' + b"x" * size)
        except OSError:  # the client hung up once it had enough
            pass
        h.close_connection = True

    server = canned({"/v1/status": huge})
    err = await status_error(server.url)
    assert err.kind == "bad_response" and "larger than 4 MB refused" in err.message


async def test_connection_refused() -> None:
    port = free_port()  # nobody listens on it (and below the ephemeral range: no self-connect)
    err = await status_error(f"http://127.0.0.1:{port}")
    assert (err.kind, err.message) == ("unreachable", "connection refused")


async def test_dns_failure() -> None:
    err = await status_error("http://no-such-runtime.invalid:8765")
    assert (err.kind, err.message) == ("unreachable", "cannot resolve host no-such-runtime.invalid")


async def test_timeout(canned) -> None:
    release = threading.Event()

    def slow(h: BaseHTTPRequestHandler) -> None:
        release.wait(10)

    server = canned({"/v1/status": slow})
    try:
        err = await status_error(server.url, timeout_s=0.3)
    finally:
        release.set()
    assert (err.kind, err.message) == ("unreachable", "no answer within 0.3 s (timeout)")


async def test_dropped_connection_is_unreachable(canned) -> None:
    def drop(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"protocol\"")
        h.close_connection = True

    server = canned({"/v1/status": drop})
    err = await status_error(server.url)
    assert err.kind == "unreachable"


async def test_send_command_retries_the_same_id_once(canned) -> None:
    def flaky(h: BaseHTTPRequestHandler) -> None:
        if len(canned_server.requests) == 1:  # the tunnel drops the first answer
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        body = json.dumps({"protocol": PROTOCOL_VERSION, "id": "x", "action": "save",
                           "state": "pending", "created_at": time.time()}).encode()
        h.send_response(202)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    canned_server = canned({"/v1/commands": flaky})
    async with RemoteClient(canned_server.url, TOKEN) as client:
        record = await client.send_command("save", command_id="cmd-1")
    assert record.state == "pending"
    bodies = [json.loads(b) for _m, _p, b in canned_server.requests]
    assert bodies == [{"id": "cmd-1", "action": "save"}] * 2


async def test_send_command_does_not_retry_an_http_error(canned) -> None:
    server = canned({"/v1/commands": (503, {}, b"")})
    async with RemoteClient(server.url, TOKEN) as client:
        with pytest.raises(SessionError, match="503"):
            await client.send_command("stop")
    assert len(server.requests) == 1
    assert json.loads(server.requests[0][2])["action"] == "stop"
