"""Logging in to Google Drive and building the Drive v2 service pydrive2 works through.

Where the credentials come from, in order (:func:`connect`):

1. the ``credentials_path`` argument, else ``$COLABTUI_DRIVE_CREDENTIALS``: an oauth2client
   credentials JSON file (what :func:`login` and pydrive2's ``SaveCredentialsFile`` write; it
   holds the refresh token and the ``token_uri`` refreshes go to);
2. in Colab (``google.colab`` importable): Colab's own sign-in
   (``google.colab.auth.authenticate_user()``), then the application default credentials;
3. :func:`default_credentials_path` on this machine.

The API is Google's (``https://www.googleapis.com/``) unless ``api_endpoint`` or
``$COLABTUI_DRIVE_API`` says otherwise (tests point it at a stand-in on loopback).

A refreshed access token is written back to the credentials file (mode 0o600); tokens are never
printed or logged.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import INSTALL_HINT, DriveAuthError, map_error, require_pydrive2

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from pydrive2.drive import GoogleDrive

API_ENDPOINT_ENV = "COLABTUI_DRIVE_API"
CREDENTIALS_ENV = "COLABTUI_DRIVE_CREDENTIALS"
DEFAULT_API_ENDPOINT = "https://www.googleapis.com/"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
HTTP_TIMEOUT_S = 60.0
"""Seconds a Drive request may stay silent before it fails as :class:`DriveUnavailable`."""

_LOGIN_HINT = ("log in with `colabtui drive login --client-secrets FILE` on the laptop (FILE: an "
               "OAuth client of type Desktop app from the Google Cloud console; the README's "
               "'Google Drive access' says how); on a runtime, copy the file it writes there "
               f"or point ${CREDENTIALS_ENV} at it; in Colab, call "
               "google.colab.auth.authenticate_user() first")


def default_credentials_path() -> Path:
    """Where :func:`login` saves the Drive login and :func:`connect` looks for it last:
    ``$COLABTUI_CONFIG_DIR/drive-credentials.json``, else platformdirs' user config folder for
    ``colabtui``, else (no platformdirs, as on a notebook runtime)
    ``~/.config/colabtui/drive-credentials.json``."""
    env = os.environ.get("COLABTUI_CONFIG_DIR")
    if env:
        return Path(env) / "drive-credentials.json"
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".config" / "colabtui" / "drive-credentials.json"
    return Path(platformdirs.user_config_dir("colabtui")) / "drive-credentials.json"


def credentials_path_in_use() -> Path:
    """The credentials file :func:`login` writes and :func:`connect` reads outside Colab:
    ``$COLABTUI_DRIVE_CREDENTIALS``, else :func:`default_credentials_path`."""
    env = os.environ.get(CREDENTIALS_ENV)
    return Path(env).expanduser() if env else default_credentials_path()


def _endpoint(api_endpoint: str | None) -> str:
    endpoint = api_endpoint or os.environ.get(API_ENDPOINT_ENV) or DEFAULT_API_ENDPOINT
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"Drive API endpoint {endpoint!r} (from {API_ENDPOINT_ENV} or the "
                         "api_endpoint argument) is not an http(s) URL")
    return endpoint if endpoint.endswith("/") else endpoint + "/"


def _in_colab() -> bool:
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def _settings(credentials: Any, credentials_path: Path | None) -> dict:
    """pydrive2 settings that refresh from the credentials themselves (no client_secrets.json
    needed) and, with a path, save refreshed tokens there."""
    settings: dict[str, Any] = {
        "client_config_backend": "settings",
        "client_config": {
            "client_id": credentials.client_id or "",
            "client_secret": credentials.client_secret or "",
            "auth_uri": GOOGLE_AUTH_URI,
            "token_uri": credentials.token_uri,
            "redirect_uri": "http://localhost:8080/",
            "revoke_uri": getattr(credentials, "revoke_uri", None),
        },
        "oauth_scope": [DRIVE_SCOPE],
        "get_refresh_token": True,
        "save_credentials": credentials_path is not None,
    }
    if credentials_path is not None:
        settings["save_credentials_backend"] = "file"
        settings["save_credentials_file"] = str(credentials_path)
    return settings


def _load_file_credentials(path: Path) -> Any:
    from oauth2client.file import Storage

    if not path.is_file():
        raise DriveAuthError(f"no Drive login at {path}: {_LOGIN_HINT}")
    try:
        credentials = Storage(str(path)).get()
    except OSError as exc:  # a symbolic link, unreadable
        raise DriveAuthError(f"cannot read the Drive login at {path}: {exc}") from None
    except (KeyError, ImportError, AttributeError) as exc:
        credentials = None
        why = f" ({type(exc).__name__}: {exc})"
    else:
        why = ""
    if credentials is None or not getattr(credentials, "token_uri", None):
        raise DriveAuthError(f"{path} does not hold a Drive login (an oauth2client credentials "
                             f"JSON file){why}; {_LOGIN_HINT}")
    return credentials


def connect(credentials_path: str | os.PathLike | None = None,
            api_endpoint: str | None = None, *,
            http_timeout_s: float = HTTP_TIMEOUT_S) -> GoogleDrive:
    """An authorized ``pydrive2.drive.GoogleDrive`` (credentials: see the module docstring).

    An expired access token is refreshed here and, later, whenever Drive answers 401 or the
    token's expiry passes; a refreshed token is saved back to the credentials file.

    Args:
        credentials_path: an oauth2client credentials JSON file.
        api_endpoint: base URL of the Drive API (``https://www.googleapis.com/``).
        http_timeout_s: seconds a request may stay silent before it fails.

    Raises:
        DriveAuthError: no credentials (the message says how to log in), or credentials Google
            no longer accepts (``invalid_grant``: log in again).
        DriveUnavailable: the token server cannot be reached.
        ValueError: an endpoint that is not an http(s) URL.
        ImportError: pydrive2 is not installed (``pip install 'colabtui-remote[drive]'``).
    """
    require_pydrive2()
    from googleapiclient import discovery, discovery_cache
    from pydrive2.auth import GoogleAuth
    from pydrive2.drive import GoogleDrive

    endpoint = _endpoint(api_endpoint)
    path_text = credentials_path or os.environ.get(CREDENTIALS_ENV)
    path: Path | None = Path(path_text).expanduser() if path_text else None
    if path is None and _in_colab():
        from google.colab import auth as colab_auth  # type: ignore[import-not-found]
        from oauth2client.client import GoogleCredentials

        colab_auth.authenticate_user()
        credentials = GoogleCredentials.get_application_default()
        gauth = GoogleAuth(settings=_settings(credentials, None), http_timeout=http_timeout_s)
        where = "Colab's Google sign-in"
    else:
        path = path or credentials_path_in_use()
        credentials = _load_file_credentials(path)
        gauth = GoogleAuth(settings=_settings(credentials, path), http_timeout=http_timeout_s)
        where = f"the Drive login at {path}"
    gauth.credentials = credentials
    try:
        if gauth.access_token_expired:  # expired, or marked invalid by an earlier refusal
            gauth.Refresh()
            if path is not None:
                gauth.SaveCredentials()
        http = gauth.Get_Http_Object()
    except Exception as exc:
        mapped = map_error(exc, f"refreshing {where}")
        if mapped is None:
            raise
        raise mapped from None
    gauth.http = http
    # pydrive2's Authorize() builds the same service without an endpoint. The discovery
    # document's rootUrl is replaced too: googleapiclient takes upload URLs from it and keeps
    # their scheme when only api_endpoint is given.
    doc = json.loads(discovery_cache.get_static_doc("drive", "v2"))
    if endpoint != DEFAULT_API_ENDPOINT:
        doc["rootUrl"] = endpoint
        doc["baseUrl"] = endpoint + doc["servicePath"]
        doc.pop("mtlsRootUrl", None)
    service = discovery.build_from_document(
        doc, http=http, client_options={"api_endpoint": endpoint + "drive/v2/"})
    # service.files() builds the files resource anew on every call (each method and its
    # docstring: about 20 ms of CPU), and pydrive2 calls it for every request. The resource
    # holds no per-request state (each call makes its own HttpRequest, sent with the calling
    # thread's http), so one serves every call and every thread.
    files = service.files()
    service.files = lambda: files
    gauth.service = service
    return GoogleDrive(gauth)


def _private_file(path: Path) -> None:
    """Create ``path`` (and its folder, 0o700) readable by its owner only, or make an existing
    one so, before a token is written into it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def _check_client_secrets(path: Path) -> None:
    """Raise ``ValueError`` (saying what is wrong, and where) unless ``path`` holds an OAuth
    client as the Google Cloud console downloads it: ``{"installed": {"client_id", ...}}``."""
    where = f"{path}: not an OAuth client file (download one from the Google Cloud console, " \
            "APIs & Services > Credentials > OAuth client ID > Desktop app)"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: it is not JSON ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    client = doc.get("installed") or doc.get("web") if isinstance(doc, dict) else None
    if not isinstance(client, dict):
        raise ValueError(f"{where}: no \"installed\" client in it")
    missing = [k for k in ("client_id", "client_secret", "auth_uri", "token_uri")
               if not isinstance(client.get(k), str) or not client.get(k)]
    if missing:
        raise ValueError(f"{where}: the client has no {', '.join(missing)}")
    uris = client.get("redirect_uris", ["http://localhost"])
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        raise ValueError(f"{where}: redirect_uris must be a non-empty list of URLs")


def login(client_secrets_path: str | os.PathLike,
          credentials_path: str | os.PathLike | None = None, *,
          launch_browser: bool = True, port_numbers: list[int] | None = None) -> Path:
    """Log in to Drive on this machine (a browser opens on Google's consent page) and save the
    login, with a refresh token, to a file only its owner can read (mode 0o600).

    Args:
        client_secrets_path: the OAuth client (type "Desktop app") JSON file downloaded from
            the Google Cloud console.
        credentials_path: where to save; default ``$COLABTUI_DRIVE_CREDENTIALS``, else
            :func:`default_credentials_path`.
        launch_browser: open the consent page in a browser (otherwise only print its URL).
        port_numbers: local ports to try for the redirect back (pydrive2: 8080, 8090).

    Returns:
        The credentials file's path.

    Raises:
        DriveAuthError: the consent was refused or the code exchange failed.
        ValueError: the client secrets file is not an OAuth client file.
        ImportError: pydrive2 is not installed.
    """
    try:
        from pydrive2.auth import AuthError, GoogleAuth
        from pydrive2.settings import InvalidConfigError
    except ImportError as exc:
        raise ImportError(f"Google Drive support needs pydrive2: {INSTALL_HINT}") from exc
    _check_client_secrets(Path(client_secrets_path))
    path = Path(credentials_path).expanduser() if credentials_path else credentials_path_in_use()
    # A fresh consent every time (an old login in the file, revoked or not, is not reused); the
    # old file is replaced only once the new login is saved.
    gauth = GoogleAuth(settings={
        "client_config_backend": "file",
        "client_config_file": str(client_secrets_path),
        "save_credentials": False,
        "get_refresh_token": True,
        "oauth_scope": [DRIVE_SCOPE],
    })
    try:
        gauth.LocalWebserverAuth(launch_browser=launch_browser, port_numbers=port_numbers)
    except InvalidConfigError as exc:
        raise ValueError(f"{client_secrets_path}: not an OAuth client secrets file ({exc})") \
            from None
    except AuthError as exc:
        raise DriveAuthError(f"Drive login failed: {exc or type(exc).__name__}") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _private_file(tmp)
    try:
        gauth.SaveCredentialsFile(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
