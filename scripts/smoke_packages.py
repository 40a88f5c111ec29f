"""The smoke test of colabtui and colabtui-remote installed from their wheels (run by
scripts/check_packages.sh, in the fresh venv, from outside the source tree).

    python scripts/smoke_packages.py VERSION

It checks ``colabtui --version``; ``colabtui notebook`` (the checking cell); ``colabtui
notebook --drive-dir`` (the wheel put together from the installed files, then installed with
pip into a folder of its own and imported from there); and a Monitor serving on loopback read by
``colabtui connect`` and ``colabtui status --json``. One line per check; exits 1 on the first
that fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT_S = 120
SERVE = """
import sys, time
from colabtui_remote import Monitor
mon = Monitor(run="smoke", handle_sigterm=False)
for step in range(3):
    mon.log(step, loss=1.0 / (step + 1))
    mon.at_step_boundary(step + 1)
mon.serve(port=0, token=sys.argv[1])
sys.stdout.flush()
time.sleep(120)
"""


def run(*cmd: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env={**os.environ, **(env or {})})
    if done.returncode:
        sys.exit(f"FAILED: {' '.join(cmd)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def main() -> None:
    version = sys.argv[1]
    line = run("colabtui", "--version").strip()
    print(line)
    check(line.startswith(f"colabtui {version} (colabtui-remote {version}, protocol v"),
          "colabtui --version names both versions, the same one")

    cell = run("colabtui", "notebook")
    check(f"VERSION = {version!r}" in cell and "not on PyPI" in cell,
          "colabtui notebook prints the checking cell")

    with tempfile.TemporaryDirectory() as tmp:
        drive = Path(tmp) / "My Drive" / "colabtui"
        drive.mkdir(parents=True)
        cell = run("colabtui", "notebook", "--drive-dir", str(drive))
        wheel = drive / f"colabtui_remote-{version}-py3-none-any.whl"
        check(f"WHEEL = '/content/drive/MyDrive/colabtui/{wheel.name}'" in cell
              and wheel.is_file(), f"colabtui notebook --drive-dir put {wheel.name} there")
        target = Path(tmp) / "target"
        run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--disable-pip-version-check", "--target", str(target), str(wheel))
        where = run(sys.executable, "-c", "import colabtui_remote as r; print(r.__version__, "
                    "r.__file__)", env={"PYTHONPATH": str(target)}).split()
        check(where[0] == version and where[1].startswith(str(target)),
              "that wheel installs with pip and imports")

    token = "smoke-token-0123456789abcdef"
    server = subprocess.Popen([sys.executable, "-u", "-c", SERVE, token],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = server.stdout.readline()
        check(printed.startswith("colabtui connect http://127.0.0.1:"),
              f"a Monitor serves on loopback: {printed.strip()}")
        url = printed.split()[2]
        run("colabtui", "connect", url, "--token", token, "--label", "smoke")
        status = json.loads(run("colabtui", "status", "--json"))
        (session,) = status["sessions"]
        print(f"status: {session['label']} {session['state']} step {session['step']}")
        check((session["state"], session["step"]) == ("running", 3),
              "colabtui status reads it: running at step 3")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
