"""The runtime a run is on: its platform (Colab, Kaggle or other), its age, and the limits its
platform documents, for the status's ``runtime`` block and the save ahead of a known limit
(:class:`~.saving.Saver`'s ``limit_at``).

What is detected, and what is not:

* The platform, from the environment (:func:`detect_platform`).
* The runtime's age, from ``/proc`` (:func:`runtime_age_s`): the start of PID 1. A Colab or
  Kaggle notebook runs in a container started with its runtime, whose PID 1 starts then; on a
  VM or a laptop PID 1 is the init started at boot. A kernel restart ("Restart session") keeps
  PID 1, and the limit keeps counting, as the platforms count it (by the VM, not the kernel).
* Not detected: a paid Colab plan (nothing in the runtime tells it reliably), a Kaggle TPU
  session (9 h), how long a runtime is idle. The maximum is then the documented free one
  (12 h), and ``COLABTUI_RUNTIME_MAX_S`` sets the real one (86400 for 24 h on Colab Pro+).

The limits are the platforms' own words; none is guaranteed, and a runtime may end earlier.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

from . import schema

__all__ = ["COLAB_FREE_MAX_S", "COLAB_IDLE_TIMEOUT_S", "COLAB_PAID_MAX_S",
           "DEFAULT_LIMIT_MARGIN_S", "KAGGLE_IDLE_TIMEOUT_S", "KAGGLE_MAX_S", "MAX_S_ENV",
           "PLATFORMS", "RuntimeClock", "detect_platform", "runtime_age_s"]

log = logging.getLogger(__name__)

PLATFORMS = ("colab", "kaggle", "other")
"""What :func:`detect_platform` reports (the status's ``runtime.platform``)."""

COLAB_FREE_MAX_S = 12 * 3600.0
"""Colab, free runtimes: "notebooks can run for at most 12 hours, depending on availability
and your usage patterns" (research.google.com/colaboratory/faq.html, "What are the usage
limits of Colab?"), seconds."""

COLAB_PAID_MAX_S = 24 * 3600.0
"""Colab, paid plans: "up to 24 hours" of continuous runtime (Colab Pro+ on
colab.research.google.com/signup; "not guaranteed"), seconds."""

COLAB_IDLE_TIMEOUT_S = 90 * 60.0
"""Colab disconnects an idle runtime; the FAQ gives no figure ("Idle timeouts"), about
90 minutes is what users observe on free runtimes (longer on paid plans), seconds."""

KAGGLE_MAX_S = 12 * 3600.0
"""Kaggle: "12 hours execution time for CPU and GPU notebook sessions and 9 hours for TPU
notebook sessions" (kaggle.com/docs/notebooks, "Technical specifications"; older pages said
9 h for every session), seconds."""

KAGGLE_IDLE_TIMEOUT_S = 20 * 60.0
"""Kaggle stops an interactive session after about 20 minutes without activity
(kaggle.com/docs/notebooks), seconds."""

MAX_S_ENV = "COLABTUI_RUNTIME_MAX_S"
"""Environment variable: the runtime's maximum in seconds, in place of the documented one
(``86400``: a paid Colab plan's 24 h; ``0``: no save ahead of a limit)."""

DEFAULT_LIMIT_MARGIN_S = 900.0
"""How long before a known limit the Monitor saves (``Monitor(limit_margin_s=...)``), seconds."""

_NOTES = {
    "colab": "Colab: up to 12 h free, 24 h paid; idle ~90 min",
    "kaggle": "Kaggle: 12 h a CPU/GPU session (TPU 9 h); idle 20 min",
}
_LIMITS = {"colab": (COLAB_FREE_MAX_S, COLAB_IDLE_TIMEOUT_S),
           "kaggle": (KAGGLE_MAX_S, KAGGLE_IDLE_TIMEOUT_S)}


def detect_platform(env: Mapping[str, str] | None = None, *,
                    colab_module: bool | None = None) -> str:
    """The platform the runtime is on: ``"colab"``, ``"kaggle"`` or ``"other"``.

    Sources: Colab's runtime image sets ``COLAB_RELEASE_TAG`` (the image's release, e.g.
    ``release-colab_20240626-060133_RC00``) and ``COLAB_GPU`` (``"1"`` on a GPU runtime, also
    set on CPU ones), and ships the ``google.colab`` package; Kaggle's image sets
    ``KAGGLE_KERNEL_RUN_TYPE`` (``"Interactive"`` or ``"Batch"``) and ``KAGGLE_URL_BASE``
    (``https://www.kaggle.com``) in every notebook.

    Args:
        env: the environment to read (default ``os.environ``).
        colab_module: whether ``google.colab`` can be imported; ``None``: look (without
            importing it).
    """
    env = os.environ if env is None else env
    if env.get("KAGGLE_KERNEL_RUN_TYPE") or env.get("KAGGLE_URL_BASE"):
        return "kaggle"
    if env.get("COLAB_RELEASE_TAG") or env.get("COLAB_GPU") is not None:
        return "colab"
    if colab_module is None:
        try:
            colab_module = importlib.util.find_spec("google.colab") is not None
        except (ImportError, ValueError):  # no ``google`` package at all
            colab_module = False
    return "colab" if colab_module else "other"


def runtime_age_s(proc: str | os.PathLike = "/proc") -> float | None:
    """Seconds since the runtime started: ``/proc/uptime`` (seconds since boot) less PID 1's
    start (``/proc/1/stat`` field 22, clock ticks since boot; see proc(5)). Without a readable
    ``/proc/1/stat``, the time since boot; without ``/proc`` (macOS, Windows), ``None``.

    Args:
        proc: where procfs is mounted (a test passes a folder of its own).
    """
    root = Path(proc)
    try:
        uptime = float((root / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        stat = (root / "1" / "stat").read_text()
        # the name (field 2) is in parentheses and may hold spaces: count after the last ")"
        start_ticks = int(stat[stat.rindex(")") + 1:].split()[19])
        started = start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        started = 0.0
    age = uptime - started
    return age if math.isfinite(age) and age >= 0 else 0.0


def _max_from_env(env: Mapping[str, str]) -> tuple[bool, float | None]:
    """(set, seconds) from ``COLABTUI_RUNTIME_MAX_S``: seconds ``None`` for ``0`` (no limit);
    not set when missing, empty or not a number of seconds (said in the log)."""
    raw = env.get(MAX_S_ENV)
    if raw is None or not raw.strip():
        return False, None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        log.warning("colabtui_remote: %s=%r is not a number of seconds; ignored", MAX_S_ENV, raw)
        return False, None
    return True, value or None


class RuntimeClock:
    """The runtime of one session: its platform, its age and its limits, read once at the
    Monitor's start; the age then moves with ``time.monotonic()``.

    Args:
        margin_s: how long before the maximum the limit's save is due, seconds.
        now: ``time.monotonic()`` now, seconds.
        env: the environment (default ``os.environ``): the platform, ``COLABTUI_RUNTIME_MAX_S``.
        proc: where procfs is (see :func:`runtime_age_s`).
        colab_module: see :func:`detect_platform`.
    """

    def __init__(self, margin_s: float = DEFAULT_LIMIT_MARGIN_S, *, now: float,
                 env: Mapping[str, str] | None = None, proc: str | os.PathLike = "/proc",
                 colab_module: bool | None = None) -> None:
        env = os.environ if env is None else env
        self.platform = detect_platform(env, colab_module=colab_module)
        self.max_s, self.idle_timeout_s = _LIMITS.get(self.platform, (None, None))
        self.limit_note = _NOTES.get(self.platform)
        configured, max_s = _max_from_env(env)
        if configured:
            self.max_s = max_s
            self.limit_note = (self.limit_note + "; " if self.limit_note else "") + (
                f"max set by {MAX_S_ENV}")
        self.margin_s = max(0.0, float(margin_s))
        self._age0 = runtime_age_s(proc)
        self._t0 = now

    def age_s(self, now: float) -> float | None:
        """The runtime's age at ``now`` (``time.monotonic()``), seconds; None where unknown."""
        return None if self._age0 is None else self._age0 + max(0.0, now - self._t0)

    @property
    def save_at(self) -> float | None:
        """When the age plus the margin reaches the maximum, ``time.monotonic()`` seconds (in
        the past when it already has); None without a known maximum. With the age unknown it
        counts from the Monitor's start (a lower bound: the runtime is at least that old)."""
        if self.max_s is None:
            return None
        return self._t0 + self.max_s - self.margin_s - (self._age0 or 0.0)

    def info(self, now: float) -> schema.RuntimeInfo:
        """The status's ``runtime`` block at ``now`` (``time.monotonic()``)."""
        return schema.RuntimeInfo(platform=self.platform, age_s=self.age_s(now),
                                  max_s=self.max_s, idle_timeout_s=self.idle_timeout_s,
                                  limit_note=self.limit_note)
