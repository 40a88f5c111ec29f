"""Every exception and warning of the checkpoint wing, and the one way a skipped checkpoint is
warned about. Imports nothing of the package: every other checkpoint module stands on this."""

from __future__ import annotations

import logging
import warnings

__all__ = ["CheckpointError", "CheckpointWarning", "ManifestUnreadable",
           "ReplicaChecksumError", "warn_skipped"]

logger = logging.getLogger("colabtui_remote.checkpoint")


class CheckpointError(Exception):
    """A checkpoint cannot be captured, read or restored; the message says which part and why."""


class ManifestUnreadable(CheckpointError):
    """A ``manifest.json`` exists but does not parse (not JSON, not a colabtui manifest, or an
    entry is malformed); the message says where and which field."""


class ReplicaChecksumError(OSError):
    """The copy at a replica destination does not have the local file's md5 (or size): not
    verified, retried."""


class CheckpointWarning(UserWarning):
    """A checkpoint, temporary file or manifest was skipped or ignored on resume."""


def warn_skipped(message: str, *, log: logging.Logger = logger, stacklevel: int = 3) -> None:
    """Warn about a skipped checkpoint once: a :class:`CheckpointWarning`, and the same line
    on ``log`` only where logging is set up (with no logging configured, a notebook or a
    script, Python would print a logged warning too, and the user would read it twice)."""
    if log.hasHandlers():
        log.warning("%s", message)
    warnings.warn(message, CheckpointWarning, stacklevel=stacklevel)
