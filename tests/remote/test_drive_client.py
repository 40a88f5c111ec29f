"""colabtui_remote.drive (url, auth, client) against the Drive v2 stand-in on loopback.

Our real code path runs unchanged: pydrive2, googleapiclient, oauth2client and httplib2 talk
HTTP to :class:`drive_standin.DriveStandin`, configured only through ``COLABTUI_DRIVE_API`` and
``COLABTUI_DRIVE_CREDENTIALS`` (or the same arguments). Failures are injected in the stand-in.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from colabtui_remote.drive import (
    CREDENTIALS_ENV,
    ChecksumMismatch,
    DriveAuthError,
    DriveError,
    DriveFolder,
    DriveNotFound,
    DriveRateLimited,
    DriveUnavailable,
    connect,
    is_gdrive_url,
    login,
    md5_file,
    parse_gdrive_url,
)
from colabtui_remote.drive.errors import FileTooLarge
from drive_standin import DriveStandin
from ports import free_port

KiB = 1024
WAIT_S = 60.0


@pytest.fixture
def folder(standin, creds):
    fid = standin.create_folder("run")
    return DriveFolder.open(f"gdrive://{fid}")


def _chunk_puts(standin) -> list[str]:
    return [p for m, p in standin.requests if m == "PUT" and "upload_id=" in p]


# ------------------------------------------------------------------------------ urls


def test_gdrive_urls_parse_and_bad_ones_say_why():
    assert parse_gdrive_url("gdrive://1AbCdEfGhIjK") == ("1AbCdEfGhIjK", ())
    assert parse_gdrive_url("gdrive://1AbC-dEf_GhIjK/runs/resnet/") == \
        ("1AbC-dEf_GhIjK", ("runs", "resnet"))
    assert parse_gdrive_url("gdrive://root/colabtui") == ("root", ("colabtui",))
    assert is_gdrive_url("gdrive://x") and not is_gdrive_url("/content/drive")
    for bad, words in [("gdrive://", "no folder id"), ("gdrive://short", "not a Drive folder id"),
                       ("gdrive://1AbCdEfGhIjK/a//b", "bad path part ''"),
                       ("gdrive://1AbCdEfGhIjK/../x", "bad path part '..'"),
                       ("gdrive://1AbC$EfGhIjK", "not a Drive folder id"),
                       ("/content/drive/x", "not a Drive URL")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            parse_gdrive_url(bad)


# ------------------------------------------------------------------------------ small files


def test_a_second_write_of_a_title_updates_the_same_file(folder, standin):
    first = folder.write_bytes("status.json", b'{"step": 1}')
    second = folder.write_bytes("status.json", b'{"step": 2}')
    assert second.id == first.id
    assert standin.ids_titled("status.json") == [first.id], "one file, never a second"
    assert folder.read_bytes("status.json") == b'{"step": 2}'
    assert second.md5 == hashlib.md5(b'{"step": 2}').hexdigest() and second.size == 11
    assert [f.title for f in folder.list()] == ["status.json"]


def test_several_files_with_one_title_give_the_oldest_and_a_warning(folder, standin, caplog):
    newer = standin.put_file("status.json", b"newer", folder.folder_id, created=2000.0)
    older = standin.put_file("status.json", b"older", folder.folder_id, created=1000.0)
    with caplog.at_level(logging.WARNING, logger="colabtui_remote.drive"):
        found = folder.find("status.json")
    assert found.id == older
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "'status.json'" in warning and older in warning and newer in warning
    assert folder.read_bytes("status.json") == b"older"
    folder.write_bytes("status.json", b"third")
    assert sorted(standin.ids_titled("status.json")) == sorted([older, newer])
    assert standin.content(older) == b"third" and standin.content(newer) == b"newer"
    # the same creation time: the smallest id, every time
    a = standin.put_file("tie.json", b"a", folder.folder_id, created=5.0)
    b = standin.put_file("tie.json", b"b", folder.folder_id, created=5.0)
    assert folder.find("tie.json").id == min(a, b)


def test_list_reads_every_page_and_leaves_out_the_trash(creds, tmp_path):
    with DriveStandin(page_size=2) as small:
        path = small.make_credentials_file(tmp_path / "small.json")
        drive = connect(path, small.api_endpoint)
        fid = small.create_folder("run")
        for i in range(5):
            small.put_file(f"f{i}.json", b"{}", fid)
        small.trash(small.put_file("gone.json", b"{}", fid))
        folder = DriveFolder.open(fid, drive)
        assert [f.title for f in folder.list()] == [f"f{i}.json" for i in range(5)]
        pages = [p for m, p in small.requests if m == "GET" and "/drive/v2/files?" in p]
        assert len(pages) == 3
        assert folder.find("gone.json") is None


def test_titles_with_quotes_are_found_exactly(folder, standin):
    folder.write_bytes("it's \\ fine.json", b"1")
    folder.write_bytes("it's \\ fine.json", b"2")
    assert len(standin.ids_titled("it's \\ fine.json")) == 1
    assert folder.read_bytes("it's \\ fine.json") == b"2"


def test_read_bytes_refuses_a_file_over_max_bytes(folder, standin):
    standin.put_file("big.json", b"x" * 5000, folder.folder_id)
    with pytest.raises(FileTooLarge, match="5000 bytes, more than 4096"):
        folder.read_bytes("big.json", max_bytes=4096)
    assert folder.read_bytes("big.json", max_bytes=5000) == b"x" * 5000


def test_missing_files_and_delete(folder, standin):
    with pytest.raises(DriveNotFound, match="no file 'nope.json' in Drive folder gdrive://"):
        folder.read_bytes("nope.json")
    f = folder.write_bytes("a.json", b"{}")
    folder.delete(f)
    assert not standin.exists(f.id)
    folder.delete(f)  # missing is not an error
    folder.delete("1ThisIdWasNeverThere")
    assert folder.find("a.json") is None


# ------------------------------------------------------------------------------ folders


def test_a_folder_id_that_does_not_exist_names_the_id(standin, creds):
    with pytest.raises(DriveNotFound) as info:
        DriveFolder.open("gdrive://1NoSuchFolderAtAll")
    assert "1NoSuchFolderAtAll does not exist or is not shared" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, OSError)


def test_a_file_id_or_a_trashed_folder_is_not_a_folder(standin, creds):
    fid = standin.put_file("notes.txt", b"hi")
    with pytest.raises(DriveNotFound, match="is a file, not a folder"):
        DriveFolder.open(f"gdrive://{fid}")
    trashed = standin.create_folder("old")
    standin.trash(trashed)
    with pytest.raises(DriveNotFound, match="in the trash"):
        DriveFolder.open(trashed)


def test_subfolders_are_found_by_title_and_created_on_request(standin, creds):
    top = standin.create_folder("colabtui")
    with pytest.raises(DriveNotFound, match="no folder 'runs' in Drive folder"):
        DriveFolder.open(f"gdrive://{top}/runs/resnet")
    deep = DriveFolder.open(f"gdrive://{top}/runs/resnet", create=True)
    assert deep.url == f"gdrive://{top}/runs/resnet"
    again = DriveFolder.open(f"gdrive://{top}/runs/resnet", create=True)
    assert again.folder_id == deep.folder_id
    assert standin.children(top) == ["runs"] and deep.check().title == "resnet"
    assert repr(deep) == f"DriveFolder('gdrive://{top}/runs/resnet')"


def test_chunk_bytes_must_be_a_multiple_of_256_kib(folder):
    for bad in (0, 100 * KiB, 256 * KiB + 1):
        with pytest.raises(ValueError, match="multiple of 262144"):
            DriveFolder(folder.folder_id, folder.drive, chunk_bytes=bad)


# ------------------------------------------------------------------------------ large files


def test_resumable_upload_in_chunks_reports_progress_and_drive_md5(folder, standin, tmp_path):
    data = os.urandom(256 * KiB * 3 + 128 * KiB)  # 3.5 chunks
    local = tmp_path / "ckpt.pt"
    local.write_bytes(data)
    chunked = DriveFolder(folder.folder_id, folder.drive, chunk_bytes=256 * KiB, url=folder.url)
    calls = []
    result = chunked.upload(local, "ckpt-000100.pt", progress=lambda s, t: calls.append((s, t)))
    total = len(data)
    assert calls == [(256 * KiB, total), (512 * KiB, total), (768 * KiB, total), (total, total)]
    assert len(_chunk_puts(standin)) == 4
    assert result.md5 == md5_file(local) == hashlib.md5(data).hexdigest()
    assert result.size == total and result.title == "ckpt-000100.pt"
    assert standin.content(result.id) == data
    # the same title again: the same file, new content
    local.write_bytes(data[::-1])
    again = chunked.upload(local, "ckpt-000100.pt")
    assert again.id == result.id and standin.ids_titled("ckpt-000100.pt") == [result.id]
    assert standin.content(result.id) == data[::-1]


def test_upload_by_file_id_and_of_an_empty_file(folder, standin, tmp_path):
    existing = folder.write_bytes("old-name.pt", b"old")
    local = tmp_path / "x.pt"
    local.write_bytes(b"new content")
    result = folder.upload(local, "new-name.pt", file_id=existing.id)
    assert result.id == existing.id and result.title == "new-name.pt"
    assert standin.content(existing.id) == b"new content"
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    calls = []
    made = folder.upload(empty, "empty.bin", progress=lambda s, t: calls.append((s, t)))
    assert made.size == 0 and made.md5 == hashlib.md5(b"").hexdigest() and calls[-1] == (0, 0)


def test_an_upload_whose_drive_md5_differs_raises(folder, standin, tmp_path):
    local = tmp_path / "ckpt.pt"
    local.write_bytes(os.urandom(300 * KiB))
    standin.wrong_md5("ckpt.pt")
    with pytest.raises(ChecksumMismatch) as info:
        folder.upload(local, "ckpt.pt")
    assert info.value.expected == md5_file(local) and info.value.actual != info.value.expected
    assert "'ckpt.pt'" in str(info.value)


def test_download_checks_md5_and_replaces_the_destination(folder, standin, tmp_path):
    data = os.urandom(1024 * KiB + 17)
    fid = standin.put_file("ckpt.pt", data, folder.folder_id)
    chunked = DriveFolder(folder.folder_id, folder.drive, chunk_bytes=256 * KiB, url=folder.url)
    f = chunked.find("ckpt.pt")
    assert f.id == fid
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "restored.pt"
    calls = []
    digest = chunked.download(f, dest, progress=lambda s, t: calls.append((s, t)))
    assert digest == hashlib.md5(data).hexdigest() == f.md5
    assert dest.read_bytes() == data
    assert calls[-1] == (len(data), len(data)) and len(calls) == 5
    assert [p.name for p in out.iterdir()] == ["restored.pt"]


def test_a_download_whose_md5_differs_leaves_the_destination_alone(folder, standin, tmp_path):
    standin.put_file("ckpt.pt", os.urandom(600 * KiB), folder.folder_id)
    standin.wrong_md5("ckpt.pt")
    f = folder.find("ckpt.pt")  # Drive's answer carries the wrong md5
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "ckpt.pt"
    dest.write_bytes(b"the good checkpoint from before")
    with pytest.raises(ChecksumMismatch) as info:
        folder.download(f, dest)
    assert info.value.expected == f.md5 and info.value.actual != f.md5
    assert "left as it was" in str(info.value)
    assert dest.read_bytes() == b"the good checkpoint from before"
    assert [p.name for p in out.iterdir()] == ["ckpt.pt"], "the temporary file is removed"


def test_threads_each_use_their_own_connection(folder, standin, tmp_path):
    """An upload on a writer thread while another thread writes and reads small files."""
    local = tmp_path / "big.pt"
    local.write_bytes(os.urandom(4 * 256 * KiB))
    chunked = DriveFolder(folder.folder_id, folder.drive, chunk_bytes=256 * KiB, url=folder.url)
    errors: list[BaseException] = []

    def writer():
        try:
            for _ in range(3):
                chunked.upload(local, "big.pt")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    for i in range(15):
        folder.write_bytes("status.json", json.dumps({"i": i}).encode())
        assert json.loads(folder.read_bytes("status.json")) == {"i": i}
    t.join(WAIT_S)
    assert not t.is_alive() and errors == []
    assert standin.content(folder.find("big.pt").id) == local.read_bytes()


# ------------------------------------------------------------------------------ errors


def test_an_expired_access_token_is_refreshed_and_saved(folder, standin, creds):
    before = json.loads(creds.read_text())["access_token"]
    standin.expire_access_tokens()
    assert folder.list() == []
    assert standin.token_refreshes == 1
    saved = json.loads(creds.read_text())
    assert saved["access_token"] != before and saved["refresh_token"] == standin.refresh_token
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600


def test_credentials_past_their_expiry_are_refreshed_on_connect(standin, tmp_path):
    path = standin.make_credentials_file(tmp_path / "c.json", expired=True)
    drive = connect(path, standin.api_endpoint)
    assert standin.token_refreshes == 1
    DriveFolder.open("root", drive).write_bytes("x.json", b"1")


def test_a_revoked_login_says_to_log_in_again(folder, standin, creds):
    standin.revoke_refresh_token()
    with pytest.raises(DriveAuthError, match="log in to Drive again"):
        folder.list()
    with pytest.raises(DriveAuthError, match="log in to Drive again"):
        connect()


def test_no_credentials_says_how_to_log_in(standin, tmp_path):
    missing = tmp_path / "nothing-here.json"
    with pytest.raises(DriveAuthError, match=r"no Drive login at .*nothing-here\.json.*log in"):
        connect(missing, standin.api_endpoint)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    with pytest.raises(DriveAuthError, match="does not hold a Drive login"):
        connect(garbage, standin.api_endpoint)


@pytest.mark.parametrize("status", [429, 403])
def test_rate_limits_are_drive_rate_limited_with_retry_after(folder, standin, status):
    standin.rate_limit(1, status=status, retry_after=7)
    with pytest.raises(DriveRateLimited) as info:
        folder.list()
    assert info.value.retry_after == 7.0 and "too many requests" in str(info.value)
    standin.rate_limit(1, status=status)
    with pytest.raises(DriveRateLimited) as info:
        folder.write_bytes("a.json", b"{}")
    assert info.value.retry_after is None
    assert folder.list() == [], "nothing retried inside; the next call goes through"


def test_other_refusals_and_server_errors(folder, standin, tmp_path):
    standin.fail_next(1, 403, "insufficientFilePermissions")
    with pytest.raises(DriveError, match="403 .*insufficientFilePermissions") as info:
        folder.list()
    assert not isinstance(info.value, (DriveRateLimited, DriveAuthError, DriveUnavailable))
    standin.fail_next(1, 503, "backendError")
    with pytest.raises(DriveUnavailable, match="503"):
        folder.read_bytes(folder.write_bytes("x.json", b"1"))
    local = tmp_path / "c.pt"
    local.write_bytes(os.urandom(600 * KiB))
    chunked = DriveFolder(folder.folder_id, folder.drive, chunk_bytes=256 * KiB, url=folder.url)
    chunked.upload(local, "c.pt")
    puts, file_id = len(_chunk_puts(standin)), chunked.find("c.pt").id
    standin.fail_next(1, 500)  # the start of the upload
    with pytest.raises(DriveUnavailable, match="uploading c.pt"):
        chunked.upload(local, "c.pt", file_id=file_id)
    assert len(_chunk_puts(standin)) == puts


def test_a_dropped_connection_is_sent_again_once_then_unavailable(folder, standin):
    standin.drop_connection_next(1)
    assert folder.list() == []  # httplib2 sends it again on a fresh connection
    standin.drop_connection_next(2)
    with pytest.raises(DriveUnavailable, match="cannot reach Drive"):
        folder.list()


def test_a_stopped_drive_is_unavailable(folder, standin):
    folder.write_bytes("a.json", b"{}")  # a keep-alive connection is open
    standin.stop()
    with pytest.raises(DriveUnavailable, match="cannot reach Drive"):
        folder.list()
    with pytest.raises(DriveUnavailable):
        folder.check()


# ------------------------------------------------------------------------------ login


class _Lines(io.TextIOBase):
    """stdout for the login thread: what pydrive2 prints, kept for the test to read."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)


