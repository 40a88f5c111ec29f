"""The notebook cell that puts colabtui-remote on a runtime, as ``colabtui notebook`` prints it.

Two cells, both plain Python (no ``!`` shell lines: a failing ``!pip`` does not stop a cell,
an exception does), each of which works pasted as it is, with nothing to fill in:

- :func:`install_cell`: mounts Drive in Colab when the wheel is on it, stops with a clear
  ``FileNotFoundError`` when the wheel is not there, installs it with pip (stops with pip's own
  words when pip fails), and checks that the version imported is this one;
- :func:`check_cell`, for when no wheel was put anywhere: colabtui-remote is not on PyPI, so
  the cell cannot install it; it checks whether it is installed already and otherwise stops,
  saying what to run on the laptop.

Both end with the lines that start the Monitor, as comments: they name your model and loop.
"""

from __future__ import annotations

import posixpath

COLAB_MOUNT = "/content/drive"
"""Where Colab's ``drive.mount()`` puts Google Drive (My Drive is ``MyDrive`` below it)."""

EXTRAS = ("gpu", "drive")
"""The extras the cell installs: NVML's GPU statistics (nvidia-ml-py) and gdrive:// folders
(pydrive2), both from PyPI."""


def wheel_filename(version: str) -> str:
    """The file name of colabtui-remote's wheel of ``version`` (pure Python: any platform)."""
    return f"colabtui_remote-{version}-py3-none-any.whl"


def _monitor_lines(run_folder: str) -> list[str]:
    checkpoint_dir = posixpath.join(run_folder, "my-run")
    return [
        "",
        "# Then, in your training cell (model, opt, train_step and total_steps are yours):",
        "#   mon = Monitor(run=\"my-run\",",
        f"#                 checkpoint_dir={checkpoint_dir!r},",
        "#                 autosave_every=600)                     # seconds",
        "#   mon.track(model=model, optimizer=opt)                 # what a checkpoint holds",
        "#   mon.serve()                  # or mon.serve_mailbox(\"gdrive://...\"): see the README",
        "#   for step in mon.steps(total_steps):                   # resumes after a checkpoint",
        "#       mon.log(loss=train_step())",
        "#   mon.close()",
    ]


def install_cell(version: str, wheel: str, *, mount_root: str = COLAB_MOUNT,
                 extras: tuple[str, ...] = EXTRAS) -> str:
    """The cell that installs colabtui-remote ``version`` from ``wheel`` and checks it.

    Args:
        version: the version the wheel holds (``0.1.0``).
        wheel: the wheel's absolute path as the notebook sees it, e.g.
            ``/content/drive/MyDrive/colabtui/colabtui_remote-0.1.0-py3-none-any.whl``.
        mount_root: where Drive is mounted; the cell mounts it (in Colab) only when ``wheel``
            is below it and not there yet. Tests pass a temporary folder.
        extras: the wheel's extras to install with it.

    Returns:
        The cell's text, ending with a newline.
    """
    mount = mount_root.rstrip("/") or "/"
    target = f"WHEEL + {'[' + ','.join(extras) + ']'!r}" if extras else "WHEEL"
    lines = [
        f"# colabtui-remote {version}, the notebook side of colabtui, from its wheel on Drive",
        "# (printed by `colabtui notebook` on the laptop).",
        "import importlib, os, subprocess, sys",
        "",
        f"VERSION = {version!r}",
        f"WHEEL = {wheel!r}",
        f"if WHEEL.startswith({mount + '/'!r}) and not os.path.isfile(WHEEL):",
        "    try:",
        "        from google.colab import drive",
        "    except ImportError:",
        "        pass  # not Colab: the folder is there already, or the check below says so",
        "    else:",
        f"        drive.mount({mount!r})  # Colab asks once for access to your Drive",
        "if not os.path.isfile(WHEEL):",
        "    raise FileNotFoundError(",
        "        f\"colabtui: the wheel {WHEEL} is not there. On the laptop, run `colabtui \"",
        "        \"notebook --drive gdrive://FOLDER_ID` (or --drive-dir PATH) again: it puts the \"",
        "        \"wheel there and prints this cell.\")",
        "done = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q',",
        f"                       '--disable-pip-version-check', {target}],",
        "                      capture_output=True, text=True)",
        "if done.returncode:",
        "    raise RuntimeError(f\"colabtui: pip could not install {WHEEL}:\\n\"",
        "                       + (done.stdout + done.stderr)[-3000:])",
        "importlib.invalidate_caches()",
        "import colabtui_remote",
        "",
        "if colabtui_remote.__version__ != VERSION:",
        "    raise RuntimeError(",
        "        f\"colabtui: this kernel has colabtui-remote {colabtui_remote.__version__} \"",
        "        f\"loaded already, not {VERSION}: restart the session (Runtime > Restart \"",
        "        \"session) and run this cell again.\")",
        "from colabtui_remote import Monitor",
        "",
        "print(f\"colabtui-remote {VERSION} is ready: from colabtui_remote import Monitor\")",
        *_monitor_lines(posixpath.dirname(wheel)),
    ]
    return "\n".join(lines) + "\n"


def check_cell(version: str, *, run_folder: str = f"{COLAB_MOUNT}/MyDrive/colabtui") -> str:
    """The cell for a notebook where no wheel was put: it goes on when colabtui-remote
    ``version`` is installed already, and otherwise stops with a ``RuntimeError`` that says
    what to run on the laptop (pip cannot fetch it: it is not on PyPI).

    Returns:
        The cell's text, ending with a newline.
    """
    lines = [
        f"# colabtui-remote {version}, the notebook side of colabtui (printed by `colabtui "
        "notebook`).",
        "# It is not on PyPI: this cell cannot install it, it checks that it is installed.",
        "import importlib.metadata",
        "",
        f"VERSION = {version!r}",
        "try:",
        "    found = importlib.metadata.version('colabtui-remote')",
        "except importlib.metadata.PackageNotFoundError:",
        "    found = None",
        "if found != VERSION:",
        "    raise RuntimeError(",
        "        f\"colabtui: colabtui-remote {VERSION} is not installed in this runtime (it \"",
        "        f\"has {found or 'none'}) and pip cannot fetch it: it is not on PyPI. On the \"",
        "        \"laptop, run `colabtui notebook --drive gdrive://FOLDER_ID` (a folder in your \"",
        "        \"My Drive) or `colabtui notebook --drive-dir PATH` (a folder Drive for \"",
        "        \"desktop syncs): it puts the wheel there and prints the cell that installs it.\")",
        "from colabtui_remote import Monitor",
        "",
        "print(f\"colabtui-remote {VERSION} is ready: from colabtui_remote import Monitor\")",
        *_monitor_lines(run_folder),
    ]
    return "\n".join(lines) + "\n"
