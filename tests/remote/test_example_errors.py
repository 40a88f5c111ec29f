"""The runnable example (remote/examples/train_digits.py) meets bad Drive input with one line
on stderr and exit code 2, never a traceback, and trains nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "remote" / "examples" / "train_digits.py"


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE), "--steps", "5", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,says", [
    (["--checkpoint-dir", "gdrive://1NoSuchFolderAtAll/run", "--port", "0"],
     "1NoSuchFolderAtAll does not exist or is not shared"),
    (["--checkpoint-dir", "CKPT", "--port", "-1", "--mailbox", "gdrive://short"],
     "'short' is not a Drive folder id"),
    (["--checkpoint-dir", "CKPT", "--port", "-1", "--mailbox", "gdrive://1NoSuchFolderAtAll"],
     "1NoSuchFolderAtAll does not exist or is not shared"),
], ids=["checkpoints-folder-missing", "mailbox-bad-id", "mailbox-folder-missing"])
def test_bad_drive_input_is_one_line_not_a_traceback(args, says, standin, creds, tmp_path,
                                                     monkeypatch):
    import os

    monkeypatch.setenv("COLABTUI_LOCAL_CHECKPOINTS", str(tmp_path / "disk"))
    args = [str(tmp_path / "ckpt") if a == "CKPT" else a for a in args]
    done = _run(args, dict(os.environ), tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert says in done.stderr
    assert "train_digits: " in done.stderr
