"""No panel freezes or lies: a failure at any stage of a poll is an error on that panel and the
polls go on; a reply that never ends meets a deadline; a panel whose polls went silent does
not say "connected"; a history file locked by another process loses nothing.

The sessions are real (an in-process Monitor serving ``/v1`` on loopback) or a loopback
server speaking the ``/v1`` protocol where the real one cannot misbehave on demand. Failures
are injected by replacing one stage of the real code path with one that raises while asked to.
No timed assertions: every wait is a bounded loop on a condition.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from colabtui_remote import Monitor, schema, wire
from test_ui_live import wait_for

from colabtui import transport
from colabtui.app import ColabTuiApp
from colabtui.client import RemoteClient, SessionError
from colabtui.config import Config, SessionConfig, Settings, save_config
from colabtui.ledger import Ledger
from colabtui.poller import Poller
from colabtui.widgets import session_panel
from colabtui.widgets.connection_line import connection_text
from colabtui.widgets.session_panel import SessionPanel

TOKEN = "poll-token-0123456789abcdef"
POINTS = 40


@pytest.fixture
def mon():
    """A real session on loopback that has logged :data:`POINTS` loss points."""
    m = Monitor(run="fragile", checkpoint_dir=None, autosave_every=None, handle_sigterm=False)
    m.serve(port=0, token=TOKEN, quiet=True)
    for step in range(POINTS):
        m.log(step, loss=2.0 / (step + 1))
    m.at_step_boundary(POINTS)
    yield m
    m.close()


def make_app(tmp_path: Path, url: str, **kwargs) -> ColabTuiApp:
    config = tmp_path / "config.toml"
    save_config(Config([SessionConfig(url, TOKEN, "fragile")], Settings(poll_interval_s=0.1)),
                config)
    return ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4, **kwargs)


def header(panel: SessionPanel) -> str:
    return panel.query_one("#header").render().plain


class Breaker:
    """Wraps a function so that it raises ``exc`` while :attr:`broken` is set; counts calls."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.broken = threading.Event()
        self.broken.set()
        self.calls = 0

    def wrap(self, original):
        if asyncio.iscoroutinefunction(original):
            @functools.wraps(original)
            async def async_wrapper(*args, **kwargs):
                self.calls += 1
                if self.broken.is_set():
                    raise self.exc
                return await original(*args, **kwargs)
            return async_wrapper

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            self.calls += 1
            if self.broken.is_set():
                raise self.exc
            return original(*args, **kwargs)
        return wrapper


STAGES = {
    "status fetch": (RemoteClient, "status", RuntimeError("injected"),
                     "asking for the status: RuntimeError: injected"),
    "parse": (schema, "parse_status", RecursionError("maximum recursion depth exceeded"),
              "asking for the status: RecursionError: maximum recursion depth exceeded"),
    "metrics fetch": (RemoteClient, "metrics", ValueError("injected"),
                      "fetching metrics: ValueError: injected"),
    "status write": (Ledger, "record_status",
                     OverflowError("Python int too large to convert to SQLite INTEGER"),
                     "writing the status to the history file: OverflowError: Python int"),
    "points write": (Ledger, "add_points", sqlite3.IntegrityError("injected"),
                     "writing metrics to the history file: IntegrityError: injected"),
    "apply": (SessionPanel, "apply", ValueError("injected \x1b]0;title\x07"),
              "showing a poll result: ValueError: injected \\x1b]0;title\\x07"),
}


@pytest.mark.parametrize("stage", list(STAGES))
async def test_a_failure_at_any_stage_is_an_error_on_the_panel_and_polling_goes_on(
        tmp_path, mon, monkeypatch, stage):
    owner, name, exc, words = STAGES[stage]
    breaker = Breaker(exc)
    monkeypatch.setattr(owner, name, breaker.wrap(getattr(owner, name)))
    app = make_app(tmp_path, mon.url)
    async with app.run_test(size=(160, 40)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: panel.conn_kind == "internal", "the error on the panel")
        shown = header(panel)
        assert "✖ internal error" in shown and words in shown, shown
        assert "connected" not in shown
        assert "\x1b" not in shown, "what an exception quotes is shown escaped"
        calls = breaker.calls
        await wait_for(pilot, lambda: breaker.calls >= calls + 2, "the next polls")
        assert panel._failures >= 2, "the polls back off"
        assert not app._exit_renderables and app.is_running, "the app lives on"
        breaker.broken.clear()
        await wait_for(pilot, lambda: panel.conn_kind == "connected"
                       and len(panel.series.get("loss", [])) == POINTS, "recovery")
        assert "● connected" in header(panel)
        assert app.ledger.last_seq(panel.status.session_id) == mon.status().last_seq, \
            "every point reached the history file"


