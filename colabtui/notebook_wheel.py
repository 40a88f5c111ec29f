"""colabtui-remote's wheel, made from the colabtui-remote this laptop runs, for a notebook.

:func:`build_remote_wheel` looks at where ``colabtui_remote`` is imported from:

- **a source tree** (a clone, an editable install: ``pyproject.toml`` of ``colabtui-remote``
  beside the package): the tree is copied to a temporary folder (so no ``build/`` or
  ``*.egg-info`` is left in it) and built with ``pip wheel --no-deps``; without build
  isolation when this environment has the setuptools the project needs (fast, offline), with
  it otherwise (pip fetches setuptools from the index);
- **an installed wheel** (``pip install colabtui-remote-….whl``): the wheel is put together
  again from the installed files pip's ``RECORD`` lists, each checked against its sha256
  there (a file changed since it was installed is refused), with the installed ``METADATA``
  and ``WHEEL`` and a new ``RECORD``. No pip, no network.

Either way the wheel's version is checked against ``colabtui_remote.__version__``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

DIST_NAME = "colabtui-remote"
PACKAGE = "colabtui_remote"
SETUPTOOLS_NEEDED = (68,)
"""remote/pyproject.toml's ``build-system.requires``: ``setuptools>=68``."""
BUILD_TIMEOUT_S = 300.0
_NOT_COPIED = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*")
_NOT_REPACKED = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}
"""Files pip writes into an installed ``.dist-info`` that a wheel does not carry."""


class WheelError(Exception):
    """The wheel cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class RemoteWheel:
    """A wheel of colabtui-remote.

    Attributes:
        path: the ``.whl`` file.
        version: the version it holds.
        made_from: how it was made, for a message ("built from the source tree at …").
    """

    path: Path
    version: str
    made_from: str


def build_remote_wheel(out_dir: str | os.PathLike) -> RemoteWheel:
    """Make the wheel of the colabtui-remote imported here, in ``out_dir`` (which must exist).

    Raises:
        WheelError: no pip for a source tree, the build failed (pip's words in the message),
            installed files changed since they were installed, or the version made is not
            ``colabtui_remote.__version__``.
    """
    import colabtui_remote

    package_dir = Path(colabtui_remote.__file__).resolve().parent
    source = _source_tree(package_dir.parent)
    if source is not None:
        wheel = _build_from_source(source, Path(out_dir))
        made_from = f"built from the source tree at {source}"
    else:
        wheel = _repack_installed(package_dir, Path(out_dir))
        made_from = f"put together from the installed files in {package_dir.parent}"
    version = wheel.name.split("-")[1]
    if version != colabtui_remote.__version__:
        raise WheelError(f"{wheel.name} holds version {version}, but the colabtui_remote "
                         f"running here says {colabtui_remote.__version__} "
                         f"({package_dir}): install colabtui and colabtui-remote again from "
                         "one checkout")
    return RemoteWheel(wheel, version, made_from)


def _source_tree(folder: Path) -> Path | None:
    """``folder`` when it holds colabtui-remote's ``pyproject.toml``, else ``None``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(folder / "pyproject.toml", "rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, ValueError):
        return None
    return folder if project.get("name") == DIST_NAME else None


def _setuptools_here() -> bool:
    try:
        found = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    try:
        return tuple(int(p) for p in found.split(".")[:1]) >= SETUPTOOLS_NEEDED
    except ValueError:
        return False


def _build_from_source(source: Path, out_dir: Path) -> Path:
    if importlib.util.find_spec("pip") is None:
        raise WheelError(f"building colabtui-remote's wheel from {source} needs pip, and "
                         f"this Python ({sys.executable}) has none: `{sys.executable} -m "
                         "ensurepip`, or `python -m build --wheel` in that folder")
    with tempfile.TemporaryDirectory(prefix="colabtui-wheel-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=_NOT_COPIED)
        built = Path(tmp) / "wheel"
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
               "--disable-pip-version-check", "--wheel-dir", str(built), str(copy)]
        if _setuptools_here():
            cmd.insert(5, "--no-build-isolation")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise WheelError(f"building colabtui-remote's wheel from {source} took more than "
                             f"{BUILD_TIMEOUT_S:.0f} s (pip: {' '.join(cmd[1:])})") from None
        wheels = sorted(built.glob(f"{PACKAGE}-*.whl"))
        if done.returncode or len(wheels) != 1:
            said = (done.stdout + done.stderr).strip()[-2000:] or "no output"
            raise WheelError(f"pip could not build colabtui-remote's wheel from {source} "
                             f"(exit {done.returncode}):\n{said}")
        return Path(shutil.copy2(wheels[0], out_dir / wheels[0].name))


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode('ascii')}"


def _entry(arcname: str) -> zipfile.ZipInfo:
    """A wheel member: a fixed date (the same files make the same wheel), mode 644, deflated."""
    entry = zipfile.ZipInfo(arcname, (1980, 1, 1, 0, 0, 0))
    entry.external_attr = 0o644 << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    return entry


def _repack_installed(package_dir: Path, out_dir: Path) -> Path:
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        raise WheelError(f"colabtui_remote is imported from {package_dir}, which is neither "
                         "a source tree (no pyproject.toml beside it) nor an installed "
                         "distribution: install colabtui-remote with pip, or run colabtui "
                         "from a clone") from None
    listed = list(dist.files or [])
    init = next((f for f in listed if f.as_posix() == f"{PACKAGE}/__init__.py"), None)
    if init is None or Path(dist.locate_file(init)).resolve().parent != package_dir:
        where = Path(dist.locate_file(init)).parent if init is not None else "no files listed"
        raise WheelError(f"the colabtui_remote imported here ({package_dir}) is not the one "
                         f"pip installed ({where}): run colabtui from the environment it was "
                         "installed in, or from a clone")
    info_dirs = {f.parts[0] for f in listed if f.parts[0].endswith(".dist-info")}
    if len(info_dirs) != 1:
        raise WheelError(f"the installed colabtui-remote lists {len(info_dirs)} .dist-info "
                         "folders; install it again with pip")
    info = info_dirs.pop()
    wheel_meta = (Path(dist.locate_file(f"{info}/WHEEL"))).read_text(encoding="utf-8")
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines()
            if line.startswith("Tag:")]
    if not tags:
        raise WheelError(f"{info}/WHEEL names no tag; install colabtui-remote again with pip")
    name = f"{PACKAGE}-{dist.version}-{tags[0]}.whl"
    record: list[str] = []
    tmp = out_dir / f".{name}.tmp"
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(listed, key=lambda f: f.as_posix()):
                arcname = f.as_posix()
                if (f.parts[0] not in (PACKAGE, info) or "__pycache__" in f.parts
                        or (f.parts[0] == info and f.name in _NOT_REPACKED)):
                    continue
                data = Path(dist.locate_file(f)).read_bytes()
                if f.hash is not None and _record_hash(data) != f"{f.hash.mode}={f.hash.value}":
                    raise WheelError(f"{dist.locate_file(f)} was changed after pip installed "
                                     "it: install colabtui-remote again")
                zf.writestr(_entry(arcname), data)
                record.append(f"{arcname},{_record_hash(data)},{len(data)}")
            record.append(f"{info}/RECORD,,")
            zf.writestr(_entry(f"{info}/RECORD"), "\n".join(record) + "\n")
        return Path(shutil.move(tmp, out_dir / name))
    except OSError as exc:
        raise WheelError(f"cannot put colabtui-remote's wheel together from {package_dir}: "
                         f"{exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
