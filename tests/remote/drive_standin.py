"""A stand-in for Google Drive (REST API v2) and Google's OAuth token endpoint, on loopback.

Google's servers cannot be reached from the test machine, so this server speaks the part of
the Drive v2 API our code uses, the way googleapiclient and pydrive2 send it, and our real code
path (pydrive2, googleapiclient, oauth2client, httplib2) runs against it unchanged, pointed here
by ``COLABTUI_DRIVE_API`` / ``COLABTUI_DRIVE_CREDENTIALS`` (or the same arguments):

- ``GET /drive/v2/files/ID`` metadata, ``?alt=media`` content (``Range: bytes=a-b`` → 206);
- ``GET /drive/v2/files?q=...`` with ``'ID' in parents``, ``title = '...'``, ``trashed = false``,
  ``mimeType = '...'`` / ``!=``, joined by ``and``; pages via ``maxResults``/``pageToken``;
- ``POST /drive/v2/files`` (metadata only: folders), ``PUT``/``PATCH /drive/v2/files/ID``;
- ``POST /upload/drive/v2/files`` and ``PUT /upload/drive/v2/files/ID`` with ``uploadType``
  ``media``, ``multipart`` or ``resumable`` (200 + ``Location``; chunks ``PUT`` with
  ``Content-Range`` → 308 + ``Range`` until the last, then 200 + metadata);
- ``DELETE /drive/v2/files/ID`` (a folder with everything in it);
- ``POST /token`` (``grant_type=refresh_token`` or ``authorization_code``) and ``GET /auth``
  (consent: redirects at once to ``redirect_uri?code=...``);
- ``PUT /bench/put``: a plain upload of one body, stored the same way (for the bench).

Every Drive route wants ``Authorization: Bearer <token>`` with a token this server issued
(resumable session URIs carry their own authority, as at Google). Errors are Drive's JSON error
bodies. File contents live on disk under a temporary folder.

Failure injection (for tests): :meth:`DriveStandin.fail_next`, :meth:`~DriveStandin.wrong_md5`,
:meth:`~DriveStandin.revoke_refresh_token`, :meth:`~DriveStandin.expire_access_tokens`,
:meth:`~DriveStandin.rate_limit`, :meth:`~DriveStandin.drop_connection_next`.

Run it alone for manual trials::

    python tests/remote/drive_standin.py   # prints the endpoint and a credentials file
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

FOLDER_MIME = "application/vnd.google-apps.folder"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
BLOCK = 1024 * 1024


def rfc3339(t: float) -> str:
    """``2024-05-01T12:00:00.123Z`` for Unix seconds ``t``, as Drive writes times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass
class _Item:
    id: str
    title: str
    mime: str
    parents: list[str]
    created: float
    modified: float
    trashed: bool = False
    size: int | None = None
    md5: str | None = None
    path: Path | None = None

    @property
    def is_folder(self) -> bool:
        return self.mime == FOLDER_MIME


@dataclass
class _Session:
    """A resumable upload under way."""

    id: str
    file_id: str | None  # None: an insert
    meta: dict
    mime: str
    total: int | None
    path: Path
    received: int = 0
    md5: object = field(default_factory=hashlib.md5)


class _ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.headers = headers or {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, standin: DriveStandin) -> None:
        self.standin = standin
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_all(self) -> None:
        """Close every open connection (keep-alive ones too): a stopped server answers none."""
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two sends: no 40 ms stall
    timeout = 120  # an idle keep-alive connection is let go after this many seconds
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # no line per request on stderr

    def do_GET(self):
        self.server.standin._handle(self, "GET")

    def do_POST(self):
        self.server.standin._handle(self, "POST")

    def do_PUT(self):
        self.server.standin._handle(self, "PUT")

    def do_PATCH(self):
        self.server.standin._handle(self, "PATCH")

    def do_DELETE(self):
        self.server.standin._handle(self, "DELETE")


