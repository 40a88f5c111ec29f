"""The opt-in quick tunnel, with a cloudflared stand-in that really forwards TCP to the Monitor."""

from __future__ import annotations

import os
import re
import sys
import types
import urllib.error
from pathlib import Path

import httpx
import pytest
from colabtui_remote import Monitor
from colabtui_remote.transport.http import serve, tunnel
from colabtui_remote.transport.http.serve import connect_line
from colabtui_remote.transport.http.tunnel import TunnelError, start_quick_tunnel
from digits_training import wait_for

STANDIN = Path(__file__).with_name("cloudflared_standin.py")
FORWARDING = re.compile(r"INF standin forwarding 127\.0\.0\.1:(\d+) -> ")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def standin(tmp_path: Path, mode: str) -> tuple[Path, Path]:
    """An executable that runs the stand-in in ``mode`` and writes its pid to a file.

    Returns:
        (the executable, the pid file).
    """
    pid_file = tmp_path / f"{mode}.pid"
    exe = tmp_path / f"cloudflared-{mode}"
    exe.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\n'
                   f'exec "{sys.executable}" "{STANDIN}" "$@" --standin-mode={mode}\n')
    exe.chmod(0o755)
    return exe, pid_file


@pytest.fixture
def make_monitor(monkeypatch):
    monkeypatch.setattr(serve, "LINGER_S", 0.0)  # nobody polls after the test: no need to wait
    made = []

    def make():
        mon = Monitor(run="tunnel-unit", autosave_every=None, handle_sigterm=False)
        made.append(mon)
        return mon

    yield make
    for mon in made:
        mon.close()


def test_serve_through_the_tunnel_reaches_the_monitor_and_close_stops_cloudflared(
        tmp_path, monkeypatch, capsys, make_monitor):
    exe, pid_file = standin(tmp_path, "ok")
    monkeypatch.setenv("COLABTUI_CLOUDFLARED", str(exe))
    mon = make_monitor()

    url = mon.serve(port=0, tunnel="cloudflared")

    assert url == mon.url and url.startswith("http://127.0.0.1:")
    quick = mon._tunnel
    assert re.fullmatch(r"https://[a-z-]+\.trycloudflare\.com", quick.url)
    lines = capsys.readouterr().out.splitlines()
    assert connect_line(quick.url, mon.token, mon.label) in lines
    assert connect_line(url, mon.token, mon.label) not in lines
    warning = [line for line in lines if "warning" in line]
    assert len(warning) == 1
    assert "Colab's terms" in warning[0] and "serve_mailbox" in warning[0]
    # The stand-in names its port after 256 KiB more log: seen only if the log is drained.
    port = wait_for(lambda: next((m.group(1) for m in map(FORWARDING.search, quick.log_tail())
                                  if m), None))
    r = httpx.get(f"http://127.0.0.1:{port}/v1/status",
                  headers={"Authorization": f"Bearer {mon.token}"}, timeout=10)
    assert r.status_code == 200
    assert r.json()["run"] == "tunnel-unit"
    assert httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=10).status_code == 401
    pid = int(pid_file.read_text())
    assert quick.process.pid == pid and quick.running

    mon.close()

    assert quick.process.returncode == 0  # it took SIGTERM and shut down, not SIGKILL
    assert gone(pid)
    assert mon.tunnel_url is None
    assert "Initiated shutdown" in quick.log_tail()[-1]


def test_cloudflared_that_exits_says_why_and_the_server_stays_local(
        tmp_path, monkeypatch, capsys, make_monitor):
    exe, pid_file = standin(tmp_path, "fail")
    monkeypatch.setenv("COLABTUI_CLOUDFLARED", str(exe))

    with pytest.raises(TunnelError) as caught:
        start_quick_tunnel(1, timeout_s=30)
    message = str(caught.value)
    # cloudflared's error line names https://api.trycloudflare.com: that is no tunnel URL.
    assert "exited with code 1 before giving a URL" in message
    assert "api.trycloudflare.com on 127.0.0.53:53" in message
    assert str(exe) in message

    mon = make_monitor()
    url = mon.serve(port=0, tunnel="cloudflared")

    assert url == mon.url and mon.tunnel_url is None
    out = capsys.readouterr().out
    assert "colabtui: the tunnel did not start: cloudflared" in out
    assert f"colabtui: the server runs locally at {url}" in out
    assert connect_line(url, mon.token, mon.label) in out.splitlines()
    assert "Colab's terms" not in out
    r = httpx.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {mon.token}"}, timeout=10)
    assert r.status_code == 200


def test_cloudflared_that_prints_no_url_is_stopped_after_the_timeout(tmp_path, monkeypatch):
    exe, pid_file = standin(tmp_path, "silent")
    monkeypatch.setenv("COLABTUI_CLOUDFLARED", str(exe))

    with pytest.raises(TunnelError) as caught:
        start_quick_tunnel(1, timeout_s=1.5)

    assert "gave no tunnel URL within 1.5 s; it printed nothing" in str(caught.value)
    assert "internet" in str(caught.value)
    pid = int(pid_file.read_text())
    wait_for(lambda: gone(pid))


