"""Run every benchmark under bench/ and print each figure with the command that produced it.

    python bench/run_all.py            # all of them
    python bench/run_all.py log memory # those whose file name contains one of the words
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(word in s.stem for word in argv)]
    failed = 0
    for script in scripts:
        cmd = [sys.executable, str(script.relative_to(HERE.parent))]
        print(f"$ python {cmd[1]}", flush=True)
        start = time.monotonic()
        rc = subprocess.run(cmd, cwd=HERE.parent).returncode
        print(f"  ({time.monotonic() - start:.0f} s, exit {rc})\n", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
