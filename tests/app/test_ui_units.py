"""The UI's pure parts (formatting, chart reduction) and its handling of bad input."""

from __future__ import annotations

import dataclasses
import html
import math

import numpy as np
from colabtui_remote.schema import MetricPoint
from ui_fixtures import (
    MB,
    NOW,
    feed,
    frozen_clock,
    three_sessions,
    write_config,
)

from colabtui.app import ColabTuiApp
from colabtui.config import Config, SessionConfig, load_config, save_config
from colabtui.formatting import (
    bar,
    fmt_age,
    fmt_bytes,
    fmt_duration,
    fmt_eta,
    fmt_minutes,
    fmt_rate,
)
from colabtui.screens.add_session import AddSessionScreen
from colabtui.widgets.chart_data import (
    chart_series,
    minmax_per_column,
    prepare,
)
from colabtui.widgets.checkpoint_view import checkpoint_lines
from colabtui.widgets.progress_view import progress_lines


def test_formatting():
    assert fmt_age(NOW - 240, NOW) == "4 min ago"
    assert fmt_age(NOW - 1, NOW) == "just now"
    assert fmt_age(None, NOW) == "n/a"
    assert fmt_bytes(180_000_000) == "180 MB"
    assert fmt_bytes(1_400_000_000) == "1.4 GB"
    assert fmt_bytes(512) == "512 B"
    assert fmt_duration(185) == "3m"
    assert fmt_duration(3900) == "1h05m"
    assert fmt_duration(math.nan) == "n/a"
    assert fmt_eta(100, 1100, 10.0) == "1m40s"
    assert fmt_eta(100, None, 10.0) == "n/a"
    assert fmt_rate(0.5) == "2.0 s/step"
    assert bar(0.5, 4) == "██  "
    assert bar(None, 3) == "░░░"


def test_minmax_keeps_spikes_and_at_most_two_points_per_column():
    steps = np.arange(10_000, dtype=float)
    values = np.ones(10_000)
    values[4321] = 50.0
    values[777] = -3.0
    xs, ys = minmax_per_column(steps, values, 40, 0, 9999)
    assert len(xs) <= 80
    assert 50.0 in ys and -3.0 in ys
    assert list(xs) == sorted(xs)


def test_nonfinite_points_are_counted_never_dropped():
    pts = [MetricPoint(i, i, 0.0, v) for i, v in
           enumerate([1.0, math.nan, 0.5, math.inf, -math.inf, 0.0, 0.2])]
    p = prepare("loss", pts, log_scale=False)
    assert (p.nan, p.inf, len(p.steps)) == (1, 2, 4)
    assert sorted(p.top) == [1, 3] and list(p.bottom) == [4]
    logp = prepare("loss", pts, log_scale=True)
    assert logp.nonpositive == 1 and len(logp.steps) == 3
    assert chart_series(["acc", "val_loss", "loss"]) == ["loss", "val_loss"]
    assert chart_series(["acc", "lr"]) == ["acc"]


