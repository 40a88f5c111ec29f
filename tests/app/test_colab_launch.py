"""``colabtui launch`` and relaunch end to end: Google's Colab CLI (the real library) assigns
runtimes from the stand-in (tests/app/colab_standin.py), each a real ``jupyter_server`` with a
disk of its own; the script and the wheel of this colabtui-remote go up through the contents
API, a real kernel installs the wheel and starts the script as its own process (the digits
example, its Monitor serving the mailbox from ``$COLABTUI_MAILBOX``), and the laptop watches,
saves and stops it through the runtime proxy. A runtime's death (its process killed, the
assignment gone) and the relaunch that resumes from the shared checkpoint folder; each refusal
a user meets (a script that dies, no quota, a runtime still assigned, an unknown GPU, no
sign-in, a corrupt launches file)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from colab_standin import standin_that_assigns, wait_for

from colabtui.app import ColabTuiApp
from colabtui.colab.account import Account
from colabtui.colab.client import ColabMailboxClient
from colabtui.colab.errors import (
    AssignRefused,
    ColabError,
    LaunchFailed,
    NotSignedIn,
    RuntimeGone,
)
from colabtui.colab.launch import LAUNCH_DIR, LaunchSpec, launch, read_output
from colabtui.colab.launches import LaunchRecordError, load_launches, relaunch, remember
from colabtui.colab.proxy import RuntimeProxy
from colabtui.colab.url import DEFAULT_MAILBOX, parse_colab_url
from colabtui.config import Config, SessionConfig, Settings, load_config, save_config
from colabtui.screens.confirm_relaunch import ConfirmRelaunchScreen
from colabtui.screens.launch_output import LaunchOutputScreen

REPO = Path(__file__).resolve().parents[2]
TRAIN_DIGITS = REPO / "remote" / "examples" / "train_digits.py"


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """Colab that assigns runtimes (three at most), each a Jupyter server of its own."""
    with standin_that_assigns(tmp_path_factory.mktemp("runtimes")) as (standin, disks):
        yield {"standin": standin, "disks": disks}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """This colabtui-remote's wheel, built once as ``colabtui launch`` builds it."""
    from colabtui.notebook_wheel import build_remote_wheel

    return build_remote_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def signed_in(colab, tmp_path, monkeypatch):
    """Signed in to the stand-in (the CLI's token file under a HOME of our own), launches.json
    under a data folder of our own; every process a launch started is killed after, every
    runtime released."""
    standin = colab["standin"]
    home = tmp_path / "home"
    path = standin.write_credentials(home)
    import colab_cli.auth

    monkeypatch.setattr(colab_cli.auth, "TOKEN_CONFIG_PATH", str(path))
    env = {"HOME": str(home), "COLABTUI_COLAB_DOMAIN": standin.url,
           "COLABTUI_GOOGLE_TOKEN_URI": f"{standin.url}/token",
           "COLABTUI_DATA_DIR": str(tmp_path / "data")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    pids: list[int] = []
    yield {"env": {**os.environ, **env}, "config": tmp_path / "config.toml", "pids": pids,
           "launches": tmp_path / "data" / "launches.json", "ckpt": tmp_path / "ckpt"}
    for disk in colab["disks"].values():  # every script started on any runtime
        for pid in _launched_pids(disk):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with standin.lock:
        standin.runtimes.clear()
    standin.max_assignments = 3


def _launched_pids(disk: Path) -> list[int]:
    """Processes whose working folder is that runtime's launch folder."""
    folder = str((disk / LAUNCH_DIR).resolve())
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(proc / "cwd") == folder:
                    found.append(int(proc.name))
    return found


def digits_args(ckpt: Path | str, *, steps: int = 100_000, delay: float = 0.01,
                run: str = "launched-digits") -> tuple[str, ...]:
    return ("--port", "-1", "--checkpoint-dir", str(ckpt), "--steps", str(steps),
            "--step-delay", str(delay), "--autosave-every", "0", "--run", run)


def colabtui(signed: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colabtui", "--config", str(signed["config"]),
                           *args], capture_output=True, text=True, env=signed["env"],
                          timeout=timeout, stdin=subprocess.DEVNULL)


