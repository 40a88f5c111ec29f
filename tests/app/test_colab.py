"""The colab transport end to end: Google's Colab CLI (``colab_cli``, the real library) against
a stand-in for Colab's tunnel endpoints and runtime proxy (tests/app/colab_standin.py), in front
of a real ``jupyter_server`` on loopback whose disk a real training process writes its mailbox
to. ``colabtui colab list``, ``colabtui connect colab://``, a save and a stop carried out through
the Jupyter contents API, the proxy token refreshed before it expires, and each failure a user
meets (not signed in, a refused refresh, a released runtime, a bad URL, no CLI installed)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from colab_standin import standin_with_runtime, wait_for

from colabtui.client import SessionError
from colabtui.colab import account as colab_account
from colabtui.colab.client import ColabMailboxClient
from colabtui.colab.errors import ColabCliMissing, NotSignedIn
from colabtui.colab.proxy import RuntimeProxy
from colabtui.colab.url import DEFAULT_MAILBOX, parse_colab_url

ENDPOINT = "gpu-t4-s-standin1"
START_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """One Colab runtime: a Jupyter server on a disk of its own (``root``), behind the stand-in."""
    with standin_with_runtime(tmp_path_factory.mktemp("colab"), ENDPOINT) as (standin, root):
        yield {"root": root, "standin": standin}


@pytest.fixture
def signed_in(runtime, tmp_path, monkeypatch):
    """This machine signed in to the stand-in: the Colab CLI's token file under a HOME of its
    own, and ``COLABTUI_COLAB_DOMAIN`` pointing the CLI's client at the stand-in."""
    standin = runtime["standin"]
    home = tmp_path / "home"
    path = standin.write_credentials(home)
    import colab_cli.auth

    monkeypatch.setattr(colab_cli.auth, "TOKEN_CONFIG_PATH", str(path))
    monkeypatch.setenv("COLABTUI_COLAB_DOMAIN", standin.url)
    monkeypatch.setenv("COLABTUI_GOOGLE_TOKEN_URI", f"{standin.url}/token")
    return {"home": home, "token_file": path,
            "env": {**os.environ, "HOME": str(home), "COLABTUI_COLAB_DOMAIN": standin.url,
                    "COLABTUI_GOOGLE_TOKEN_URI": f"{standin.url}/token",
                    "_config": str(tmp_path / "config.toml")}}


def start_training(root: Path, tmp_path: Path, *, steps: int = 100_000, interval: float = 0.5,
                   folder: str = DEFAULT_MAILBOX) -> subprocess.Popen:
    """The digits example as a launched script runs on a runtime: its own process, mailbox
    only (no HTTP port), the mailbox on the runtime's disk."""
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "colabtui_remote.examples.digits", "--port", "-1",
         "--mailbox", str(root / folder), "--mailbox-interval", str(interval),
         "--checkpoint-dir", str(ckpt), "--steps", str(steps), "--step-delay", "0.01",
         "--autosave-every", "0", "--run", "colab-digits", "--label", "colab digits"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (root / folder / "status.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"training did not start: {proc.communicate()[0]}")
        time.sleep(0.1)
    return proc


@pytest.fixture
def training(runtime, tmp_path):
    procs = []

    def start(**kw) -> subprocess.Popen:
        procs.append(start_training(runtime["root"], tmp_path, **kw))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def colabtui(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colabtui", "--config", env["_config"],
                           *args], capture_output=True, text=True, env=env, timeout=timeout)


# --------------------------------------------------------------------------- the CLI


