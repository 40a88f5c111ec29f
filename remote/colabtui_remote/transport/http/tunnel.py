"""An opt-in Cloudflare quick tunnel to the local server: ``Monitor.serve(tunnel="cloudflared")``.

A quick tunnel (``cloudflared tunnel --url http://127.0.0.1:PORT``) gives the server a public
``https://<random words>.trycloudflare.com`` address without an account. Anyone with that URL
reaches the server; the bearer token is what keeps them out.

Colab's terms restrict proxies and remote control on free runtimes, so this is never on by
default; :data:`TERMS_WARNING` is printed with the URL. The terms-friendly path is the Drive
mailbox (:meth:`Monitor.serve_mailbox <colabtui_remote.monitor.Monitor.serve_mailbox>`).

Where the ``cloudflared`` executable comes from, first found wins:

1. ``COLABTUI_CLOUDFLARED``: a path to an installed one (e.g. from Cloudflare's ``.deb``);
2. ``cloudflared`` on ``PATH``;
3. the optional ``pycloudflared`` package (``pip install 'colabtui-remote[tunnel]'``), which
   downloads Cloudflare's release binary from GitHub on first use.

We run the binary ourselves rather than through ``pycloudflared.try_cloudflare``: that one reads
cloudflared's stderr with a blocking ``readline`` and no timeout, so a cloudflared that never
prints its URL would hang the notebook cell.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import re
import shutil
import subprocess
import threading
import time

log = logging.getLogger(__name__)

ENV_EXECUTABLE = "COLABTUI_CLOUDFLARED"
"""Environment variable naming the cloudflared executable to run (a path)."""

START_TIMEOUT_S = 30.0
"""How long :func:`start_quick_tunnel` waits for cloudflared to print the tunnel's URL."""

DOWNLOAD_TIMEOUT_S = 180.0
"""How long to wait for pycloudflared's first-use download of the binary (about 40 MB)."""

STOP_TIMEOUT_S = 5.0
"""After SIGTERM, how long cloudflared may take to exit before it is killed (it waits for open
requests, up to its 30 s grace period, which a polling laptop would always fill)."""

TAIL_LINES = 50
"""cloudflared log lines kept for error messages and :meth:`QuickTunnel.log_tail`."""

URL_PATTERN = re.compile(r"(?P<url>https?://\S+\.trycloudflare\.com)")
"""The tunnel's URL in cloudflared's log (the pattern pycloudflared uses)."""

_API_HOST = "api.trycloudflare.com"
"""Not a tunnel: the service cloudflared asks for one. It appears in cloudflared's own error
lines (``Post "https://api.trycloudflare.com/tunnel": dial tcp ...``), which the pattern above
would otherwise take for the tunnel's URL."""

TERMS_WARNING = (
    "colabtui: warning: Colab's terms restrict proxies and remote control on free runtimes; "
    "a tunnel may be against them. The terms-friendly path is the Drive mailbox: "
    "mon.serve_mailbox('/content/drive/MyDrive/colabtui/<run>'). "
    "Anyone with the URL and token can command this run: keep the line private."
)
"""Printed with the tunnel's connect line."""


class TunnelError(RuntimeError):
    """The tunnel could not start; the message says what failed and what to do."""


