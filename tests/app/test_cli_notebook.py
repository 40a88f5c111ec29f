"""``colabtui notebook``, run as the user runs it (``main([...])``): the wheel made from this
installation (a source tree here; an installed wheel in a pip ``--target`` folder), put in a
local folder or uploaded through the Drive v2 stand-in, and the printed cell's own Python
executed in a subprocess, with a temporary folder standing in for Colab's ``/content/drive``
and pip installing into a folder of its own (``PIP_TARGET``), offline."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import colabtui_remote
import pytest
from colabtui_remote.drive import CREDENTIALS_ENV

from colabtui.cli import main
from colabtui.notebook_cell import check_cell, install_cell, wheel_filename

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
VERSION = colabtui_remote.__version__
WHEEL = wheel_filename(VERSION)
TIMEOUT_S = 120


def _python(*args: str, cwd: Path, env: dict[str, str] | None = None,
            isolated: bool = False) -> subprocess.CompletedProcess:
    """This interpreter in a subprocess; ``env`` replaces PYTHONPATH and adds PIP_* settings;
    ``isolated`` runs it with ``-I -S`` (no site-packages: nothing installed)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")
            and k != "PYTHONPATH"}
    flags = ["-I", "-S"] if isolated else []
    return subprocess.run([sys.executable, *flags, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT_S, env={**base, **(env or {})})


def _pip_target(wheel: Path, target: Path) -> None:
    done = _python("-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                   "--disable-pip-version-check", "--target", str(target), str(wheel),
                   cwd=target.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def _imported_from(target: Path) -> tuple[str, str]:
    done = _python("-c", "import colabtui_remote as r; print(r.__version__); print(r.__file__)",
                   cwd=target.parent, env={"PYTHONPATH": str(target)})
    assert done.returncode == 0, done.stderr
    version, where = done.stdout.split()
    return version, where


# --------------------------------------------------------------------------- the version


def test_the_version_is_written_once_and_colabtui_pins_colabtui_remote_to_it(capsys):
    written = (ROOT / "remote" / "colabtui_remote" / "VERSION").read_text().strip()
    assert colabtui_remote.__version__ == written
    for pyproject, path in [(ROOT / "pyproject.toml", "remote/colabtui_remote/VERSION"),
                            (ROOT / "remote" / "pyproject.toml", "colabtui_remote/VERSION")]:
        config = tomllib.loads(pyproject.read_text())
        assert "version" not in config["project"]
        assert "version" in config["project"]["dynamic"]
        assert config["tool"]["setuptools"]["dynamic"]["version"] == {"file": path}
    setup = (ROOT / "setup.py").read_text()
    assert 'f"colabtui-remote=={VERSION}"' in setup and written not in setup
    with pytest.raises(SystemExit):
        main(["--version"])
    assert f"(colabtui-remote {written}, protocol v" in capsys.readouterr().out


# --------------------------------------------------------------------------- the cells


def test_the_install_cell_names_the_exact_wheel_and_compiles():
    wheel = "/content/drive/MyDrive/runs/colabtui_remote-1.2.3-py3-none-any.whl"
    cell = install_cell("1.2.3", wheel)
    assert f"WHEEL = {wheel!r}" in cell and "VERSION = '1.2.3'" in cell
    assert "drive.mount('/content/drive')" in cell and "<" not in cell
    compile(cell, "cell", "exec")
    compile(check_cell("1.2.3"), "cell", "exec")


def test_the_cell_stops_with_a_clear_message_when_the_wheel_is_missing(tmp_path):
    mount = tmp_path / "drive"
    (mount / "MyDrive" / "colabtui").mkdir(parents=True)
    wheel = mount / "MyDrive" / "colabtui" / WHEEL
    cell = install_cell(VERSION, str(wheel), mount_root=str(mount))
    done = _python("-c", cell, cwd=tmp_path, env={"PIP_TARGET": str(tmp_path / "target")})
    assert done.returncode == 1
    assert f"FileNotFoundError: colabtui: the wheel {wheel} is not there" in done.stderr
    assert "colabtui notebook --drive" in done.stderr
    assert not (tmp_path / "target").exists()  # pip was never run


def test_the_checking_cell_stops_where_colabtui_remote_is_not_installed(tmp_path, capsys):
    assert main(["notebook"]) == 0
    captured = capsys.readouterr()
    assert "not on PyPI" in captured.err
    done = _python("-c", captured.out, cwd=tmp_path, isolated=True)
    assert done.returncode == 1
    assert (f"RuntimeError: colabtui: colabtui-remote {VERSION} is not installed in this "
            "runtime (it has none) and pip cannot fetch it") in done.stderr


# --------------------------------------------------------------------------- a local folder


def test_drive_dir_copies_a_wheel_pip_installs_and_the_cell_installs_it(tmp_path, capsys):
    folder = tmp_path / "Google Drive" / "My Drive" / "colabtui"
    folder.mkdir(parents=True)
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "remote").glob("*.egg-info")}
    assert main(["notebook", "--drive-dir", str(folder)]) == 0
    captured = capsys.readouterr()
    assert f"WHEEL = '/content/drive/MyDrive/colabtui/{WHEEL}'" in captured.out
    assert "built from the source tree at" in captured.err
    wheel = folder / WHEEL
    assert zipfile.ZipFile(wheel).read("colabtui_remote/VERSION").decode().strip() == VERSION
    assert [p.name for p in folder.iterdir()] == [WHEEL]  # no temporary file left
    # built from a copy: the tree's own egg-info (an editable install's, if any) is untouched
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "remote").glob("*.egg-info")} == before

    _pip_target(wheel, tmp_path / "target")
    version, where = _imported_from(tmp_path / "target")
    assert version == VERSION and where.startswith(str(tmp_path / "target"))

    # The same cell, with tmp_path standing in for /content/drive: pip installs the wheel
    # (into a folder of its own, offline, its extras' dependencies left out) and it imports.
    cell = install_cell(VERSION, str(wheel), mount_root=str(tmp_path / "Google Drive"))
    target = tmp_path / "cell-target"
    done = _python("-c", cell, cwd=tmp_path, env={
        "PIP_TARGET": str(target), "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1",
        "PYTHONPATH": str(target)})
    assert done.returncode == 0, done.stderr
    assert f"colabtui-remote {VERSION} is ready" in done.stdout
    assert (target / "colabtui_remote" / "VERSION").is_file()