async def test_a_crashed_poll_worker_reaches_the_apps_handler_and_polling_goes_on(
        tmp_path, mon, monkeypatch):
    breaker = Breaker(RuntimeError("worker died"))
    monkeypatch.setattr(Poller, "poll", breaker.wrap(Poller.poll))
    app = make_app(tmp_path, mon.url)
    async with app.run_test(size=(160, 40)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: panel.conn_kind == "internal", "the error on the panel")
        assert "polling: RuntimeError: worker died" in header(panel)
        assert any(n.title == "internal error" and "worker died" in n.message
                   for n in app._notifications), "the app's handler got the worker's error"
        calls = breaker.calls
        await wait_for(pilot, lambda: breaker.calls >= calls + 1, "the next poll")
        breaker.broken.clear()
        await wait_for(pilot, lambda: panel.conn_kind == "connected", "recovery")


async def test_a_crashed_command_worker_reaches_the_apps_handler(tmp_path, mon, monkeypatch):
    breaker = Breaker(RecursionError("deep"))
    monkeypatch.setattr(RemoteClient, "send_command", breaker.wrap(RemoteClient.send_command))
    app = make_app(tmp_path, mon.url)
    async with app.run_test(size=(160, 40)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: panel.conn_kind == "connected", "connected")
        await pilot.press("s")
        await wait_for(pilot, lambda: any(n.title == "internal error" and "RecursionError"
                                          in n.message for n in app._notifications),
                       "the handler's notification")
        assert app.is_running and panel.conn_kind == "connected"


# --------------------------------------------------------------------------- hostile replies


class FakeSession:
    """A loopback server speaking ``/v1``: a real status and empty metrics pages, or, for
    status requests while :attr:`reply` is set, that reply instead."""

    def __init__(self) -> None:
        self.reply = None  # callable(handler) or None for the real answer
        self.release = threading.Event()
        self.status_requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                if path == "/v1/status":
                    fake.status_requests += 1
                    if fake.reply is not None:
                        fake.reply(self)
                        return
                    status = schema.Status(protocol=schema.PROTOCOL_VERSION, run="hostile",
                                           session_id="s-1", label="hostile", state="running",
                                           step=7, server_time=time.time())
                    self._send(200, wire.dumps(schema.status_to_wire(status)))
                elif path == "/v1/metrics":
                    self._send(200, wire.dumps({"protocol": schema.PROTOCOL_VERSION, "after": 0,
                                                "next_after": 0, "last_seq": 0, "series": {}}))
                else:
                    self._send(404, b"{}")

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    trickle_every_s = 0.2
    """Seconds between the bytes of a trickling reply: well inside the tests' read timeouts
    (0.5 s), so that only a deadline for the whole request can end it."""

    def trickle(self, handler: BaseHTTPRequestHandler) -> None:
        """A valid header, then the body a byte at a time until released or hung up on."""
        body = b'{"protocol": 1, "run": "' + b"x" * 10_000
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body) + 100))
        handler.end_headers()
        handler.wfile.flush()
        for byte in body:
            if self.release.wait(self.trickle_every_s):
                return
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:  # the client gave up
                return

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def fake():
    f = FakeSession()
    yield f
    f.close()


async def test_a_reply_that_never_ends_meets_the_total_deadline(fake):
    fake.reply = fake.trickle
    async with RemoteClient(fake.url, TOKEN, timeout_s=0.5) as client:
        assert client.deadline_s == 1.0, "twice the timeout of each phase"
        with pytest.raises(SessionError) as info:
            await client.status()
    assert (info.value.kind, info.value.message) == \
        ("unreachable", "no complete answer within 1 s (deadline)")


