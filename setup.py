"""What pyproject.toml cannot say: colabtui requires the colabtui-remote of its own version.

The version is written once, in ``remote/colabtui_remote/VERSION``: colabtui-remote reads it
(its pyproject.toml's dynamic version, and ``colabtui_remote.__version__``), colabtui reads it
(pyproject.toml's dynamic version), and here it pins the one to the other, so a laptop always
runs the wire schema of the notebook wheel that ``colabtui notebook`` builds.
"""

from pathlib import Path

from setuptools import setup

VERSION = (Path(__file__).parent / "remote" / "colabtui_remote" / "VERSION").read_text(
    encoding="utf-8").strip()

setup(install_requires=[
    "textual>=8.0",
    "httpx>=0.27",
    # httpcore tries to import sniffio on every request; without it each import attempt fails
    # and costs ~1 ms of CPU per poll (measured by bench/bench_app_cpu.py).
    "sniffio>=1.3",
    "platformdirs>=4",
    "tomli-w>=1.0",
    "tomli>=2; python_version < '3.11'",
    "numpy>=1.24",
    f"colabtui-remote=={VERSION}",
])
