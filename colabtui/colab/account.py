"""The Colab account as this machine knows it: the Colab CLI's credentials and its client of
Colab's tunnel endpoints, pointed at Colab or, through the environment, elsewhere.

Credentials are the CLI's own: ``colab`` (or ``colabtui colab login``) signs in with Google's
public OAuth client for the CLI and stores the token at ``~/.config/colab-cli/token.json``
(``colab_cli.auth.TOKEN_CONFIG_PATH``). Here that file is only read: an access token that
expired is refreshed by google-auth with its refresh token, and a missing or refused one is
:class:`~.errors.NotSignedIn`, never an interactive prompt in the middle of a poll.

Environment:

- ``COLABTUI_COLAB_DOMAIN``: Colab's web domain, where ``/tun/m/...`` lives (default
  ``https://colab.research.google.com``, ``colab_cli.client.Prod``);
- ``COLABTUI_COLAB_API``: the API domain (default ``https://colab.pa.googleapis.com``);
- ``COLABTUI_GOOGLE_TOKEN_URI``: Google's OAuth token endpoint, where an expired access token is
  refreshed (default ``https://oauth2.googleapis.com/token``; google-auth ignores the file's
  own ``token_uri`` and always takes Google's).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any

from colabtui.colab.errors import (
    AssignRefused,
    ColabCliMissing,
    ColabError,
    NotSignedIn,
    RuntimeGone,
)

DOMAIN_ENV = "COLABTUI_COLAB_DOMAIN"
API_ENV = "COLABTUI_COLAB_API"
TOKEN_URI_ENV = "COLABTUI_GOOGLE_TOKEN_URI"
GPUS = ("T4", "L4", "A100", "H100", "G4")
"""GPU accelerators ``colab_cli.client.Accelerator`` names (0.7.5). The CLI's own ``--gpu``
maps a name it does not know to A100; here an unknown name is refused instead."""
KEEP_ALIVE_HEADER = ("X-Colab-Tunnel", "Google")
"""The header of a keep-alive ping, as Colab's VS Code extension sends it
(googlecolab/colab-vscode, ``src/colab/client/v1/index.ts``, ``sendKeepAlive``)."""


def _cli() -> Any:
    try:
        import colab_cli.auth
        import colab_cli.client
    except ImportError:
        raise ColabCliMissing() from None
    return colab_cli


def token_path() -> str:
    """Where the Colab CLI keeps its sign-in (``colab_cli.auth.TOKEN_CONFIG_PATH``)."""
    return _cli().auth.TOKEN_CONFIG_PATH


def environment() -> Any:
    """The ``colab_cli.client.ColabEnvironment`` to talk to: Colab's own unless
    ``COLABTUI_COLAB_DOMAIN``/``COLABTUI_COLAB_API`` say otherwise."""
    client = _cli().client
    prod = client.Prod()
    return client.Prod(domain=os.environ.get(DOMAIN_ENV) or prod.domain,
                       api=os.environ.get(API_ENV) or prod.api)


def authorized_session() -> Any:
    """A google-auth ``AuthorizedSession`` with the Colab CLI's stored credentials and scopes.

    Raises:
        NotSignedIn: no sign-in stored, or it cannot be read.
        ColabCliMissing: the Colab CLI is not installed.
    """
    cli = _cli()
    from google.oauth2.credentials import Credentials

    path = cli.auth.TOKEN_CONFIG_PATH
    if not os.path.exists(path):
        raise NotSignedIn(f"not signed in to Colab on this machine ({path} does not exist): "
                          "run `colabtui colab login`")
    try:
        creds = Credentials.from_authorized_user_file(path, cli.auth.PUBLIC_SCOPES)
    except Exception as exc:  # noqa: BLE001 — any shape of file: OSError, ValueError, TypeError…
        raise NotSignedIn(f"the Colab sign-in in {path} cannot be read "
                          f"({type(exc).__name__}): run `colabtui colab login` again") from None
    if os.environ.get(TOKEN_URI_ENV):
        expiry = creds.expiry
        creds = creds.with_token_uri(os.environ[TOKEN_URI_ENV])
        creds.expiry = expiry  # with_token_uri forgets it: refresh ahead of expiry as usual
    return timed_session(creds)


REQUEST_TIMEOUT_S = 20.0
"""Seconds a request to Colab (or Google's token endpoint) may wait, each connect and read;
google-auth's own default is 120 s, and the CLI sets none unless ``COLAB_CLI_REQUEST_TIMEOUT``
says so."""


@functools.cache
def _timed_session_class() -> Any:
    from google.auth.transport.requests import AuthorizedSession

    class TimedSession(AuthorizedSession):
        """google-auth's session with :data:`REQUEST_TIMEOUT_S` unless a caller gives one."""

        def request(self, method, url, *args, timeout=None, **kwargs):  # noqa: ANN001
            return super().request(method, url, *args,
                                   timeout=REQUEST_TIMEOUT_S if timeout is None else timeout,
                                   **kwargs)

    return TimedSession


def timed_session(creds: Any) -> Any:
    """An authorized session on ``creds`` whose requests wait at most :data:`REQUEST_TIMEOUT_S`
    (google-auth is imported here, on use)."""
    return _timed_session_class()(creds)


def login() -> Any:
    """Sign in with the Colab CLI's own flow (``colab_cli.auth.get_credentials``): reuses a
    stored sign-in, refreshes it, or prints Google's consent URL and asks for the code it
    shows. Returns the ``AuthorizedSession``.

    Raises:
        NotSignedIn: the flow failed (the message says why).
        ColabCliMissing: the Colab CLI is not installed.
    """
    cli = _cli()
    try:
        return cli.auth.get_credentials()
    except (EOFError, KeyboardInterrupt):
        raise NotSignedIn("sign-in cancelled: no authorization code was entered") from None
    except Exception as exc:  # oauthlib, google-auth and requests errors of every kind
        raise NotSignedIn(f"sign-in failed: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Runtime:
    """One runtime assigned to the account (``GET /tun/m/assignments``).

    Attributes:
        endpoint: Colab's id of the runtime (``colab://ENDPOINT``).
        accelerator: ``"T4"``, ``"A100"``, …, ``"NONE"`` for a CPU runtime.
        variant: ``"DEFAULT"``, ``"GPU"`` or ``"TPU"``.
        shape: ``"STANDARD"`` or ``"HIGH_RAM"``.
        proxy_url: the runtime proxy's base URL (its Jupyter server).
        proxy_token: the proxy token (sent as ``X-Colab-Runtime-Proxy-Token``).
        expires_at: when the token expires, ``time.time()`` seconds.
    """

    endpoint: str
    accelerator: str
    variant: str
    shape: str
    proxy_url: str
    proxy_token: str
    expires_at: float

    def __repr__(self) -> str:  # never the token
        return f"Runtime({self.endpoint!r}, {self.accelerator})"


class Account:
    """The Colab CLI's client (``colab_cli.client.Client``) on the stored credentials.

    Args:
        session: an authorized ``requests`` session; default :func:`authorized_session`.
        env: a ``ColabEnvironment``; default :func:`environment`.

    Raises:
        NotSignedIn, ColabCliMissing: as :func:`authorized_session`.
    """

    def __init__(self, session: Any = None, env: Any = None) -> None:
        cli = self.cli = _cli()
        self.session = session if session is not None else authorized_session()
        self.client = cli.client.Client(env if env is not None else environment(), self.session)

    def runtimes(self) -> list[Runtime]:
        """The runtimes assigned to the account now.

        Raises:
            NotSignedIn: Google refused the credentials (expired and not refreshable, revoked).
            ColabError: Colab did not answer, or answered with an error (the message has the
                HTTP status and what to do).
        """
        listed = self._call(self.client.list_assignments)
        now = time.time()
        return [Runtime(endpoint=a.endpoint, accelerator=_name(a.accelerator),
                        variant=_name(a.variant), shape=_name(a.machine_shape),
                        proxy_url=_proxy_url(a.runtime_proxy_info.url),
                        proxy_token=a.runtime_proxy_info.token,
                        expires_at=now + _lifetime(a.runtime_proxy_info.token_expires_in_seconds))
                for a in listed]

    def release(self, endpoint: str) -> None:
        """Unassign the runtime ``endpoint`` (``/tun/m/unassign/ENDPOINT``): Colab stops it and
        its disk is gone. Only ever called on the user's explicit, confirmed request.

        Raises:
            NotSignedIn, ColabError: as :meth:`runtimes`.
        """
        self._call(self.client.unassign, endpoint)

    def assign(self, gpu: str | None = None) -> Runtime:
        """A new runtime for a new notebook id (``/tun/m/assign``, the CLI's
        ``Client.assign``): a GPU runtime with accelerator ``gpu`` (one of :data:`GPUS`), or a
        CPU runtime for ``None``. It burns compute units until released.

        Raises:
            ValueError: ``gpu`` is not one of :data:`GPUS`.
            AssignRefused: too many assignments (HTTP 412), or the accelerator refused (HTTP
                400: no quota or compute units for it).
            NotSignedIn, ColabError: as :meth:`runtimes`.
        """
        import uuid

        enums = self.cli.client
        if gpu is None:
            variant, accelerator = enums.Variant.DEFAULT, enums.Accelerator.NONE
        elif gpu.upper() in GPUS:
            variant, accelerator = enums.Variant.GPU, enums.Accelerator(gpu.upper())
        else:
            raise ValueError(f"unknown GPU {gpu!r}: one of {', '.join(GPUS)}")
        try:
            res = self._call(self.client.assign, uuid.uuid4(), variant, accelerator)
        except ColabError as exc:
            if getattr(exc, "status", 0) != 400 or gpu is None:
                raise
            raise AssignRefused(f"Colab refused a {gpu.upper()} runtime (HTTP 400): no quota or "
                                "compute units for it on this account; try another --gpu, or "
                                "none for a CPU runtime") from None
        info = res.runtime_proxy_info
        return Runtime(endpoint=res.endpoint,
                       accelerator=_name(getattr(res, "accelerator", accelerator)),
                       variant=_name(variant), shape="STANDARD", proxy_url=_proxy_url(info.url),
                       proxy_token=info.token,
                       expires_at=time.time() + _lifetime(info.token_expires_in_seconds))

    def keep_alive(self, endpoint: str) -> None:
        """Tell Colab the runtime ``endpoint`` is in use (``GET /tun/m/ENDPOINT/keep-alive/``),
        as Colab's VS Code extension does every 5 minutes for a runtime in use.

        Raises:
            NotSignedIn, ColabError: as :meth:`runtimes`.
        """
        from urllib.parse import quote, urljoin

        url = urljoin(self.client.colab_domain, f"/tun/m/{quote(endpoint, safe='')}/keep-alive/")
        # Not in the CLI's client (0.7.5): the same authorized session, the extension's request
        r = self._call(self.session.get, url, headers=dict([KEEP_ALIVE_HEADER]),
                       params={"authuser": "0"})
        if r.status_code in (401, 403):
            raise NotSignedIn(f"Colab refused the sign-in (HTTP {r.status_code}): run "
                              "`colabtui colab login` again")
        if r.status_code == 404:
            raise RuntimeGone(f"runtime {endpoint} is no longer assigned to your account")
        if not 200 <= r.status_code < 300:
            raise ColabError(f"Colab answered HTTP {r.status_code} to a keep-alive of {endpoint}")

    def compute_units(self) -> tuple[float, float] | None:
        """``(balance, consumption per hour)`` in compute units (``GET /tun/m/ccu-info``), or
        ``None`` when the account has no such figures (Colab answers 4xx for them).

        Raises:
            NotSignedIn, ColabError: as :meth:`runtimes`, for anything but a 4xx.
        """
        try:
            info = self._call(self.client.get_consumption_user_info)
        except NotSignedIn:
            raise
        except ColabError as exc:
            if 400 <= getattr(exc, "status", 0) < 500:
                return None
            raise
        return float(info.paid_compute_units_balance), float(info.consumption_rate_hourly)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import requests
        from colab_cli.client import ColabRequestError, TooManyAssignmentsError
        from google.auth.exceptions import RefreshError, TransportError
        from pydantic import ValidationError

        try:
            return fn(*args, **kwargs)
        except RefreshError as exc:
            if getattr(exc, "retryable", False):  # Google's token endpoint failed, not us
                raise ColabError("Google's sign-in service did not refresh the Colab sign-in "
                                 "(a server error): try again in a minute") from None
            raise NotSignedIn("Google refused to refresh the Colab sign-in (expired or "
                              "revoked): run `colabtui colab login` again") from None
        except TooManyAssignmentsError:
            raise AssignRefused("Colab refused a new runtime (HTTP 412): too many runtimes "
                                "assigned already, or a usage or capacity limit; release one "
                                "(`colabtui colab list`, `colabtui colab release`), or wait and "
                                "try again") from None
        except ColabRequestError as exc:
            status = getattr(exc.response, "status_code", 0) or 0
            if status in (401, 403):
                raise NotSignedIn(f"Colab refused the sign-in (HTTP {status}): run "
                                  "`colabtui colab login` again") from None
            err = ColabError(f"Colab answered HTTP {status} {getattr(exc.response, 'reason', '')}"
                             .rstrip() + ": try again in a minute")
            err.status = status
            raise err from None
        except (requests.RequestException, TransportError) as exc:
            raise ColabError(f"cannot reach Colab: {type(exc).__name__}: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ColabError(f"Colab's answer did not parse with google-colab-cli (at {where}: "
                             f"{first.get('msg', 'invalid')}; a newer Colab answer? upgrade "
                             "google-colab-cli)") from None
        except Exception as exc:  # noqa: BLE001 — a hostile or broken answer deep in the CLI
            raise ColabError(f"Colab's answer could not be read ({type(exc).__name__})") \
                from None


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))


MAX_TOKEN_LIFETIME_S = 7 * 86400.0
"""Longest proxy-token lifetime believed, seconds (a week); Colab's are about an hour."""


def _lifetime(seconds: Any) -> float:
    """``tokenExpiresInSeconds`` as a usable figure: within [0, a week]; a value that is not a
    finite number counts as already expired (the next use lists again)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return min(max(value, 0.0), MAX_TOKEN_LIFETIME_S) if value == value else 0.0


def _proxy_url(url: Any) -> str:
    """The proxy URL without its trailing ``/``, or ``""`` for one that is not a plain
    ``http(s)://`` URL of printable ASCII (a request to it then says so)."""
    text = str(url).rstrip("/")
    ok = text.startswith(("https://", "http://")) and text.isascii() and text.isprintable() \
        and " " not in text
    return text if ok else ""
