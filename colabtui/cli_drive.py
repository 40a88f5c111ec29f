"""The ``colabtui drive`` and ``colabtui checkpoints`` commands: Drive credentials on this
machine, and the checkpoints of a run folder (local, synced, or ``gdrive://``) seen from here.

Errors are one line on stderr, exit codes as in :mod:`colabtui.cli`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parsers(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add ``drive`` and ``checkpoints`` to the ``colabtui`` sub-command parsers."""
    from colabtui_remote.drive.auth import default_credentials_path

    p = sub.add_parser(
        "drive", formatter_class=fmt, help="log in to Google Drive (for gdrive:// folders)",
        description="Google Drive credentials for gdrive:// mailboxes and checkpoint folders. "
                    "`login` opens your browser on Google's consent page for YOUR OAuth client "
                    "(a 'Desktop app' client from console.cloud.google.com; see the README, "
                    "'Google Drive access'), then stores the credentials with mode 600. Tokens "
                    "are never printed.",
        epilog="examples:\n"
               "  colabtui drive login --client-secrets ~/Downloads/client_secret_123.json\n"
               "  colabtui drive logout\n"
               f"\ncredentials file: {default_credentials_path()} "
               "(COLABTUI_DRIVE_CREDENTIALS moves it)")
    p.add_argument("action", choices=("login", "logout"), help="log in, or forget the credentials")
    p.add_argument("--client-secrets", type=Path, metavar="PATH",
                   help="the OAuth client JSON downloaded from the Google Cloud console (login)")

    p = sub.add_parser(
        "checkpoints", formatter_class=fmt,
        help="list a run's checkpoints (folder or gdrive://), or download the newest",
        description="List the checkpoints in a run's checkpoint folder — a local or synced "
                    "folder, or gdrive://FOLDER_ID[/path] through the Drive API — with step, "
                    "size, age and whether each is verified. --download fetches the newest "
                    "verified one and checks its hash before keeping it.",
        epilog="examples:\n"
               "  colabtui checkpoints gdrive://1AbC.../resnet-lr3e-4\n"
               "  colabtui checkpoints ~/GoogleDrive/MyDrive/colabtui/resnet-lr3e-4\n"
               "  colabtui checkpoints gdrive://1AbC.../resnet-lr3e-4 --download --to ./ckpt")
    p.add_argument("dest", help="the checkpoint folder: a path or gdrive://FOLDER_ID[/path]")
    p.add_argument("--download", action="store_true",
                   help="fetch the newest verified checkpoint (hash checked)")
    p.add_argument("--to", type=Path, default=Path("."), metavar="DIR",
                   help="where --download puts it (default: the current folder)")


def run(args: argparse.Namespace) -> int:
    """Run ``drive`` or ``checkpoints``; returns the exit code."""
    if args.command == "drive":
        return _drive(args)
    return _checkpoints(args)


def _err(message: str) -> None:
    print(f"colabtui: {message}", file=sys.stderr)


def _drive(args: argparse.Namespace) -> int:
    from colabtui_remote.drive.auth import credentials_path_in_use, login

    path = credentials_path_in_use()
    if args.action == "logout":
        if args.client_secrets is not None:
            _err("logout takes no --client-secrets (it only deletes the saved login)")
            return EXIT_USAGE
        try:
            os.remove(path)
        except FileNotFoundError:
            print(f"no credentials at {path}: nothing to forget")
            return EXIT_OK
        except OSError as exc:
            _err(f"cannot remove {path}: {exc.strerror or exc}")
            return EXIT_FAILED
        print(f"removed {path}")
        return EXIT_OK
    if args.client_secrets is None:
        _err("login needs --client-secrets PATH: the OAuth client JSON of a 'Desktop app' "
             "client (README, 'Google Drive access', says how to make one)")
        return EXIT_USAGE
    secrets = args.client_secrets.expanduser()
    if not secrets.is_file():
        what = "is a folder, not the client file" if secrets.is_dir() else "no such file"
        _err(f"{secrets}: {what} (download the client file from the Google Cloud console, "
             "APIs & Services > Credentials)")
        return EXIT_USAGE
    try:
        saved = login(secrets, path)
    except ValueError as exc:  # not an OAuth client file: says what is wrong with it
        _err(str(exc))
        return EXIT_USAGE
    except (ImportError, OSError) as exc:  # DriveAuthError: refused, or the exchange failed
        _err(str(exc))
        return EXIT_FAILED
    print(f"logged in; credentials saved to {saved} (mode 600)")
    return EXIT_OK


