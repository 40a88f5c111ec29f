"""colabtui_remote: the notebook side of colabtui.

``Monitor`` is the one object a training loop talks to; see :mod:`colabtui_remote.monitor`.
Only the standard library is imported here; torch is imported when a checkpoint is taken,
``pynvml`` (nvidia-ml-py) when GPU statistics are sampled, pydrive2 when Drive is reached.

The wings (each folder's ``__init__`` says more; ARCHITECTURE.md draws them):

- :mod:`.schema` (wire protocol v1) on :mod:`.wire` (JSON on the wire), with :mod:`.commands`,
  :mod:`.metrics`, :mod:`.gpu` beside it;
- :mod:`.checkpoint`: durable checkpoints, replicas beyond the runtime's disk, resume;
- :mod:`.drive`: a plain Google Drive v2 library on pydrive2;
- :mod:`.transport`: how the laptop reaches a run (HTTP, the mailbox folder);
- :mod:`.distributed`: a torchrun job as one session (rank 0 serves; saves and stops agreed at
  the step boundary; sharded checkpoints through torch.distributed.checkpoint);
- :mod:`.monitor` at the top, orchestrating them.
"""

import os

from .checkpoint.errors import CheckpointError, CheckpointWarning, ManifestUnreadable
from .drive.errors import DriveError
from .monitor import Monitor
from .schema import PROTOCOL_VERSION
from .transport.http.server import PortInUse
from .wire import SchemaError

__all__ = ["PROTOCOL_VERSION", "CheckpointError", "CheckpointWarning", "DriveError",
           "ManifestUnreadable", "Monitor", "PortInUse", "SchemaError", "__version__"]

# The one place the version is written (both pyproject.toml files read it too): the same
# answer from a source tree, an editable install and a wheel.
with open(os.path.join(os.path.dirname(__file__), "VERSION"), encoding="utf-8") as _f:
    __version__ = _f.read().strip()
