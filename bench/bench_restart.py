"""Restart to first frame with history: seconds from starting ``python -m colabtui`` in a real
terminal (a private tmux server, 160x48) until all three panels show their curves from the
ledger.

The ledger holds three runs of 1,000,000 ``loss`` points each (``bench_ledger_startup.fill``),
and the config names their three sessions at loopback ports where nothing answers (a restart
while the runtimes are still coming up, or gone): what the panels show first comes from the
history file alone. The frame counts when the pane shows each run's label and three chart
titles (``━ loss``).

Reference, measured in the same run and the same way: a trivial Textual app (a Static and a
Footer) to its first frame: the floor any Textual app pays on this machine. Target (issue 13):
≤ 1 s.

    python bench/bench_restart.py [--repeat 5] [--points 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_app_cpu import FLOOR_APP  # noqa: E402
from bench_demo_first_frame import first_frame  # noqa: E402
from bench_ledger_startup import fill  # noqa: E402

from colabtui.config import Config, save_config  # noqa: E402

TARGET_S = 1.0



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--points", type=int, default=1_000_000, help="points per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        start = time.perf_counter()
        sessions = fill(data / "ledger.sqlite3", 3, args.points)
        print(f"fill: 3 runs × {args.points:,} points in {time.perf_counter() - start:.1f} s")
        config = Path(tmp) / "config.toml"
        save_config(Config(sessions=sessions), config)
        trivial = Path(tmp) / "trivial.py"
        trivial.write_text(FLOOR_APP)
        env = {"COLABTUI_DATA_DIR": str(data), "COLABTUI_CONFIG_DIR": f"{tmp}/config",
               "PYTHONPATH": os.pathsep.join(sys.path)}
        shown = [s.label for s in sessions]

        def ready(pane: str) -> bool:
            return pane.count("━ loss") >= 3 and all(label in pane for label in shown)

        app = [first_frame([sys.executable, "-m", "colabtui", "--config", str(config)], env,
                           ready) for _ in range(args.repeat)]
        ref = [first_frame([sys.executable, str(trivial)], env, "a trivial Textual app")
               for _ in range(args.repeat)]
    med, ref_med = statistics.median(app), statistics.median(ref)
    ok = med <= TARGET_S
    print(f"bench_restart: `python -m colabtui` in tmux 160x48, 3 panels with 3 × "
          f"{args.points:,} points of history, start → every curve on screen "
          f"(median of {args.repeat})")
    print(f"  app            {med:5.2f} s   (best {min(app):.2f}, worst {max(app):.2f})")
    print(f"  reference: trivial Textual app {ref_med:5.2f} s   ratio {med / ref_med:5.2f}x")
    print(f"  {'PASS' if ok else 'FAIL'} (target: restart to first frame with history "
          f"≤ {TARGET_S:g} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
