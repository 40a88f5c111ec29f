"""Saved sessions and settings: one TOML file under the user's config folder.

The file holds bearer tokens, so it is written atomically (temporary file, fsync, ``os.replace``)
with mode 0o600, and a token is never shown in full (:func:`mask_token`). A file that does not
parse raises :class:`ConfigError` naming the file and line; nothing here ever overwrites a file
it could not read.

File layout::

    [settings]
    poll_interval_s = 1.0
    risk_warning_min = 30.0
    chart_refresh_s = 3.0
    log_scale = false
    bell = true                       # alerts ring the terminal bell
    desktop_notify = "auto"           # "auto", "osc9", "osc777" or "off"
    alert_series = ["loss"]           # series that must stay finite
    lost_after_s = 60.0               # no answer for this long: the session is lost
    gpu_memory_polls = 3              # polls in a row at >= 98 % GPU memory before an alert
    alert_command = ["ntfy", "publish", "mytopic"]   # optional: gets each alert as JSON
    alert_command_timeout_s = 10.0

    [[sessions]]
    url = "http://127.0.0.1:8765"
    token = "..."
    label = "resnet lr=3e-4"
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
import tomli_w
from colabtui_remote.wire import clean_text

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

APP_NAME = "colabtui"
CONFIG_ENV = "COLABTUI_CONFIG_DIR"
DATA_ENV = "COLABTUI_DATA_DIR"
LOG_ENV = "COLABTUI_LOG_DIR"


class ConfigError(Exception):
    """The config file or a value in it is not usable.

    Attributes:
        path: the file concerned, or ``None`` for a value typed by the user.
        line: 1-based line of the problem in ``path``, when known.
        reason: the problem alone, without the location.
    """

    def __init__(self, reason: str, path: Path | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}, line {line}: " if line is not None else f"{path}: "
        super().__init__(where + reason)


# --------------------------------------------------------------------------- values


def mask_token(token: str) -> str:
    """A token as it may be shown on screen or in a log: ``"ab12…9f"``.

    At most 6 characters of a token of 16 or more are shown (4 first, 2 last); a shorter token
    shows nothing but ``"…"``, since its characters would be too large a share of it.
    """
    if not token:
        return ""
    if len(token) < 16:
        return "…"
    return f"{token[:4]}…{token[-2:]}"


MAILBOX_SCHEME = "mailbox:"
"""URL prefix of a session reached through a mailbox folder: ``mailbox:/abs/path``."""


def mailbox_url(path: str | os.PathLike) -> str:
    """The session URL of a mailbox folder: ``mailbox:`` and its absolute path."""
    return MAILBOX_SCHEME + os.path.abspath(os.path.expanduser(os.fspath(path)))


def mailbox_path(url: str) -> Path | None:
    """The folder of a ``mailbox:`` URL, or ``None`` for any other URL."""
    if isinstance(url, str) and url.startswith(MAILBOX_SCHEME):
        return Path(url[len(MAILBOX_SCHEME):])
    return None


def is_gdrive_url(url: object) -> bool:
    """True for a session reached through a Drive folder by the Drive API (``gdrive://ID``)."""
    from colabtui_remote.drive.url import is_gdrive_url as check

    return check(url)


def is_colab_url(url: object) -> bool:
    """True for a session on a Colab runtime reached through Colab's proxy (``colab://``)."""
    from colabtui.colab.url import is_colab_url as check

    return check(url)


def needs_token(url: str) -> bool:
    """Whether a session URL needs a bearer token: HTTP does; a mailbox (folder, Drive, or a
    Colab runtime's disk, reached with the Colab sign-in) does not."""
    return mailbox_path(url) is None and not is_gdrive_url(url) and not is_colab_url(url)


def validate_url(url: str) -> str:
    """Check a session URL and return it normalised (no trailing ``/``, no surrounding spaces).

    Raises:
        ConfigError: not ``http``/``https`` (without a scheme, the message suggests
            ``http://`` + the text), no host, or a query or fragment; a ``mailbox:`` URL
            whose path is not absolute.
    """
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise ConfigError("the session URL is empty")
    if is_colab_url(text):
        from colabtui.colab.url import colab_url, parse_colab_url

        try:
            return colab_url(*parse_colab_url(text))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if is_gdrive_url(text):
        from colabtui_remote.drive.url import parse_gdrive_url

        try:
            folder_id, parts = parse_gdrive_url(text)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return "gdrive://" + "/".join((folder_id, *parts))
    folder = mailbox_path(text)
    if folder is not None:
        if not folder.is_absolute():
            raise ConfigError(f"{text!r}: a mailbox URL takes an absolute path (mailbox:/path)")
        return mailbox_url(folder)
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a port that is not a number or out of range
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        hint = f"; did you mean http://{text}?" if "://" not in text else ""
        raise ConfigError(f"{text!r} is not an http:// or https:// URL{hint}")
    if not parts.hostname:
        raise ConfigError(f"{text!r} has no host (expected e.g. http://127.0.0.1:8765)")
    if parts.query or parts.fragment:
        raise ConfigError(f"{text!r}: a session URL takes no ?query or #fragment")
    del port
    return text.rstrip("/")


_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")


def validate_token(token: str) -> str:
    """Check a token can travel in an ``Authorization`` header; return it unchanged.

    Raises:
        ConfigError: empty, or holds spaces, control or non-ASCII characters (the message
            never repeats the token).
    """
    if not isinstance(token, str) or not token:
        raise ConfigError("the token is empty")
    if not _TOKEN_RE.match(token):
        raise ConfigError("the token holds spaces, control or non-ASCII characters")
    return token


@dataclass
class SessionConfig:
    """One saved session. The token never appears in ``repr`` (tracebacks, logs)."""

    url: str
    token: str = field(repr=False)
    label: str = ""

    @property
    def key(self) -> str:
        """Stable id derived from the URL, safe as a Textual widget id (``"s-" + 10 hex``)."""
        return "s-" + hashlib.sha1(self.url.encode("utf-8")).hexdigest()[:10]

    @property
    def display_label(self) -> str:
        """The label, or ``host:port`` of the URL when there is none; one line of plain text
        (a label saved by ``colabtui connect`` may be a session's own, so it is cleaned as the
        session's text is: :func:`colabtui_remote.wire.clean_text`)."""
        if self.label:
            return clean_text(self.label)
        folder = mailbox_path(self.url)
        if folder is not None:
            return folder.name or str(folder)
        if is_colab_url(self.url):  # the runtime's endpoint
            return "colab " + self.url[len("colab://"):].split("/")[0]
        if is_gdrive_url(self.url):  # the run folder's title, not "mailbox" below it
            parts = self.url[len("gdrive://"):].rstrip("/").split("/")
            if len(parts) > 2 and parts[-1] == "mailbox":
                parts.pop()
            return parts[-1] if len(parts) > 1 else f"drive {parts[0][:8]}"
        parts = urlsplit(self.url)
        host = parts.hostname or self.url
        try:
            port = parts.port
        except ValueError:
            port = None
        return f"{host}:{port}" if port else host

    @property
    def masked_token(self) -> str:
        return mask_token(self.token)


LIVE_SETTINGS = ("poll_interval_s", "risk_warning_min", "chart_refresh_s", "bell",
                 "desktop_notify", "alert_series", "lost_after_s", "gpu_memory_polls",
                 "alert_command", "alert_command_timeout_s")
"""The settings a running app takes from an edited config file at once (the rest: at start)."""


@dataclass
class Settings:
    """App settings.

    Attributes:
        poll_interval_s: seconds between the end of one poll of a session and the next.
        risk_warning_min: minutes since the last durable checkpoint after which the
            "work at risk" figure turns to a warning.
        chart_refresh_s: seconds between redraws of a live loss chart. Charts are the costly
            part of a frame (bench/bench_app_cpu.py); a training curve read every few seconds
            loses nothing, while text figures still update every poll.
        log_scale: plot loss curves on a log scale.
        bell: alerts ring the terminal bell.
        desktop_notify: how alerts reach the desktop: ``"auto"`` (the terminal's own
            notification escape when it is known to show one, else the bell), ``"osc9"``,
            ``"osc777"`` or ``"off"``.
        alert_series: the metric series that must stay finite (an alert when one turns NaN).
        lost_after_s: seconds without an answer after which a session is lost (an alert).
        gpu_memory_polls: polls in a row with a GPU's memory at or above 98 % before the
            out-of-memory-risk alert.
        alert_command: a program and its arguments (no shell) run for each alert with the
            alert as one JSON object on stdin; empty for none.
        alert_command_timeout_s: seconds the alert command may run before it is killed.
    """

    poll_interval_s: float = 1.0
    risk_warning_min: float = 30.0
    chart_refresh_s: float = 3.0
    log_scale: bool = False
    bell: bool = True
    desktop_notify: str = "auto"
    alert_series: list[str] = field(default_factory=lambda: ["loss"])
    lost_after_s: float = 60.0
    gpu_memory_polls: int = 3
    alert_command: list[str] = field(default_factory=list)
    alert_command_timeout_s: float = 10.0


@dataclass
class Config:
    """Everything in the config file."""

    sessions: list[SessionConfig] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)

    def find(self, key_or_url: str) -> SessionConfig | None:
        """The session with this :attr:`SessionConfig.key` or URL, or ``None``."""
        for s in self.sessions:
            if key_or_url in (s.key, s.url):
                return s
        return None

    def with_session(self, session: SessionConfig) -> Config:
        """A copy with ``session`` added, replacing one with the same URL in place."""
        sessions = list(self.sessions)
        for i, s in enumerate(sessions):
            if s.url == session.url:
                sessions[i] = session
                break
        else:
            sessions.append(session)
        return Config(sessions=sessions, settings=self.settings)

    def without(self, key_or_url: str) -> Config:
        """A copy without the session with this key or URL (history stays in the ledger)."""
        return Config(sessions=[s for s in self.sessions if key_or_url not in (s.key, s.url)],
                      settings=self.settings)