async def test_untrusted_text_renders_literally(tmp_path):
    sessions = three_sessions()
    for s, label in zip(sessions, ["[bold]x[/", "[/", "[1]"], strict=True):
        s.config.label = label
    write_config(tmp_path / "c.toml", sessions)
    app = ColabTuiApp(tmp_path / "c.toml", tmp_path / "l.db", clock=frozen_clock, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        feed(app, sessions)
        await pilot.pause()
        app.notify("[bold]x[/ [red]", markup=False)
        await pilot.pause()
        text = html.unescape(app.export_screenshot()).replace("\xa0", " ")
    for literal in ("[bold]x[/", "[/", "[1]", "[Errno 28]"):
        assert literal in text


async def test_a_broken_config_is_reported_and_never_overwritten(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[[sessions]]\nurl = 'http://127.0.0.1:1'\ntoken = \n", encoding="utf-8")
    before = config.read_bytes()
    app = ColabTuiApp(config, tmp_path / "l.db", poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.config_error is not None
        assert any("config" in (n.title or "") for n in app._notifications)
        await pilot.press("a")
        assert not isinstance(app.screen, AddSessionScreen)
    assert config.read_bytes() == before


async def test_the_add_form_explains_bad_input_and_saves_nothing(tmp_path):
    config = tmp_path / "config.toml"
    save_config(Config([SessionConfig("http://127.0.0.1:9", "t" * 20, "old")]), config)
    before = config.read_bytes()
    app = ColabTuiApp(config, tmp_path / "l.db", poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AddSessionScreen)

        async def attempt(url: str, token: str) -> str:
            form.query_one("#url").value = url
            form.query_one("#token").value = token
            form.query_one("#form-error").update("")
            form.query_one("#label").focus()
            await pilot.press("enter")  # Enter in the last field submits the form
            for _ in range(400):
                shown = str(form.query_one("#form-error").render())
                if shown and "asking" not in shown:
                    return shown
                await pilot.pause(0.02)
            raise AssertionError("no answer shown in the form")

        assert "http://" in await attempt("ftp://x", "tok")
        assert "token is empty" in await attempt("http://127.0.0.1:9", "")
        # a saved URL is an update of its token: checked like any other, saved only once
        # the session answers (nothing listens on port 9)
        assert "does not answer" in await attempt("http://127.0.0.1:9", "u" * 20)
        # port 1 on loopback: nothing listens, the connection is refused
        assert "does not answer" in await attempt("http://127.0.0.1:1", "t" * 20)
        await pilot.press("escape")
    assert config.read_bytes() == before


def test_ticking_figures_change_at_most_once_a_minute():
    assert [fmt_minutes(s) for s in (0, 1, 59.9)] == ["<1m"] * 3
    assert [fmt_minutes(s) for s in (60, 119, 120)] == ["1m", "1m", "2m"]
    assert fmt_minutes(3900) == "1h05m" and fmt_minutes(None) == "n/a"
    # at risk, autosave countdown and uptime of a session started 20 s ago: the same text
    # for every second of its first minute, then once a minute
    s = three_sessions()[0]
    status = dataclasses.replace(
        s.status, started_at=NOW - 20, uptime_s=20.0,
        checkpoint=dataclasses.replace(s.status.checkpoint, last=None,
                                       next_autosave_at=NOW + 30))
    risk = {checkpoint_lines(status, NOW + t, 0.0, 30.0).plain for t in range(39)}
    assert len(risk) == 1 and "at risk  <1m   autosave in <1m" in risk.pop()
    ups = {progress_lines(dataclasses.replace(status, uptime_s=u), 60).plain
           for u in range(20, 60)}
    assert len(ups) == 1 and "up <1m" in ups.pop()
    later = {checkpoint_lines(status, NOW + t, 0.0, 30.0).plain for t in range(70, 130)}
    assert len(later) == 2, later  # 1m, then 2m: one change in that minute


def _with_replica(replica):
    s = three_sessions()[0]
    return dataclasses.replace(
        s.status, checkpoint=dataclasses.replace(s.status.checkpoint, replica=replica))


def test_drive_replica_shows_written_locally_and_verified_on_drive_apart():
    from colabtui_remote.schema import ReplicaCopy, ReplicaStatus, UploadProgress

    local = three_sessions()[0].status.checkpoint.last
    verified = ReplicaCopy(step=local.step - 500, name="ckpt.pt", bytes=local.bytes, md5="0" * 32,
                           verified_at=NOW - 600, saved_at=NOW - 900, file_id="1Abc")
    uploading = _with_replica(ReplicaStatus(
        dest="gdrive://1Abc", kind="drive", state="uploading", verified=verified, pending=1,
        uploading=UploadProgress(step=local.step, bytes_sent=60 * MB, bytes_total=240 * MB)))
    text = checkpoint_lines(uploading, NOW, 0.0, 30.0).plain
    assert text.startswith("local ")  # the first line is what is written locally
    assert f"on Drive ✓ step {verified.step:,} verified 10 min ago" in text
    assert f"uploading step {local.step:,}: 60 MB/240 MB (25%)" in text
    # work at risk counts from the checkpoint verified on Drive, not the local one
    assert "at risk  15m " in text


def test_drive_offline_and_errors_are_said_in_words():
    from colabtui_remote.schema import ReplicaStatus

    offline = _with_replica(ReplicaStatus(
        dest="/content/drive/MyDrive/run", kind="mount", state="offline", pending=2,
        last_error="[Errno 107] Transport endpoint is not connected: '/content/drive/[/b]'",
        last_error_at=NOW - 30, next_retry_at=NOW + 40))
    text = checkpoint_lines(offline, NOW, 0.0, 30.0).plain
    assert "Drive mount offline · 2 local only · retry in 40s\non Drive nothing verified yet" \
        in text
    assert "[Errno 107] Transport endpoint is not connected: '/content/drive/[/b]'" in text
    expired = _with_replica(ReplicaStatus(
        dest="gdrive://1Abc", kind="drive", state="error",
        last_error="Drive refused the credentials (invalid_grant): run colabtui drive login"))
    text = checkpoint_lines(expired, NOW, 0.0, 30.0).plain
    assert "Drive error\non Drive nothing verified yet" in text and "invalid_grant" in text
    compact = checkpoint_lines(expired, NOW, 0.0, 30.0, compact=True).plain
    assert "Drive error" in compact


async def test_the_add_form_takes_a_mailbox_folder_without_a_token(tmp_path):
    config = tmp_path / "config.toml"
    mailbox = tmp_path / "GoogleDrive" / "run" / "mailbox"
    app = ColabTuiApp(config, tmp_path / "l.db", poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, AddSessionScreen)
        form.query_one("#url").value = str(mailbox)
        form.query_one("#label").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert "is not a folder here" in str(form.query_one("#form-error").render())
        mailbox.mkdir(parents=True)  # synced now; the runtime has not written a status yet
        await pilot.press("enter")
        for _ in range(200):
            if app.screen is not form:
                break
            await pilot.pause(0.02)
        assert app.screen is not form, str(form.query_one("#form-error").render())
        await pilot.pause()
    saved = load_config(config).sessions
    assert [(s.url, s.token) for s in saved] == [(f"mailbox:{mailbox}", "")]


def test_a_failed_save_is_news_only_until_a_later_save_succeeds():
    kaggle = three_sessions()[2].status  # its last save failed 60 s ago, after step 2000's
    assert "save failed" in checkpoint_lines(kaggle, NOW, 0.0, 30.0).plain
    later = dataclasses.replace(kaggle.checkpoint.last, step=2200, saved_at=NOW - 10)
    fixed = dataclasses.replace(kaggle, checkpoint=dataclasses.replace(kaggle.checkpoint,
                                                                       last=later))
    text = checkpoint_lines(fixed, NOW, 0.0, 30.0).plain
    assert "save failed" not in text and "step 2,200" in text


async def test_two_live_sessions_of_one_run_name_are_warned_about_once(tmp_path):
    sessions = three_sessions()
    sessions[1].status = dataclasses.replace(sessions[1].status, run=sessions[0].status.run)
    config = tmp_path / "config.toml"
    write_config(config, sessions)
    app = ColabTuiApp(config, tmp_path / "l.db", clock=frozen_clock, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        feed(app, sessions)
        app._tick()
        app._tick()
        await pilot.pause()
        warned = [n for n in app._notifications if n.title == "one run name, two runs"]
        assert len(warned) == 1
        assert repr(sessions[0].status.run) in warned[0].message


async def test_the_add_form_points_from_a_run_folder_to_its_mailbox(tmp_path):
    run = tmp_path / "GoogleDrive" / "run"
    (run / "mailbox").mkdir(parents=True)
    (run / "mailbox" / "status.json").write_text("{}")  # the runtime writes there
    app = ColabTuiApp(tmp_path / "config.toml", tmp_path / "l.db", poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        form = app.screen
        form.query_one("#url").value = str(run)
        form.query_one("#label").focus()
        await pilot.press("enter")
        for _ in range(200):
            shown = str(form.query_one("#form-error").render())
            if shown and "asking" not in shown:
                break
            await pilot.pause(0.02)
        assert f"this is a run folder; its mailbox is {run}/mailbox" in shown
        assert app.screen is form


def test_the_progress_line_shows_the_runtimes_age_beside_its_documented_maximum():
    from colabtui_remote.schema import RuntimeInfo

    from colabtui.formatting import fmt_limit

    assert [fmt_limit(s) for s in (43200, 86400, 5400, None)] == ["12h", "24h", "1h30m", "n/a"]
    status = dataclasses.replace(three_sessions()[0].status, uptime_s=21 * 60.0)
    assert "up 21m" in progress_lines(status, 60).plain and "≤" not in progress_lines(
        status, 60).plain  # no runtime object (an older session): as before
    colab = RuntimeInfo(platform="colab", age_s=10 * 3600 + 20 * 60.0, max_s=43200.0,
                        idle_timeout_s=5400.0, limit_note="Colab: up to 12 h free, 24 h paid")
    line = progress_lines(dataclasses.replace(status, runtime=colab), 60).plain
    assert "up 10h20m · ≤ 12h" in line  # the runtime's age, which its limit counts
    other = RuntimeInfo(platform="other", age_s=50_000.0)  # no known maximum: the session's
    assert "up 21m" in progress_lines(dataclasses.replace(status, runtime=other), 60).plain
    paid = dataclasses.replace(colab, max_s=86400.0)
    assert "· ≤ 24h" in progress_lines(dataclasses.replace(status, runtime=paid), 60).plain
    bad = dataclasses.replace(colab, age_s=None, max_s=None, invalid=("age_s", "max_s"))
    assert "up invalid · ≤ invalid" in progress_lines(
        dataclasses.replace(status, runtime=bad), 60).plain
    assert "up " not in progress_lines(dataclasses.replace(status, runtime=colab), 39).plain
