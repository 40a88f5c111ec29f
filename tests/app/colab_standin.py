"""A stand-in for Colab's tunnel endpoints, its runtime proxy and Google's OAuth token endpoint,
on loopback, in front of real Jupyter servers.

Google's servers cannot be reached from the test machine, so this server speaks the part of
Colab's API that ``colab_cli.client.Client`` (google-colab-cli 0.7.5) sends, and the real client
runs against it unchanged, pointed here by ``COLABTUI_COLAB_DOMAIN``:

- ``GET /tun/m/assignments`` → ``)]}'`` + ``{"assignments": [...]}``, each with a fresh proxy
  token (``runtimeProxyInfo``: ``token``, ``tokenExpiresInSeconds``, ``url``);
- ``GET /tun/m/assign?nbh=...`` → the runtime already assigned to that notebook id (with a fresh
  token), else ``{"acc", "nbh", "token": XSRF, "variant"}``; ``POST`` with ``X-Goog-Colab-Token``
  assigns one (412 past :attr:`ColabStandin.max_assignments`);
- ``GET /tun/m/unassign/ENDPOINT`` → ``{"token": XSRF}``; ``POST`` releases it;
- ``GET /tun/m/ccu-info`` → ``currentBalance``, ``consumptionRateHourly``, ``assignmentsCount``,
  ``eligibleGpus``;
- ``GET /tun/m/ENDPOINT/keep-alive/`` with ``X-Colab-Tunnel: Google`` (as Colab's VS Code
  extension sends it): recorded in :attr:`ColabStandin.keep_alives`; 404 for a runtime not
  assigned;
- ``POST /token`` (``grant_type=refresh_token``): a new access token, as Google's OAuth server;
- ``/proxy/ENDPOINT/...``: the runtime proxy. It wants a token it issued for that runtime and
  not expired, in ``X-Colab-Runtime-Proxy-Token`` or the ``colab-runtime-proxy-token`` query
  field (401 otherwise), and forwards the request to the runtime's Jupyter server with that
  server's own token (and its ``Content-Type`` and ``Range``: a ranged download through the
  proxy is verified live by mandipadk/colabctl); a websocket (the kernel channels) is relayed byte for byte. A released
  runtime's proxy answers 502.

Every ``/tun/m`` route wants ``Authorization: Bearer <access token>`` issued here (401 else).
A hostile runtime or Colab: :attr:`ColabStandin.proxy_answer` answers proxy requests instead of
the Jupyter server (a body trickled byte by byte included), :attr:`~ColabStandin.patch_listing`
rewrites the assignment list. Failure injection: :meth:`ColabStandin.expire_access_tokens`,
:meth:`~ColabStandin.release`,
:meth:`~ColabStandin.revoke_refresh_token`, :meth:`~ColabStandin.expire_proxy_tokens`.
:func:`standin_with_runtime` starts it with one runtime: a real ``jupyter_server``;
:func:`standin_that_assigns` with none, each assignment starting a Jupyter server of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from ports import free_port

XSSI = ")]}'\n"
JUPYTER_START_S = 60.0


@dataclass
class StandinRuntime:
    """A runtime the stand-in has assigned: its Jupyter server and proxy tokens."""

    endpoint: str
    jupyter_url: str
    jupyter_token: str
    accelerator: str = "T4"
    variant: int = 1  # AssignmentVariant.GPU
    shape: int = 0  # Shape.STANDARD
    notebook_hash: str = ""
    tokens: dict[str, float] = field(default_factory=dict)  # proxy token -> expiry (time.time)


class ColabStandin:
    """The stand-in server. ``start()`` it, then :meth:`add_runtime` the Jupyter servers.

    Args:
        token_lifetime_s: ``tokenExpiresInSeconds`` of each proxy token issued.
        max_assignments: assignments past which ``POST /tun/m/assign`` answers 412.
        on_assign: ``f(endpoint) -> (jupyter_url, jupyter_token)`` for a new assignment.
    """

    def __init__(self, *, token_lifetime_s: float = 3600.0, max_assignments: int = 3,
                 on_assign=None) -> None:
        self.token_lifetime_s = token_lifetime_s
        self.max_assignments = max_assignments
        self.on_assign = on_assign
        self.runtimes: dict[str, StandinRuntime] = {}
        self.access_tokens: dict[str, float] = {}
        self.refresh_token = "refresh-" + secrets.token_urlsafe(8)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.proxy_tokens_used: set[str] = set()
        self.xsrf: set[str] = set()
        self.balance = 97.5
        self.proxy_answer = None
        """``f(method, path) -> (status, body, headers, seconds between bytes)`` or ``None`` to
        forward: what the runtime proxy answers instead of the Jupyter server."""
        self.patch_listing = None
        """``f(assignments) -> assignments``: the JSON list ``/tun/m/assignments`` answers."""
        self.keep_alives: list[tuple[str, float]] = []  # (endpoint, time.time())
        self.lock = threading.Lock()
        self._http = httpx.Client(timeout=30, trust_env=False)
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ColabStandin:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="colab-standin").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._http.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ set-up and failures

    def new_access_token(self, lifetime_s: float = 3600.0) -> str:
        token = "access-" + secrets.token_urlsafe(12)
        with self.lock:
            self.access_tokens[token] = time.time() + lifetime_s
        return token

    def write_credentials(self, home: Path, lifetime_s: float = 3600.0) -> Path:
        """The Colab CLI's token file under ``home`` (``~/.config/colab-cli/token.json``), as
        ``google.oauth2.credentials.Credentials.to_json`` writes it, refreshed here."""
        from datetime import datetime, timedelta, timezone

        path = home / ".config" / "colab-cli" / "token.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        expiry = datetime.now(timezone.utc) + timedelta(seconds=lifetime_s)
        path.write_text(json.dumps({
            "token": self.new_access_token(lifetime_s), "refresh_token": self.refresh_token,
            "token_uri": f"{self.url}/token", "client_id": "standin.apps.googleusercontent.com",
            "client_secret": "standin-secret", "scopes": ["openid"],
            "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}))
        return path

    def add_runtime(self, endpoint: str, jupyter_url: str, jupyter_token: str,
                    accelerator: str = "T4") -> StandinRuntime:
        rt = StandinRuntime(endpoint, jupyter_url.rstrip("/"), jupyter_token, accelerator)
        with self.lock:
            self.runtimes[endpoint] = rt
        return rt

    def release(self, endpoint: str) -> None:
        """The runtime ends (timed out, or released elsewhere)."""
        with self.lock:
            self.runtimes.pop(endpoint, None)

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens = {t: 0.0 for t in self.access_tokens}

    def expire_proxy_tokens(self) -> None:
        with self.lock:
            for rt in self.runtimes.values():
                rt.tokens = {t: 0.0 for t in rt.tokens}

    def revoke_refresh_token(self) -> None:
        self.refresh_token = "revoked-" + secrets.token_urlsafe(8)

    # ------------------------------------------------------------------ the routes

    def _proxy_info(self, rt: StandinRuntime) -> dict:
        token = "proxy-" + secrets.token_urlsafe(12)
        rt.tokens[token] = time.time() + self.token_lifetime_s
        return {"token": token, "tokenExpiresInSeconds": int(self.token_lifetime_s),
                "url": f"{self.url}/proxy/{rt.endpoint}"}

    def _listed(self, rt: StandinRuntime) -> dict:
        return {"accelerator": rt.accelerator, "endpoint": rt.endpoint, "variant": rt.variant,
                "machineShape": rt.shape, "runtimeProxyInfo": self._proxy_info(rt)}

    def handle_tun(self, method: str, path: str, query: dict, headers) -> tuple[int, object]:
        auth = headers.get("Authorization", "")
        with self.lock:
            good = self.access_tokens.get(auth.removeprefix("Bearer "), 0.0) > time.time()
        if not good:
            return 401, {"error": {"code": 401, "message": "Request had invalid credentials."}}
        rest = path[len("/tun/m/"):]
        with self.lock:
            if rest == "assignments" and method == "GET":
                listed = [self._listed(rt) for rt in self.runtimes.values()]
                if self.patch_listing is not None:
                    listed = self.patch_listing(listed)
                return 200, {"assignments": listed}
            if rest == "ccu-info" and method == "GET":
                return 200, {"currentBalance": self.balance, "consumptionRateHourly": 1.96,
                             "assignmentsCount": len(self.runtimes),
                             "eligibleGpus": ["T4", "L4", "A100"], "eligibleTpus": []}
            if rest == "assign":
                nbh = query.get("nbh", [""])[0]
                for rt in self.runtimes.values():
                    if rt.notebook_hash == nbh:
                        return 200, {"endpoint": rt.endpoint,
                                     "runtimeProxyInfo": self._proxy_info(rt)}
                if method == "GET":
                    xsrf = secrets.token_urlsafe(8)
                    self.xsrf.add(xsrf)
                    return 200, {"acc": query.get("accelerator", ["NONE"])[0], "nbh": nbh,
                                 "token": xsrf, "variant": query.get("variant", ["DEFAULT"])[0]}
                if headers.get("X-Goog-Colab-Token") not in self.xsrf:
                    return 403, {"error": "bad XSRF token"}
                if len(self.runtimes) >= self.max_assignments or self.on_assign is None:
                    return 412, {"error": "too many assignments"}
                accelerator = query.get("accelerator", ["NONE"])[0]
            elif rest.endswith("/keep-alive/") and method == "GET":
                endpoint = rest[:-len("/keep-alive/")]
                if headers.get("X-Colab-Tunnel") != "Google":
                    return 400, {"error": "missing X-Colab-Tunnel"}
                if endpoint not in self.runtimes:
                    return 404, {"error": "no such assignment"}
                self.keep_alives.append((endpoint, time.time()))
                return 200, {}
            elif rest.startswith("unassign/"):
                endpoint = rest[len("unassign/"):]
                if method == "GET":
                    xsrf = secrets.token_urlsafe(8)
                    self.xsrf.add(xsrf)
                    return 200, {"token": xsrf}
                if headers.get("X-Goog-Colab-Token") not in self.xsrf:
                    return 403, {"error": "bad XSRF token"}
                self.runtimes.pop(endpoint, None)
                return 200, {}
            else:
                return 404, {"error": f"no route {method} {path}"}
        endpoint = f"gpu-{accelerator.lower()}-s-{secrets.token_hex(6)}"
        url, token = self.on_assign(endpoint)  # outside the lock: it starts a server
        with self.lock:
            rt = StandinRuntime(endpoint, url, token, accelerator, notebook_hash=nbh)
            self.runtimes[endpoint] = rt
            return 200, {"accelerator": accelerator, "endpoint": endpoint,
                         "runtimeProxyInfo": self._proxy_info(rt), "variant": rt.variant}

    def handle_token(self, body: bytes) -> tuple[int, object]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "refresh_token" or \
                form.get("refresh_token") != self.refresh_token:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired "
                         "or revoked."}
        return 200, {"access_token": self.new_access_token(), "expires_in": 3600,
                     "token_type": "Bearer", "scope": "openid"}

    def proxy_target(self, path: str, query: dict, headers
                     ) -> tuple[StandinRuntime | None, str, tuple[int, bytes, str] | None]:
        """(runtime, path on its Jupyter server, None), or (None, "", the refusal)."""
        endpoint, _, rest = path[len("/proxy/"):].partition("/")
        token = headers.get("X-Colab-Runtime-Proxy-Token") or \
            query.get("colab-runtime-proxy-token", [""])[0]
        with self.lock:
            rt = self.runtimes.get(endpoint)
            if rt is None:
                return None, "", (502, b"<html>502. That's an error.</html>", "text/html")
            if rt.tokens.get(token, 0.0) <= time.time():
                return None, "", (401, b'{"message": "invalid runtime proxy token"}',
                                  "application/json")
            self.proxy_tokens_used.add(token)
        return rt, rest, None

    def handle_proxy(self, method: str, path: str, query: dict, headers, body: bytes
                     ) -> tuple[int, bytes, str]:
        rt, rest, refusal = self.proxy_target(path, query, headers)
        if refusal is not None:
            return refusal
        params = [(k, v) for k, vs in query.items() for v in vs
                  if k not in ("colab-runtime-proxy-token", "authuser")]
        forwarded = {k: headers[k] for k in ("Content-Type", "Range") if headers.get(k)}
        r = self._http.request(method, f"{rt.jupyter_url}/{rest}", params=params,
                               content=body or None,
                               headers={"Authorization": f"token {rt.jupyter_token}",
                                        **forwarded})
        return r.status_code, r.content, r.headers.get("Content-Type", "application/json")


class _Handler(BaseHTTPRequestHandler):
    owner: ColabStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.owner
        owner.requests.append((self.command, parts.path))
        answer = owner.proxy_answer(self.command, parts.path) \
            if owner.proxy_answer is not None and parts.path.startswith("/proxy/") else None
        if answer is not None:
            status, data, headers, gap_s = answer
            self.send_response(status)
            for k, v in {"Content-Length": str(len(data)), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                for i in range(len(data)) if gap_s else ():
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(gap_s)
                if not gap_s:
                    self.wfile.write(data)
            except OSError:  # the client gave up: what it should do
                pass
            return
        if parts.path.startswith("/proxy/") and \
                self.headers.get("Upgrade", "").lower() == "websocket":
            rt, rest, refusal = owner.proxy_target(parts.path, query, self.headers)
            if rt is not None:
                self._relay_websocket(rt, rest, query)
                return
            status, data, ctype = refusal
        elif parts.path.startswith("/proxy/"):
            status, data, ctype = owner.handle_proxy(self.command, parts.path, query,
                                                     self.headers, body)
        else:
            if parts.path.startswith("/tun/m/"):
                status, obj = owner.handle_tun(self.command, parts.path, query, self.headers)
                data = (XSSI + json.dumps(obj)).encode() if status == 200 else \
                    json.dumps(obj).encode()
            elif parts.path == "/token" and self.command == "POST":
                status, obj = owner.handle_token(body)
                data = json.dumps(obj).encode()
            else:
                status, data = 404, b'{"error": "not found"}'
            ctype = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _relay_websocket(self, rt: StandinRuntime, rest: str, query: dict) -> None:
        """The upgrade request sent on to the runtime's Jupyter server with its own token
        (the proxy token, the Origin and the Host left out), then bytes both ways until
        either side closes."""
        from urllib.parse import urlencode

        host, _, port = rt.jupyter_url.removeprefix("http://").partition(":")
        params = [(k, v) for k, vs in query.items() for v in vs
                  if k not in ("colab-runtime-proxy-token", "authuser", "token")]
        target = "/" + rest + "?" + urlencode([*params, ("token", rt.jupyter_token)])
        skip = {"host", "origin", "x-colab-runtime-proxy-token", "authorization"}
        head = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}"] + \
            [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in skip]
        upstream = socket.create_connection((host, int(port)), timeout=30)
        upstream.settimeout(None)
        upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        client = self.connection
        client.settimeout(None)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(timeout=5)
        upstream.close()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _route


def start_jupyter(root: Path, runtime_dir: Path, home: Path | None = None
                  ) -> tuple[subprocess.Popen, str, str]:
    """A real Jupyter server (jupyter_server) on loopback serving ``root``, as Colab's runtime
    serves ``/``; ``home``: its ``$HOME`` (a runtime's own, so ``~/.cache`` is not shared
    between runtimes). Returns (process, URL, token)."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **({"HOME": str(home)} if home else {}),
           "JUPYTER_RUNTIME_DIR": str(runtime_dir),
           "JUPYTER_CONFIG_DIR": str(runtime_dir / "config"),
           "JUPYTER_DATA_DIR": str(runtime_dir / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.open_browser=False", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=open(runtime_dir / "jupyter.log", "wb"),  # noqa: SIM115 - the server owns it
        env=env, cwd=root)  # a kernel started with no path works there, as Colab's in /
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + JUPYTER_START_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/status", headers={"Authorization": f"token {token}"},
                         timeout=2).status_code == 200:
                return proc, url, token
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"jupyter_server did not start: {(runtime_dir / 'jupyter.log').read_text()}")


