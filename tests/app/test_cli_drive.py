"""``colabtui connect gdrive://…``, ``colabtui drive`` and ``colabtui checkpoints``, run as the
user runs them (``main([...])``), against the Drive v2 stand-in on loopback; the runtime side is
a real Monitor serving its mailbox through the same stand-in."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from colabtui_remote import Monitor
from colabtui_remote.drive import CREDENTIALS_ENV

from colabtui.cli import main
from colabtui.config import load_config

WAIT_S = 60.0


@pytest.fixture
def env(tmp_path: Path, monkeypatch, creds) -> Path:
    """Config/data folders in tmp_path, Drive credentials for the stand-in; the config path."""
    monkeypatch.setenv("COLABTUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path / "data"))
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
        out_connect = capsys.readouterr().out
        run_folder = url.rsplit("/", 1)[0]  # a slip: the run folder, not its mailbox
        assert main(["connect", run_folder]) == 2
        assert f"its mailbox is {url}" in capsys.readouterr().err
    finally:
        mon.close()
    out = out_connect
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
    assert main(["drive", "login", "--client-secrets", str(tmp_path)]) == 2
    assert "is a folder, not the client file" in capsys.readouterr().err
    bad = tmp_path / "client_secret.json"
    for body, says in [("not json{{", "it is not JSON"),
                       ('{"web_app": {}}', 'no "installed" client in it'),
                       ('{"installed": {"client_id": "x"}}',
                        "the client has no client_secret, auth_uri, token_uri"),
                       ('{"installed": {"client_id": "x", "client_secret": "s", "auth_uri": '
                        '"http://a", "token_uri": "http://t", "redirect_uris": []}}',
                        "redirect_uris must be a non-empty list")]:
        bad.write_text(body)
        assert main(["drive", "login", "--client-secrets", str(bad)]) == 2
        err = capsys.readouterr().err
        assert f"{bad}: not an OAuth client file" in err and says in err, err
    assert main(["drive", "logout", "--client-secrets", str(bad)]) == 2
    creds = Path(load_creds_path())
    assert creds.exists()
    assert main(["drive", "logout"]) == 0
    assert not creds.exists()
    assert main(["drive", "logout"]) == 0
    assert "nothing to forget" in capsys.readouterr().out


def load_creds_path() -> str:
    from colabtui_remote.drive.auth import credentials_path_in_use

    return str(credentials_path_in_use())


# ------------------------------------------------------------------------- colabtui checkpoints


def _checkpoints(folder: Path, steps: list[int]):
    """Real checkpoints (a small tensor state) written by the runtime's Checkpointer."""
    import torch
    from colabtui_remote.checkpoint import Checkpointer

    ck = Checkpointer(folder, keep=len(steps))
    for step in steps:
        state = ck.capture({"w": torch.full((50_000,), float(step))}, step, None)
        assert ck.submit(state, step, None) and ck.wait(30)
    infos = ck.list()
    ck.close()
    return infos


def _on_drive(standin, tmp_path: Path, steps: list[int]) -> str:
    """The checkpoints uploaded and verified on Drive by the runtime's Replicator; the URL."""
    from colabtui_remote.checkpoint.drive import DriveReplica
    from colabtui_remote.checkpoint.replica import Replicator

    url = f"gdrive://{standin.create_folder('colabtui')}/digits"
    rep = Replicator(DriveReplica(url), keep=len(steps), start=False)
    for info in _checkpoints(tmp_path / "runtime-disk", steps):
        rep.submit(info)
    rep.start()
    assert rep.wait_idle(60)
    assert rep.status().verified.step == steps[-1]
    rep.close(10)
    return url


