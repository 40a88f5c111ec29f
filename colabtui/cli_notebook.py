"""``colabtui notebook``: the notebook cell that installs this version of colabtui-remote.

colabtui-remote is not on PyPI, so a notebook cannot ``pip install`` it by name. With a Drive
folder (``--drive gdrive://FOLDER_ID[/path]`` through the Drive API, or ``--drive-dir PATH``, a
folder Drive for desktop syncs), the command makes this version's wheel from the
colabtui-remote installed here (:mod:`.notebook_wheel`), puts it in that folder and prints the
cell that installs it from Colab's mounted Drive (:mod:`.notebook_cell`). Without one it prints
a cell that checks colabtui-remote is installed and otherwise stops, saying what to run here.

The cell goes to stdout and nothing else does: ``colabtui notebook --drive … > cell.py``.
Errors are one line on stderr, exit codes as in :mod:`colabtui.cli` (2: bad input, a folder
that does not exist, no Drive login; 1: the wheel could not be made or sent).
"""

from __future__ import annotations

import argparse
import hashlib
import posixpath
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from colabtui.notebook_cell import COLAB_MOUNT, EXTRAS, check_cell, install_cell

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# How Drive for desktop (and rclone, insync…) name the two kinds of Drive locally, and the
# folder Colab's mount shows each as.
_LOCAL_TOPS = {"My Drive": "MyDrive", "MyDrive": "MyDrive",
               "Shared drives": "Shareddrives", "Shareddrives": "Shareddrives"}


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add ``notebook`` to the ``colabtui`` sub-command parsers."""
    p = sub.add_parser(
        "notebook", formatter_class=fmt,
        help="print the notebook cell that installs this colabtui-remote (wheel put on Drive)",
        description="Print the notebook cell that installs colabtui-remote of this version. "
                    "It is not on PyPI: with --drive or --drive-dir, its wheel is made from "
                    "the colabtui-remote installed here and put in that Drive folder, and the "
                    "cell installs it from Colab's mounted Drive (it stops with a clear error "
                    "when the wheel is not there). Without a folder, the cell checks that "
                    "colabtui-remote is installed, and otherwise stops saying what to run. The "
                    "cell is the only thing on stdout.",
        epilog="examples:\n"
               "  colabtui notebook --drive gdrive://root/colabtui   a folder of My Drive, "
               "made if missing\n"
               "  colabtui notebook --drive gdrive://1AbC.../wheels  (colabtui drive login "
               "once)\n"
               "  colabtui notebook --drive-dir ~/GoogleDrive/MyDrive/colabtui\n"
               "  colabtui notebook --drive-dir /mnt/gd/colabtui --in-notebook "
               "/content/drive/MyDrive/colabtui\n"
               "  colabtui notebook > cell.py                   the checking cell, no wheel")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--drive", metavar="gdrive://FOLDER_ID[/path]",
                       help="upload the wheel to this Drive folder (missing subfolders are "
                            "made); it must be in your My Drive, or give --in-notebook")
    where.add_argument("--drive-dir", type=Path, metavar="PATH",
                       help="copy the wheel into this local folder that Drive syncs")
    p.add_argument("--extras", default=",".join(EXTRAS), metavar="LIST",
                   help="colabtui-remote's extras the cell installs with it, from PyPI "
                        f"(default {','.join(EXTRAS)}; also tunnel, transformers, lightning, "
                        "keras)")
    p.add_argument("--in-notebook", metavar="PATH",
                   help="the folder's path as the notebook sees it (default: "
                        f"{COLAB_MOUNT}/MyDrive/… worked out from the Drive folder, or from "
                        "'My Drive' or 'Shared drives' in --drive-dir's path)")


def run(args: argparse.Namespace) -> int:
    """Run ``notebook``; returns the exit code."""
    import colabtui_remote

    version = colabtui_remote.__version__
    extras = tuple(e.strip() for e in args.extras.split(",") if e.strip())
    known = _known_extras()
    unknown = [e for e in extras if e not in known]
    if unknown:
        _err(f"--extras: colabtui-remote has no extra {', '.join(map(repr, unknown))} (it has "
             f"{', '.join(sorted(known))})")
        return EXIT_USAGE
    if args.drive is None and args.drive_dir is None:
        if args.in_notebook is not None:
            _err("--in-notebook goes with --drive or --drive-dir (where the wheel is put)")
            return EXIT_USAGE
        _err(f"colabtui-remote {version} is not on PyPI, so this cell cannot install it: it "
             "checks, and stops if it is missing. `colabtui notebook --drive gdrive://FOLDER` "
             "or `--drive-dir PATH` puts the wheel on your Drive and prints the cell that "
             "installs it.")
        sys.stdout.write(check_cell(version))
        return EXIT_OK
    in_notebook = None
    if args.in_notebook is not None:
        in_notebook = args.in_notebook.rstrip("/") or "/"
        if not PurePosixPath(in_notebook).is_absolute():
            _err(f"--in-notebook {args.in_notebook!r} is not an absolute path on the runtime "
                 f"(e.g. {COLAB_MOUNT}/MyDrive/colabtui)")
            return EXIT_USAGE
    if args.drive is not None:
        return _to_drive(args.drive, in_notebook, extras)
    return _to_folder(args.drive_dir.expanduser(), in_notebook, extras)


def _known_extras() -> set[str]:
    """The extras remote/pyproject.toml declares, as the installed metadata lists them."""
    import importlib.metadata

    try:
        return set(importlib.metadata.metadata("colabtui-remote").get_all("Provides-Extra") or ())
    except importlib.metadata.PackageNotFoundError:  # a source tree on the path only
        return set(EXTRAS)


def _err(message: str) -> None:
    print(f"colabtui: {message}", file=sys.stderr)


def _made(out_dir: str) -> Any:
    """The wheel, or ``None`` after saying why not."""
    from colabtui.notebook_wheel import WheelError, build_remote_wheel

    try:
        return build_remote_wheel(out_dir)
    except WheelError as exc:
        _err(str(exc))
        return None


def _print_cell(wheel: Any, where: str, in_notebook: str, extras: tuple[str, ...]) -> int:
    path = posixpath.join(in_notebook, wheel.path.name)
    _err(f"{wheel.path.name} ({wheel.made_from}) is in {where}; the notebook finds it at "
         f"{path}. Paste this cell into the notebook:")
    sys.stdout.write(install_cell(wheel.version, path, extras=extras))
    return EXIT_OK


def notebook_path_of(folder: Path) -> str | None:
    """Where Colab's mounted Drive shows a local folder that Drive for desktop syncs: the part
    of its path after ``My Drive`` (or ``MyDrive``) under ``/content/drive/MyDrive``, after
    ``Shared drives`` under ``/content/drive/Shareddrives``; ``None`` when it has neither."""
    for candidate in (folder.absolute(), folder.resolve()):
        parts = candidate.parts
        for i in range(len(parts) - 1, -1, -1):
            if parts[i] in _LOCAL_TOPS:
                return posixpath.join(COLAB_MOUNT, _LOCAL_TOPS[parts[i]], *parts[i + 1:])
    return None


def _to_folder(folder: Path, in_notebook: str | None, extras: tuple[str, ...]) -> int:
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        _err(f"{folder}: {what} (a folder that Drive for desktop syncs, e.g. "
             "'~/Google Drive/My Drive/colabtui')")
        return EXIT_USAGE
    in_notebook = in_notebook or notebook_path_of(folder)
    if in_notebook is None:
        _err(f"cannot tell where the notebook sees {folder}: its path has no 'My Drive' or "
             f"'Shared drives' folder; say it with --in-notebook (e.g. --in-notebook "
             f"{COLAB_MOUNT}/MyDrive/colabtui)")
        return EXIT_USAGE
    from colabtui_remote.checkpoint.fs import atomic_write, describe_oserror

    with tempfile.TemporaryDirectory(prefix="colabtui-notebook-") as tmp:
        wheel = _made(tmp)
        if wheel is None:
            return EXIT_FAILED
        dest = folder / wheel.path.name
        try:
            with open(wheel.path, "rb") as src:
                atomic_write(dest, lambda f: shutil.copyfileobj(src, f))
            same = _sha256(dest) == _sha256(wheel.path)
        except OSError as exc:
            _err(f"cannot copy {wheel.path.name} into {folder}: {describe_oserror(exc)}")
            return EXIT_FAILED
        if not same:
            _err(f"{dest} does not read back as written; nothing to paste yet")
            return EXIT_FAILED
        return _print_cell(wheel, str(folder), in_notebook, extras)


def _to_drive(url: str, in_notebook: str | None, extras: tuple[str, ...]) -> int:
    from colabtui_remote.drive import DriveAuthError, DriveError, DriveNotFound
    from colabtui_remote.drive.client import DriveFolder
    from colabtui_remote.drive.url import is_gdrive_url, parse_gdrive_url

    try:
        if not is_gdrive_url(url):
            raise ValueError(f"{url!r} is not a Drive URL: --drive takes gdrive://FOLDER_ID"
                             "[/path] (gdrive://root/colabtui for a folder of My Drive); a "
                             "local folder goes with --drive-dir")
        parse_gdrive_url(url)
        folder = DriveFolder.open(url, create=True)
        if in_notebook is None:
            titles = folder.path_in_my_drive()
            if titles is None:
                _err(f"{url} is not in your My Drive (shared with you, or on a shared drive), "
                     "so where the notebook mounts it cannot be worked out here; say it with "
                     "--in-notebook PATH, or choose a folder of My Drive")
                return EXIT_USAGE
            in_notebook = posixpath.join(COLAB_MOUNT, "MyDrive", *titles)
    except (ValueError, ImportError, DriveAuthError, DriveNotFound) as exc:
        _err(str(exc))  # bad input, no pydrive2, no (valid) login, no such folder
        return EXIT_USAGE
    except DriveError as exc:
        _err(str(exc))
        return EXIT_FAILED
    with tempfile.TemporaryDirectory(prefix="colabtui-notebook-") as tmp:
        wheel = _made(tmp)
        if wheel is None:
            return EXIT_FAILED
        try:
            folder.upload(wheel.path, wheel.path.name, mime="application/octet-stream")
        except (DriveError, OSError) as exc:  # ChecksumMismatch too: Drive's md5 is checked
            _err(str(exc))
            return EXIT_FAILED
        return _print_cell(wheel, f"{folder.url} (md5 checked)", in_notebook, extras)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