def test_drive_dir_with_in_notebook_for_a_folder_of_another_name(tmp_path, capsys):
    assert main(["notebook", "--drive-dir", str(tmp_path), "--in-notebook",
                 "/content/drive/MyDrive/wheels/", "--extras", "gpu,tunnel"]) == 0
    out = capsys.readouterr().out
    assert f"WHEEL = '/content/drive/MyDrive/wheels/{WHEEL}'" in out
    assert "WHEEL + '[gpu,tunnel]'" in out
    assert (tmp_path / WHEEL).is_file()


@pytest.mark.parametrize("args, says", [
    (["--drive-dir", "{tmp}/missing"], "{tmp}/missing: no such folder"),
    (["--drive-dir", "{tmp}/file.txt"], "{tmp}/file.txt: a file, not a folder"),
    (["--drive-dir", "{tmp}"], "its path has no 'My Drive' or 'Shared drives' folder; say "
                               "it with --in-notebook"),
    (["--drive-dir", "{tmp}", "--in-notebook", "MyDrive/x"], "is not an absolute path"),
    (["--in-notebook", "/content/drive/MyDrive"], "--in-notebook goes with --drive"),
    (["--drive", "{tmp}"], "is not a Drive URL: --drive takes gdrive://FOLDER_ID"),
    (["--drive", "gdrive://short"], "'short' is not a Drive folder id"),
    (["--drive-dir", "{tmp}", "--extras", "gpu,nope"], "colabtui-remote has no extra 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, says):
    (tmp_path / "file.txt").write_text("x")
    argv = [a.format(tmp=tmp_path) for a in args]
    assert main(["notebook", *argv]) == 2
    captured = capsys.readouterr()
    assert says.format(tmp=tmp_path) in captured.err
    assert captured.out == "" and "Traceback" not in captured.err
    assert not list(tmp_path.glob("*.whl"))


# --------------------------------------------------------------------------- an installed wheel


def test_from_an_installed_wheel_the_wheel_is_put_together_again(tmp_path, capsys):
    """colabtui-remote installed from its wheel (pip --target): no source tree beside it, so
    the wheel is made from the files pip's RECORD lists, and it is the same wheel."""
    original = tmp_path / "built"
    original.mkdir()
    assert main(["notebook", "--drive-dir", str(original), "--in-notebook", "/x"]) == 0
    capsys.readouterr()
    installed = tmp_path / "site"
    _pip_target(original / WHEEL, installed)
    folder = tmp_path / "My Drive"
    folder.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    done = _python("-m", "colabtui", "notebook", "--drive-dir", str(folder), cwd=tmp_path,
                   env=env)
    assert done.returncode == 0, done.stderr
    assert f"put together from the installed files in {installed}" in done.stderr
    assert f"WHEEL = '/content/drive/MyDrive/{WHEEL}'" in done.stdout
    with zipfile.ZipFile(original / WHEEL) as a, zipfile.ZipFile(folder / WHEEL) as b:
        def members(z: zipfile.ZipFile) -> dict[str, bytes]:
            return {n: z.read(n) for n in z.namelist() if not n.endswith("/RECORD")}
        assert members(a) == members(b)
    _pip_target(folder / WHEEL, tmp_path / "again")
    assert _imported_from(tmp_path / "again")[0] == VERSION

    with open(installed / "colabtui_remote" / "wire.py", "a") as f:
        f.write("# changed by hand\n")
    done = _python("-m", "colabtui", "notebook", "--drive-dir", str(folder), cwd=tmp_path,
                   env=env)
    assert done.returncode == 1
    assert "wire.py was changed after pip installed it" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- Google Drive


def test_drive_uploads_the_wheel_and_the_cell_names_its_place_in_my_drive(
        standin, creds, tmp_path, capsys):
    top = standin.create_folder("colabtui")
    assert main(["notebook", "--drive", f"gdrive://{top}/wheels"]) == 0
    captured = capsys.readouterr()
    assert f"WHEEL = '/content/drive/MyDrive/colabtui/wheels/{WHEEL}'" in captured.out
    assert "(md5 checked)" in captured.err
    (file_id,) = standin.ids_titled(WHEEL)
    wheel = tmp_path / WHEEL
    wheel.write_bytes(standin.content(file_id))
    _pip_target(wheel, tmp_path / "target")
    assert _imported_from(tmp_path / "target")[0] == VERSION

    assert main(["notebook", "--drive", f"gdrive://{top}/wheels"]) == 0  # again: replaced
    assert standin.ids_titled(WHEEL) == [file_id]
    assert main(["notebook", "--drive", "gdrive://root/colabtui"]) == 0  # by title, in root
    assert f"WHEEL = '/content/drive/MyDrive/colabtui/{WHEEL}'" in capsys.readouterr().out


def test_drive_folder_outside_my_drive_needs_in_notebook(standin, creds, capsys):
    shared = standin.create_folder("theirs")
    standin.shared_only(shared)
    assert main(["notebook", "--drive", f"gdrive://{shared}"]) == 2
    err = capsys.readouterr().err
    assert "is not in your My Drive" in err and "--in-notebook" in err
    assert not standin.ids_titled(WHEEL)
    assert main(["notebook", "--drive", f"gdrive://{shared}", "--in-notebook",
                 "/content/drive/Shareddrives/team"]) == 0
    assert f"WHEEL = '/content/drive/Shareddrives/team/{WHEEL}'" in capsys.readouterr().out


def test_drive_without_credentials_or_folder_is_exit_2_with_how_to(standin, creds, tmp_path,
                                                                   monkeypatch, capsys):
    assert main(["notebook", "--drive", "gdrive://1NoSuchFolderAtAll"]) == 2
    assert "1NoSuchFolderAtAll does not exist or is not shared" in capsys.readouterr().err
    monkeypatch.setenv(CREDENTIALS_ENV, str(tmp_path / "nowhere.json"))
    assert main(["notebook", "--drive", "gdrive://root/colabtui"]) == 2
    captured = capsys.readouterr()
    assert "no Drive login at" in captured.err and "colabtui drive login" in captured.err
    assert captured.out == "" and "Traceback" not in captured.err