def test_checkpoints_of_a_local_folder_and_download_the_newest(env, tmp_path, capsys):
    import hashlib

    run = tmp_path / "MyDrive" / "digits"
    infos = _checkpoints(run, [100, 200])
    (run / "ckpt-000000300.pt").write_bytes(b"PK\x03\x04 cut short")  # a save that died
    assert main(["checkpoints", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[0] == "100" and "yes (sha256)" in lines[1]
    assert lines[2].split()[0] == "200" and "ckpt-000000200.pt" in lines[2]
    assert "no (not in the manifest; never loaded)  ckpt-000000300.pt" in lines[3]
    to = tmp_path / "here"
    assert main(["checkpoints", str(run), "--download", "--to", str(to)]) == 0
    assert "downloaded step 200 to" in capsys.readouterr().out
    (run / "ckpt-000000100.pt").unlink()  # lost, or cut short: listed, but not there as listed
    with open(run / "ckpt-000000200.pt", "r+b") as f:
        f.truncate(1000)
    assert main(["checkpoints", str(run)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert "NO (the file is missing)" in rows[1]
    assert "NO (1,000 bytes, the manifest says" in rows[2]
    got = to / "ckpt-000000200.pt"
    assert hashlib.sha256(got.read_bytes()).hexdigest() == infos[-1].sha256


def test_checkpoints_on_drive_are_listed_verified_and_downloaded_md5_checked(env, standin,
                                                                            tmp_path, capsys):
    url = _on_drive(standin, tmp_path, [100, 200])
    assert main(["checkpoints", url]) == 0
    out = capsys.readouterr().out
    assert "yes (md5, just now)  ckpt-000000200.pt" in out and "ckpt-000000100.pt" in out
    # the newest was replaced on Drive by other bytes (its md5 no longer the manifest's): the
    # previous one is taken, and nothing bad is kept
    from colabtui_remote.drive import DriveFolder

    (newest,) = standin.ids_titled("ckpt-000000200.pt")
    other = tmp_path / "other.pt"
    other.write_bytes(b"not the checkpoint" * 1000)
    DriveFolder.open(url).upload(other, "ckpt-000000200.pt", file_id=newest)
    assert main(["checkpoints", url]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if "00200" in line][0]
    assert "NO (Drive's md5" in row and "is not the manifest's" in row
    to = tmp_path / "laptop"
    with pytest.warns(UserWarning, match="ckpt-000000200.pt"):
        assert main(["checkpoints", url, "--download", "--to", str(to)]) == 0
    assert "downloaded step 100" in capsys.readouterr().out
    assert sorted(p.name for p in to.iterdir()) == ["ckpt-000000100.pt"]


def test_checkpoints_with_a_manifest_on_drive_that_does_not_parse(env, standin, tmp_path,
                                                                  capsys):
    url = _on_drive(standin, tmp_path, [100])
    (manifest,) = standin.ids_titled("manifest.json")
    standin.put_file("manifest.json", b'{"format": "colabtui-checkpoints", "checkpoints": [',
                     standin.ids_titled("digits")[0])
    standin.trash(manifest)
    before = {fid: standin.content(fid) for fid in standin.ids_titled("ckpt-000000100.pt")}
    assert main(["checkpoints", url]) == 1
    err = capsys.readouterr().err
    assert "manifest.json" in err and "nothing was changed there" in err
    assert {fid: standin.content(fid) for fid in standin.ids_titled("ckpt-000000100.pt")} == before


def test_checkpoints_of_a_drive_folder_that_does_not_exist(env, capsys):
    assert main(["checkpoints", "gdrive://1NoSuchFolderAtAll"]) == 1
    assert "1NoSuchFolderAtAll does not exist or is not shared" in capsys.readouterr().err
    assert main(["checkpoints", "gdrive://nope"]) == 2
    assert "not a Drive folder id" in capsys.readouterr().err
    assert main(["checkpoints", "/no/such/run/folder"]) == 2
    assert "/no/such/run/folder: no such folder here" in capsys.readouterr().err


async def test_the_laptop_waits_as_long_as_drive_asks_after_a_rate_limit(env, standin):
    from colabtui.client import SessionError
    from colabtui.drive_mailbox import MIN_POLL_INTERVAL_S, drive_mailbox_client

    top = standin.create_folder("colabtui")
    client = drive_mailbox_client(f"gdrive://{top}")
    assert client.transport == "drive" and client.min_poll_interval_s == MIN_POLL_INTERVAL_S
    with pytest.raises(SessionError, match="no status.json yet"):
        await client.status()  # reachable, nothing written yet
    standin.rate_limit(1, status=429, retry_after=40)
    with pytest.raises(SessionError) as info:
        await client.status()
    assert info.value.kind == "unreachable" and "429" in info.value.message
    assert 35 < client.min_poll_interval_s <= 40  # the panel's next poll waits that long
    await client.aclose()


def test_status_shows_what_is_verified_on_drive_with_ages_on_the_laptop_clock(
        env, standin, tmp_path, monkeypatch, capsys):
    import json

    import torch

    monkeypatch.setenv("COLABTUI_LOCAL_CHECKPOINTS", str(tmp_path / "runtime-disk"))
    top = standin.create_folder("colabtui")
    run_url = f"gdrive://{top}/digits"
    mon = Monitor(run="digits", checkpoint_dir=run_url, autosave_every=None,
                  handle_sigterm=False)
    try:
        mon.track(w=torch.arange(1000, dtype=torch.float32))
        mon.serve_mailbox(run_url + "/mailbox", interval_s=0.2)
        mon.commands.submit("save-1", "save")
        mon.at_step_boundary(1)  # the save happens at the step boundary, on this thread
        _wait_for("the save", lambda: mon.checkpointer.last is not None)
        _wait_for("the copy verified on Drive",
                  lambda: (r := mon.status().checkpoint.replica) is not None and r.verified)
        mon.at_step_boundary(2)
        mon._mailbox.tick()  # the status with the verified copy goes out now
        assert main(["connect", run_url + "/mailbox"]) == 0
        capsys.readouterr()
        assert main(["status", "--json"]) == 0
    finally:
        mon.close()
    (entry,) = json.loads(capsys.readouterr().out)["sessions"]
    assert entry["checkpoint"]["step"] == 1
    replica = entry["replica"]
    assert (replica["kind"], replica["state"], replica["verified_step"]) == ("drive", "ok", 1)
    assert replica["dest"] == run_url and replica["pending"] == 0
    assert 0 <= entry["checkpoint"]["age_s"] < 600
    assert main(["status"]) == 0
    assert "; on Drive step 1" in capsys.readouterr().out


def test_status_marks_a_mailbox_run_that_stopped_writing(env, tmp_path, capsys):
    import json

    folder = tmp_path / "GoogleDrive" / "run" / "mailbox"
    mon = Monitor(run="digits", handle_sigterm=False)
    mon.serve_mailbox(folder, interval_s=5, quiet=True)
    mon._mailbox.tick()
    assert main(["connect", str(folder)]) == 0
    # the runtime died 10 minutes ago: its last status says running, and nothing came since
    status = json.loads((folder / "status.json").read_text())
    status["server_time"] -= 600
    (folder / "status.json").write_text(json.dumps(status))
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["sessions"]
    assert entry["state"] == "running" and entry["stale"] is True
    assert entry["status_age_s"] >= 599
    assert main(["status"]) == 0
    assert "running? (status 60" in capsys.readouterr().out
    mon._mailbox._exit.set()  # the "dead" runtime writes no last round
    mon.close()