# --------------------------------------------------------------------------- paths


def config_dir() -> Path:
    """``$COLABTUI_CONFIG_DIR``, else platformdirs' user config folder for ``colabtui``."""
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """``$COLABTUI_DATA_DIR``, else platformdirs' user data folder for ``colabtui``."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME))


def log_dir() -> Path:
    """``$COLABTUI_LOG_DIR``, else platformdirs' user log folder for ``colabtui`` (where a
    crash's traceback is written)."""
    env = os.environ.get(LOG_ENV)
    return Path(env) if env else Path(platformdirs.user_log_dir(APP_NAME))


def default_config_path() -> Path:
    return config_dir() / "config.toml"


def default_ledger_path() -> Path:
    return data_dir() / "ledger.sqlite3"


# --------------------------------------------------------------------------- load / save

_LINE_RE = re.compile(r"line (\d+)")


def _session_line(text: str, index: int) -> int | None:
    """Line of the ``index``-th ``[[sessions]]`` header, so a value error points somewhere."""
    count = -1
    for n, line in enumerate(text.splitlines(), start=1):
        if re.match(r"\s*\[\[\s*sessions\s*\]\]", line):
            count += 1
            if count == index:
                return n
    return None


def _key_line(text: str, key: str) -> int | None:
    for n, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return n
    return None


