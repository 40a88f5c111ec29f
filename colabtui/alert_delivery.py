"""How an alert reaches the user outside the app's toasts: the terminal bell, a desktop
notification through the terminal's own escape sequence, and the alert command.

No Textual here: the app hands in how to write to the terminal (its driver) and ring the bell,
and ``colabtui watch`` uses the same pieces on stdout.

Desktop notifications use the terminal's escape, not a library (none is a dependency, and a
library would notify the laptop the app runs on even when it runs over SSH, where the
terminal's escape reaches the screen the user looks at): OSC 9 (``ESC ] 9 ; text BEL``:
iTerm2, kitty, WezTerm, foot, Windows Terminal) or OSC 777 (``ESC ] 777 ; notify ; title ;
text BEL``: rxvt-unicode, foot). A terminal not known to show one (inside tmux or screen too,
which would swallow it) gets the bell instead, and the app says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Mapping

from colabtui.alerts import Alert, AlertRules
from colabtui.config import Settings

NOTIFY_TEXT_CHARS = 200
"""Longest text put in a notification escape, characters."""

MAX_COMMAND_OUTPUT = 64 * 1024
"""Bytes of the alert command's output read (the rest is discarded), bytes."""


def rules_from(settings: Settings) -> AlertRules:
    """The alert thresholds the settings give (``risk_warning_min`` in minutes → seconds)."""
    return AlertRules(watch=tuple(settings.alert_series), lost_after_s=settings.lost_after_s,
                      risk_warning_s=settings.risk_warning_min * 60.0,
                      gpu_memory_polls=settings.gpu_memory_polls)


def notify_escape_kind(env: Mapping[str, str], setting: str = "auto") -> str | None:
    """Which notification escape the terminal shows: ``"osc9"``, ``"osc777"`` or ``None``.

    Args:
        env: the environment (``os.environ``): ``TERM``, ``TERM_PROGRAM``, ``KITTY_WINDOW_ID``,
            ``WT_SESSION``, ``TMUX`` tell the terminal.
        setting: ``settings.desktop_notify``: ``"auto"`` decides from ``env``; ``"osc9"`` and
            ``"osc777"`` force one; ``"off"`` gives ``None``.
    """
    if setting in ("osc9", "osc777"):
        return setting
    if setting != "auto":
        return None
    term = env.get("TERM", "")
    if env.get("TMUX") or term.startswith(("screen", "tmux")):
        return None  # a multiplexer does not pass the escape on by default
    program = env.get("TERM_PROGRAM", "")
    if (program in ("iTerm.app", "WezTerm") or env.get("KITTY_WINDOW_ID")
            or term in ("xterm-kitty", "wezterm") or term.startswith("foot")
            or env.get("WT_SESSION")):
        return "osc9"
    if term.startswith("rxvt-unicode"):
        return "osc777"
    return None


def _escape_safe(text: str, drop: str = "") -> str:
    """``text`` on one line with nothing that could end or extend the escape (control
    characters, and the characters in ``drop``), cut to :data:`NOTIFY_TEXT_CHARS`."""
    return "".join(c if c.isprintable() and c not in drop else " " for c in text)[
        :NOTIFY_TEXT_CHARS]


def notify_escape(kind: str, title: str, text: str) -> str:
    """The escape sequence that shows a desktop notification.

    Args:
        kind: ``"osc9"`` or ``"osc777"``.
        title: the title (OSC 777 only; OSC 9 shows the text alone).
        text: the body, plain text (control characters are replaced by spaces).
    """
    if kind == "osc777":
        return f"\x1b]777;notify;{_escape_safe(title, ';')};{_escape_safe(text, ';')}\x07"
    return f"\x1b]9;{_escape_safe(text)}\x07"


class Delivery:
    """Rings the bell and shows a desktop notification for each alert, as the settings say.

    Args:
        settings: read at each alert (``bell``, ``desktop_notify``), so a changed config
            file applies at once.
        write: writes raw text to the terminal (the app's driver, or stdout).
        bell: rings the terminal bell.
        env: the environment that tells the terminal (default ``os.environ``).
    """

    def __init__(self, settings: Settings, write: Callable[[str], None],
                 bell: Callable[[], None], env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._write = write
        self._bell = bell
        self._env = os.environ if env is None else env
        self._said_fallback = False

    def deliver(self, alert: Alert) -> str | None:
        """Bell and desktop notification for ``alert`` (a cleared alert gets neither).

        Returns:
            A note to show once (the terminal shows no desktop notification: the bell rings
            instead), else ``None``.
        """
        if alert.cleared_at is not None:
            return None
        setting = self.settings.desktop_notify
        kind = notify_escape_kind(self._env, setting)
        note = None
        if kind is not None:
            self._write(notify_escape(kind, f"colabtui: {alert.kind}", alert.message))
        elif setting == "auto" and not self._said_fallback:
            self._said_fallback = True
            note = ("desktop notifications: this terminal is not known to show OSC 9 or OSC 777 "
                    "(or runs inside tmux/screen), so alerts ring the bell instead; set "
                    "desktop_notify = \"osc9\" to force them")
        if self.settings.bell or (kind is None and setting == "auto"):
            self._bell()
        return note


class AlertCommand:
    """Runs ``settings.alert_command`` for each alert, the alert as one JSON object on stdin
    (:meth:`Alert.to_json`), with a timeout, on the event loop (never blocking it).

    A missing program, a non-zero exit or a timeout gives one message (the first time; the
    next failure after a success gives one again); alerts go on being sent.

    Args:
        settings: read at each alert (``alert_command``, ``alert_command_timeout_s``).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._failing = False

    @property
    def configured(self) -> bool:
        return bool(self.settings.alert_command)

    async def run(self, alert: Alert) -> str | None:
        """Run the command for ``alert``; never raises :class:`Exception`.

        Returns:
            What went wrong, in words, when it should be said (once), else ``None``.
        """
        argv = list(self.settings.alert_command)
        if not argv:
            return None
        problem = await self._run(argv, json.dumps(alert.to_json(), allow_nan=False).encode())
        if problem is None:
            self._failing = False
            return None
        said, self._failing = self._failing, True
        return None if said else (f"alert command {argv[0]!r}: {problem} (said once; alerts go "
                                  "on)")

    async def _run(self, argv: list[str], data: bytes) -> str | None:
        timeout_s = self.settings.alert_command_timeout_s
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            return f"cannot start it: {exc.strerror or exc}"
        try:
            _, err = await asyncio.wait_for(proc.communicate(data), timeout_s)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return f"still running after {timeout_s:g} s: killed"
        except BaseException as exc:  # cancelled (the app quits), or a pipe that broke
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            if isinstance(exc, OSError):
                return f"could not hand it the alert: {exc.strerror or exc}"
            raise
        if proc.returncode != 0:
            tail = err[-MAX_COMMAND_OUTPUT:].decode("utf-8", "replace").strip().splitlines()
            last = "".join(c for c in (tail[-1] if tail else "") if c.isprintable())[:200]
            return f"exited with {proc.returncode}" + (f": {last}" if last else "")
        return None