async def run_command(client, kind: str, command_id: str) -> None:
    await client.send_command(kind, command_id)
    deadline = time.monotonic() + 60
    while (rec := await client.get_command(command_id)).state not in ("done", "failed"):
        assert time.monotonic() < deadline, rec
        await asyncio.sleep(0.2)
    assert rec.state == "done", rec


def kernels_of(standin, endpoint: str) -> list:
    rt = standin.runtimes[endpoint]
    return httpx.get(f"{rt.jupyter_url}/api/kernels",
                     headers={"Authorization": f"token {rt.jupyter_token}"}, timeout=10).json()


# --------------------------------------------------------------------------- launch


async def test_two_sessions_launched_trained_watched_saved_stopped_and_kept_alive(
        colab, signed_in, wheel):
    standin, disks = colab["standin"], colab["disks"]
    said: list[str] = []
    ckpt = f"{signed_in['ckpt']}-{{session}}"  # each session its own run and folder
    spec = LaunchSpec(TRAIN_DIGITS, digits_args(ckpt, run="launched-digits-{session}"), "T4")
    started = launch(Account(), spec, wheel.path, wheel.version, 2, say=said.append)
    assert len(started) == 2 and len(standin.runtimes) == 2  # never more than asked
    for n, s in enumerate(started, start=1):
        assert f"{signed_in['ckpt']}-{n}" in s.args and f"launched-digits-{n}" in s.args
    assert {s.runtime.endpoint for s in started} == set(standin.runtimes)
    for s in started:
        disk = disks[s.runtime.endpoint]
        assert s.runtime.accelerator == "T4"
        assert s.url == f"colab://{s.runtime.endpoint}/{DEFAULT_MAILBOX}"
        # the uploaded version, not the laptop's: installed into the launch folder's lib
        assert Path(s.module).resolve().is_relative_to((disk / LAUNCH_DIR / "lib").resolve())
        assert (disk / LAUNCH_DIR / "train_digits.py").read_bytes() == TRAIN_DIGITS.read_bytes()
        assert Path(s.log).resolve() == (disk / LAUNCH_DIR / "train.log").resolve()
        assert kernels_of(standin, s.runtime.endpoint) == []  # the kernels stay free
    assert any("asking Colab for a T4 runtime" in line for line in said)

    first, second = started
    clients = [ColabMailboxClient(s.url, RuntimeProxy(s.runtime.endpoint), keep_alive_s=0.5)
               for s in started]
    try:
        for n, client in enumerate(clients, start=1):
            st = await wait_for(client, lambda s: s.state == "running" and s.step > 0)
            assert st.run == f"launched-digits-{n}"
        await run_command(clients[0], "save", "save-1")
        st = await wait_for(clients[0], lambda s: s.checkpoint.last is not None)
        assert st.checkpoint.last.step > 0
        await asyncio.sleep(0.6)
        await clients[1].status()  # a keep-alive is due again while it trains
        for client in clients:
            await run_command(client, "stop", "stop-1")
            st = await wait_for(client, lambda s: s.state == "stopped")
            assert st.checkpoint.last.step == st.step
        kept = [ep for ep, _ in standin.keep_alives]
        assert first.runtime.endpoint in kept and kept.count(second.runtime.endpoint) >= 2
        alive_before = len(standin.keep_alives)
        for client in clients:  # a stopped run's runtime is not kept alive
            await asyncio.sleep(0.6)
            assert (await client.status()).state == "stopped"
        assert len(standin.keep_alives) == alive_before
        assert all(c.keep_alive_error is None for c in clients)
    finally:
        for client in clients:
            await client.aclose()
    log = disks[first.runtime.endpoint] / LAUNCH_DIR / "train.log"
    lines = read_output(first.runtime.endpoint)  # through the proxy, as the app's o reads it
    assert lines == log.read_text().splitlines() and any("stopped at step" in ln for ln in lines)

    # the output is the runtime's: hostile until cleaned; a progress bar's \r shows its last
    # state; the end of a big file only, and never half a line
    log.write_bytes(b"x" * 100_000 + b"\nepoch 1:  10%\repoch 1: 100%\r\n"
                    b"\x1b]0;owned\x07\x1b[2Jloss 0.5 [/bold]\n")
    lines = read_output(first.runtime.endpoint, max_bytes=4096)
    assert lines[0] == "epoch 1: 100%" and len(lines) == 2
    assert lines[1].endswith("loss 0.5 [/bold]") and not {"\x1b", "\x07"} & set(lines[1])
    log.write_bytes(b"")
    assert read_output(first.runtime.endpoint) == []
    log.unlink()
    with pytest.raises(FileNotFoundError):
        read_output(first.runtime.endpoint)


