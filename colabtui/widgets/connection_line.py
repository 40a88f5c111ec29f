"""The connection line of a session's panel: ``● connected``, ``✖ unreachable for 3m``,
``✖ token refused: …``, or, for a run that ended, ``○ finished; server closed 2m ago``."""

from __future__ import annotations

from rich.text import Text

from colabtui.figures import age_s
from colabtui.formatting import fmt_duration

__all__ = ["ERROR_TITLES", "connection_text"]

ERROR_TITLES = {
    "token_refused": "token refused",
    "protocol": "protocol mismatch",
    "bad_response": "bad response",
}


def connection_text(kind: str, message: str, since: float | None, now: float,
                    ended: str | None = None) -> Text:
    """The connection line: ``connected``, ``unreachable for 3m``, ``token refused``...

    Args:
        kind: ``"connected"``, ``"waiting"``, or a :class:`SessionError` kind.
        message: the error's words (untrusted; shown as plain text).
        since: local Unix time the current state began, seconds.
        now: local Unix time, seconds.
        ended: the session's last known state when it had ended (stopped, finished,
            failed): a server that then goes away is expected, not an alarm.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    if ended is not None and kind == "unreachable":
        gone = fmt_duration(age_s(since, now)) if since is not None else "a moment"
        text.append(f"○ {ended}; server closed {gone} ago", style="dim")
        return text
    if kind == "connected":
        text.append("● connected", style="bold green")
    elif kind == "waiting":
        text.append("○ connecting…", style="dim")
    elif kind == "unreachable":
        gone = fmt_duration(age_s(since, now)) if since is not None else "a moment"
        text.append(f"✖ unreachable for {gone}", style="bold yellow")
    else:
        text.append(f"✖ {ERROR_TITLES.get(kind, kind)}", style="bold red")
    if message:
        text.append(": ", style="dim")
        text.append(message, style="dim")  # from the client/session: plain text
    return text
