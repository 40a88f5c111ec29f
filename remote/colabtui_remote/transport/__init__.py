"""The transport wing: how the laptop reaches a run.

- :mod:`.source`: :class:`~.source.RunSource`, the one protocol every transport reads the run
  through (status snapshot, metrics after a sequence number, commands, checkpoint list).
- :mod:`.http`: wire protocol v1 over HTTP (the API, the stdlib server, ``serve()``, the
  opt-in cloudflared tunnel).
- :mod:`.mailbox`: the same protocol through files in a folder (a mounted Drive, a synced
  folder, or Drive through its API).

Transports import the schema, the command book, the metrics store, the checkpoint wing's
atomic write and the Drive library; never the Monitor.
"""

from .source import RunSource

__all__ = ["RunSource"]
