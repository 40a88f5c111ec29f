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

import os
import time
from dataclasses import dataclass
from typing import Any

from colabtui.colab.errors import ColabCliMissing, ColabError, NotSignedIn

DOMAIN_ENV = "COLABTUI_COLAB_DOMAIN"
API_ENV = "COLABTUI_COLAB_API"
TOKEN_URI_ENV = "COLABTUI_GOOGLE_TOKEN_URI"


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
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2.credentials import Credentials

    path = cli.auth.TOKEN_CONFIG_PATH
    if not os.path.exists(path):
        raise NotSignedIn(f"not signed in to Colab on this machine ({path} does not exist): "
                          "run `colabtui colab login`")
    try:
        creds = Credentials.from_authorized_user_file(path, cli.auth.PUBLIC_SCOPES)
    except (OSError, ValueError) as exc:
        raise NotSignedIn(f"the Colab sign-in in {path} cannot be read ({exc}): run "
                          "`colabtui colab login` again") from None
    if os.environ.get(TOKEN_URI_ENV):
        creds = creds.with_token_uri(os.environ[TOKEN_URI_ENV])
    return AuthorizedSession(creds)


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
        cli = _cli()
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
                        proxy_url=a.runtime_proxy_info.url.rstrip("/"),
                        proxy_token=a.runtime_proxy_info.token,
                        expires_at=now + a.runtime_proxy_info.token_expires_in_seconds)
                for a in listed]

    def release(self, endpoint: str) -> None:
        """Unassign the runtime ``endpoint`` (``/tun/m/unassign/ENDPOINT``): Colab stops it and
        its disk is gone. Only ever called on the user's explicit, confirmed request.

        Raises:
            NotSignedIn, ColabError: as :meth:`runtimes`.
        """
        self._call(self.client.unassign, endpoint)

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

    def _call(self, fn: Any, *args: Any) -> Any:
        import requests
        from colab_cli.client import ColabRequestError
        from google.auth.exceptions import RefreshError, TransportError
        from pydantic import ValidationError

        try:
            return fn(*args)
        except RefreshError as exc:
            raise NotSignedIn(f"Google refused to refresh the Colab sign-in ({exc}): run "
                              "`colabtui colab login` again") from None
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
        except (ValidationError, ValueError) as exc:
            raise ColabError(f"Colab's answer did not parse: {str(exc)[:200]}") from None


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))
