"""Framework integrations: one callback lets a framework's own training loop be watched, saved
and stopped from the laptop, with the framework's own checkpoints made durable, listed,
replicated and resumed from.

- :mod:`.transformers`: the Hugging Face ``Trainer`` (``colabtui-remote[transformers]``);
- :mod:`.lightning`: ``lightning.pytorch.Trainer`` (``colabtui-remote[lightning]``);
- :mod:`.keras`: Keras 3 ``model.fit`` (``colabtui-remote[keras]``).

Each module imports its framework when it is imported itself; this package imports none, so
``import colabtui_remote`` never pulls a framework in. :mod:`.bridge` is what the three share.
"""

from .bridge import IntegrationError

__all__ = ["IntegrationError"]
