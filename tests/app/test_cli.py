"""The colabtui command: connect and status against a real session, refused tokens, protocol
mismatch, bad input, --help and --version."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from colabtui_remote import Monitor
from colabtui_remote.schema import PROTOCOL_VERSION
from ports import free_port

from colabtui import __version__
from colabtui.cli import main
from colabtui.config import Config, SessionConfig, load_config, save_config

TOKEN = "cli-token-0123456789abcdefXYZ"


@pytest.fixture
def monitor(tmp_path: Path):
    mon = Monitor(run="digits-lr3e-3", checkpoint_dir=None, autosave_every=None,
                  label="digits lr=3e-3", handle_sigterm=False)
    mon.serve(port=0, token=TOKEN, quiet=True)
    for step in range(3):
        mon.log(step, loss=2.0 - step * 0.5)
        mon.at_step_boundary(step + 1)
    yield mon
    mon.close()


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> Path:
    """Config and data folders in tmp_path; returns the config file path."""
    monkeypatch.setenv("COLABTUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("COLABTUI_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "config" / "config.toml"


@pytest.fixture
def wrong_protocol():
    body = json.dumps({"protocol": PROTOCOL_VERSION + 1, "run": "r", "session_id": "s",
                       "state": "running", "step": 1}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# --------------------------------------------------------------------------- help, version


def test_help_has_examples(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "examples:" in out and "colabtui connect http://" in out and "exit codes" in out
    for command in ("connect", "status", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == \
        f"colabtui {__version__} (colabtui-remote {__version__}, protocol v{PROTOCOL_VERSION})"


def test_python_m_colabtui_help() -> None:
    done = subprocess.run([sys.executable, "-m", "colabtui", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: colabtui")


# --------------------------------------------------------------------------- connect


def test_connect_checks_then_saves(env: Path, monitor: Monitor, capsys) -> None:
    assert main(["connect", monitor.url + "/", "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert "saved digits lr=3e-3" in out and "run digits-lr3e-3, running, step 3" in out
    assert TOKEN not in out and "cli-…YZ" in out
    assert load_config(env).sessions == [SessionConfig(monitor.url, TOKEN, "digits lr=3e-3")]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert main(["connect", monitor.url, "--token", TOKEN, "--label", "mine"]) == 0
    assert "updated mine" in capsys.readouterr().out
    assert [s.label for s in load_config(env).sessions] == ["mine"]


def test_connect_refused_token(env: Path, monitor: Monitor, capsys) -> None:
    wrong = "wrong-token-but-long-enough"
    assert main(["connect", monitor.url, "--token", wrong]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"colabtui: token refused by {monitor.url}"
    assert wrong not in captured.out + captured.err
    assert not env.exists()


def test_connect_protocol_mismatch(env: Path, wrong_protocol: str, capsys) -> None:
    assert main(["connect", wrong_protocol, "--token", TOKEN]) == 1
    err = capsys.readouterr().err
    assert f"the session speaks v{PROTOCOL_VERSION + 1}" in err and "Traceback" not in err
    assert not env.exists()


def test_connect_unreachable(env: Path, capsys) -> None:
    url = closed_port_url()
    assert main(["connect", url, "--token", TOKEN, "--timeout", "2"]) == 1
    assert capsys.readouterr().err.strip() == \
        f"colabtui: {url} did not answer as a colabtui session: connection refused"
    assert not env.exists()


@pytest.mark.parametrize(("args", "words"), [
    (["connect", "127.0.0.1:8765", "--token", TOKEN], "not an http:// or https:// URL"),
    (["connect", "http://h:1", "--token", "has spaces in it"], "spaces"),
])
def test_connect_bad_input(env: Path, capsys, args: list[str], words: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and "has spaces in it" not in err


def test_connect_token_that_starts_with_a_dash(env: Path, capsys) -> None:
    """``--token=-abc`` reaches the session intact (``--token -abc`` cannot: argparse reads
    ``-abc`` as an option)."""
    token = "-dash-first-token-0123456789"
    mon = Monitor(run="dash", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    mon.serve(port=0, token=token, quiet=True)
    try:
        assert main(["connect", mon.url, f"--token={token}", "--label", "dash"]) == 0
    finally:
        mon.close()
    assert "saved dash" in capsys.readouterr().out
    assert load_config(env).sessions == [SessionConfig(mon.url, token, "dash")]


def test_connect_without_a_scheme_suggests_http(env: Path, capsys) -> None:
    assert main(["connect", "127.0.0.1:39233", "--token", TOKEN]) == 2
    assert "did you mean http://127.0.0.1:39233?" in capsys.readouterr().err
    assert not env.exists()


def test_connect_with_broken_config_changes_nothing(env: Path, monitor: Monitor, capsys) -> None:
    env.parent.mkdir(parents=True)
    env.write_text("[[sessions]\nurl = 1\n")
    assert main(["connect", monitor.url, "--token", TOKEN]) == 2
    assert "line 1" in capsys.readouterr().err
    assert env.read_text() == "[[sessions]\nurl = 1\n"


# --------------------------------------------------------------------------- status


def test_status_json(env: Path, monitor: Monitor, capsys) -> None:
    down = closed_port_url()
    save_config(Config([SessionConfig(monitor.url, TOKEN, "live"),
                        SessionConfig(down, "another-token-xxxxxxxx", "")]), env)
    assert main(["status", "--json", "--timeout", "2"]) == 1  # one did not answer
    out = capsys.readouterr().out
    assert TOKEN not in out
    doc = json.loads(out)
    live, dead = doc["sessions"]
    assert live["ok"] is True and live["token"] == "cli-…YZ"
    assert (live["label"], live["state"], live["step"], live["loss"]) == ("live", "running", 3, 1.0)
    assert live["run"] == "digits-lr3e-3" and live["checkpoint"] is None
    assert live["gpu"] is None or "name" in live["gpu"]
    assert dead["ok"] is False and dead["label"] == down.removeprefix("http://")
    assert dead["error"] == {"kind": "unreachable", "message": "connection refused"}


def test_status_carries_the_runtime_and_its_limit(env: Path, monkeypatch, capsys) -> None:
    from colabtui_remote.runtime import MAX_S_ENV, detect_platform

    monkeypatch.setenv(MAX_S_ENV, "86400")  # a paid Colab plan's 24 h, as a user sets it
    mon = Monitor(run="limits", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    mon.serve(port=0, token=TOKEN, quiet=True)
    try:
        save_config(Config([SessionConfig(mon.url, TOKEN, "limits")]), env)
        assert main(["status", "--json"]) == 0
        runtime = json.loads(capsys.readouterr().out)["sessions"][0]["runtime"]
        assert main(["status"]) == 0
        row = capsys.readouterr().out.splitlines()[1]
    finally:
        mon.close()
    assert runtime["platform"] == detect_platform() and runtime["max_s"] == 86400.0
    assert "COLABTUI_RUNTIME_MAX_S" in runtime["limit_note"]
    assert runtime["age_s"] is None or runtime["age_s"] >= 0
    assert "of ≤ 24h" in row and "runtime " in row


def test_status_table(env: Path, monitor: Monitor, capsys) -> None:
    save_config(Config([SessionConfig(monitor.url, TOKEN, "live")]), env)
    assert main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["SESSION", "STATE", "STEP", "LOSS", "GPU"]
    assert lines[1].split()[:4] == ["live", "running", "3", "1"]
    assert "none yet" in lines[1]


def test_status_json_carries_work_at_risk(env: Path, monitor: Monitor, tmp_path: Path,
                                          capsys) -> None:
    import time

    import torch

    from colabtui.config import Settings

    saved = Monitor(run="digits-saved", checkpoint_dir=tmp_path / "ckpt", autosave_every=None,
                    handle_sigterm=False)
    try:
        saved.track(w=torch.arange(100, dtype=torch.float32))
        saved.serve(port=0, token=TOKEN, quiet=True)
        saved.commands.submit("save-1", "save")
        saved.at_step_boundary(1)  # the save happens here, on this thread; a writer finishes it
        deadline = time.monotonic() + 60
        while saved.commands.get("save-1").state != "done":
            assert time.monotonic() < deadline, "the save did not finish"
            time.sleep(0.02)
        time.sleep(0.05)  # some work after the checkpoint
        capsys.readouterr()  # the notebook's line about the save
        # a threshold of a few milliseconds: both sessions are past it, as the panel would say
        config = Config([SessionConfig(monitor.url, TOKEN, "fresh"),
                         SessionConfig(saved.url, TOKEN, "saved")],
                        settings=Settings(risk_warning_min=0.0002))
        save_config(config, env)
        assert main(["status", "--json"]) == 0
        fresh, after_save = json.loads(capsys.readouterr().out)["sessions"]
        assert main(["status"]) == 0
        table = capsys.readouterr().out.splitlines()
        save_config(Config(config.sessions), env)  # the default threshold, 30 min
        assert main(["status", "--json"]) == 0
        calm = [e["work_at_risk"] for e in json.loads(capsys.readouterr().out)["sessions"]]
    finally:
        saved.close()
    # no checkpoint: everything since the session started is at risk
    risk = fresh["work_at_risk"]
    assert (risk["state"], risk["counted_from"], risk["warning"]) == ("at_risk", "start", True)
    assert 0 <= risk["seconds"] < 600 and risk["warning_after_s"] == pytest.approx(0.012)
    # a checkpoint: at risk since it was saved, on the session's clock
    risk = after_save["work_at_risk"]
    assert (risk["state"], risk["counted_from"], risk["warning"]) == \
        ("at_risk", "checkpoint", True)
    assert risk["since"] == after_save["checkpoint"]["saved_at"]
    assert 0 <= risk["seconds"] < 600
    assert abs(risk["seconds"] - after_save["checkpoint"]["age_s"]) <= 0.1
    assert [(r["state"], r["warning"], r["warning_after_s"]) for r in calm] == \
        [("at_risk", False, 1800.0)] * 2
    assert "none yet; at risk <1m (past <1m)" in table[1], table
    assert "; at risk <1m (past <1m)" in table[2] and "step 1, " in table[2], table


def test_status_without_sessions(env: Path, capsys) -> None:
    assert main(["status"]) == 0
    assert "no sessions saved" in capsys.readouterr().out


def test_status_with_broken_config(env: Path, capsys) -> None:
    env.parent.mkdir(parents=True)
    env.write_text('[[sessions]]\nurl = "http://a:1"\ntoken = "abc\n')
    assert main(["status", "--json"]) == 2
    captured = capsys.readouterr()
    assert "line 3" in captured.err and captured.out == ""


def test_demo_rejects_bad_count(env: Path, capsys) -> None:
    assert main(["demo", "--sessions", "12"]) == 2
    assert "1 to 9" in capsys.readouterr().err