def test_a_script_that_dies_at_once_is_a_clear_failure_and_its_runtime_is_released(
        colab, signed_in, wheel, tmp_path):
    standin = colab["standin"]
    script = tmp_path / "broken.py"
    script.write_text("print('loading the data…')\nraise SystemExit('no such file: data.csv')\n")
    said: list[str] = []
    with pytest.raises(LaunchFailed) as err:
        launch(Account(), LaunchSpec(script, (), None), wheel.path, wheel.version, 1,
               say=said.append)
    message = str(err.value)
    assert "`python broken.py` ended within 3 s" in message
    assert "no such file: data.csv" in message and "loading the data" in message
    assert standin.runtimes == {}  # nothing left burning units
    assert any("released runtime" in line for line in said)


def test_no_quota_for_the_second_session_releases_the_first(colab, signed_in, wheel, tmp_path):
    standin = colab["standin"]
    standin.max_assignments = 1
    script = tmp_path / "sleeper.py"
    script.write_text("import time\ntime.sleep(120)\n")
    said: list[str] = []
    with pytest.raises(AssignRefused) as err:
        launch(Account(), LaunchSpec(script, ("{session}",), "A100"), wheel.path, wheel.version, 2,
               say=said.append)
    assert "412" in str(err.value)
    assert standin.runtimes == {}
    released = [line for line in said if "released runtime" in line]
    assert len(released) == 1, said


def test_sessions_out_of_range_and_a_missing_script_are_refused_before_any_cost(
        colab, signed_in, wheel, tmp_path, monkeypatch):
    standin = colab["standin"]
    monkeypatch.setenv("COLABTUI_CONFIG_DIR", str(tmp_path / "no-drive-login"))
    monkeypatch.delenv("COLABTUI_DRIVE_CREDENTIALS", raising=False)
    before = len(standin.requests)
    for n in (0, 4):
        with pytest.raises(ValueError, match="from 1 to 3"):
            launch(Account(), LaunchSpec(TRAIN_DIGITS), wheel.path, wheel.version, n)
    with pytest.raises(ValueError, match="cannot be read"):
        launch(Account(), LaunchSpec(tmp_path / "gone.py"), wheel.path, wheel.version, 1)
    with pytest.raises(ValueError, match=r"a Python script \(\.py\)"):
        launch(Account(), LaunchSpec(tmp_path / "notes.txt"), wheel.path, wheel.version, 1)
    with pytest.raises(ValueError, match=r"put \{session\} in the arguments that must differ"):
        launch(Account(), LaunchSpec(TRAIN_DIGITS, digits_args(tmp_path)), wheel.path,
               wheel.version, 2)
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * ((16 << 20) + 1))
    with pytest.raises(ValueError, match="larger than 16 MiB"):
        launch(Account(), LaunchSpec(big), wheel.path, wheel.version, 1)
    for arg in ("gdrive://1AbC/digits", "--checkpoint-dir=gdrive://1AbC/digits"):
        with pytest.raises(ValueError, match="run `colabtui drive login` first"):
            launch(Account(), LaunchSpec(TRAIN_DIGITS, ("--checkpoint-dir", arg)),
                   wheel.path, wheel.version, 1)
    assert standin.runtimes == {} and not any(
        path.startswith("/tun/m/assign") for _, path in standin.requests[before:])


# --------------------------------------------------------------------------- relaunch


