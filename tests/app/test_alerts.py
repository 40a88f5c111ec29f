"""Alerts against real sessions on loopback: the conditions (colabtui.alerts), their delivery
(colabtui.alert_delivery) and ``colabtui watch``.

Sessions are real: an in-process ``Monitor`` serving on loopback, whose values the test logs at
step boundaries, or a training subprocess (``digits_session``) that gets killed. Every wait is
bounded and waits for a condition, never for a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from colabtui_remote import Monitor
from colabtui_remote.schema import GpuStats, MetricPoint

from colabtui.alert_delivery import AlertCommand, Delivery, notify_escape, notify_escape_kind
from colabtui.alerts import Alert, AlertBook, AlertRules
from colabtui.cli_watch import EXIT_LOST, Watch, alert_line
from colabtui.config import Config, SessionConfig, Settings, load_config, save_config
from colabtui.poller import Poller
from colabtui.transport import make_client

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
"""Bound on every wait for a condition, seconds."""


def wait_until(condition, what: str, bound_s: float = WAIT_S, every_s: float = 0.05):
    deadline = time.monotonic() + bound_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(every_s)


class Polled:
    """One real session polled as the app polls it (Poller over the real client), every poll
    going through an AlertBook."""

    def __init__(self, session: SessionConfig, rules: AlertRules) -> None:
        self.session = session
        self.book = AlertBook(rules)
        self.fired: list[Alert] = []
        self.cleared: list[Alert] = []
        self.polls: list[tuple[float, bool]] = []  # (local time, answered)

    async def poll(self, poller: Poller):
        got = await poller.poll()
        at = time.time()
        self.polls.append((at, got.status is not None))
        change = self.book.observe(self.session.key, self.session.display_label, at,
                                   got.status, got.new_points,
                                   None if got.error is None else got.error.message)
        self.fired += change.fired
        self.cleared += change.cleared
        return got, change


def kinds(alerts: list[Alert]) -> list[str]:
    return [a.kind for a in alerts]


@pytest.fixture
def monitor(tmp_path):
    mons = []

    def start(**kwargs) -> tuple[Monitor, SessionConfig]:
        mon = Monitor(run=kwargs.pop("run", "alerts"), autosave_every=None, **kwargs)
        url = mon.serve(port=0, quiet=True)
        mons.append(mon)
        return mon, SessionConfig(url, mon.token, "alerts run")

    yield start
    for mon in mons:
        mon.close()


# --------------------------------------------------------------------------- conditions


async def test_nan_logged_through_the_monitor_fires_once_and_clears_when_finite(monitor):
    mon, session = monitor()
    polled = Polled(session, AlertRules())
    async with make_client(session) as client:
        poller = Poller(client, session, None, time.time)
        mon.log(step=1, loss=0.5)
        mon.at_step_boundary(1)
        _, change = await polled.poll(poller)
        assert change.fired == []
        mon.log(step=2, loss=float("nan"))
        mon.at_step_boundary(2)
        _, change = await polled.poll(poller)
        assert kinds(change.fired) == ["nonfinite"]
        assert change.fired[0].subject == "loss" and "loss is nan" in change.fired[0].message
        assert change.fired[0].severity == "error"
        for _ in range(3):  # still NaN in the status: no second alert
            _, change = await polled.poll(poller)
            assert change.fired == [] and change.cleared == []
        mon.log(step=3, loss=0.4)
        mon.at_step_boundary(3)
        _, change = await polled.poll(poller)
        assert kinds(change.cleared) == ["nonfinite"] and change.fired == []
        assert change.cleared[0].cleared_at is not None
        mon.log(step=4, loss=float("inf"))  # a new turn fires again
        mon.at_step_boundary(4)
        _, change = await polled.poll(poller)
        assert kinds(change.fired) == ["nonfinite"] and "inf" in change.fired[0].message
    assert kinds(polled.fired) == ["nonfinite", "nonfinite"]
    assert [a.kind for a in polled.book.alerts()] == ["nonfinite", "nonfinite"]
    assert polled.book.alerts()[1].cleared_at is not None  # newest first; the older cleared


async def test_a_save_into_a_folder_that_is_a_file_fires_save_failed(monitor, tmp_path):
    folder = tmp_path / "ckpt"
    mon, session = monitor(checkpoint_dir=folder)
    mon.track(note="a plain value")
    os.rename(folder, tmp_path / "moved-away")  # the mount went away: a file in its place
    folder.write_text("not a folder")
    polled = Polled(session, AlertRules())
    async with make_client(session) as client:
        poller = Poller(client, session, None, time.time)
        mon.log(step=1, loss=0.5)
        mon.at_step_boundary(1)
        _, change = await polled.poll(poller)
        assert change.fired == []
        record = await client.send_command("save")
        step = 1
        deadline = time.monotonic() + WAIT_S
        while True:  # boundaries until the writer thread reports the failure
            step += 1
            mon.at_step_boundary(step)
            got, change = await polled.poll(poller)
            if got.status is not None and got.status.checkpoint.last_error:
                break
            assert time.monotonic() < deadline, "the save never failed"
            await asyncio.sleep(0.05)
        assert kinds(change.fired) == ["save_failed"], polled.fired
        assert "a save failed" in change.fired[0].message
        _, change = await polled.poll(poller)
        assert change.fired == []  # once
    assert record.id


def test_a_killed_session_is_lost_once_within_one_poll_after_the_threshold(digits_session):
    run = digits_session(step_delay=0.02)
    session = SessionConfig(run.url, run.token, "digits")
    threshold = 1.0
    polled = Polled(session, AlertRules(lost_after_s=threshold))

    async def go() -> None:
        async with make_client(session, timeout_s=2.0) as client:
            poller = Poller(client, session, None, time.time)
            got, _ = await polled.poll(poller)
            assert got.status is not None and got.status.state == "running"
            run.kill()
            deadline = time.monotonic() + WAIT_S
            while "lost" not in kinds(polled.fired):
                assert time.monotonic() < deadline, "never lost"
                await polled.poll(poller)
                await asyncio.sleep(0.1)
            for _ in range(5):  # once
                _, change = await polled.poll(poller)
                assert change.fired == []

    asyncio.run(go())
    assert kinds(polled.fired) == ["lost"]
    lost = polled.fired[0]
    silent = [at for at, answered in polled.polls if not answered]
    first_silent = silent[0]
    assert lost.at - first_silent > threshold
    # the poll before the one that fired was still within the threshold: it fired at once
    before = [at for at in silent if at < lost.at]
    assert before and before[-1] - first_silent <= threshold
    assert "no answer for" in lost.message


def test_failed_and_interrupted_states_are_lost_and_a_finish_is_an_alert():
    from ui_fixtures import NOW, three_sessions

    fixed = three_sessions()[0]
    book = AlertBook(AlertRules(risk_warning_s=1e9))
    key, label = fixed.config.key, fixed.config.display_label
    running = fixed.status
    assert book.observe(key, label, NOW, running).fired == []
    change = book.observe(key, label, NOW + 1, replace(running, state="failed", error="OOM"))
    assert kinds(change.fired) == ["lost"] and "failed: OOM" in change.fired[0].message
    assert kinds(book.observe(key, label, NOW + 2, running).cleared) == ["lost"]
    change = book.observe(key, label, NOW + 3, replace(running, state="interrupted"))
    assert kinds(change.fired) == ["lost"]
    change = book.observe(key, label, NOW + 4, replace(running, state="finished"))
    assert kinds(change.fired) == ["ended"] and kinds(change.cleared) == ["lost"]
    assert change.fired[0].severity == "information"
    # a finished session's server going away is not a loss
    for n in range(5, 200, 10):
        assert book.observe(key, label, NOW + n, None, error_words="refused").fired == []


def test_a_status_the_runtime_stopped_refreshing_counts_as_no_answer():
    from ui_fixtures import NOW, three_sessions

    fixed = three_sessions()[0]
    book = AlertBook(AlertRules(risk_warning_s=1e9, lost_after_s=60))
    key, label = fixed.config.key, fixed.config.display_label
    assert book.observe(key, label, NOW, fixed.status).fired == []
    assert book.observe(key, label, NOW + 10, fixed.status, stale=True).fired == []
    change = book.observe(key, label, NOW + 71, fixed.status, stale=True)
    assert kinds(change.fired) == ["lost"] and "no fresh status for 61 s" in change.fired[0].message
    assert kinds(book.observe(key, label, NOW + 72, fixed.status).cleared) == ["lost"]
    done = replace(fixed.status, state="finished")
    book.observe(key, label, NOW + 73, done)
    assert book.observe(key, label, NOW + 500, done, stale=True).fired == []  # it ended


def test_gpu_memory_full_for_n_polls_in_a_row_fires_once():
    from ui_fixtures import NOW, three_sessions

    fixed = three_sessions()[0]
    book = AlertBook(AlertRules(risk_warning_s=1e9, gpu_memory_polls=3))
    key, label = fixed.config.key, fixed.config.display_label
    gib = 1024 ** 3
    full = replace(fixed.status, gpus=[GpuStats(0, "T4", memory_used_bytes=int(15.8 * gib),
                                                memory_total_bytes=16 * gib)])
    roomy = replace(full, gpus=[GpuStats(0, "T4", memory_used_bytes=8 * gib,
                                         memory_total_bytes=16 * gib)])
    seen = [book.observe(key, label, NOW + n, s).fired
            for n, s in enumerate([full, full, roomy, full, full, full, full])]
    assert [kinds(f) for f in seen] == [[], [], [], [], [], ["gpu_memory"], []]
    assert "GPU 0 memory at 99%" in seen[5][0].message
    assert kinds(book.observe(key, label, NOW + 9, roomy).cleared) == ["gpu_memory"]


def test_nan_in_a_new_point_fires_even_when_the_latest_value_is_finite():
    from ui_fixtures import NOW, three_sessions

    fixed = three_sessions()[0]
    book = AlertBook(AlertRules(risk_warning_s=1e9, watch=("loss", "val_loss")))
    key, label = fixed.config.key, fixed.config.display_label
    pts = {"val_loss": [MetricPoint(1, 10, NOW, float("nan")), MetricPoint(2, 11, NOW, 0.3)]}
    change = book.observe(key, label, NOW, fixed.status, pts)
    assert [(a.kind, a.subject) for a in change.fired] == [("nonfinite", "val_loss")]
    assert "step 10" in change.fired[0].message
    ok = {"val_loss": [MetricPoint(3, 12, NOW, 0.2)]}
    assert kinds(book.observe(key, label, NOW + 1, fixed.status, ok).cleared) == ["nonfinite"]


# --------------------------------------------------------------------------- delivery


def _alert(**kw) -> Alert:
    base = {"session": "run-a", "key": "s-0123456789", "kind": "lost",
            "message": "run-a: no answer for 61 s", "at": 1_760_000_000.0}
    return Alert(**{**base, **kw})


async def test_the_alert_command_really_runs_and_reads_the_alert_as_json(tmp_path):
    out = tmp_path / "alert.json"
    code = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    settings = Settings(alert_command=[sys.executable, "-c", code])
    alert = _alert()
    assert await AlertCommand(settings).run(alert) is None
    assert json.loads(out.read_text()) == alert.to_json()
    assert json.loads(out.read_text())["severity"] == "error"


async def test_a_missing_or_failing_command_is_said_once_and_alerts_go_on(tmp_path):
    command = AlertCommand(Settings(alert_command=[str(tmp_path / "no-such-program")]))
    first = await command.run(_alert())
    assert first is not None and "cannot start it" in first and "once" in first
    assert await command.run(_alert()) is None  # said once
    failing = AlertCommand(Settings(alert_command=[sys.executable, "-c",
                                                   "import sys; sys.exit('topic refused')"]))
    said = await failing.run(_alert())
    assert said is not None and "exited with 1: topic refused" in said
    slow = AlertCommand(Settings(alert_command=[sys.executable, "-c",
                                                "import time; time.sleep(600)"],
                                 alert_command_timeout_s=0.5))
    said = await slow.run(_alert())
    assert said is not None and "killed" in said


def test_desktop_notifications_only_where_the_terminal_shows_them():
    assert notify_escape_kind({"TERM_PROGRAM": "iTerm.app"}) == "osc9"
    assert notify_escape_kind({"TERM": "xterm-kitty"}) == "osc9"
    assert notify_escape_kind({"TERM": "foot"}) == "osc9"
    assert notify_escape_kind({"WT_SESSION": "x", "TERM": "xterm-256color"}) == "osc9"
    assert notify_escape_kind({"TERM": "rxvt-unicode-256color"}) == "osc777"
    assert notify_escape_kind({"TERM": "xterm-256color"}) is None
    assert notify_escape_kind({"TERM_PROGRAM": "WezTerm", "TMUX": "/tmp/t"}) is None
    assert notify_escape_kind({"TERM": "xterm-256color"}, "osc777") == "osc777"
    assert notify_escape_kind({"TERM_PROGRAM": "iTerm.app"}, "off") is None
    hostile = notify_escape("osc9", "t", "loss\x07\x1b]52;c;evil\x07 is nan")
    assert hostile.count("\x07") == 1 and hostile.count("\x1b") == 1
    assert notify_escape("osc777", "a;b", "c;d") == "\x1b]777;notify;a b;c d\x07"


def test_the_bell_and_the_escape_are_delivered_and_the_fallback_said_once():
    wrote, rang = [], []
    known = Delivery(Settings(bell=False), wrote.append, lambda: rang.append(1),
                     env={"TERM_PROGRAM": "iTerm.app"})
    assert known.deliver(_alert()) is None
    assert wrote == ["\x1b]9;run-a: no answer for 61 s\x07"] and rang == []
    unknown = Delivery(Settings(bell=False), wrote.append, lambda: rang.append(1),
                       env={"TERM": "xterm-256color"})
    note = unknown.deliver(_alert())
    assert note is not None and "bell instead" in note and rang == [1]
    assert unknown.deliver(_alert()) is None and rang == [1, 1]  # said once, bell each time
    assert unknown.deliver(_alert(cleared_at=1.0)) is None and rang == [1, 1]


def test_the_alert_settings_round_trip_and_bad_ones_are_refused(tmp_path):
    path = tmp_path / "config.toml"
    settings = Settings(bell=False, desktop_notify="osc9", alert_series=["loss", "val_loss"],
                        lost_after_s=5.0, gpu_memory_polls=4,
                        alert_command=["ntfy", "publish", "topic"])
    save_config(Config([], settings), path)
    assert load_config(path).settings == settings
    from colabtui.config import ConfigError

    for bad in ('alert_command = "ntfy publish"', 'desktop_notify = "yes"',
                "gpu_memory_polls = 0", "alert_series = [1]", "lost_after_s = -1"):
        path.write_text(f"[settings]\n{bad}\n")
        with pytest.raises(ConfigError):
            load_config(path)


def test_an_alert_line_is_plain_text_or_json():
    alert = _alert(message="run-a: loss is nan \x1b[31m")
    line = alert_line(alert, "fired", False)
    assert "lost  run-a: loss is nan" in line and "\x1b" not in line
    assert json.loads(alert_line(alert, "cleared", True))["event"] == "cleared"


# --------------------------------------------------------------------------- colabtui watch


def test_watch_exit_on_lost_exits_3_after_the_session_is_killed(digits_session, tmp_path):
    run = digits_session(step_delay=0.02)
    out = tmp_path / "hook.json"
    code = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + chr(10))"
    config = tmp_path / "config.toml"
    session = SessionConfig(run.url, run.token, "digits")
    save_config(Config([session], Settings(poll_interval_s=0.2, lost_after_s=1.0,
                                           alert_command=[sys.executable, "-c", code])), config)
    data = tmp_path / "data"
    env = {**os.environ, "COLABTUI_DATA_DIR": str(data),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "remote"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "colabtui", "--config", str(config), "watch",
                             "--json", "--exit-on-lost"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        from colabtui.ledger import Ledger

        def recorded() -> bool:  # watch polled it: its status is in the history
            if not (data / "ledger.sqlite3").exists():
                return False
            ledger = Ledger(data / "ledger.sqlite3")
            try:
                return any(r.session_key == session.key for r in ledger.sessions())
            finally:
                ledger.close()

        wait_until(lambda: recorded() or proc.poll() is not None, "watch to poll the session")
        assert proc.poll() is None, proc.stderr.read()
        run.kill()
        stdout, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_LOST, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [(x["event"], x["kind"]) for x in lines] == [("fired", "lost")]
    assert lines[0]["session"] == "digits"
    hooked = [json.loads(line) for line in out.read_text().splitlines()]
    assert [h["kind"] for h in hooked] == ["lost"]  # the command ran before the exit


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_watch_exits_130_on_ctrl_c_and_143_on_sigterm(tmp_path, signum, code):
    config = tmp_path / "config.toml"
    nobody = SessionConfig("http://127.0.0.1:9", "t" * 20, "nobody")  # port 9: refused
    save_config(Config([nobody], Settings(poll_interval_s=0.05, lost_after_s=0.1)), config)
    env = {**os.environ, "COLABTUI_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "remote"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "colabtui", "--config", str(config), "watch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], WAIT_S)  # a bounded wait
        assert ready, "watch printed nothing"
        first = proc.stdout.readline()  # the lost alert: it is polling
        assert "lost  nobody: no answer for" in first, proc.stderr.read()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr


def test_watch_help_documents_the_exit_code():
    from colabtui.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["watch"].format_help()
    assert f"exit with code {EXIT_LOST}" in text and "130 interrupted" in text


def test_watch_in_process_prints_the_nan_of_a_real_session(monitor):
    mon, session = monitor()
    lines: list[str] = []
    watch = Watch(Config([session], Settings(poll_interval_s=0.05)), out=lines.append,
                  note=lines.append)

    async def go() -> None:
        task = asyncio.create_task(watch.run())
        mon.log(step=1, loss=float("nan"))
        mon.at_step_boundary(1)
        deadline = time.monotonic() + WAIT_S
        while not lines:
            assert time.monotonic() < deadline, "no alert printed"
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert len(lines) == 1 and "nonfinite  alerts run: loss is nan" in lines[0]