class QuickTunnel:
    """A running ``cloudflared tunnel --url ...`` process and its public URL.

    Made by :func:`start_quick_tunnel`. A daemon thread keeps reading cloudflared's log for as
    long as it runs, so its pipe never fills and blocks it.
    """

    def __init__(self, process: subprocess.Popen, target: str) -> None:
        self.process = process
        """The cloudflared process."""
        self.target = target
        """The local URL the tunnel forwards to, e.g. ``http://127.0.0.1:8765``."""
        self.url: str | None = None
        """The public ``https://....trycloudflare.com`` URL, once cloudflared printed it."""
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._url_or_exit = threading.Event()
        self._closed = False
        self._reader = threading.Thread(target=self._read_log, daemon=True,
                                        name=f"colabtui-remote-cloudflared-{process.pid}")
        self._reader.start()

    @property
    def running(self) -> bool:
        """True while the cloudflared process runs."""
        return self.process.poll() is None

    def log_tail(self) -> list[str]:
        """cloudflared's last log lines (up to :data:`TAIL_LINES`), oldest first."""
        with self._lock:
            return list(self._tail)

    def close(self) -> None:
        """Stop cloudflared: SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S` seconds.
        Idempotent; also runs at interpreter exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        with _RUNNING_LOCK:
            for port, tunnel in list(_RUNNING.items()):
                if tunnel is self:
                    del _RUNNING[port]
        if self.process.poll() is None:
            try:
                self.process.terminate()
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            except OSError:  # already gone
                pass
        self._reader.join(timeout=2.0)

    def _read_log(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        try:
            for line in stream:
                line = line.rstrip()
                with self._lock:
                    self._tail.append(line)
                if self.url is None:
                    for match in URL_PATTERN.finditer(line):
                        url = match.group("url")
                        if url.split("://", 1)[1].lower() != _API_HOST:
                            self.url = url
                            self._url_or_exit.set()
                            break
        except (OSError, ValueError):  # the pipe closed under us
            pass
        finally:
            self._url_or_exit.set()
        code = self.process.wait()
        if self.url is not None and not self._closed:
            log.warning("colabtui_remote: cloudflared exited with code %s; the tunnel %s is down "
                        "(the server still runs at %s)", code, self.url, self.target)

    def _wait_for_url(self, timeout_s: float) -> None:
        """Return once the URL is known; raise TunnelError (and stop cloudflared) otherwise."""
        self._url_or_exit.wait(timeout_s)
        if self.url is not None:
            return
        exited = self._url_or_exit.is_set()
        code: int | None = None
        if exited:
            try:
                code = self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # closed its stderr but runs on: odd, stop it
                pass
        self.close()
        tail = [line for line in self.log_tail() if line.strip()][-5:]
        said = ("; its last lines:\n    " + "\n    ".join(tail)) if tail else "; it printed nothing"
        if code is not None:
            what = f"cloudflared ({self.process.args[0]}) exited with code {code} before giving a URL"
        else:
            what = f"cloudflared ({self.process.args[0]}) gave no tunnel URL within {timeout_s:g} s"
        raise TunnelError(
            f"{what}{said}\nCheck that this machine reaches the internet (api.trycloudflare.com, "
            "port 443/7844) and try again; or use the Drive mailbox (mon.serve_mailbox(folder)).")


_RUNNING: dict[int, QuickTunnel] = {}
"""Tunnels this process runs, by local port: a new tunnel to a port replaces the earlier one,
as re-running a notebook cell replaces the server."""
_RUNNING_LOCK = threading.Lock()


def start_quick_tunnel(port: int, timeout_s: float = START_TIMEOUT_S, *,
                       host: str = "127.0.0.1") -> QuickTunnel:
    """Start a Cloudflare quick tunnel to ``http://host:port`` and wait for its public URL.

    An earlier tunnel this process started to the same port is closed first.

    Args:
        port: the local server's TCP port.
        timeout_s: seconds to wait for cloudflared to print the URL (not counting a first-use
            download of the binary, which has :data:`DOWNLOAD_TIMEOUT_S`).
        host: the local server's address as cloudflared should dial it.

    Returns:
        The running tunnel; :attr:`QuickTunnel.url` is set. Call :meth:`QuickTunnel.close` to
        stop it (it is also stopped at interpreter exit).

    Raises:
        TunnelError: no cloudflared executable could be found or downloaded, it could not be
            run, it exited, or it printed no URL within ``timeout_s`` (the process is stopped).
    """
    executable = find_cloudflared()
    target = f"http://{host}:{int(port)}"
    with _RUNNING_LOCK:
        earlier = _RUNNING.pop(int(port), None)
    if earlier is not None:
        earlier.close()
    args = [executable, "tunnel", "--url", target, "--no-autoupdate"]
    try:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                   errors="replace")
    except OSError as exc:
        raise TunnelError(f"could not run {executable}: {exc}. Point {ENV_EXECUTABLE} at a "
                          "working cloudflared executable.") from None
    tunnel = QuickTunnel(process, target)
    atexit.register(tunnel.close)
    tunnel._wait_for_url(timeout_s)
    with _RUNNING_LOCK:
        _RUNNING[int(port)] = tunnel
    return tunnel


def find_cloudflared(download_timeout_s: float = DOWNLOAD_TIMEOUT_S) -> str:
    """The cloudflared executable to run: ``$COLABTUI_CLOUDFLARED``, else ``cloudflared`` on
    ``PATH``, else pycloudflared's copy (downloaded on first use).

    Raises:
        TunnelError: ``COLABTUI_CLOUDFLARED`` names no executable file; or none is on ``PATH``
            and pycloudflared is not installed, does not support this platform, or cannot
            download the binary within ``download_timeout_s`` seconds.
    """
    given = os.environ.get(ENV_EXECUTABLE)
    if given:
        if not os.path.isfile(given):
            raise TunnelError(f"{ENV_EXECUTABLE}={given}: no such file. Point it at an installed "
                              "cloudflared, or unset it to use the one on PATH or pycloudflared's.")
        if not os.access(given, os.X_OK):
            raise TunnelError(f"{ENV_EXECUTABLE}={given} is not executable (chmod +x it).")
        return given
    on_path = shutil.which("cloudflared")
    if on_path:
        return on_path
    try:
        from pycloudflared import util
    except ImportError:
        raise TunnelError(
            "no cloudflared found: it is not on PATH and pycloudflared is not installed. "
            "Run pip install 'colabtui-remote[tunnel]' (it downloads cloudflared on first use), "
            f"or install cloudflared and set {ENV_EXECUTABLE}=/path/to/cloudflared.") from None
    try:
        info = util.get_info()
    except RuntimeError as exc:  # pycloudflared has no binary for this OS or CPU
        raise TunnelError(f"pycloudflared cannot provide cloudflared here: {exc} Install "
                          f"cloudflared yourself and set {ENV_EXECUTABLE}.") from None
    # pycloudflared marks the file executable only once the download is complete: a file that
    # is there but not executable is a download that was cut short.
    if os.access(info.executable, os.X_OK):
        return info.executable
    return _download(util, info, download_timeout_s)


class _Download:
    """pycloudflared's download on a daemon thread: it opens the URL with no timeout."""

    def __init__(self, util, info) -> None:
        self.url = info.url
        self.path: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(util, info), daemon=True,
                                       name="colabtui-remote-cloudflared-download")
        self.thread.start()

    def _run(self, util, info) -> None:
        try:
            self.path = util.download(info)
        except BaseException as exc:  # reported by the caller, never raised on this thread
            self.error = exc


_DOWNLOADS: dict[str, _Download] = {}
_DOWNLOADS_LOCK = threading.Lock()


def _download(util, info, timeout_s: float) -> str:
    with _DOWNLOADS_LOCK:
        job = _DOWNLOADS.get(info.url)
        if job is None or not job.thread.is_alive():  # a download still running is joined
            job = _DOWNLOADS[info.url] = _Download(util, info)
    started = time.monotonic()
    job.thread.join(timeout_s)
    if job.thread.is_alive():
        raise TunnelError(
            f"downloading cloudflared from {job.url} took over {time.monotonic() - started:.0f} s; "
            "it goes on in the background: try again in a minute, or install cloudflared and set "
            f"{ENV_EXECUTABLE}=/path/to/cloudflared.")
    if job.error is not None or not job.path:
        raise TunnelError(
            f"could not download cloudflared from {job.url}: {job.error}. Without internet access "
            f"to GitHub, install cloudflared yourself and set {ENV_EXECUTABLE}=/path/to/cloudflared.")
    return job.path