_CLAUSE_PARENT = re.compile(r"^'((?:[^'\\]|\\.)*)'\s+in\s+parents$")
_CLAUSE_FIELD = re.compile(r"^(title|mimeType)\s*(=|!=)\s*'((?:[^'\\]|\\.)*)'$")
_CLAUSE_TRASHED = re.compile(r"^trashed\s*=\s*(true|false)$")


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def _split_and(q: str) -> list[str]:
    """Split a query on `` and `` outside quoted strings."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(q):
        c = q[i]
        if c == "\\" and quoted and i + 1 < len(q):
            current.append(q[i:i + 2])
            i += 2
            continue
        if c == "'":
            quoted = not quoted
        if not quoted and q[i:i + 5].lower() == " and ":
            parts.append("".join(current).strip())
            current = []
            i += 5
            continue
        current.append(c)
        i += 1
    parts.append("".join(current).strip())
    return parts


def _parse_q(q: str):
    """A predicate over items for the subset of Drive's query language we speak.

    Raises:
        _ApiError: 400 invalidQuery for anything else.
    """
    tests = []
    for clause in _split_and(q):
        if m := _CLAUSE_PARENT.match(clause):
            parent = _unescape(m.group(1))
            tests.append(lambda it, p=parent: p in it.parents)
        elif m := _CLAUSE_FIELD.match(clause):
            name, op, value = m.group(1), m.group(2), _unescape(m.group(3))
            attr = "title" if name == "title" else "mime"
            if op == "=":
                tests.append(lambda it, a=attr, v=value: getattr(it, a) == v)
            else:
                tests.append(lambda it, a=attr, v=value: getattr(it, a) != v)
        elif m := _CLAUSE_TRASHED.match(clause):
            flag = m.group(1) == "true"
            tests.append(lambda it, f=flag: it.trashed == f)
        else:
            raise _ApiError(400, "invalidQuery", f"Invalid query: {clause[:100]}")
    return lambda it: all(t(it) for t in tests)


class DriveStandin:
    """Drive v2 and Google's OAuth token endpoint on ``127.0.0.1`` (a free port), in threads.

    Args:
        directory: where file contents go (default: a new temporary folder, removed by
            :meth:`stop`).
        page_size: most items one ``files.list`` page holds, whatever ``maxResults`` asks.
        token_lifetime_s: ``expires_in`` of the access tokens issued, seconds.

    Use as a context manager, or :meth:`start` and :meth:`stop`.

    Attributes:
        requests: ``(method, path with query)`` of every request received, in order.
        token_refreshes: how many access tokens ``POST /token`` issued for a refresh token.
        client_id, client_secret, refresh_token: the OAuth client and the login it knows.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, page_size: int = 100,
                 token_lifetime_s: float = 3600.0) -> None:
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="drive-standin-"))
        (self.directory / "content").mkdir(parents=True, exist_ok=True)
        (self.directory / "uploads").mkdir(parents=True, exist_ok=True)
        self.page_size = page_size
        self.token_lifetime_s = token_lifetime_s
        self.client_id = "standin-client.apps.googleusercontent.com"
        self.client_secret = secrets.token_urlsafe(12)
        self.refresh_token = "1//" + secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        self._items: dict[str, _Item] = {}
        self._sessions: dict[str, _Session] = {}
        self._tokens: set[str] = set()
        self._codes: set[str] = set()
        self._revoked = False
        self._fail: list[tuple[int, str, str]] = []
        self._rate: list[tuple[int, float | None]] = []
        self._drop = 0
        self._wrong: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.token_refreshes = 0
        self._chunk_gate: threading.Semaphore | None = None
        now = time.time()
        self._items["root"] = _Item("root", "My Drive", FOLDER_MIME, [], now, now)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life

    def start(self) -> DriveStandin:
        """Listen and serve on a daemon thread. Returns self."""
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="drive-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self, remove_files: bool = True) -> None:
        """Stop listening, close every open connection, join the thread; remove the contents
        folder when this object made it and ``remove_files``. Idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_all()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if remove_files and self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> DriveStandin:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def api_endpoint(self) -> str:
        """``http://127.0.0.1:PORT/``: the value for ``COLABTUI_DRIVE_API``."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def token_uri(self) -> str:
        return self.api_endpoint + "token"

    # ------------------------------------------------------------------ credentials

    def issue_access_token(self) -> str:
        """A new access token this server accepts."""
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        return token

    def make_credentials_file(self, path: str | os.PathLike, *, expired: bool = False) -> Path:
        """Write an oauth2client credentials JSON file (what pydrive2's SaveCredentialsFile
        writes) for this server's login, mode 0o600. ``token_uri`` points here.

        Args:
            path: the file to write.
            expired: the access token in it is unknown here and its expiry has passed, so the
                first use refreshes it.
        """
        path = Path(path)
        now = time.time()
        if expired:
            token, expiry = "ya29.standin-expired", now - 60
        else:
            token, expiry = self.issue_access_token(), now + self.token_lifetime_s
        data = {
            "access_token": token, "client_id": self.client_id,
            "client_secret": self.client_secret, "refresh_token": self.refresh_token,
            "token_expiry": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry)),
            "token_uri": self.token_uri, "user_agent": None,
            "revoke_uri": self.api_endpoint + "revoke", "id_token": None,
            "id_token_jwt": None, "token_response": None, "scopes": [DRIVE_SCOPE],
            "token_info_uri": None, "invalid": False,
            "_class": "OAuth2Credentials", "_module": "oauth2client.client",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        return path

    def make_client_secrets_file(self, path: str | os.PathLike) -> Path:
        """Write an OAuth client secrets JSON file (type "installed") whose auth and token
        URIs point here, for :func:`colabtui_remote.drive.auth.login`."""
        path = Path(path)
        path.write_text(json.dumps({"installed": {
            "client_id": self.client_id, "client_secret": self.client_secret,
            "auth_uri": self.api_endpoint + "auth", "token_uri": self.token_uri,
            "redirect_uris": ["http://localhost"],
        }}))
        return path

    # ------------------------------------------------------------------ failure injection

    def fail_next(self, n: int, status: int, reason: str = "backendError",
                  message: str | None = None) -> None:
        """The next ``n`` Drive API requests get ``status`` with a Drive error body giving
        ``reason``."""
        with self._lock:
            self._fail += [(status, reason, message or f"injected {status} {reason}")] * n

    def rate_limit(self, times: int, status: int = 429, retry_after: float | None = None) -> None:
        """The next ``times`` Drive API requests are refused as over quota: 429, or 403 with
        reason ``rateLimitExceeded``; with ``Retry-After: retry_after`` when given."""
        if status not in (403, 429):
            raise ValueError("rate limits are answered with 403 or 429")
        with self._lock:
            self._rate += [(status, retry_after)] * times

    def drop_connection_next(self, times: int = 1) -> None:
        """The next ``times`` Drive API requests get no answer: the connection is closed.
        (httplib2 sends a request once more on a fresh connection after such a drop, so two
        drops in a row reach the caller.)"""
        with self._lock:
            self._drop += times

    def wrong_md5(self, title_or_id: str, times: int = 1) -> None:
        """The next ``times`` metadata answers about that file (get, list, insert, update,
        the end of an upload) report an md5Checksum that is not its content's."""
        with self._lock:
            self._wrong[title_or_id] = self._wrong.get(title_or_id, 0) + times

    def hold_chunks(self) -> None:
        """From now on, answer each resumable-upload chunk only once :meth:`release_chunk`
        allows it (a test steps an upload chunk by chunk)."""
        self._chunk_gate = threading.Semaphore(0)

    def release_chunk(self, n: int = 1) -> None:
        """Let ``n`` held chunks be answered."""
        assert self._chunk_gate is not None, "hold_chunks() first"
        self._chunk_gate.release(n)

    def stop_holding(self) -> None:
        """Answer chunks at once again (the one held now, if any, too)."""
        gate, self._chunk_gate = self._chunk_gate, None
        if gate is not None:
            gate.release(1000)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is refused from now on (401); the refresh token
        still gets new ones."""
        with self._lock:
            self._tokens.clear()

    def revoke_refresh_token(self) -> None:
        """The user revoked the app's access: access tokens are refused and refreshing
        answers 400 ``invalid_grant``."""
        with self._lock:
            self._revoked = True
            self._tokens.clear()

    # ------------------------------------------------------------------ direct access (tests)

    def _new_id(self) -> str:
        return "1" + secrets.token_urlsafe(24)

    def create_folder(self, title: str, parent: str = "root") -> str:
        """Make a folder directly (not through the API). Returns its id."""
        now = time.time()
        with self._lock:
            if parent not in self._items:
                raise KeyError(parent)
            item = _Item(self._new_id(), title, FOLDER_MIME, [parent], now, now)
            self._items[item.id] = item
        return item.id

    def put_file(self, title: str, data: bytes, parent: str = "root", *,
                 created: float | None = None, mime: str = "application/octet-stream") -> str:
        """Make a file directly (another client wrote it; duplicates of a title allowed).
        Returns its id."""
        fid = self._new_id()
        path = self.directory / "content" / fid
        path.write_bytes(data)
        t = time.time() if created is None else created
        with self._lock:
            if parent not in self._items:
                raise KeyError(parent)
            self._items[fid] = _Item(fid, title, mime, [parent], t, t, size=len(data),
                                     md5=hashlib.md5(data).hexdigest(), path=path)
        return fid

    def shared_only(self, file_id: str) -> None:
        """Make an item one shared with this account and not in its My Drive: Drive then lists
        no parent of it that this account can see."""
        with self._lock:
            self._items[file_id].parents = []

    def trash(self, file_id: str) -> None:
        """Move an item to the trash."""
        with self._lock:
            self._items[file_id].trashed = True

    def ids_titled(self, title: str, parent: str | None = None) -> list[str]:
        """Ids of the items (not trashed) with that title, in ``parent`` when given."""
        with self._lock:
            return [it.id for it in self._items.values() if it.title == title and not it.trashed
                    and (parent is None or parent in it.parents)]

    def content(self, file_id: str) -> bytes:
        with self._lock:
            path = self._items[file_id].path
        return path.read_bytes() if path else b""

    def item_md5(self, file_id: str) -> str | None:
        with self._lock:
            return self._items[file_id].md5

    def exists(self, file_id: str) -> bool:
        with self._lock:
            return file_id in self._items

    def children(self, parent: str) -> list[str]:
        """Titles of the items in ``parent`` (not trashed), sorted."""
        with self._lock:
            return sorted(it.title for it in self._items.values()
                          if parent in it.parents and not it.trashed)

    # ------------------------------------------------------------------ serving

    def _handle(self, h: _Handler, method: str) -> None:
        url = urlsplit(h.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        h._body_read = False
        with self._lock:
            self.requests.append((method, h.path))
        length = int(h.headers.get("Content-Length") or 0)
        api = path.startswith(("/drive/", "/upload/"))
        try:
            if api and self._take_drop():
                h.rfile.read(length)
                h.close_connection = True
                return
            if path == "/token" and method == "POST":
                return self._token(h, h.rfile.read(length))
            if path == "/auth" and method == "GET":
                return self._auth(h, query)
            if path == "/bench/put" and method == "PUT":
                size, md5 = self._store_stream(h.rfile, length, self.directory / "bench-put")
                return self._json(h, 200, {"size": size, "md5Checksum": md5})
            if not api:
                raise _ApiError(404, "notFound", f"no route {method} {path}")
            self._injected()
            if "upload_id" in query:
                return self._chunk(h, query["upload_id"], length)
            self._authorize(h)
            return self._route(h, method, path, query, length)
        except _ApiError as err:
            if length and not getattr(h, "_body_read", False):
                h.rfile.read(length)
            self._json(h, err.status, {"error": {
                "errors": [{"domain": "usageLimits" if err.status in (403, 429) else "global",
                            "reason": err.reason, "message": err.message}],
                "code": err.status, "message": err.message}}, err.headers)

    def _take_drop(self) -> bool:
        with self._lock:
            if self._drop > 0:
                self._drop -= 1
                return True
        return False

    def _injected(self) -> None:
        with self._lock:
            fail = self._fail.pop(0) if self._fail else None
            rate = self._rate.pop(0) if self._rate and fail is None else None
        if fail is not None:
            raise _ApiError(*fail)
        if rate is not None:
            status, retry_after = rate
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            if status == 429:
                raise _ApiError(429, "rateLimitExceeded", "Rate Limit Exceeded", headers)
            raise _ApiError(403, "rateLimitExceeded", "Rate Limit Exceeded", headers)

    def _authorize(self, h: _Handler) -> None:
        auth = h.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self._lock:
            ok = token in self._tokens
        if not ok:
            raise _ApiError(401, "authError", "Invalid Credentials",
                            {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})

    def _json(self, h: _Handler, status: int, obj: object,
              headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=UTF-8")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _empty(self, h: _Handler, status: int, headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Length", "0")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()

    # ------------------------------------------------------------------ oauth

    def _token(self, h: _Handler, body: bytes) -> None:
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        if form.get("client_id") != self.client_id or \
                form.get("client_secret") != self.client_secret:
            return self._json(h, 401, {"error": "invalid_client",
                                       "error_description": "The OAuth client was not found."})
        grant = form.get("grant_type")
        if grant == "refresh_token":
            with self._lock:
                good = not self._revoked and form.get("refresh_token") == self.refresh_token
            if not good:
                return self._json(h, 400, {"error": "invalid_grant",
                                           "error_description": "Token has been expired or "
                                                                "revoked."})
            with self._lock:
                self.token_refreshes += 1
            return self._json(h, 200, {"access_token": self.issue_access_token(),
                                       "expires_in": int(self.token_lifetime_s),
                                       "scope": DRIVE_SCOPE, "token_type": "Bearer"})
        if grant == "authorization_code":
            with self._lock:
                good = form.get("code") in self._codes
                self._codes.discard(form.get("code"))
                self._revoked = False
            if not good:
                return self._json(h, 400, {"error": "invalid_grant",
                                           "error_description": "Malformed auth code."})
            return self._json(h, 200, {"access_token": self.issue_access_token(),
                                       "refresh_token": self.refresh_token,
                                       "expires_in": int(self.token_lifetime_s),
                                       "scope": DRIVE_SCOPE, "token_type": "Bearer"})
        return self._json(h, 400, {"error": "unsupported_grant_type"})

    def _auth(self, h: _Handler, query: dict[str, str]) -> None:
        """The consent page, consenting at once: redirect back with a code."""
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect:
            raise _ApiError(400, "invalid_request", "unknown client or no redirect_uri")
        code = "4/" + secrets.token_urlsafe(16)
        with self._lock:
            self._codes.add(code)
        sep = "&" if "?" in redirect else "?"
        self._empty(h, 302, {"Location": f"{redirect}{sep}code={quote(code)}"})

    # ------------------------------------------------------------------ drive

    def _meta(self, item: _Item) -> dict:
        meta = {
            "kind": "drive#file", "id": item.id, "title": item.title, "mimeType": item.mime,
            "parents": [{"kind": "drive#parentReference", "id": p, "isRoot": p == "root"}
                        for p in item.parents],
            "labels": {"trashed": item.trashed, "starred": False, "hidden": False,
                       "restricted": False, "viewed": True},
            "createdDate": rfc3339(item.created), "modifiedDate": rfc3339(item.modified),
            "etag": f'"{item.id}-{item.modified!r}"',
            "selfLink": f"{self.api_endpoint}drive/v2/files/{item.id}",
        }
        if not item.is_folder:
            md5 = item.md5
            with self._lock:
                for key in (item.id, item.title):
                    if self._wrong.get(key, 0) > 0:
                        self._wrong[key] -= 1
                        md5 = "0" * 32 if md5 != "0" * 32 else "f" * 32
                        break
            meta.update(fileSize=str(item.size or 0), md5Checksum=md5,
                        originalFilename=item.title,
                        downloadUrl=f"{self.api_endpoint}drive/v2/files/{item.id}?alt=media")
        return meta

    def _get_item(self, file_id: str) -> _Item:
        with self._lock:
            item = self._items.get(file_id)
        if item is None:
            raise _ApiError(404, "notFound", f"File not found: {file_id}.")
        return item

    def _route(self, h: _Handler, method: str, path: str, query: dict, length: int) -> None:
        m = re.fullmatch(r"/(drive|upload/drive)/v2/files(?:/([^/]+))?", path)
        if m is None:
            raise _ApiError(404, "notFound", f"no route {method} {path}")
        upload, file_id = m.group(1) == "upload/drive", m.group(2)
        if upload:
            if method == "POST" and file_id is None:
                return self._upload(h, None, query, length)
            if method == "PUT" and file_id is not None:
                self._get_item(file_id)
                return self._upload(h, file_id, query, length)
            raise _ApiError(405, "methodNotAllowed", f"{method} {path}")
        if file_id is None:
            if method == "GET":
                return self._list(h, query)
            if method == "POST":
                meta = self._read_json(h, length)
                item = self._commit(None, meta, None, None, None)
                return self._json(h, 200, self._meta(item))
            raise _ApiError(405, "methodNotAllowed", f"{method} {path}")
        if method == "GET":
            item = self._get_item(file_id)
            if query.get("alt") == "media":
                return self._media(h, item)
            return self._json(h, 200, self._meta(item))
        if method in ("PUT", "PATCH"):
            self._get_item(file_id)
            item = self._commit(file_id, self._read_json(h, length), None, None, None)
            return self._json(h, 200, self._meta(item))
        if method == "DELETE":
            self._get_item(file_id)
            self._delete(file_id)
            return self._empty(h, 204)
        raise _ApiError(405, "methodNotAllowed", f"{method} {path}")

    def _read_json(self, h: _Handler, length: int) -> dict:
        raw = h.rfile.read(length) if length else b""
        h._body_read = True
        if not raw.strip():
            return {}
        try:
            obj = json.loads(raw)
        except ValueError:
            raise _ApiError(400, "parseError", "This API does not support parsing "
                            "form-encoded input.") from None
        if not isinstance(obj, dict):
            raise _ApiError(400, "parseError", "expected a JSON object")
        return obj

    def _list(self, h: _Handler, query: dict) -> None:
        pred = _parse_q(query.get("q", "trashed = false"))
        try:
            start = int(query.get("pageToken") or 0)
            want = int(query.get("maxResults") or 100)
        except ValueError:
            raise _ApiError(400, "invalid", "bad pageToken or maxResults") from None
        with self._lock:
            matched = sorted((it for it in self._items.values()
                              if it.id != "root" and pred(it)), key=lambda it: it.id)
        page = matched[start:start + max(1, min(want, self.page_size))]
        body = {"kind": "drive#fileList", "items": [self._meta(it) for it in page]}
        if start + len(page) < len(matched):
            body["nextPageToken"] = str(start + len(page))
        self._json(h, 200, body)

    def _media(self, h: _Handler, item: _Item) -> None:
        if item.is_folder:
            raise _ApiError(403, "fileNotDownloadable", "Only files with binary content can "
                            "be downloaded.")
        total = item.size or 0
        start, end, status = 0, total - 1, 200
        rng = h.headers.get("Range") or h.headers.get("range")
        if rng and total > 0:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m is None:
                raise _ApiError(400, "badRange", f"bad Range {rng!r}")
            start = int(m.group(1))
            end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
            if start >= total:
                return self._empty(h, 416, {"Content-Range": f"bytes */{total}"})
            status = 206
        h.send_response(status)
        h.send_header("Content-Type", item.mime)
        h.send_header("Content-Length", str(max(0, end - start + 1)))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        h.end_headers()
        if total == 0 or item.path is None:
            return
        with open(item.path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                block = f.read(min(BLOCK, left))
                if not block:
                    break
                h.wfile.write(block)
                left -= len(block)

    def _delete(self, file_id: str) -> None:
        with self._lock:
            doomed = {file_id}
            grew = True
            while grew:
                more = {it.id for it in self._items.values()
                        if any(p in doomed for p in it.parents)} - doomed
                grew = bool(more)
                doomed |= more
            items = [self._items.pop(i) for i in doomed if i != "root"]
        for it in items:
            if it.path is not None:
                it.path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ uploads

    def _store_stream(self, rfile, length: int, dest: Path) -> tuple[int, str]:
        """Body → temporary file → ``dest`` (replaced whole); returns (size, md5)."""
        digest = hashlib.md5()
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as f:
            left = length
            while left > 0:
                block = rfile.read(min(BLOCK, left))
                if not block:
                    raise _ApiError(400, "badRequest", "body shorter than Content-Length")
                f.write(block)
                digest.update(block)
                left -= len(block)
        os.replace(tmp, dest)
        return length, digest.hexdigest()

    def _commit(self, file_id: str | None, meta: dict, content: Path | None, size: int | None,
                md5: str | None, mime: str | None = None) -> _Item:
        """Insert (``file_id`` None) or update an item from request metadata and content."""
        now = time.time()
        parents = [p.get("id") for p in meta.get("parents") or [] if isinstance(p, dict)]
        with self._lock:
            for p in parents:
                if p not in self._items or not self._items[p].is_folder:
                    raise _ApiError(404, "notFound", f"File not found: {p}.")
            if file_id is None:
                item = _Item(self._new_id(), str(meta.get("title") or "Untitled"),
                             str(meta.get("mimeType") or mime or "application/octet-stream"),
                             parents or ["root"], now, now)
                self._items[item.id] = item
            else:
                item = self._items.get(file_id)
                if item is None:
                    raise _ApiError(404, "notFound", f"File not found: {file_id}.")
                if meta.get("title"):
                    item.title = str(meta["title"])
                if meta.get("mimeType"):
                    item.mime = str(meta["mimeType"])
                if isinstance(meta.get("labels"), dict) and "trashed" in meta["labels"]:
                    item.trashed = bool(meta["labels"]["trashed"])
                item.modified = max(now, item.modified + 0.001)
            if content is not None:
                dest = self.directory / "content" / item.id
                os.replace(content, dest)
                item.path, item.size, item.md5 = dest, size, md5
            elif file_id is None and not item.is_folder:
                dest = self.directory / "content" / item.id
                dest.write_bytes(b"")
                item.path, item.size, item.md5 = dest, 0, hashlib.md5(b"").hexdigest()
        return item

    def _upload(self, h: _Handler, file_id: str | None, query: dict, length: int) -> None:
        kind = query.get("uploadType")
        if kind == "media":
            tmp = self.directory / "uploads" / secrets.token_hex(8)
            size, md5 = self._store_stream(h.rfile, length, tmp)
            h._body_read = True
            item = self._commit(file_id, {}, tmp, size, md5, h.headers.get("Content-Type"))
            return self._json(h, 200, self._meta(item))
        if kind == "multipart":
            raw = h.rfile.read(length)
            h._body_read = True
            ctype = h.headers.get("Content-Type", "")
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            parts = list(msg.iter_parts()) if msg.is_multipart() else []
            if len(parts) != 2:
                raise _ApiError(400, "badContent", "multipart upload needs 2 parts")
            meta = json.loads(parts[0].get_payload(decode=True) or b"{}")
            data = parts[1].get_payload(decode=True) or b""
            tmp = self.directory / "uploads" / secrets.token_hex(8)
            tmp.write_bytes(data)
            item = self._commit(file_id, meta, tmp, len(data), hashlib.md5(data).hexdigest(),
                                parts[1].get_content_type())
            return self._json(h, 200, self._meta(item))
        if kind == "resumable":
            meta = self._read_json(h, length)
            total = h.headers.get("X-Upload-Content-Length")
            sid = secrets.token_urlsafe(16)
            session = _Session(sid, file_id, meta,
                               h.headers.get("X-Upload-Content-Type") or "application/octet-stream",
                               int(total) if total else None,
                               self.directory / "uploads" / sid)
            session.path.write_bytes(b"")
            with self._lock:
                self._sessions[sid] = session
            target = f"/{file_id}" if file_id else ""
            location = (f"{self.api_endpoint}upload/drive/v2/files{target}"
                        f"?uploadType=resumable&upload_id={sid}")
            return self._empty(h, 200, {"Location": location})
        raise _ApiError(400, "invalid", f"uploadType {kind!r} is not media, multipart or "
                        "resumable")

    def _chunk(self, h: _Handler, sid: str, length: int) -> None:
        with self._lock:
            session = self._sessions.get(sid)
        if session is None:
            raise _ApiError(404, "notFound", "no such upload session (expired or finished)")
        crange = h.headers.get("Content-Range")
        if crange is None:  # the whole (possibly empty) content in one request
            start, total = session.received, session.received + length
        else:
            m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", crange.strip())
            if m is None:
                raise _ApiError(400, "badContentRange", f"bad Content-Range {crange!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            if m.group(1) is None:  # "bytes */N": where are we?
                h.rfile.read(length)
                h._body_read = True
                return self._incomplete(h, session)
            start, end = int(m.group(1)), int(m.group(2))
            if end - start + 1 != length:
                raise _ApiError(400, "badContentRange", "Content-Range and Content-Length "
                                "disagree")
        if start != session.received:
            raise _ApiError(400, "badContentRange", f"chunk starts at {start}, "
                            f"{session.received} bytes received so far")
        with open(session.path, "ab") as f:
            left = length
            while left > 0:
                block = h.rfile.read(min(BLOCK, left))
                if not block:
                    raise _ApiError(400, "badRequest", "body shorter than Content-Length")
                f.write(block)
                session.md5.update(block)
                left -= len(block)
        h._body_read = True
        session.received += length
        gate = self._chunk_gate
        if gate is not None and not gate.acquire(timeout=60):  # held by a test
            raise _ApiError(503, "backendError", "chunk gate never opened")
        if total is not None and session.received >= total:
            with self._lock:
                self._sessions.pop(sid, None)
            item = self._commit(session.file_id, session.meta, session.path, session.received,
                                session.md5.hexdigest(), session.mime)
            return self._json(h, 200, self._meta(item))
        return self._incomplete(h, session)

    def _incomplete(self, h: _Handler, session: _Session) -> None:
        headers = {"Range": f"bytes=0-{session.received - 1}"} if session.received else {}
        self._empty(h, 308, headers)


def main() -> None:
    """Serve until Ctrl-C; print the endpoint and a credentials file to use with it."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up on kill too
    standin = DriveStandin().start()
    creds = standin.make_credentials_file(standin.directory / "credentials.json")
    folder = standin.create_folder("colabtui-trial")
    print(f"COLABTUI_DRIVE_API={standin.api_endpoint}")
    print(f"COLABTUI_DRIVE_CREDENTIALS={creds}")
    print(f"a folder to try: gdrive://{folder}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
