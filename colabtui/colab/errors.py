"""What can go wrong between this machine and a Colab runtime, as ``OSError`` kinds (the mailbox
storage protocol raises ``OSError`` only), each with a message that says what to do.

``session_error_kind`` is the :class:`~colabtui.client.SessionError` kind a panel shows.
"""

from __future__ import annotations

INSTALL_LINE = "pip install --ignore-requires-python 'google-colab-cli==0.7.5'"
"""How to install the Colab CLI on Python 3.10/3.11: its metadata asks for Python >= 3.12, but
every module of 0.7.5 imports and runs on 3.11 (the test suite runs it there); on 3.12+,
``pip install 'colabtui[colab]'`` is enough."""


class ColabError(OSError):
    """A Colab account or runtime problem; the message says what and what to do."""

    session_error_kind = "unreachable"


class ColabBadAnswer(ColabError):
    """A runtime (through the proxy) or Colab answered something that is not what the API
    answers: not JSON, not base64, larger than the bound."""

    session_error_kind = "bad_response"


class ColabCliMissing(ColabError):
    """``google-colab-cli`` is not installed in this Python."""

    def __init__(self) -> None:
        super().__init__(f"the Colab CLI is not installed here: {INSTALL_LINE}")


class NotSignedIn(ColabError):
    """No Colab sign-in on this machine, or Google refused to refresh it."""

    session_error_kind = "token_refused"


class RuntimeGone(ColabError, FileNotFoundError):
    """The runtime is no longer assigned to the account (released, timed out or ended)."""


class ProxyRefused(ColabError):
    """The runtime proxy refused our token twice in a row, a fresh one included."""

    session_error_kind = "token_refused"


class AssignRefused(ColabError):
    """Colab refused a new runtime: too many assignments already, no quota or compute units for
    the accelerator, or a capacity limit; the message says which and what to do."""


class LaunchFailed(ColabError):
    """A script could not be started on a runtime; the message has the runtime's own words."""