def _login_through_the_standin(secrets_file, target) -> tuple[dict, str]:
    """Run login() on a thread and be its browser: open the consent URL it prints (the
    stand-in consents at once and redirects to login's local server with a code)."""
    out = _Lines()
    result: dict = {}

    def run():
        try:
            result["path"] = login(secrets_file, target, launch_browser=False,
                                   port_numbers=[free_port()])
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            result["error"] = exc

    with contextlib.redirect_stdout(out):
        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + WAIT_S
        while not (m := re.search(r"(http://127\.0\.0\.1:\d+/auth\?\S+)", out.text)):
            assert time.monotonic() < deadline, f"no consent URL printed: {out.text!r}"
            time.sleep(0.05)
        with urllib.request.urlopen(m.group(1), timeout=WAIT_S) as resp:
            resp.read()
        t.join(WAIT_S)
    return result, out.text


def test_login_writes_credentials_only_the_owner_can_read(standin, tmp_path, monkeypatch):
    monkeypatch.delenv(CREDENTIALS_ENV, raising=False)
    secrets_file = standin.make_client_secrets_file(tmp_path / "client_secrets.json")
    target = tmp_path / "cfg" / "drive-credentials.json"
    target.parent.mkdir()
    target.write_text("{}")
    os.chmod(target, 0o644)  # an old file readable by others is replaced by a private one
    result, printed = _login_through_the_standin(secrets_file, target)
    assert "error" not in result, result.get("error")
    assert result["path"] == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert standin.refresh_token in target.read_text()
    assert standin.refresh_token not in printed, "tokens are never printed"
    assert DriveFolder.open("root", connect(target, standin.api_endpoint)).check().is_folder
    # revoked: the next call says to log in again, and logging in again works
    standin.revoke_refresh_token()
    with pytest.raises(DriveAuthError, match="log in to Drive again"):
        DriveFolder.open("root", connect(target, standin.api_endpoint))
    result, _ = _login_through_the_standin(secrets_file, target)
    assert "error" not in result, result.get("error")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert DriveFolder.open("root", connect(target, standin.api_endpoint)).check().is_folder
    assert sorted(p.name for p in target.parent.iterdir()) == ["drive-credentials.json"]


def test_the_package_imports_without_pydrive2_and_says_what_to_install():
    code = ("import sys\n"
            "sys.modules['pydrive2'] = None\n"
            "import colabtui_remote.drive as d\n"
            "try:\n"
            "    d.connect('/nonexistent.json', 'http://127.0.0.1:9/')\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=WAIT_S, check=True).stdout
    assert "pip install 'colabtui-remote[drive]'" in out


def test_an_upload_given_the_local_md5_is_checked_against_drive_s(folder, standin, tmp_path):
    local = tmp_path / "ckpt.pt"
    local.write_bytes(os.urandom(600 * KiB))
    known = md5_file(local)
    assert folder.upload(local, "ckpt.pt", md5=known).md5 == known
    # the md5 the caller gives is what Drive's is compared with: a stale one is caught
    with pytest.raises(ChecksumMismatch) as info:
        folder.upload(local, "ckpt.pt", md5="0" * 32)
    assert info.value.expected == "0" * 32 and info.value.actual == known
    assert len(standin.ids_titled("ckpt.pt", folder.folder_id)) == 1  # updated by id
