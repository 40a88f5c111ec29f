"""Every error of the Drive library, and the mapping from what pydrive2, googleapiclient,
oauth2client, httplib2 and sockets raise to them. Imports nothing else of the package."""

from __future__ import annotations

import contextlib
import datetime as _dt
import http.client
from collections.abc import Iterator
from typing import Any

__all__ = ["INSTALL_HINT", "RATE_LIMIT_REASONS", "ChecksumMismatch", "DriveAuthError",
           "DriveBadResponse", "DriveError", "DriveNotFound", "DriveRateLimited",
           "DriveUnavailable", "FileTooLarge", "map_error", "remote_call", "require_pydrive2"]

RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
"""``reason`` values of a 403 that mean "slow down" rather than "not allowed" (Drive API docs,
"Resolve errors")."""

INSTALL_HINT = "pip install 'colabtui-remote[drive]'"


# ---------------------------------------------------------------------------------- errors


class FileTooLarge(OSError):
    """A file is larger than the caller's bound on what it reads (a mailbox file past its
    limit, a Drive file past ``max_bytes``)."""


class DriveError(OSError):
    """A Drive call failed. An ``OSError``, so code that handles storage failures handles it."""


class DriveNotFound(DriveError, FileNotFoundError):
    """The folder or file does not exist, is trashed, or is not shared with this account (Drive
    answers 404 for all of these). Also a ``FileNotFoundError``."""


class DriveAuthError(DriveError):
    """No credentials, credentials Drive no longer accepts (``invalid_grant``: revoked or
    expired), or a 401 after a refresh. The message says how to log in (again)."""


class DriveRateLimited(DriveError):
    """Drive asked to slow down (429, or 403 with reason ``rateLimitExceeded`` /
    ``userRateLimitExceeded``).

    Attributes:
        retry_after: seconds Drive asked to wait (its ``Retry-After`` header), or ``None`` when
            it did not say.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DriveUnavailable(DriveError):
    """Drive could not be reached (connection refused or reset, timeout, name not resolved) or
    answered with a 5xx."""


class DriveBadResponse(DriveError):
    """Drive answered something that does not parse or lacks a field we need."""


class ChecksumMismatch(DriveError):
    """The md5 Drive reports for a file differs from the md5 of the bytes on this side.

    Attributes:
        expected: the md5 hex digest that was expected (Drive's for a download, the local
            file's for an upload).
        actual: the md5 hex digest found.
    """

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


def require_pydrive2() -> None:
    """Check that the ``drive`` extra is installed.

    Raises:
        ImportError: pydrive2 or google-api-python-client is missing; the message says
            ``pip install 'colabtui-remote[drive]'``.
    """
    try:
        import googleapiclient  # noqa: F401
        import pydrive2  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"Google Drive support needs pydrive2: {INSTALL_HINT} "
                          f"({exc})") from exc



def _error_details(content: Any) -> tuple[str, str]:
    """``(reason, message)`` of a Drive JSON error body; empty strings when it has none."""
    try:
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        import json

        err = json.loads(text).get("error", {})
        if isinstance(err, str):  # OAuth-style {"error": "invalid_grant"}
            return err, ""
        errors = err.get("errors") or [{}]
        return str(errors[0].get("reason") or ""), str(err.get("message") or "")[:300]
    except (ValueError, AttributeError, TypeError):
        return "", ""


def _retry_after(resp: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (a number, or an HTTP date)."""
    value = resp.get("retry-after") if hasattr(resp, "get") else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def _from_http_error(err: Any, what: str, not_found: str | None) -> DriveError:
    status = int(getattr(err.resp, "status", 0) or 0)
    reason, message = _error_details(err.content)
    detail = f"{reason}: {message}" if reason and message else (reason or message or "no details")
    if status == 404:
        return DriveNotFound(not_found or f"{what}: not found on Drive ({detail})")
    if status == 429 or (status == 403 and reason in RATE_LIMIT_REASONS):
        retry_after = _retry_after(err.resp)
        wait = f"; Drive asks to wait {retry_after:g} s" if retry_after is not None else ""
        return DriveRateLimited(f"{what}: Drive says too many requests ({status} "
                                f"{reason or 'rate limited'}){wait}", retry_after=retry_after)
    if status == 401:
        return DriveAuthError(f"{what}: Drive rejected the login (401 {detail}) even after "
                              "refreshing it; log in to Drive again (colabtui drive login)")
    if status >= 500:
        return DriveUnavailable(f"{what}: Drive answered {status} ({detail}); try again later")
    if status < 400:
        return DriveBadResponse(f"{what}: unexpected answer {status} from Drive ({detail})")
    return DriveError(f"{what}: Drive answered {status} ({detail})")


def map_error(exc: BaseException, what: str, not_found: str | None = None) -> DriveError | None:
    """The :class:`DriveError` for an exception raised by pydrive2, googleapiclient,
    oauth2client, httplib2 or a socket; ``None`` for anything else (a bug: let it through)."""
    if isinstance(exc, DriveError):
        return exc
    import httplib2
    from googleapiclient.errors import HttpError
    from oauth2client.client import AccessTokenRefreshError
    from pydrive2.auth import AuthError
    from pydrive2.files import ApiRequestError

    if isinstance(exc, ApiRequestError) and exc.args and isinstance(exc.args[0], HttpError):
        exc = exc.args[0]
    elif isinstance(exc, ValueError) and isinstance(exc.__context__, HttpError):
        exc = exc.__context__  # pydrive2 could not parse a non-JSON error body (a proxy's page)
    if isinstance(exc, HttpError):
        return _from_http_error(exc, what, not_found)
    if isinstance(exc, (AccessTokenRefreshError, AuthError)):
        status = getattr(exc, "status", None)
        if isinstance(status, int) and status >= 500:
            return DriveUnavailable(f"{what}: Google's token server answered {status}; try "
                                    "again later")
        return DriveAuthError(f"{what}: Google no longer accepts the saved Drive login "
                              f"({str(exc)[:200]}); log in to Drive again (colabtui drive "
                              "login; in Colab, authenticate_user())")
    if isinstance(exc, (httplib2.HttpLib2Error, http.client.HTTPException, OSError)):
        return DriveUnavailable(f"{what}: cannot reach Drive ({type(exc).__name__}: "
                                f"{str(exc)[:200] or 'no details'})")
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return DriveBadResponse(f"{what}: Drive's answer does not parse ({type(exc).__name__}: "
                                f"{str(exc)[:200]})")
    return None


@contextlib.contextmanager
def remote_call(what: str, not_found: str | None = None) -> Iterator[None]:
    """Map what a Drive call raises to :class:`DriveError` (see :func:`map_error`)."""
    try:
        yield
    except DriveError:
        raise
    except Exception as exc:
        mapped = map_error(exc, what, not_found)
        if mapped is None:
            raise
        raise mapped from exc