async def test_a_trickling_reply_ends_as_a_timeout_on_the_panel(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(session_panel, "make_client",
                        functools.partial(transport.make_client, timeout_s=0.5))
    fake.reply = fake.trickle
    app = make_app(tmp_path, fake.url)
    async with app.run_test(size=(160, 40)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: panel.conn_kind == "unreachable", "the timeout")
        assert "no complete answer within 1 s (deadline)" in header(panel)
        fake.reply = None
        await wait_for(pilot, lambda: panel.conn_kind == "connected", "recovery")


@pytest.mark.parametrize(("body", "words"), [
    (b"[" * 200_000 + b"]" * 200_000, "malformed JSON"),
    # a 5,000-digit step alone is only "invalid" (tests/app/test_hostile_sessions.py); beside
    # a missing state the answer is unusable, and says why
    (b'{"protocol": 3, "step": ' + b"9" * 5000 + b"}", "status.state: missing"),
])
async def test_hostile_json_is_an_error_on_the_panel_and_polling_goes_on(
        tmp_path, fake, body, words):
    def hostile(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    fake.reply = hostile
    app = make_app(tmp_path, fake.url)
    async with app.run_test(size=(160, 40)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: panel.conn_kind == "bad_response", "the error")
        assert words in header(panel)
        asked = fake.status_requests
        await wait_for(pilot, lambda: fake.status_requests > asked, "the next poll")
        fake.reply = None
        await wait_for(pilot, lambda: panel.conn_kind == "connected", "recovery")
        assert panel.status.step == 7


# --------------------------------------------------------------------------- silent polls


def test_a_connection_line_never_says_connected_when_the_polls_went_silent():
    assert connection_text("connected", "", None, 100.0).plain == "● connected"
    silent = connection_text("connected", "", None, 100.0, silent_s=12.4).plain
    assert silent == "◌ no answer for 12s"
    noted = connection_text("connected", "", None, 100.0, note="history file locked").plain
    assert noted == "● connected · history file locked"


async def test_a_panel_whose_polls_hang_stops_saying_connected(tmp_path, fake):
    now = [time.time()]
    app = make_app(tmp_path, fake.url, clock=lambda: now[0])
    async with app.run_test(size=(160, 40)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: panel.conn_kind == "connected", "connected")
        fake.reply = lambda handler: fake.release.wait(30)  # the next status hangs
        asked = fake.status_requests
        await wait_for(pilot, lambda: fake.status_requests > asked, "a poll that hangs")
        now[0] += 60  # a minute passes without an answer
        await wait_for(pilot, lambda: "no answer for 1m" in header(panel), "the silence said")
        assert "connected" not in header(panel)
        assert not panel.live and panel.has_class("-stale")
        assert "last known: running" in panel.query_one("#progress").render().plain
        fake.reply = None
        fake.release.set()
        await wait_for(pilot, lambda: "● connected" in header(panel), "answers again")
        assert panel.live and not panel.has_class("-stale")


# --------------------------------------------------------------------------- a locked ledger


async def test_a_locked_history_file_shows_a_note_and_loses_no_points(tmp_path, mon):
    app = make_app(tmp_path, mon.url)
    async with app.run_test(size=(160, 40)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: len(panel.series.get("loss", [])) == POINTS, "the points")
        other = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None,
                                check_same_thread=False)
        try:
            other.execute("BEGIN EXCLUSIVE")  # held far longer than the busy timeout
            for step in range(POINTS, POINTS + 30):
                mon.log(step, loss=1.0 / (step + 1))
            mon.at_step_boundary(POINTS + 30)
            await wait_for(pilot, lambda: "history file locked: 30 points kept, retrying"
                           in header(panel), "the note")
            assert panel.conn_kind == "connected" and "● connected" in header(panel)
            assert len(panel.series["loss"]) == POINTS + 30, "the points are shown meanwhile"
            after = panel._poller.after
            for step in range(POINTS + 30, POINTS + 40):
                mon.log(step, loss=0.5)
            mon.at_step_boundary(POINTS + 40)
            await wait_for(pilot, lambda: "40 points kept" in header(panel),
                           "later polls keep theirs too")
            assert panel._poller.after > after
        finally:
            other.execute("ROLLBACK")
            other.close()
        await wait_for(pilot, lambda: "locked" not in header(panel), "the note gone")
        ledger = app.ledger
        steps = [p.step for p in ledger.load_series("fragile")["loss"]]
        assert steps == list(range(POINTS + 40)), "every point, in order, none twice"
        row = next(r for r in ledger.sessions() if r.session_id == panel.status.session_id)
        assert row.step == POINTS + 40, "the latest status was written too"


async def test_kept_points_are_written_once_the_file_is_free_though_the_session_died(
        tmp_path, mon):
    app = make_app(tmp_path, mon.url)
    async with app.run_test(size=(160, 40)) as pilot:
        panel = app.panels[0]
        await wait_for(pilot, lambda: len(panel.series.get("loss", [])) == POINTS, "the points")
        other = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None,
                                check_same_thread=False)
        try:
            other.execute("BEGIN EXCLUSIVE")
            for step in range(POINTS, POINTS + 20):
                mon.log(step, loss=0.1)
            mon.at_step_boundary(POINTS + 20)
            await wait_for(pilot, lambda: "20 points kept" in header(panel), "the note")
            await asyncio.to_thread(mon.close)  # the runtime dies with points only kept here
            await wait_for(pilot, lambda: panel.conn_kind == "unreachable", "unreachable")
        finally:
            other.execute("ROLLBACK")
            other.close()
        await wait_for(pilot, lambda: "locked" not in header(panel), "the kept points written")
        steps = [p.step for p in app.ledger.load_series("fragile")["loss"]]
        assert steps == list(range(POINTS + 20))
