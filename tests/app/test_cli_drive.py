"""``colabtui connect gdrive://…``, ``colabtui drive`` and ``colabtui checkpoints``, run as the
user runs them (``main([...])``), against the Drive v2 stand-in on loopback; the runtime side is
a real Monitor serving its mailbox through the same stand-in."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from colabtui_remote import Monitor
from colabtui_remote.drive import API_ENDPOINT_ENV, CREDENTIALS_ENV

from colabtui.cli import main
from colabtui.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "remote"))
from drive_standin import DriveStandin  # noqa: E402

WAIT_S = 60.0


@pytest.fixture
def standin():
    s = DriveStandin().start()
    yield s
    s.stop()


@pytest.fixture
def env(tmp_path: Path, monkeypatch, standin) -> Path:
    """Config/data folders in tmp_path, Drive credentials for the stand-in; the config path."""
    monkeypatch.setenv("COLABTUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path / "data"))
    creds = standin.make_credentials_file(tmp_path / "drive-credentials.json")
    monkeypatch.setenv(API_ENDPOINT_ENV, standin.api_endpoint)
    monkeypatch.setenv(CREDENTIALS_ENV, str(creds))
    return tmp_path / "config" / "config.toml"


def _wait_for(what: str, check) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_connect_a_drive_mailbox_the_runtime_serves(env, standin, capsys):
    top = standin.create_folder("colabtui")
    url = f"gdrive://{top}/digits/mailbox"
    mon = Monitor(run="digits", label="digits · T4", handle_sigterm=False)
    try:
        printed = mon.serve_mailbox(url, interval_s=0.2)
        assert printed == url
        assert f"colabtui connect {url}" in capsys.readouterr().out
        for step in range(3):
            mon.log(step, loss=1.0 / (step + 1))
            mon.at_step_boundary(step + 1)
        _wait_for("the first status on Drive", lambda: standin.ids_titled("status.json"))
        assert main(["connect", url]) == 0
    finally:
        mon.close()
    out = capsys.readouterr().out
    assert f"saved digits · T4 (Drive mailbox {url}): run digits" in out
    (session,) = load_config(env).sessions
    assert (session.url, session.token, session.label) == (url, "", "digits · T4")


def test_connect_a_drive_folder_that_does_not_exist_saves_nothing(env, capsys):
    assert main(["connect", "gdrive://1NoSuchFolderAtAll/run"]) == 1
    err = capsys.readouterr().err
    assert "1NoSuchFolderAtAll does not exist or is not shared" in err
    assert not env.exists()


def test_connect_without_drive_credentials_says_how_to_log_in(env, tmp_path, monkeypatch,
                                                              standin, capsys):
    top = standin.create_folder("colabtui")
    monkeypatch.setenv(CREDENTIALS_ENV, str(tmp_path / "nowhere.json"))
    assert main(["connect", f"gdrive://{top}/run"]) == 1
    err = capsys.readouterr().err
    assert "colabtui drive login" in err
    assert not env.exists()


def test_connect_with_revoked_drive_credentials_says_to_log_in_again(env, standin, capsys):
    top = standin.create_folder("colabtui")
    standin.expire_access_tokens()
    standin.revoke_refresh_token()
    assert main(["connect", f"gdrive://{top}/run"]) == 1
    err = capsys.readouterr().err
    assert "invalid_grant" in err and "colabtui drive login" in err
    assert not env.exists()


def test_drive_login_needs_a_client_file_and_logout_forgets(env, tmp_path, capsys):
    assert main(["drive", "login"]) == 2
    assert "--client-secrets" in capsys.readouterr().err
    assert main(["drive", "login", "--client-secrets", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    creds = Path(load_creds_path())
    assert creds.exists()
    assert main(["drive", "logout"]) == 0
    assert not creds.exists()
    assert main(["drive", "logout"]) == 0
    assert "nothing to forget" in capsys.readouterr().out


def load_creds_path() -> str:
    from colabtui_remote.drive.auth import credentials_path_in_use

    return str(credentials_path_in_use())
