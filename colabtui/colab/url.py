"""``colab://ENDPOINT[/path]`` session URLs: a Monitor's mailbox folder on a Colab runtime's
own disk, reached through the runtime proxy.

``ENDPOINT`` is the runtime's id in Colab's assignment list (``colabtui colab list``); the path
is the mailbox folder relative to the runtime's Jupyter root, which on Colab is ``/`` (the CLI's
``colab files ls`` lists ``content`` by default): ``mon.serve_mailbox("/content/colabtui")``
is ``colab://ENDPOINT/content/colabtui``, the default path.
"""

from __future__ import annotations

import re

SCHEME = "colab://"

DEFAULT_MAILBOX = "content/colabtui"
"""Mailbox folder (from the Jupyter root) when the URL names none: where
``mon.serve_mailbox("/content/colabtui")``, the README's Colab cell, writes."""

_ENDPOINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_PART = re.compile(r"^[A-Za-z0-9._ -]{1,255}$")


def is_colab_url(url: object) -> bool:
    """True for a ``colab://`` URL (well formed or not: :func:`parse_colab_url` says)."""
    return isinstance(url, str) and url.strip().lower().startswith(SCHEME)


def parse_colab_url(url: str) -> tuple[str, str]:
    """``(endpoint, mailbox path)`` of a ``colab://`` URL; the path without leading or trailing
    ``/``, :data:`DEFAULT_MAILBOX` when the URL has none.

    Raises:
        ValueError: not a ``colab://`` URL, an endpoint that is not Colab's kind of id, or a
            path part that is empty, ``.``/``..`` or holds other characters than letters,
            digits, ``._ -``.
    """
    text = url.strip()
    if not is_colab_url(text):
        raise ValueError(f"{text!r} is not a colab:// URL")
    rest = text[len(SCHEME):]
    if rest.startswith("/"):  # colab:///content: no endpoint, not "content"
        raise ValueError(f"{text!r} names no runtime endpoint (see `colabtui colab list`)")
    rest = rest.rstrip("/")
    endpoint, _, path = rest.partition("/")
    if not _ENDPOINT.fullmatch(endpoint):
        raise ValueError(f"{text!r}: {endpoint!r} is not a runtime endpoint (see "
                         "`colabtui colab list`)")
    parts = [p for p in path.split("/") if p] if path else DEFAULT_MAILBOX.split("/")
    for part in parts:
        if part in (".", "..") or not _PART.fullmatch(part):
            raise ValueError(f"{text!r}: {part!r} is not a folder name on the runtime")
    return endpoint, "/".join(parts)


def colab_url(endpoint: str, path: str = DEFAULT_MAILBOX) -> str:
    """The normal form: ``colab://ENDPOINT/path``."""
    return f"{SCHEME}{endpoint}/{path.strip('/')}"