@contextlib.contextmanager
def standin_with_runtime(base: Path, endpoint: str) -> Iterator[tuple[ColabStandin, Path]]:
    """The stand-in with one runtime assigned: a real Jupyter server whose disk is
    ``base/runtime-disk`` (with its ``content`` folder, as Colab's ``/content``). Yields
    (stand-in, disk); stops both after."""
    disk, rtdir = base / "runtime-disk", base / "jupyter-runtime"
    (disk / "content").mkdir(parents=True)
    rtdir.mkdir()
    proc, url, token = start_jupyter(disk, rtdir)
    standin = ColabStandin().start()
    try:
        standin.add_runtime(endpoint, url, token)
        yield standin, disk
    finally:
        standin.stop()
        proc.kill()
        proc.wait(timeout=30)


@contextlib.contextmanager
def standin_that_assigns(base: Path, *, max_assignments: int = 3
                         ) -> Iterator[tuple[ColabStandin, dict[str, Path]]]:
    """The stand-in with no runtime; each ``POST /tun/m/assign`` starts a real Jupyter server
    whose disk is ``base/ENDPOINT`` (with its ``content`` folder, and ``root``, its home), in
    this process's environment as it is then. Yields (stand-in, disks by endpoint); kills every
    server after."""
    procs: list[subprocess.Popen] = []
    disks: dict[str, Path] = {}

    def assign(endpoint: str) -> tuple[str, str]:
        disk, rtdir = base / endpoint, base / f"{endpoint}-jupyter"
        (disk / "content").mkdir(parents=True)
        (disk / "root").mkdir()
        rtdir.mkdir()
        proc, url, token = start_jupyter(disk, rtdir, home=disk / "root")
        procs.append(proc)
        disks[endpoint] = disk
        return url, token

    standin = ColabStandin(max_assignments=max_assignments, on_assign=assign).start()
    try:
        yield standin, disks
    finally:
        standin.stop()
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)


async def wait_for(client, predicate, timeout: float = 90.0):
    """The first status of ``client`` (a session client) that ``predicate`` accepts, polled
    every 0.2 s; a poll's :class:`~colabtui.client.SessionError` (no mailbox yet) is waited
    past. AssertionError with the last answer after ``timeout`` seconds (a bound, not a
    figure)."""
    import asyncio

    from colabtui.client import SessionError

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await client.status()
        except SessionError as exc:
            last = exc
        else:
            if predicate(last):
                return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"not reached within {timeout} s; last: {last!r}")
