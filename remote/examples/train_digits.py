"""Train a small network on scikit-learn's digits data with a colabtui Monitor (CPU, real data).

    python remote/examples/train_digits.py --port PORT --token TOKEN --checkpoint-dir DIR \
        --steps N --lr LR --label LABEL [--autosave-every S]

The code lives in ``colabtui_remote.examples.digits`` so that ``colabtui demo`` can run it from an
installed package; this file is the command line the README shows.
"""

import sys

from colabtui_remote.examples.digits import main

if __name__ == "__main__":
    sys.exit(main())
