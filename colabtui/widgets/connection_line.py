"""The connection line of a session's panel: ``● connected``, ``◌ no answer for 12s``,
``✖ unreachable for 3m``, ``✖ token refused: …``, or, for a run that ended,
``○ finished; server closed 2m ago``."""

from __future__ import annotations

from rich.text import Text

from colabtui.figures import age_s
from colabtui.formatting import fmt_duration

__all__ = ["ERROR_TITLES", "connection_text"]

ERROR_TITLES = {
    "token_refused": "token refused",
    "protocol": "protocol mismatch",
    "bad_response": "bad response",
    "internal": "internal error",
}


def connection_text(kind: str, message: str, since: float | None, now: float,
                    ended: str | None = None, *, silent_s: float | None = None,
                    note: str | None = None, hint: str | None = None) -> Text:
    """The connection line: ``connected``, ``unreachable for 3m``, ``token refused``...

    Args:
        kind: ``"connected"``, ``"waiting"``, or a :class:`SessionError` kind (``"internal"``:
            something failed inside the poll).
        message: the error's words (untrusted; shown as plain text).
        since: local Unix time the current state began, seconds.
        now: local Unix time, seconds.
        ended: the session's last known state when it had ended (stopped, finished,
            failed): a server that then goes away is expected, not an alarm.
        silent_s: seconds since the last good poll, when that is too long ago to say
            "connected" (``None`` otherwise): ``◌ no answer for 12s``.
        note: a remark shown after the state (history writes waiting for a locked file).
        hint: what the user can do about a session that is not connected, shown before the
            error's words, which may be cut off (``R relaunches it``); not while connected.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    if ended is not None and kind == "unreachable":
        gone = fmt_duration(age_s(since, now)) if since is not None else "a moment"
        text.append(f"○ {ended}; server closed {gone} ago", style="dim")
        return text
    if kind == "connected" and silent_s is not None:
        text.append(f"◌ no answer for {fmt_duration(silent_s)}", style="bold yellow")
    elif kind == "connected":
        text.append("● connected", style="bold green")
    elif kind == "waiting":
        text.append("○ connecting…", style="dim")
    elif kind == "unreachable":
        gone = fmt_duration(age_s(since, now)) if since is not None else "a moment"
        text.append(f"✖ unreachable for {gone}", style="bold yellow")
    else:
        text.append(f"✖ {ERROR_TITLES.get(kind, kind)}", style="bold red")
    if hint and kind not in ("connected", "waiting"):
        text.append(f" · {hint}", style="bold cyan")
    if message:
        text.append(": ", style="dim")
        text.append(message, style="dim")  # from the client/session: plain text
    if note:
        text.append(" · ", style="dim")
        text.append(note, style="yellow")
    return text
