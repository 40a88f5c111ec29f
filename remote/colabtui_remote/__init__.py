"""colabtui_remote: the notebook side of colabtui.

``Monitor`` is the one object a training loop talks to; see :mod:`colabtui_remote.monitor`.
Only the standard library is imported here; torch is imported when a checkpoint is taken,
``pynvml`` (nvidia-ml-py) when GPU statistics are sampled.
"""

from .monitor import Monitor
from .schema import PROTOCOL_VERSION

__all__ = ["Monitor", "PROTOCOL_VERSION", "__version__"]

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("colabtui-remote")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"