@pytest.fixture
def drive(tmp_path, monkeypatch):
    """A stand-in Drive (tests/remote/drive_standin.py) with a folder ``colabtui``; the
    laptop's Drive sign-in (``colabtui drive login``'s file) in a config folder of our own; the
    runtimes reach the stand-in through ``$COLABTUI_DRIVE_API``, as the laptop does."""
    from drive_standin import DriveStandin

    with DriveStandin(tmp_path / "drive") as standin:
        config_dir = tmp_path / "laptop-config"
        config_dir.mkdir()
        standin.creds = standin.make_credentials_file(config_dir / "drive-credentials.json")
        monkeypatch.setenv("COLABTUI_CONFIG_DIR", str(config_dir))
        monkeypatch.delenv("COLABTUI_DRIVE_CREDENTIALS", raising=False)
        monkeypatch.setenv("COLABTUI_DRIVE_API", standin.api_endpoint)
        monkeypatch.delenv("COLABTUI_LOCAL_CHECKPOINTS", raising=False)
        standin.folder_id = standin.create_folder("colabtui")
        yield standin


async def test_a_dead_runtime_is_relaunched_and_the_run_resumes_from_its_drive_checkpoint(
        colab, signed_in, wheel, drive):
    standin, disks = colab["standin"], colab["disks"]
    account = Account()
    ckpt = f"gdrive://{drive.folder_id}/digits"
    spec = LaunchSpec(TRAIN_DIGITS, digits_args(ckpt, delay=0.05), None)
    said: list[str] = []
    (old,) = launch(account, spec, wheel.path, wheel.version, 1, say=said.append)
    sent = disks[old.runtime.endpoint] / LAUNCH_DIR / "drive-credentials.json"
    assert sent.stat().st_mode & 0o777 == 0o600  # the laptop's Drive sign-in, for the script
    assert any("uploading your Drive sign-in" in line for line in said)
    config = signed_in["config"]
    save_config(Config([SessionConfig(old.url, "", "digits")]), config)
    remember([old], spec, ["digits"])
    assert set(load_launches()) == {old.url}

    async with ColabMailboxClient(old.url, RuntimeProxy(old.runtime.endpoint)) as client:
        await wait_for(client, lambda s: s.state == "running" and s.step > 0)
        await run_command(client, "save", "save-1")
        st = await wait_for(client, lambda s: s.checkpoint.replica is not None
                            and s.checkpoint.replica.verified is not None)
        saved = st.checkpoint.replica.verified.step  # on Drive: it outlives the runtime
        assert saved > 0 and st.checkpoint.replica.dest == ckpt

    with pytest.raises(ColabError, match="still assigned"):  # never two runtimes for one run
        relaunch(account, old.url, config, wheel.path, wheel.version)
    assert list(standin.runtimes) == [old.runtime.endpoint]

    os.kill(old.pid, signal.SIGKILL)  # the runtime dies: its process, then its assignment
    standin.release(old.runtime.endpoint)
    said: list[str] = []
    new = relaunch(account, old.url, config, wheel.path, wheel.version, say=said.append)
    assert new.runtime.endpoint != old.runtime.endpoint
    assert list(standin.runtimes) == [new.runtime.endpoint]
    (session,) = load_config(config).sessions  # moved, label kept
    assert session.url == new.url and session.label == "digits"
    assert set(load_launches()) == {new.url}
    assert any("asking Colab for a CPU runtime for digits" in line for line in said)

    async with ColabMailboxClient(new.url, RuntimeProxy(new.runtime.endpoint)) as client:
        st = await wait_for(client, lambda s: s.state == "running" and s.step is not None)
        assert st.run == "launched-digits"
        assert st.checkpoint.last is not None and st.checkpoint.last.step == saved
        assert st.step >= saved  # resumed there, not from step 0
        await run_command(client, "stop", "stop-1")
    # each runtime stages checkpoints on its own disk (its home's ~/.cache): the new one
    # started with nothing there, so what it resumed from came down from Drive
    staged = Path(".cache", "colabtui", "checkpoints", "launched-digits")
    assert any((disks[old.runtime.endpoint] / "root" / staged).iterdir())


