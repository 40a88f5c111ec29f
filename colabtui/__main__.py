"""``python -m colabtui``: the same as the ``colabtui`` command."""

import sys

from colabtui.cli import main

if __name__ == "__main__":
    sys.exit(main())
