"""One session's panel: polls its session in a worker and shows GPU, progress, checkpoint,
work at risk, the loss chart and the connection state.

Poll loop (one per panel):

1. :meth:`SessionPanel.poll_now` starts :meth:`_poll_once` as a worker in this panel's own
   group (``poll-<key>``, exclusive within it), so panels never cancel each other's polls.
2. The worker asks ``status``; on a new session id it continues from the ledger's last seq;
   it fetches ``/v1/metrics`` incrementally (``after`` = last seq seen, again while
   ``page.more``) and records status and points in the ledger.
3. It posts one immutable :class:`PollResult`; the handler schedules the next poll with
   ``set_timer`` when it has taken the result, so polls never pile up. While the session fails, the delay doubles up to ``backoff_max_s``; while
   it answers with nothing new (no points, same state, step and connection) for
   :data:`IDLE_AFTER_POLLS` polls, the delay grows by :data:`IDLE_GROWTH` a poll up to
   :data:`IDLE_MAX_S`, and snaps back at the first news, a command sent, or the panel focused.

Drawing: on this machine class one Textual frame costs about 10 ms however little changed, so
results are coalesced. A result that someone is waiting for (the first status, a new run's
history, a change of connection state, the polls after a save or stop) is applied at once;
any other is merged into the panel's pending result (:func:`merge_results`), which the app's
one-second :meth:`SessionPanel.tick` applies for every panel in one ``batch_update`` (one
frame a second however many polls came in). A result repaints only the text that changed;
the chart takes new points and is drawn by the tick at most every ``chart_refresh_s``.

Everything the session sends is untrusted: it is rendered as :class:`rich.text.Text` built with
``append`` (never parsed as markup) and widget ids come from :attr:`SessionConfig.key`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from colabtui_remote.schema import MetricPoint, Status
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Static

from colabtui.client import SessionError
from colabtui.config import SessionConfig, Settings
from colabtui.figures import ENDED_STATES, clock_offset_s
from colabtui.ledger import Ledger
from colabtui.session_client import SessionClient
from colabtui.transport import make_client, transport_text
from colabtui.widgets.checkpoint_view import CheckpointView
from colabtui.widgets.connection_line import connection_text
from colabtui.widgets.gpu_view import GpuView
from colabtui.widgets.loss_chart import LossChart
from colabtui.widgets.panel_commands import TokenRefused, follow_command
from colabtui.widgets.progress_view import ProgressView
from colabtui.widgets.text_block import text_key

MAX_PAGES_PER_POLL = 20
"""Metric pages fetched in one poll; the rest follow on the next (keeps a poll short)."""

MAX_POINTS_IN_MEMORY = 50_000
"""Above this many points in a series the panel reloads its downsampled history from the
ledger instead of keeping every point."""

IDLE_AFTER_POLLS = 3
"""Polls in a row with nothing new after which the poll interval starts to stretch."""

IDLE_GROWTH = 1.5
"""Factor by which each further poll with nothing new stretches the interval."""

IDLE_MAX_S = 5.0
"""Longest interval between polls of a session with nothing new, seconds (a stalled or
finished run is noticed within this; any key that acts on it polls at once)."""

URGENT_RESULTS_AFTER_COMMAND = 2
"""Poll results applied at once after a save or stop ends: the poll already under way may
predate the end, so the one after it is shown at once too."""

@dataclass
class PollResult(Message):
    """One poll of one session, applied as a whole.

    Attributes:
        key: the panel's session key.
        at: local time the poll ended (the app's clock), seconds.
        status: the status, or ``None`` when the session could not be asked.
        new_points: points logged since the previous poll, by series.
        history: when set, the run's whole curve (from the ledger) replacing what is shown.
        error: why the poll failed (with ``status`` still set when only metrics failed).
    """

    key: str
    at: float
    status: Status | None = None
    new_points: dict[str, list[MetricPoint]] = field(default_factory=dict)
    history: dict[str, list[MetricPoint]] | None = None
    error: SessionError | None = None


def poll_delay(interval_s: float, failures: int, quiet: int, backoff_max_s: float) -> float:
    """Seconds until the next poll.

    Args:
        interval_s: the configured poll interval, seconds.
        failures: polls that failed in a row (the delay doubles each, up to ``backoff_max_s``).
        quiet: polls in a row that answered with nothing new: from :data:`IDLE_AFTER_POLLS`
            on, the delay grows by :data:`IDLE_GROWTH` each, up to :data:`IDLE_MAX_S` (never
            below ``interval_s``).
        backoff_max_s: longest delay while failing, seconds.
    """
    if failures:
        return min(backoff_max_s, interval_s * 2 ** min(failures - 1, 16))
    if quiet >= IDLE_AFTER_POLLS:
        stretched = interval_s * IDLE_GROWTH ** min(quiet - IDLE_AFTER_POLLS + 1, 32)
        return min(max(interval_s, IDLE_MAX_S), stretched)
    return interval_s


def merge_results(old: PollResult, new: PollResult) -> PollResult:
    """One result with the effect of applying ``old`` then ``new``.

    Only for results of one connection state with a status each, or with none each (the
    panel applies the others at once): ``new``'s status, time and error win; points are
    concatenated per series, a repeated step (a resume) replacing the earlier ones.

    Raises:
        ValueError: when the two cannot be merged (different keys, a history, or only
            ``old`` has a status).
    """
    if (old.key != new.key or old.history is not None or new.history is not None
            or (old.status is not None and new.status is None)):
        raise ValueError(f"cannot merge poll results of {old.key!r} and {new.key!r}")
    points = {name: list(pts) for name, pts in old.new_points.items()}
    for name, pts in new.new_points.items():
        if not pts:
            continue
        current = points.setdefault(name, [])
        while current and current[-1].step >= pts[0].step:
            current.pop()
        current.extend(pts)
    return dataclasses.replace(new, new_points=points)


def result_news(result: PollResult, status: Status | None, conn_kind: str,
                conn_message: str) -> bool:
    """Whether ``result`` brings news against a panel showing ``status`` in ``conn_kind``:
    points, another connection state or error, or a status that differs in more than the
    session's clock fields."""
    news = bool(result.new_points) or result.history is not None
    news = news or (result.error is None) != (conn_kind == "connected")
    if result.error is not None:
        news = news or (result.error.kind, result.error.message) != (conn_kind, conn_message)
    if result.status is not None:
        news = news or not same_but_clocks(result.status, status)
    return news


def same_but_clocks(a: Status | None, b: Status | None) -> bool:
    """Whether two statuses differ at most in the session's clock fields (``server_time``,
    ``uptime_s``), which move with every answer."""
    if a is None or b is None:
        return a is b
    return dataclasses.replace(a, server_time=b.server_time, uptime_s=b.uptime_s) == b


class SessionPanel(Vertical, can_focus=True):
    """The panel of one saved session.

    Args:
        session: the saved session (url, token, label).
        index: its number, 1-based (keys 1-9 focus it).
        clock: local Unix time, seconds (injected so tests can freeze it).
        settings: poll interval and work-at-risk warning.
        ledger: where status and points are recorded; history comes from it.
        poll: start polling on mount (``False`` for fixed data fed with :meth:`apply`).
        backoff_max_s: longest wait between polls while the session fails, seconds.
        starting: whether the session is still starting (a demo run importing torch): until
            it first answers, the panel says "starting…" and polls without back-off.
    """

    def __init__(self, session: SessionConfig, index: int, *, clock: Callable[[], float],
                 settings: Settings, ledger: Ledger | None, poll: bool = True,
                 backoff_max_s: float = 30.0, log_scale: bool = False,
                 starting: Callable[[], bool] | None = None) -> None:
        super().__init__(id=session.key)
        self.session = session
        self.index = index
        self._clock = clock
        self._chart_drawn_at = float("-inf")  # monotonic time of the last live chart draw
        self._settings = settings
        self._ledger = ledger
        self._poll_enabled = poll
        self._backoff_max_s = backoff_max_s
        self._client: SessionClient | None = None
        self._timer = None
        self._failures = 0
        self._quiet = 0
        # the poller's cursor, touched only by the (exclusive) poll worker
        self._session_id: str | None = None
        self._after = 0
        # what is shown, changed only by apply()
        self.status: Status | None = None
        self.conn_kind = "waiting"
        self.conn_message = ""
        self.unreachable_since: float | None = None
        self.seen_at: float | None = None
        self.clock_offset = 0.0
        self.series: dict[str, list[MetricPoint]] = {}
        self._log_scale = log_scale
        self._header_shown: tuple[object, ...] | None = None
        # what the polls brought, applied or not (for the idle back-off and "at once")
        self._received: tuple[Status | None, str, str] = (None, "waiting", "")
        self._pending: PollResult | None = None  # for the next tick
        self._urgent = 0  # results still to apply at once (a command just ended)
        self.in_flight: dict[str, int | None] = {}
        """Commands sent and not yet ended, by action: the step the session was at then."""
        self._retired: list[SessionClient] = []  # replaced while a command used them
        self._starting = starting

    # ----------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Static(self._header_text(), id="header", classes="panel-header")
        yield GpuView(id="gpu")
        yield ProgressView(self._clock, id="progress")
        yield CheckpointView(self._clock, self._settings.risk_warning_min, id="checkpoint")
        chart = LossChart(id="chart")
        chart.log_scale = self._log_scale
        yield chart

    def on_mount(self) -> None:
        self._load_history()
        if self._poll_enabled:
            self._client = make_client(self.session)
            self.poll_now()

    async def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        for client in (self._client, *self._retired):
            if client is not None:
                await client.aclose()

    def _load_history(self) -> None:
        """Show the curve of this session's newest run from the ledger at once, and, when that
        session ended (finished, stopped, failed), its last status too: a server gone after the
        end shows "finished at step N", not an unreachable session with nothing logged."""
        if self._ledger is None:
            return
        if (ended := self._ledger.ended_status(self.session.key)) is not None:
            row, status = ended
            seen = row.last_seen if row.last_seen is not None else self._clock()
            self.apply(PollResult(self.session.key, seen, status=status,
                                  history=self._ledger.load_series(row.run),
                                  error=SessionError("unreachable", "not asked yet")))
            return
        for row in self._ledger.sessions():  # newest first
            if row.session_key == self.session.key:
                history = self._ledger.load_series(row.run)
                if history:
                    self.series = history
                    self.query_one(LossChart).set_series(self.series)
                return

    def _header_text(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" {self.index} ", style="bold reverse")
        text.append(" ")
        text.append(self.session.display_label, style="bold")  # untrusted: plain text
        if self.status is not None and self.status.run != self.session.display_label:
            text.append("  run ", style="dim")
            text.append(self.status.run, style="dim")
        text.append("\n")
        if self.is_starting:
            text.append("◌ starting…", style="dim")
            return text
        ended = self.ended
        if ended is not None and self.status.step is not None:
            ended = f"{ended} at step {self.status.step:,}"
        text.append_text(connection_text(self.conn_kind, self.conn_message,
                                         self.unreachable_since, self._clock(), ended))
        if self.conn_kind == "connected" and self._client is not None and (
                extra := transport_text(self._client, ended=self.ended is not None)) is not None:
            text.append_text(extra)
        return text

    @property
    def is_starting(self) -> bool:
        """The session has not answered yet and is still starting (see ``starting``)."""
        return (self.status is None and self.conn_kind in ("waiting", "unreachable")
                and self._starting is not None and self._starting())

    @property
    def ended(self) -> str | None:
        """The session's last known state if it has ended (stopped, finished, failed)."""
        if self.status is not None and self.status.state in ENDED_STATES:
            return self.status.state
        return None

    @property
    def live(self) -> bool:
        """Whether what the panel shows is current: from the latest poll, and (over a
        mailbox) not a status the runtime stopped refreshing."""
        return self.conn_kind == "connected" and not (
            self.ended is None and self._client is not None and self._client.stale)

    @property
    def _transport(self) -> str:
        """How the session is reached (:attr:`SessionClient.transport`); ``"http"`` for a
        panel that does not poll (fixed data fed with :meth:`apply`)."""
        return "http" if self._client is None else self._client.transport

    def set_index(self, index: int) -> None:
        """Renumber the panel (after another one was removed)."""
        self.index = index
        self.tick()

    def set_log_scale(self, on: bool) -> None:
        self._log_scale = on
        self.query_one(LossChart).log_scale = on

    @property
    def pending(self) -> PollResult | None:
        """The poll result waiting for the next :meth:`tick`, if any."""
        return self._pending

    def tick(self) -> None:
        """Apply the pending poll result, bring the time-dependent text (ages, "unreachable
        for") up to the clock and draw the chart if it has new points (at most every
        ``chart_refresh_s``); only what changed is repainted."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                self.apply(pending)  # ends with a tick
            except NoMatches:  # the panel is being removed (or the app torn down) meanwhile
                pass
            return
        try:
            header = self.query_one("#header", Static)
            checkpoint = self.query_one(CheckpointView)
            progress = self.query_one(ProgressView)
            chart = self.query_one(LossChart)
        except NoMatches:  # being removed, or not composed yet
            return
        text = self._header_text()
        key = text_key(text)
        if key != self._header_shown:
            self._header_shown = key
            header.update(text, layout=False)  # always two rows (see app.tcss)
        checkpoint.sync()
        progress.sync()  # uptime; "last known: running · 3m ago" ages
        now = time.monotonic()
        if chart.dirty and now - self._chart_drawn_at >= self._settings.chart_refresh_s:
            self._chart_drawn_at = now
            chart.flush()

    # ----------------------------------------------------------------- applying a result

    def apply(self, result: PollResult) -> bool:
        """Show one poll result (status, new points, connection state) all at once.

        Only text that changed is repainted. The chart takes the new points and is drawn by
        the next :meth:`tick` (at once when the panel does not poll, or on a new run's history).

        Returns:
            Whether the result brought news: points, another connection state, or a status
            that differs in more than the session's clock fields.
        """
        news = result_news(result, self.status, self.conn_kind, self.conn_message)
        if result.status is not None:
            status = result.status
            self.status = status
            self.seen_at = result.at
            # over a mailbox, now - server_time is mostly the file's age, not clock skew
            offset = clock_offset_s(status.server_time, result.at, self._transport)
            if offset is not None:
                self.clock_offset = offset
        if result.error is None:
            self.conn_kind, self.conn_message = "connected", ""
            self.unreachable_since = None
        else:
            if self.conn_kind != result.error.kind or self.unreachable_since is None:
                self.unreachable_since = result.at
            self.conn_kind, self.conn_message = result.error.kind, result.error.message
        if result.history is not None:
            self.series = {k: list(v) for k, v in result.history.items()}
        for name, pts in result.new_points.items():
            self._append(name, pts)
        # an ended session's values are final, not stale, and its server going away is expected
        ended = self.ended is not None
        self.set_class(self.status is not None and not self.live and not ended, "-stale")
        self.set_class(self.conn_kind not in ("connected", "waiting") and not self.is_starting
                       and not (ended and self.conn_kind == "unreachable"), "-error")
        if self.status is not None:
            self.query_one(GpuView).show(self.status.gpus, self.status.gpu_error)
            self.query_one(ProgressView).show(self.status, live=self.live, seen_at=self.seen_at)
            self.query_one(CheckpointView).show(self.status, self.clock_offset, live=self.live)
        if result.history is not None or result.new_points:
            chart = self.query_one(LossChart)
            chart.update_series(self.series)
            if result.history is not None or not self._poll_enabled:
                self._chart_drawn_at = time.monotonic()
                chart.flush()
        self._received = (self.status, self.conn_kind, self.conn_message)
        self.tick()
        return news

    def _append(self, name: str, pts: list[MetricPoint]) -> None:
        if not pts:
            return
        current = self.series.setdefault(name, [])
        first = pts[0].step
        # a resumed run repeats steps after its checkpoint: the later session wins
        while current and current[-1].step >= first:
            current.pop()
        current.extend(pts)
        if len(current) > MAX_POINTS_IN_MEMORY and self._ledger and self.status:
            self.series = self._ledger.load_series(self.status.run)

    def on_poll_result(self, message: PollResult) -> None:
        message.stop()
        if message.error is not None and message.error.kind == "token_refused":
            self.post_message(TokenRefused(self.session.key))  # bubbles up to the app
        news = self.receive(message)
        # no back-off while it starts: it answers any moment now
        self._failures = 0 if message.error is None or self.is_starting else self._failures + 1
        self._quiet = 0 if news else self._quiet + 1
        self._schedule_next()

    def receive(self, result: PollResult) -> bool:
        """Take a poll result: applied at once when someone waits for it (the first status,
        a new run's history, another connection state, the polls after a command), else
        merged into the result the next :meth:`tick` applies.

        Returns:
            Whether it brought news against what the polls brought before (applied or not).
        """
        status, kind, message = self._received
        news = result_news(result, status, kind, message)
        new_kind = "connected" if result.error is None else result.error.kind
        pending = self._pending
        at_once = (result.history is not None or self._urgent > 0 or new_kind != kind
                   or (self.status is None and result.status is not None)
                   or (pending is not None and pending.status is not None
                       and result.status is None))
        self._received = (result.status if result.status is not None else status, new_kind,
                          "" if result.error is None else result.error.message)
        if not at_once:
            self._pending = result if pending is None else merge_results(pending, result)
            return news
        self._urgent = max(0, self._urgent - 1)
        with self.app.batch_update():
            if pending is not None:
                self._pending = None
                self.apply(pending)
            self.apply(result)
        return news

    @property
    def poll_delay_s(self) -> float:
        """Seconds between this panel's polls as things stand (failures, nothing new)."""
        # a mailbox (a Drive mailbox more so) asks for slower polls
        floor = 0.0 if self._client is None else self._client.min_poll_interval_s
        interval = max(0.05, self._settings.poll_interval_s, floor)
        return poll_delay(interval, self._failures, self._quiet, self._backoff_max_s)

    def wake(self) -> None:
        """The user turned to this session: end an idle stretch and poll at once."""
        if self._quiet >= IDLE_AFTER_POLLS:
            self._quiet = 0
            self.poll_now()
        self._quiet = 0

    def on_focus(self) -> None:
        self.wake()

    # ----------------------------------------------------------------- polling

    def _schedule_next(self) -> None:
        delay = self.poll_delay_s
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(delay, self.poll_now)

    def poll_failed(self, error: BaseException) -> None:
        """Called by the app when the poll worker itself crashed: show it and poll again."""
        self._failures += 1
        self._urgent = max(self._urgent, 1)
        self.receive(PollResult(self.session.key, self._clock(),
                                error=SessionError("bad_response", f"internal error: {error!r}")))
        self._schedule_next()

    def poll_now(self) -> None:
        """Start a poll unless one is running (the running one reschedules itself)."""
        if not self._poll_enabled or self._client is None:
            return
        if any(w.group == self._poll_group and not w.is_finished for w in self.workers):
            return
        self.run_worker(self._poll_once(), group=self._poll_group, exclusive=True,
                        exit_on_error=False, description=f"poll {self.session.key}")

    @property
    def _poll_group(self) -> str:
        return f"poll-{self.session.key}"

    async def _poll_once(self) -> None:
        client = self._client
        assert client is not None
        ledger = self._ledger
        try:
            status = await client.status()
        except SessionError as exc:
            self.post_message(PollResult(self.session.key, self._clock(), error=exc))
            return
        now = self._clock()
        fresh = status.session_id != self._session_id
        # SQLite work runs on a thread: a ledger of millions of points must not stall the UI.
        if fresh:
            self._session_id = status.session_id
            self._after = await asyncio.to_thread(ledger.last_seq, status.session_id) if ledger else 0
        if ledger is not None:
            await asyncio.to_thread(ledger.record_status, self.session.key, self.session.url,
                                    self.session.display_label, status, now)
        new: dict[str, list[MetricPoint]] = {}
        error = None
        try:
            for _ in range(MAX_PAGES_PER_POLL):
                if status.last_seq <= self._after:
                    break
                page = await client.metrics(self._after)
                if ledger is not None:
                    await asyncio.to_thread(ledger.add_points, status.run, status.session_id, page)
                for name, pts in page.series.items():
                    new.setdefault(name, []).extend(pts)
                self._after = max(self._after, page.next_after)
                if not page.more:
                    break
        except SessionError as exc:
            error = exc
        history = None
        if fresh and ledger is not None:
            history = await asyncio.to_thread(ledger.load_series, status.run)
            new = {}
        self.post_message(PollResult(self.session.key, self._clock(), status=status,
                                     new_points=new, history=history, error=error))

    # ----------------------------------------------------------------- commands

    def send(self, action: str) -> bool:
        """Send ``"save"`` or ``"stop"`` to the session and follow it until done or failed;
        each step arrives at the app as a :class:`CommandUpdate`.

        Returns:
            ``False``, sending nothing, while the same action is still in flight for this
            session (:attr:`in_flight`).
        """
        if action in self.in_flight:
            return False
        self.in_flight[action] = self.status.step if self.status is not None else None
        self.wake()
        client = self._client
        if client is None:
            client = make_client(self.session)
            self._client = client
        self.run_worker(self._command(client, action), group=f"cmd-{self.session.key}",
                        exit_on_error=False, description=f"{action} {self.session.key}")
        return True

    def set_session(self, session: SessionConfig) -> None:
        """Take a new token or label for this session (same URL and key); the next poll, at
        once, uses it. A command in flight ends on the old client, closed with the panel."""
        self.session = session
        if self._client is not None:
            old, self._client = self._client, make_client(session)
            if any(w.group == f"cmd-{session.key}" and not w.is_finished for w in self.workers):
                self._retired.append(old)
            else:
                self.run_worker(old.aclose(), exit_on_error=False)
            self._failures = 0
            self.run_worker(self._poll_once(), group=self._poll_group, exclusive=True,
                            exit_on_error=False, description=f"poll {session.key}")
        self.tick()

    async def _command(self, client: SessionClient, action: str) -> None:
        try:
            await follow_command(client, action, self.session.key, self.session.display_label,
                                 self.post_message)
        finally:
            self.in_flight.pop(action, None)
        self._urgent = URGENT_RESULTS_AFTER_COMMAND  # the user waits to see its outcome
        self.poll_now()