async def test_the_app_offers_r_on_a_dead_launched_session_and_relaunches_it_after_a_yes(
        colab, signed_in, wheel, tmp_path):
    standin = colab["standin"]
    spec = LaunchSpec(TRAIN_DIGITS, digits_args(signed_in["ckpt"]), None)
    (old,) = launch(Account(), spec, wheel.path, wheel.version, 1)
    config = signed_in["config"]
    other = SessionConfig("http://127.0.0.1:9", "other-token-0123456789abcdef", "other")
    save_config(Config([SessionConfig(old.url, "", "digits"), other],
                       Settings(poll_interval_s=0.2)), config)
    remember([old], spec, ["digits"])
    os.kill(old.pid, signal.SIGKILL)
    standin.release(old.runtime.endpoint)

    app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.5)
    async with app.run_test(size=(140, 40)) as pilot:
        async def until(condition, what: str, timeout: float = 120.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, f"gave up waiting for {what}"
                await pilot.pause(0.1)

        panel = app.panels[0]
        await until(lambda: panel.conn_kind not in ("connected", "waiting")
                    and "R relaunches it" in panel._header_text().plain, "the hint")
        assert app.check_action("relaunch", ()) is True  # in the footer now
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmRelaunchScreen)
        assert "Relaunch digits on a new CPU runtime?" in app.screen.question().plain
        await pilot.press("n")  # No is nothing: no runtime asked for
        assert not isinstance(app.screen, ConfirmRelaunchScreen) and standin.runtimes == {}
        await pilot.press("R")
        await pilot.press("y")
        await until(lambda: load_config(config).sessions[0].url != old.url, "the new URL saved")
        await until(lambda: app.panels and app.panels[0].session.url != old.url
                    and app.panels[0].conn_kind == "connected", "the new runtime watched")
        (endpoint,) = standin.runtimes
        # the relaunched panel keeps its place and its number: 1 still acts on it
        assert [(p.session.label, p.index) for p in app.panels] == [("digits", 1), ("other", 2)]
        assert app.panels[0].session.url == f"colab://{endpoint}/{DEFAULT_MAILBOX}"
        assert "R relaunches it" not in app.panels[0]._header_text().plain
        shown = " ".join(str(n.message) for n in app._notifications)
        assert f"digits relaunched on runtime {endpoint} (CPU)" in shown

        await pilot.press("1", "R")  # alive now: R says so, and asks nothing
        assert not isinstance(app.screen, ConfirmRelaunchScreen)
        await until(lambda: any("its runtime answers" in str(n.message)
                                for n in app._notifications), "the refusal")
        assert list(standin.runtimes) == [endpoint]

        await pilot.press("o")  # its output, through the runtime proxy
        screen = app.screen
        assert isinstance(screen, LaunchOutputScreen)
        await until(lambda: screen.lines is not None or screen.error is not None, "the output")
        assert screen.error is None
        assert any(line.startswith("colabtui: serving") for line in screen.lines)
        await pilot.press("q")
        assert not isinstance(app.screen, LaunchOutputScreen)


def test_relaunch_of_a_session_never_launched_or_with_a_corrupt_file_says_so(
        colab, signed_in, wheel):
    account = Account()
    with pytest.raises(LaunchRecordError, match="was not started by `colabtui launch`"):
        relaunch(account, "colab://gpu-t4-s-nowhere/content/colabtui", signed_in["config"],
                 wheel.path, wheel.version)
    signed_in["launches"].parent.mkdir(parents=True)
    url = "colab://gpu-t4-s-x/content/colabtui"
    good = {"script": "/t/train.py", "args": ["--steps", "9"], "gpu": "T4", "label": "x"}
    for bad in ('{"launches": [1, 2', "[" * 100_000 + "]" * 100_000,
                json.dumps({"launches": {url: {**good, "args": "abc"}}}),
                json.dumps({"launches": {url: {**good, "gpu": 4}}}),
                json.dumps({"launches": {"http://x/": good}})):
        signed_in["launches"].write_text(bad)
        with pytest.raises(LaunchRecordError, match="not a launches file"):
            load_launches()
        assert signed_in["launches"].read_text() == bad  # left as it was
    hostile = {**good, "label": "L\x1b]0;owned\x07 [/] \x1b[2J", "args": ["\x1b]52;c;AAAA\x07"]}
    signed_in["launches"].write_text(json.dumps({"launches": {url: hostile}}))
    (record,) = load_launches().values()
    assert not {"\x1b", "\x07"} & set(record.label + record.spec.command)
    assert colab["standin"].runtimes == {}