def test_colab_list_shows_each_runtime_its_age_and_whether_a_monitor_answers(
        runtime, signed_in, training):
    r = colabtui(signed_in["env"], "colab", "list", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    (row,) = listed["runtimes"]
    assert row["endpoint"] == ENDPOINT and row["accelerator"] == "T4"
    assert row["monitor"] is None and row["error"] == f"no Monitor at /{DEFAULT_MAILBOX}"
    assert 0 <= time.time() - row["started_at"] < 600  # from the Jupyter server's /api/status
    assert listed["compute_units"] == {"balance": 97.5, "per_hour": 1.96}

    training()
    r = colabtui(signed_in["env"], "colab", "list")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(ENDPOINT))
    assert "T4" in line and "colab digits · running · step" in line, r.stdout
    assert "compute units: 97.50 left, using 1.96 an hour" in r.stdout
    assert "colabtui connect colab://ENDPOINT" in r.stdout


def test_connect_colab_saves_the_session_and_status_reads_it_through_the_proxy(
        runtime, signed_in, training):
    training()
    r = colabtui(signed_in["env"], "connect", f"colab://{ENDPOINT}")
    assert r.returncode == 0, r.stderr
    assert f"(Colab runtime {ENDPOINT}): run colab-digits, running" in r.stdout
    r = colabtui(signed_in["env"], "status", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    (entry,) = json.loads(r.stdout)["sessions"]
    assert entry["url"] == f"colab://{ENDPOINT}/{DEFAULT_MAILBOX}"
    assert entry["state"] == "running" and entry["step"] > 0, entry


def test_not_signed_in_says_to_log_in(runtime, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "COLABTUI_COLAB_DOMAIN": runtime["standin"].url,
           "_config": str(tmp_path / "config.toml")}
    for args in (("colab", "list"), ("connect", f"colab://{ENDPOINT}")):
        r = colabtui(env, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "not signed in to Colab on this machine" in r.stderr
        assert "colabtui colab login" in r.stderr
        assert "Traceback" not in r.stderr


@pytest.mark.parametrize("url,why", [
    ("colab://", "is not a runtime endpoint"),
    ("colab://gpu t4", "is not a runtime endpoint"),
    ("colab://gpu-t4/content/../etc", "'..' is not a folder name"),
    ("colab://gpu-t4/content/\x1b]52;c;aGk=\x07", "is not a folder name"),
])
def test_a_bad_colab_url_is_a_usage_error(tmp_path, url, why):
    env = {**os.environ, "HOME": str(tmp_path), "_config": str(tmp_path / "c.toml")}
    r = colabtui(env, "connect", url)
    assert r.returncode == 2, r.stdout + r.stderr
    assert why in r.stderr and "\x1b" not in r.stderr


# --------------------------------------------------------------------------- the transport


async def test_save_and_stop_through_the_contents_api_with_the_token_refreshed(
        runtime, signed_in, training, tmp_path):
    standin = runtime["standin"]
    standin.token_lifetime_s = 3.0  # tokens live 3 s; refreshed 1.5 s before they expire
    proc = training()
    try:
        proxy = RuntimeProxy(ENDPOINT, margin_s=1.5)
        async with ColabMailboxClient(f"colab://{ENDPOINT}", proxy) as client:
            assert client.transport == "colab"
            st = await wait_for(client, lambda s: s.state == "running" and s.step > 0)
            assert st.run == "colab-digits"
            page = await client.metrics(0)
            assert "loss" in page.series and page.series["loss"]

            await client.send_command("save", "save-1")
            deadline = time.monotonic() + 60
            while (rec := await client.get_command("save-1")).state not in ("done", "failed"):
                assert time.monotonic() < deadline, rec
                await asyncio.sleep(0.2)
            assert rec.state == "done", rec
            st = await wait_for(client, lambda s: s.checkpoint.last is not None)
            assert st.checkpoint.last.step > 0
            # the command file was ours to remove once answered; the record stays
            assert not (runtime["root"] / DEFAULT_MAILBOX / "commands" / "save-1.json").exists()

            await asyncio.sleep(3.5)  # past one token lifetime: the next requests refresh it
            await client.send_command("stop", "stop-1")
            st = await wait_for(client, lambda s: s.state == "stopped")
            assert st.checkpoint.last.step == st.step
        assert proc.wait(timeout=60) == 0
        assert proxy.refreshes >= 3, proxy.refreshes
        assert len(standin.proxy_tokens_used) >= 2  # a fresh token really went to the proxy
    finally:
        standin.token_lifetime_s = 3600.0


async def test_an_expired_proxy_token_is_refreshed_once_and_the_poll_goes_on(
        runtime, signed_in, training):
    training()
    proxy = RuntimeProxy(ENDPOINT)
    async with ColabMailboxClient(f"colab://{ENDPOINT}", proxy) as client:
        await wait_for(client, lambda s: s.state == "running")
        runtime["standin"].expire_proxy_tokens()  # the proxy refuses what we hold: 401
        before = proxy.refreshes
        st = await client.status()
        assert st.state == "running" and proxy.refreshes == before + 1


async def test_an_expired_sign_in_is_refreshed_and_a_revoked_one_asks_to_log_in_again(
        runtime, signed_in, training):
    standin = runtime["standin"]
    training()
    standin.expire_access_tokens()  # Colab answers 401: google-auth refreshes at /token
    acct = colab_account.Account()
    assert [r.endpoint for r in acct.runtimes()] == [ENDPOINT]

    standin.expire_access_tokens()
    standin.revoke_refresh_token()
    proxy = RuntimeProxy(ENDPOINT)
    async with ColabMailboxClient(f"colab://{ENDPOINT}", proxy) as client:
        with pytest.raises(SessionError) as err:
            await client.status()
    assert err.value.kind == "token_refused"
    assert "colabtui colab login" in err.value.message
    standin.refresh_token = json.loads(signed_in["token_file"].read_text())["refresh_token"]


async def test_a_released_runtime_says_so(runtime, signed_in, tmp_path):
    standin = runtime["standin"]
    jupyter_rt = standin.runtimes[ENDPOINT]
    proxy = RuntimeProxy(ENDPOINT)
    try:
        async with ColabMailboxClient(f"colab://{ENDPOINT}/content/none-here", proxy) as client:
            with pytest.raises(SessionError) as err:  # no Monitor there: no folder
                await client.status()
            assert err.value.kind == "unreachable"
            assert err.value.message == (
                f"no mailbox folder /content/none-here on runtime {ENDPOINT} yet: has the "
                "notebook called mon.serve_mailbox('/content/none-here')?")
            standin.release(ENDPOINT)
            with pytest.raises(SessionError) as err:  # the proxy answers 502: gone?
                await client.status()
        assert err.value.kind == "unreachable"
        assert f"runtime {ENDPOINT} is no longer assigned to your account" in err.value.message
    finally:
        standin.runtimes[ENDPOINT] = jupyter_rt


def test_without_the_colab_cli_installed_the_message_says_how_to_install_it(monkeypatch):
    for name in [m for m in sys.modules if m == "colab_cli" or m.startswith("colab_cli.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "colab_cli", None)  # what `import` finds when it is absent
    with pytest.raises(ColabCliMissing) as err:
        colab_account.Account()
    assert "pip install --ignore-requires-python 'google-colab-cli==0.7.5'" in str(err.value)


def test_colab_urls_parse_to_an_endpoint_and_a_folder():
    assert parse_colab_url("colab://gpu-t4-s-abc") == ("gpu-t4-s-abc", DEFAULT_MAILBOX)
    assert parse_colab_url(" colab://gpu-t4-s-abc/content/runs/a/ ") == \
        ("gpu-t4-s-abc", "content/runs/a")
    with pytest.raises(ValueError):
        parse_colab_url("http://gpu-t4")


def test_no_stored_sign_in_is_not_signed_in(tmp_path, monkeypatch):
    import colab_cli.auth

    monkeypatch.setattr(colab_cli.auth, "TOKEN_CONFIG_PATH", str(tmp_path / "token.json"))
    with pytest.raises(NotSignedIn, match="run `colabtui colab login`"):
        colab_account.authorized_session()
    (tmp_path / "token.json").write_text("{not json")
    with pytest.raises(NotSignedIn, match="cannot be read"):
        colab_account.authorized_session()


async def test_a_huge_or_garbled_file_on_the_runtime_is_a_bad_response(runtime, signed_in):
    folder = runtime["root"] / "content" / "hostile"
    folder.mkdir(exist_ok=True)
    proxy = RuntimeProxy(ENDPOINT)
    async with ColabMailboxClient(f"colab://{ENDPOINT}/content/hostile", proxy) as client:
        (folder / "status.json").write_bytes(b"{" * 5_000_000)  # past the 4 MiB bound
        with pytest.raises(SessionError) as err:
            await client.status()
        assert err.value.kind == "bad_response" and "larger than" in err.value.message
        (folder / "status.json").write_text('{"protocol": 1, "state": "\x1b]0;pwned\x07"}')
        with pytest.raises(SessionError) as err:
            await client.status()
        assert err.value.kind == "bad_response" and "\x1b" not in err.value.message


# --------------------------------------------------------------------------- the app


async def test_the_add_form_lists_the_colab_runtimes_and_adds_the_one_picked(
        runtime, signed_in, training, tmp_path):
    from textual.widgets import OptionList

    from colabtui.app import ColabTuiApp
    from colabtui.config import load_config
    from colabtui.screens.add_session import AddSessionScreen

    training()
    config = tmp_path / "config.toml"
    config.write_text("")
    app = ColabTuiApp(config, tmp_path / "ledger.sqlite3")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AddSessionScreen)
        options = form.query_one("#colab-runtimes", OptionList)
        deadline = time.monotonic() + 30
        while options.option_count == 0:
            assert time.monotonic() < deadline, "the runtimes were never listed"
            await pilot.pause(0.1)
        assert options.display and str(options.get_option_at_index(0).prompt) == \
            f"{ENDPOINT} · T4"
        options.focus()
        await pilot.press("down", "enter")  # highlight the first, pick it
        assert form.query_one("#url").value == f"colab://{ENDPOINT}/{DEFAULT_MAILBOX}"
        await pilot.click("#add")
        deadline = time.monotonic() + 30
        while not app.panels or app.panels[0].conn_kind != "connected":
            assert time.monotonic() < deadline, "the picked runtime was never watched"
            await pilot.pause(0.2)
    (saved,) = load_config(config).sessions
    assert saved.url == f"colab://{ENDPOINT}/{DEFAULT_MAILBOX}" and saved.label == "colab digits"


def test_release_asks_first_and_gives_the_runtime_back(runtime, signed_in):
    standin = runtime["standin"]
    kept = standin.runtimes[ENDPOINT]
    env = signed_in["env"]
    try:
        r = colabtui(env, "colab", "release", ENDPOINT)  # no terminal to ask on: refused
        assert r.returncode == 2 and "say --yes" in r.stderr, r.stderr
        assert ENDPOINT in standin.runtimes
        r = colabtui(env, "colab", "release", "gpu-none-such")
        assert r.returncode == 1 and "no runtime gpu-none-such is assigned" in r.stderr
        r = colabtui(env, "colab", "release")
        assert r.returncode == 2 and "needs the runtime's endpoint" in r.stderr
        r = colabtui(env, "colab", "release", ENDPOINT, "--yes")
        assert r.returncode == 0 and r.stdout.strip() == f"released {ENDPOINT} (T4)", r.stderr
        assert ENDPOINT not in standin.runtimes
        assert ("POST", f"/tun/m/unassign/{ENDPOINT}") in standin.requests
    finally:
        standin.runtimes[ENDPOINT] = kept


# --------------------------------------------------------------------------- hostile answers


async def _status_error(standin, answer, *, timeout_s: float = 10.0) -> SessionError:
    standin.proxy_answer = answer
    try:
        async with ColabMailboxClient(f"colab://{ENDPOINT}/content/hostile", RuntimeProxy(ENDPOINT),
                                      timeout_s=timeout_s) as client:
            with pytest.raises(SessionError) as err:
                await client.status()
        return err.value
    finally:
        standin.proxy_answer = None


async def test_a_runtime_that_trickles_its_answer_is_cut_off_at_the_timeout(runtime, signed_in):
    body = json.dumps({"type": "directory", "content": []}).encode()
    err = await _status_error(runtime["standin"], lambda m, p: (200, body, {}, 0.5),
                              timeout_s=1.5)  # 0.5 s a byte: 25 s if it were read whole
    assert err.kind == "unreachable" and "did not answer through Colab's proxy: too slowly" \
        in err.message


async def test_a_compressed_answer_is_refused_unread_and_a_huge_one_at_the_bound(
        runtime, signed_in):
    import gzip

    bomb = gzip.compress(b" " * (20 * 1024 * 1024))  # 20 MB of spaces in ~20 kB
    err = await _status_error(runtime["standin"], lambda m, p: (
        200, bomb, {"Content-Encoding": "gzip", "Content-Type": "application/json"}, 0))
    assert err.kind == "bad_response" and "a compressed answer" in err.message
    err = await _status_error(runtime["standin"], lambda m, p: (200, b" " * 6_000_000, {}, 0))
    assert err.kind == "bad_response" and "larger than 4194304 bytes" in err.message


@pytest.mark.parametrize("body", [b"[" * 200_000, b"<html>oops</html>", b'"a string"'])
async def test_garbage_from_the_proxy_is_a_bad_response(runtime, signed_in, body):
    err = await _status_error(runtime["standin"], lambda m, p: (200, body, {}, 0))
    assert err.kind == "bad_response", err
    assert "the runtime's answer is not" in err.message


def test_a_hostile_assignment_list_prints_nothing_that_drives_the_terminal(runtime, signed_in):
    standin = runtime["standin"]

    def hostile(listed):
        evil = dict(listed[0], endpoint="x\x1b]0;pwned\x07\x1b[2J\nFAKE-LINE  H100")
        evil["runtimeProxyInfo"] = dict(evil["runtimeProxyInfo"], url="http://[::1\x1b",
                                        tokenExpiresInSeconds=10 ** 400)
        return [*listed, evil]

    standin.patch_listing = hostile
    try:
        r = colabtui(signed_in["env"], "colab", "list")
    finally:
        standin.patch_listing = None
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert not any(line.startswith("FAKE-LINE") for line in r.stdout.splitlines())
    assert "Colab listed no usable proxy URL for runtime" in r.stdout


def test_an_accelerator_the_cli_does_not_know_is_one_line_that_says_upgrade(runtime, signed_in):
    standin = runtime["standin"]
    standin.patch_listing = lambda listed: [dict(listed[0], accelerator="H200")]
    try:
        r = colabtui(signed_in["env"], "colab", "list")
    finally:
        standin.patch_listing = None
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert "did not parse with google-colab-cli" in line and "upgrade google-colab-cli" in line


@pytest.mark.parametrize("content", ["[]", '"x"', "null", '{"refresh_token": 1}'])
def test_a_token_file_of_another_shape_is_not_signed_in(tmp_path, monkeypatch, content):
    import colab_cli.auth

    path = tmp_path / "token.json"
    path.write_text(content)
    monkeypatch.setattr(colab_cli.auth, "TOKEN_CONFIG_PATH", str(path))
    with pytest.raises(NotSignedIn, match="cannot be read"):
        colab_account.authorized_session()


@pytest.mark.parametrize("url", ["colab://ep1/content\n/mb", "colab://ep1\n/content",
                                 "colab:///content"])
def test_a_colab_url_with_a_line_break_or_no_endpoint_is_refused(tmp_path, url):
    env = {**os.environ, "HOME": str(tmp_path), "_config": str(tmp_path / "c.toml")}
    r = colabtui(env, "connect", url)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.toml").exists()
