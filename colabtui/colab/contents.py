"""A mailbox folder on a Colab runtime's own disk, read and written through the runtime's
Jupyter contents API (``/api/contents/...``) behind Google's runtime proxy: a
:class:`~colabtui_remote.transport.mailbox.layout.MailboxStorage`, so the mailbox protocol and
:class:`~colabtui.mailbox_client.MailboxClient` are unchanged.

Why not ``colab_cli.contents.ContentsClient``: it sends requests without a timeout (a runtime
that stops answering would hold a poll for ever, with the panel showing "connected") and moves
files only between the runtime and local files. This module makes the same calls with httpx,
a timeout on each, bytes in and out.

The proxy token travels in the ``X-Colab-Runtime-Proxy-Token`` header alone (enough for the
contents API: list, PUT and GET, per mandipadk/colabctl's ``spikes/PHASE-A-FINDINGS.md``). A
refused token (401/403) is refreshed once from the assignment list and the request repeated.
Jupyter's file manager writes atomically (a temporary file, then a rename), so a command file is
seen whole or not at all.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from colabtui_remote import schema, wire
from colabtui_remote.transport.mailbox.layout import MAX_FILE_BYTES

from colabtui.colab.errors import ColabBadAnswer, ColabError, ProxyRefused, RuntimeGone
from colabtui.colab.proxy import RuntimeProxy

TOKEN_HEADER = "X-Colab-Runtime-Proxy-Token"
"""Where the runtime proxy reads its token (the Colab CLI's kernel client sends the same)."""

TIMEOUT_S = 10.0
"""Seconds one contents request may take by default, its whole answer read."""

CHECK_TTL_S = 30.0
"""A folder found by :meth:`ContentsMailbox.check` is not asked for again for this long (one
request less on every poll)."""

GONE_CHECK_S = 30.0
"""After the proxy stops answering, the assignment list is asked at most this often whether
the runtime still exists (to say "released" instead of "not answering")."""

_MAX_BODY = MAX_FILE_BYTES * 4 // 3 + 64 * 1024  # base64 and the model's JSON around it


class _TooSlow(Exception):
    """An answer that did not arrive whole before its deadline."""


@dataclass(frozen=True)
class _Answer:
    status_code: int
    content: bytes


class ContentsMailbox:
    """``MailboxStorage`` over the contents API of one runtime.

    Args:
        proxy: the runtime's :class:`~.proxy.RuntimeProxy`.
        folder: the mailbox folder from the Jupyter root (``content/colabtui``).
        timeout_s: the longest one request may take, seconds, its whole answer read (a
            runtime trickling bytes is cut off); each network wait is at most as long.

    Every method raises ``OSError`` kinds only: ``FileNotFoundError``, :class:`RuntimeGone`,
    :class:`ProxyRefused`, :class:`ColabError` (and ``FileTooLarge`` for a file past
    ``MAX_FILE_BYTES``), ``ValueError`` for a name that is not a mailbox name.
    """

    def __init__(self, proxy: RuntimeProxy, folder: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.proxy = proxy
        self.folder = folder.strip("/")
        self.timeout_s = timeout_s
        self._http = httpx.Client(timeout=min(timeout_s, TIMEOUT_S), trust_env=False,
                                  follow_redirects=False)
        self._checked_at = -1e9
        self._gone_checked_at = -1e9

    def __repr__(self) -> str:
        return f"ContentsMailbox({self.proxy.endpoint!r}, {self.folder!r})"

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ MailboxStorage

    def check(self) -> None:
        if time.monotonic() - self._checked_at < CHECK_TTL_S:
            return
        model = self._get_model("", {"type": "directory", "content": "0"})
        if model.get("type") != "directory":
            raise NotADirectoryError(f"{self.folder} on runtime {self.proxy.endpoint} is not "
                                     "a folder")
        self._checked_at = time.monotonic()

    def read(self, name: str) -> bytes:
        from colabtui_remote.drive.errors import FileTooLarge

        model = self._get_model(_name(name), {"type": "file", "format": "base64",
                                              "content": "1"})
        content = model.get("content")
        if not isinstance(content, str):
            raise ColabBadAnswer(f"{name}: the runtime's answer holds no file content")
        if len(content) > MAX_FILE_BYTES * 4 // 3 + 4:
            raise FileTooLarge(f"{name} is larger than {MAX_FILE_BYTES} bytes")
        try:
            # Jupyter sends base64.encodebytes' lines: the breaks go, anything else must be base64
            return base64.b64decode(content.replace("\n", ""), validate=True)
        except ValueError:
            raise ColabBadAnswer(f"{name}: the runtime sent content that is not base64") \
                from None

    def write(self, name: str, data: bytes) -> None:
        path = _name(name)
        body = {"type": "file", "format": "base64",
                "content": base64.b64encode(data).decode("ascii")}
        r = self._request("PUT", path, json=body)
        if r.status_code in (404, 500) and "/" in path:  # its folder is not there yet
            self._request("PUT", path.split("/")[0], json={"type": "directory"})
            r = self._request("PUT", path, json=body)
        self._raise_for(r, name)

    def make_folder(self) -> None:
        """Create the folder and each folder above it that is missing (``PUT`` of a
        directory model, which Jupyter answers 201, or 200 for one already there).

        Raises:
            NotADirectoryError: a file stands where a folder is needed.
            OSError kinds, as the other methods.
        """
        parts = self.folder.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            r = self._request("PUT", "", json={"type": "directory"}, full=path)
            if r.status_code == 400:
                raise NotADirectoryError(f"{path} on runtime {self.proxy.endpoint} is a file, "
                                         "not a folder")
            self._raise_for(r, path)

    def list(self, folder: str) -> list[str]:
        try:
            model = self._get_model(_name(folder), {"type": "directory", "content": "1"})
        except FileNotFoundError:
            return []
        entries = model.get("content")
        if not isinstance(entries, list):
            raise ColabError(f"{folder}: the runtime's answer is not a folder listing")
        return sorted(e["name"] for e in entries
                      if isinstance(e, dict) and e.get("type") == "file"
                      and isinstance(e.get("name"), str) and not e["name"].startswith("."))

    def remove(self, name: str) -> None:
        r = self._request("DELETE", _name(name))
        if r.status_code != 404:
            self._raise_for(r, name)

    def tail(self, name: str, max_bytes: int) -> bytes:
        """The last ``max_bytes`` bytes of the file ``name`` in the folder (``GET /files/…``
        with ``Range: bytes=-N``, which Jupyter's file handler answers 206; a server that sends
        the whole file instead is cut here, within the same bound as :meth:`read`).

        Raises:
            FileNotFoundError: no such file; OSError kinds, as the storage methods.
        """
        r = self._request("GET", _name(name), api="files",
                          headers={"Range": f"bytes=-{int(max_bytes)}"})
        if r.status_code == 416:  # an empty file has no last bytes
            return b""
        self._raise_for(r, name)
        return r.content[-max_bytes:]

    # ------------------------------------------------------------------ HTTP

    def server_started_at(self) -> float | None:
        """When the runtime's Jupyter server started (``GET /api/status``'s ``started``), Unix
        seconds: the runtime's age. ``None`` when the answer has no usable time.

        Raises:
            OSError kinds, as the storage methods.
        """
        from datetime import datetime

        r = self._request("GET", "", api="status")
        self._raise_for(r, "/api/status")
        try:
            started = wire.loads(r.content).get("started")
            return datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
        except (schema.SchemaError, ValueError, AttributeError, TypeError, OverflowError):
            return None

    def _url(self, runtime: Any, path: str, api: str, full: str | None = None) -> str:
        if api not in ("contents", "files"):
            return f"{runtime.proxy_url}/api/{api}"
        full = full if full is not None else "/".join(p for p in (self.folder, path) if p)
        where = "api/contents" if api == "contents" else "files"
        return f"{runtime.proxy_url}/{where}/{quote(full, safe='/')}"

    def _request(self, method: str, path: str, *, params: dict | None = None,
                 json: Any = None, api: str = "contents", full: str | None = None,
                 headers: dict | None = None) -> _Answer:
        refreshed = False
        while True:
            runtime = self.proxy.current(refresh=refreshed)
            if not runtime.proxy_url:
                raise ColabBadAnswer(f"Colab listed no usable proxy URL for runtime "
                                     f"{self.proxy.endpoint}")
            try:
                r = self._fetch(method, self._url(runtime, path, api, full), params, json,
                                runtime.proxy_token, headers)
            except httpx.InvalidURL:
                raise ColabBadAnswer(f"Colab listed no usable proxy URL for runtime "
                                 f"{self.proxy.endpoint}") from None
            except (httpx.HTTPError, _TooSlow) as exc:
                why = "too slowly" if isinstance(exc, _TooSlow) else type(exc).__name__
                raise self._gone_or(ColabError(f"runtime {self.proxy.endpoint} did not answer "
                                               f"through Colab's proxy: {why}")) from None
            if r.status_code in (401, 403):
                if refreshed:
                    raise ProxyRefused(f"Colab's proxy refused a fresh token for runtime "
                                       f"{self.proxy.endpoint} (HTTP {r.status_code}): run "
                                       "`colabtui colab list` to see if it is still yours")
                refreshed = True
                continue
            if r.status_code in (502, 503, 504):
                raise self._gone_or(ColabError(f"runtime {self.proxy.endpoint} is not answering "
                                               f"(HTTP {r.status_code} from Colab's proxy)"))
            return r

    def _fetch(self, method: str, url: str, params: dict | None, json: Any,
               token: str, headers: dict | None = None) -> _Answer:
        """One request, read whole within :attr:`timeout_s` and :data:`_MAX_BODY` bytes. No
        compression is asked for, and a compressed answer is refused: decoded, a few kB can
        become gigabytes in memory before any bound is checked.

        Raises:
            _TooSlow: the answer did not arrive whole in time (a trickle of bytes included).
            ColabBadAnswer: it is larger than the bound.
            httpx.HTTPError, httpx.InvalidURL: as httpx.
        """
        deadline = time.monotonic() + self.timeout_s
        body = bytearray()
        with self._http.stream(method, url, params=params, json=json,
                               headers={**(headers or {}), TOKEN_HEADER: token,
                                        "Accept-Encoding": "identity"}) as r:
            if r.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise ColabBadAnswer(f"runtime {self.proxy.endpoint}: a compressed answer, "
                                     "though none was asked for")  # a bomb decodes in memory
            for chunk in r.iter_raw():
                body += chunk
                if len(body) > _MAX_BODY:
                    raise ColabBadAnswer(f"runtime {self.proxy.endpoint}: an answer larger "
                                         f"than {MAX_FILE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise _TooSlow
            return _Answer(r.status_code, bytes(body))

    def _gone_or(self, error: ColabError) -> ColabError:
        """``error`` to raise, unless the runtime left the assignment list: then this raises
        :class:`RuntimeGone` itself (the list is asked at most every :data:`GONE_CHECK_S`)."""
        now = time.monotonic()
        if now - self._gone_checked_at >= GONE_CHECK_S:
            self._gone_checked_at = now
            self.proxy.current(refresh=True)
        return error

    def _get_model(self, path: str, params: dict) -> dict:
        r = self._request("GET", path, params=params)
        self._raise_for(r, path or self.folder)
        try:
            model = wire.loads(r.content)
        except schema.SchemaError:
            raise ColabBadAnswer(f"{path or self.folder}: the runtime's answer is not JSON") \
                from None
        if not isinstance(model, dict):
            raise ColabBadAnswer(f"{path or self.folder}: the runtime's answer is not a model")
        return model

    def _raise_for(self, r: _Answer, name: str) -> None:
        if r.status_code < 300:
            return
        where = f"{self.folder}/{name}" if name != self.folder else self.folder
        if r.status_code == 404:
            raise FileNotFoundError(f"{where} not found on runtime {self.proxy.endpoint}")
        if r.status_code == 400 and name == self.folder:
            raise NotADirectoryError(f"{where} on runtime {self.proxy.endpoint} is not a folder")
        raise ColabError(f"{where} on runtime {self.proxy.endpoint}: HTTP {r.status_code}")


def _name(name: str) -> str:
    """A mailbox name checked as ``LocalFolder`` checks it (one folder deep at most)."""
    parts = name.split("/") if name else []
    if len(parts) > 2 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad mailbox file name {name!r}")
    return "/".join(parts)


__all__ = ["CHECK_TTL_S", "TIMEOUT_S", "TOKEN_HEADER", "ContentsMailbox", "RuntimeGone"]