# --------------------------------------------------------------------------- the command line


def test_colabtui_launch_starts_saves_the_session_and_relaunch_refuses_a_live_one(
        colab, signed_in):
    r = colabtui(signed_in, "launch", "--no-open", "--label", "digits", str(TRAIN_DIGITS),
                 *digits_args(signed_in["ckpt"]))
    assert r.returncode == 0, r.stderr
    assert "compute units: 97.50 left" in r.stdout
    (endpoint,) = colab["standin"].runtimes
    assert f"started 'digits' on {endpoint} (CPU)" in r.stdout
    (session,) = load_config(signed_in["config"]).sessions
    assert parse_colab_url(session.url)[0] == endpoint and session.label == "digits"
    record = json.loads(signed_in["launches"].read_text())["launches"][session.url]
    assert record["script"] == str(TRAIN_DIGITS) and record["gpu"] is None
    assert record["args"][:2] == ["--port", "-1"]

    r = colabtui(signed_in, "colab", "relaunch", session.url)
    assert r.returncode == 1
    assert f"runtime {endpoint} is still assigned to your account" in r.stderr
    assert list(colab["standin"].runtimes) == [endpoint]


def test_colabtui_launch_refuses_bad_arguments_and_no_sign_in_with_one_line(
        colab, signed_in, tmp_path):
    r = colabtui(signed_in, "launch", "--gpu", "H900", str(TRAIN_DIGITS))
    assert r.returncode == 2 and "invalid choice: 'H900'" in r.stderr
    r = colabtui(signed_in, "launch", "--sessions", "4", str(TRAIN_DIGITS))
    assert r.returncode == 2 and "--sessions 4: from 1 to 3" in r.stderr
    r = colabtui(signed_in, "launch", str(tmp_path / "nope.py"))
    assert r.returncode == 2 and "cannot be read" in r.stderr
    r = colabtui(signed_in, "colab", "relaunch")
    assert r.returncode == 2 and "needs the session's colab:// URL" in r.stderr
    nobody = {**signed_in, "env": {**signed_in["env"], "HOME": str(tmp_path / "nobody")}}
    r = colabtui(nobody, "launch", str(TRAIN_DIGITS))
    assert r.returncode == 1 and "colabtui colab login" in r.stderr
    assert "Traceback" not in r.stderr
    assert colab["standin"].runtimes == {}


def test_ctrl_c_while_colab_assigns_waits_for_the_runtime_and_releases_it(colab, signed_in):
    standin = colab["standin"]
    proc = subprocess.Popen([sys.executable, "-m", "colabtui", "--config",
                             str(signed_in["config"]), "launch", "--no-open", str(TRAIN_DIGITS),
                             *digits_args(signed_in["ckpt"])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=signed_in["env"], stdin=subprocess.DEVNULL)
    out = []
    for line in proc.stdout:  # the wheel is built first; then Colab is asked
        out.append(line)
        if "asking Colab for a CPU runtime" in line:
            break
    time.sleep(0.3)  # Colab is starting the runtime (a Jupyter server: seconds)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    said = "".join(out) + rest
    assert proc.returncode == 130, said
    assert "waiting for Colab's answer" in said and "released runtime" in said
    assert standin.runtimes == {}  # nothing left burning units
    assert "Traceback" not in said


def test_a_refused_sign_in_is_read_again_after_a_new_login(colab, signed_in):
    standin = colab["standin"]
    proxy = RuntimeProxy("gpu-t4-s-nowhere")
    standin.expire_access_tokens()
    standin.revoke_refresh_token()
    with pytest.raises(NotSignedIn):
        proxy.current()
    standin.refresh_token = "refresh-after-login"  # `colabtui colab login` again: a new one
    standin.write_credentials(Path(signed_in["env"]["HOME"]))
    with pytest.raises(RuntimeGone):  # listed with the new sign-in: this runtime is not there
        proxy.current()