def test_an_unknown_tunnel_is_refused_before_anything_starts(make_monitor):
    mon = make_monitor()
    for name in ("ngrok", "", "Cloudflared"):
        with pytest.raises(ValueError, match="tunnel='cloudflared'"):
            mon.serve(port=0, tunnel=name)
    assert mon.url is None


def test_a_missing_executable_is_a_clear_message(tmp_path, monkeypatch, capsys, make_monitor):
    missing = tmp_path / "no" / "cloudflared"
    monkeypatch.setenv("COLABTUI_CLOUDFLARED", str(missing))

    with pytest.raises(TunnelError, match=re.escape(f"COLABTUI_CLOUDFLARED={missing}: no such file")):
        start_quick_tunnel(1)

    mon = make_monitor()
    url = mon.serve(port=0, tunnel="cloudflared")
    out = capsys.readouterr().out
    assert f"colabtui: the tunnel did not start: COLABTUI_CLOUDFLARED={missing}: no such file" in out
    assert connect_line(url, mon.token, mon.label) in out.splitlines()


def test_a_file_that_is_not_executable_is_named(tmp_path, monkeypatch):
    plain = tmp_path / "cloudflared"
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    monkeypatch.setenv("COLABTUI_CLOUDFLARED", str(plain))

    with pytest.raises(TunnelError, match="is not executable"):
        start_quick_tunnel(1)


def test_without_cloudflared_or_pycloudflared_the_message_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.delenv("COLABTUI_CLOUDFLARED", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no cloudflared on PATH
    monkeypatch.setitem(sys.modules, "pycloudflared", None)  # import fails: not installed

    with pytest.raises(TunnelError) as caught:
        start_quick_tunnel(1)

    assert "pip install 'colabtui-remote[tunnel]'" in str(caught.value)
    assert "COLABTUI_CLOUDFLARED" in str(caught.value)


def fake_pycloudflared(monkeypatch, executable: Path, download):
    """pycloudflared's interface (``util.get_info()``, ``util.download(info)``) with the
    download replaced: the real one fetches a release from GitHub, out of reach here."""
    util = types.ModuleType("pycloudflared.util")
    info = types.SimpleNamespace(
        system="linux", machine="x86_64", executable=str(executable),
        url="https://github.com/cloudflare/cloudflared/releases/latest/download/"
            "cloudflared-linux-amd64")
    util.get_info = lambda: info
    util.download = download
    package = types.ModuleType("pycloudflared")
    package.util = util
    monkeypatch.setitem(sys.modules, "pycloudflared", package)
    monkeypatch.setitem(sys.modules, "pycloudflared.util", util)
    monkeypatch.delenv("COLABTUI_CLOUDFLARED", raising=False)
    return info


def test_a_download_that_fails_says_where_from_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    def download(info):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    fake_pycloudflared(monkeypatch, tmp_path / "cloudflared-linux-amd64", download)

    with pytest.raises(TunnelError) as caught:
        start_quick_tunnel(1)

    message = str(caught.value)
    assert "could not download cloudflared from https://github.com/cloudflare/" in message
    assert "Temporary failure in name resolution" in message
    assert "COLABTUI_CLOUDFLARED" in message


def test_a_download_cut_short_is_downloaded_again_and_run(tmp_path, monkeypatch, make_monitor):
    monkeypatch.setenv("PATH", str(tmp_path))
    runnable, _ = standin(tmp_path, "ok")
    target = tmp_path / "cloudflared-linux-amd64"
    target.write_bytes(b"\x7fELF partial")  # pycloudflared sets the x bit only once complete
    calls = []

    def download(info):
        calls.append(info.url)
        target.write_bytes(runnable.read_bytes())
        target.chmod(0o777)
        return str(target)

    fake_pycloudflared(monkeypatch, target, download)

    quick = start_quick_tunnel(1)
    try:
        assert quick.process.args[0] == str(target)
        assert quick.url.endswith(".trycloudflare.com")
        assert len(calls) == 1
        assert tunnel.find_cloudflared() == str(target)  # now complete: no second download
        assert len(calls) == 1
    finally:
        quick.close()
    assert quick.process.returncode == 0


def test_serving_again_replaces_the_tunnel(tmp_path, monkeypatch, capsys, make_monitor):
    exe, _ = standin(tmp_path, "ok")
    monkeypatch.setenv("COLABTUI_CLOUDFLARED", str(exe))
    mon = make_monitor()
    mon.serve(port=0, tunnel="cloudflared")
    first = mon._tunnel

    mon.serve(port=0, tunnel="cloudflared")
    second = mon._tunnel

    assert first.process.returncode == 0
    assert second is not first and second.running
    lines = capsys.readouterr().out.splitlines()
    assert connect_line(second.url, mon.token, mon.label) in lines

    mon.serve(port=0)  # no tunnel this time: the last one goes too

    assert second.process.returncode == 0
    assert mon.tunnel_url is None