def load_config(path: Path) -> Config:
    """Read the config file; a missing file is an empty :class:`Config`.

    Raises:
        ConfigError: unreadable, not UTF-8, not TOML (the message names the line), or a value
            is wrong (a bad URL, an empty token, a setting of the wrong type, two sessions with
            the same URL). The file is left as it is.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror or exc}", path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", path, line) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _LINE_RE.search(msg)
        line = getattr(exc, "lineno", None) or (int(m.group(1)) if m else None)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg) or "not valid TOML"
        raise ConfigError(f"not valid TOML: {reason}", path, line) from None
    return _from_doc(doc, path, text)


DESKTOP_NOTIFY = ("auto", "osc9", "osc777", "off")
"""The values of ``settings.desktop_notify``."""


def _check_notify(value: Any, name: str, path: Path, line: int | None) -> str:
    if value not in DESKTOP_NOTIFY:
        raise ConfigError(f"settings.{name} must be one of {', '.join(DESKTOP_NOTIFY)}",
                          path, line)
    return value


def _check_strings(value: Any, name: str, path: Path, line: int | None) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"settings.{name} must be a list of non-empty strings", path, line)
    return list(value)


def _check_count(value: Any, name: str, path: Path, line: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise ConfigError(f"settings.{name} must be a whole number from 1 to 10000", path, line)
    return value


_SETTING_CHECKS = {"notify": _check_notify, "names": _check_strings, "argv": _check_strings,
                   "count": _check_count}


def _from_doc(doc: dict[str, Any], path: Path, text: str) -> Config:
    settings = Settings()
    raw_settings = doc.get("settings", {})
    if not isinstance(raw_settings, dict):
        raise ConfigError("[settings] must be a table", path, _key_line(text, "settings"))
    for name, kind in (("poll_interval_s", "pos"), ("risk_warning_min", "pos"),
                       ("chart_refresh_s", "pos"), ("log_scale", "bool"), ("bell", "bool"),
                       ("desktop_notify", "notify"), ("alert_series", "names"),
                       ("lost_after_s", "pos"), ("gpu_memory_polls", "count"),
                       ("alert_command", "argv"), ("alert_command_timeout_s", "pos")):
        if name not in raw_settings:
            continue
        value = raw_settings[name]
        line = _key_line(text, name)
        if kind in _SETTING_CHECKS:
            value = _SETTING_CHECKS[kind](value, name, path, line)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"settings.{name} must be true or false", path, line)
        elif (isinstance(value, bool) or not isinstance(value, (int, float))
              or not math.isfinite(value) or value <= 0):
            raise ConfigError(f"settings.{name} must be a number above 0", path, line)
        else:
            value = float(value)
        setattr(settings, name, value)

    raw_sessions = doc.get("sessions", [])
    if not isinstance(raw_sessions, list):
        raise ConfigError("sessions must be an array of tables ([[sessions]])", path,
                          _key_line(text, "sessions"))
    sessions: list[SessionConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw_sessions):
        line = _session_line(text, i)
        where = f"session {i + 1}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table", path, line)
        url, token, label = item.get("url"), item.get("token"), item.get("label", "")
        if token is None and isinstance(url, str) and not needs_token(url):
            token = ""  # a mailbox needs no token
        if not isinstance(url, str):
            raise ConfigError(f"{where}: url is missing or not a string", path, line)
        if not isinstance(token, str):
            raise ConfigError(f"{where}: token is missing or not a string", path, line)
        if not isinstance(label, str):
            raise ConfigError(f"{where}: label must be a string", path, line)
        try:
            url = validate_url(url)
            if needs_token(url):
                validate_token(token)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.reason}", path, line) from None
        if url in seen:
            raise ConfigError(f"{where}: same url as session {seen[url] + 1}", path, line)
        seen[url] = i
        sessions.append(SessionConfig(url=url, token=token, label=label))
    return Config(sessions=sessions, settings=settings)


def to_toml(config: Config) -> str:
    """The TOML text :func:`save_config` writes."""
    doc = {
        "settings": {
            "poll_interval_s": float(config.settings.poll_interval_s),
            "risk_warning_min": float(config.settings.risk_warning_min),
            "chart_refresh_s": float(config.settings.chart_refresh_s),
            "log_scale": bool(config.settings.log_scale),
            "bell": bool(config.settings.bell),
            "desktop_notify": config.settings.desktop_notify,
            "alert_series": list(config.settings.alert_series),
            "lost_after_s": float(config.settings.lost_after_s),
            "gpu_memory_polls": int(config.settings.gpu_memory_polls),
            "alert_command": list(config.settings.alert_command),
            "alert_command_timeout_s": float(config.settings.alert_command_timeout_s),
        },
        "sessions": [{"url": s.url, "token": s.token, "label": s.label} for s in config.sessions],
    }
    return tomli_w.dumps(doc)


def save_config(config: Config, path: Path) -> None:
    """Write ``config`` to ``path`` atomically, readable by the owner only (mode 0o600).

    The text goes to a temporary file in the same folder, is flushed and fsynced, then
    ``os.replace``-d over ``path``, so a crash leaves the old file or the new one, never half.
    Missing folders are created with mode 0o700.

    Raises:
        ConfigError: a session has a bad URL or token, or the file cannot be written.
    """
    path = Path(path)
    for i, s in enumerate(config.sessions):
        try:
            validate_url(s.url)
            if needs_token(s.url):
                validate_token(s.token)
        except ConfigError as exc:
            raise ConfigError(f"session {i + 1}: {exc.reason}") from None
    data = to_toml(config).encode("utf-8")
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)  # before any byte of a token is written
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp_name)
            raise
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    except OSError as exc:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
        raise ConfigError(f"cannot write the config file: {exc.strerror or exc}", path) from None


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder entry is; not possible on every OS (Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
