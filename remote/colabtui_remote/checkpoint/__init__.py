"""The checkpoint wing: durable checkpoints of a run, copies beyond the runtime's disk, resume.

Bottom to top (each module imports only from those below it):

- :mod:`.errors`: every checkpoint exception and warning.
- :mod:`.fs`: the one atomic write (temp name, fsync, ``os.replace``, fsync of the folder),
  hashing, filesystem probes; :mod:`.manifest`: the one manifest format (names, parse,
  write); :mod:`.state`: what a checkpoint holds (capture on the training thread, restore;
  every torch import), with :mod:`.trackable` (what can be tracked, by kind) and
  :mod:`.state_dicts` (fitting a saved state dict to its module or optimizer).
- :mod:`.lock`: a folder's writer lock; :mod:`.reclaim`: what killed saves leave, removed by the
  next good save (the one rule, for every destination).
- :mod:`.replica`: the thread that copies checkpoints to a destination (:mod:`.remote`: the
  protocol); :mod:`.mount` (a mounted folder, and the local fallback while it is gone) and
  :mod:`.drive` (``gdrive://``) are its destinations; :mod:`.writer`: the :class:`Checkpointer`,
  durable local writes.
- :mod:`.destinations`: which writer and replica a folder or URL gets.
- :mod:`.resume`: the one place that decides which checkpoint to load, local or remote.

torch is imported only when a checkpoint is captured, written or loaded.
"""

from .destinations import CheckpointDestination, open_checkpoints, open_destination
from .errors import CheckpointError, CheckpointWarning, ManifestUnreadable
from .fs import FolderIO
from .manifest import MANIFEST, read_manifest
from .reclaim import Reclaimed
from .resume import download_newest, fetch_newest, find_resumable, load_resumable
from .state import capture_state, load_state, restore, saved_values
from .writer import Checkpointer

__all__ = ["MANIFEST", "CheckpointDestination", "CheckpointError", "CheckpointWarning",
           "Checkpointer", "FolderIO", "ManifestUnreadable", "Reclaimed", "capture_state",
           "download_newest", "fetch_newest", "find_resumable", "load_resumable", "load_state",
           "open_checkpoints", "open_destination", "read_manifest", "restore", "saved_values"]