def _checkpoints(args: argparse.Namespace) -> int:
    from colabtui_remote.checkpoint.destinations import open_destination
    from colabtui_remote.checkpoint.errors import ManifestUnreadable
    from colabtui_remote.checkpoint.resume import download_newest
    from colabtui_remote.drive.url import is_gdrive_url

    from colabtui.formatting import fmt_age, fmt_bytes

    if not is_gdrive_url(args.dest) and not os.path.isdir(args.dest):
        what = "a file, not a folder" if os.path.exists(args.dest) else "no such folder here"
        _err(f"{args.dest}: {what} (a run's checkpoint folder, or gdrive://ID/...)")
        return EXIT_USAGE
    try:
        dest = open_destination(args.dest)
        entries = dest.read_manifest() or []
        unlisted = sorted(n for n in dest.names() - {e.file for e in entries}
                          if _CKPT_NAME.match(n))
        on_drive = _drive_md5s(dest)
    except ValueError as exc:  # a gdrive:// URL that is not one
        _err(str(exc))
        return EXIT_USAGE
    except ManifestUnreadable as exc:
        _err(f"{exc} (nothing was changed there)")
        return EXIT_FAILED
    except (OSError, ImportError) as exc:
        _err(str(exc))
        return EXIT_FAILED
    if not entries and not unlisted:
        print(f"no checkpoints in {args.dest}")
        return EXIT_FAILED if args.download else EXIT_OK
    now = time.time()
    print(f"{'step':>10}  {'size':>9}  {'saved':>12}  verified")
    for e in entries:  # a manifest lists a checkpoint only once it was verified
        how = f"md5, {fmt_age(e.verified_at, now)}" if e.verified_at else "sha256"
        verdict = f"yes ({how})"
        if on_drive is not None and e.md5:  # Drive says what the file holds now
            now_md5 = on_drive.get(e.file)
            if now_md5 is None:
                verdict = "NO (the file is gone from Drive)"
            elif now_md5 != e.md5:
                verdict = f"NO (Drive's md5 {now_md5[:8]}… is not the manifest's {e.md5[:8]}…)"
        elif on_drive is None:  # a folder: its size at least (hashing GBs here would be slow)
            try:
                size = _size_there(os.path.join(args.dest, e.file), e)
            except OSError:
                verdict = "NO (the file is missing)"
            else:
                if size != e.bytes:
                    verdict = f"NO ({size:,} bytes, the manifest says {e.bytes:,})"
        print(f"{e.step:>10,}  {fmt_bytes(e.bytes):>9}  {fmt_age(e.saved_at, now):>12}  "
              f"{verdict}  {e.file}")
    for name in unlisted:  # a save that died half-way, or a copy not verified yet
        step = int(_CKPT_NAME.match(name).group(1))
        print(f"{step:>10,}  {'?':>9}  {'?':>12}  no (not in the manifest; never loaded)  {name}")
    if not args.download:
        return EXIT_OK
    try:
        found = download_newest(dest, args.to, progress=_Progress(args.to))
    except ManifestUnreadable as exc:
        _err(f"{exc} (nothing was changed there)")
        return EXIT_FAILED
    except (OSError, ValueError, ImportError) as exc:
        _err(str(exc))
        return EXIT_FAILED
    if found is None:
        _err(f"no checkpoint listed in {args.dest} downloads with the md5 and sha256 its "
             "manifest gives (each failure was warned about above)")
        return EXIT_FAILED
    entry, path = found
    print(f"downloaded step {entry.step:,} to {path} ({fmt_bytes(entry.bytes)}; md5 and sha256 "
          "match the manifest)")
    return EXIT_OK


def _size_there(path: str, entry: Any) -> int:
    """The bytes an entry's file holds now, as the manifest counts them: a folder checkpoint
    (a framework's ``checkpoint-500/``) its files' sizes added up; its tar at a replica is
    compared by the tar's own size (``packed_bytes``), reported as the entry's ``bytes``."""
    if entry.tree is not None and os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f.path)) for f in entry.tree.files)
    size = os.path.getsize(path)
    return entry.bytes if entry.packed_bytes is not None and size == entry.packed_bytes \
        else size


def _drive_md5s(dest: Any) -> dict[str, str] | None:
    """Title → md5 Drive reports now, for a Drive destination (``None`` for a folder: its files
    are not read again here)."""
    folder = getattr(dest, "folder", None)
    if folder is None:
        return None
    return {f.title: f.md5 for f in folder().list() if f.md5 is not None}


_CKPT_NAME = re.compile(r"^ckpt-(\d{9,})(?:-\d+)?\.pt$")


class _Progress:
    """``progress(done, total)`` for a download: one line on stderr, rewritten at most every
    half second while stderr is a terminal, nothing otherwise."""

    def __init__(self, to: Path) -> None:
        self._to = to
        self._shown = 0.0
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        from colabtui.formatting import fmt_bytes

        now = time.monotonic()
        if not self._tty or (now - self._shown < 0.5 and done < total):
            return
        self._shown = now
        end = "\n" if done >= total else ""
        print(f"\rdownloading to {self._to}: {fmt_bytes(done)}/{fmt_bytes(total)}", end=end,
              file=sys.stderr, flush=True)
