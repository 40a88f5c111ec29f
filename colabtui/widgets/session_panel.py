"""One session's panel: polls its session in a worker and shows GPU, progress, checkpoint,
work at risk, the loss chart and the connection state.

Poll loop (one per panel):

1. :meth:`SessionPanel.poll_now` starts :meth:`_poll_once` as a worker in this panel's own
   group (``poll-<key>``, exclusive within it), so panels never cancel each other's polls.
2. The worker runs one :meth:`Poller.poll <colabtui.poller.Poller.poll>`: ``status``; on a
   new session id it continues from the ledger's last seq; it fetches ``/v1/metrics``
   incrementally (``after`` = last seq seen, again while ``page.more``) and records status and
   points in the ledger. Whatever raises on the way is the poll's error (kind ``"internal"``).
3. It posts one immutable :class:`PollResult`; the handler schedules the next poll with
   ``set_timer`` when it has taken the result, so polls never pile up. While the session fails, the delay doubles up to ``backoff_max_s``; while
   it answers with nothing new (no points, same state, step and connection) for
   :data:`IDLE_AFTER_POLLS` polls, the delay grows by :data:`IDLE_GROWTH` a poll up to
   :data:`IDLE_MAX_S`, and snaps back at the first news, a command sent, or the panel focused.

Failures never freeze a panel: a poll's error, or one applying its result, is shown and polls
go on with back-off; worker errors go on to the app's handler (:meth:`on_worker_state_changed`).

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
import time
from collections.abc import Callable

from colabtui_remote.schema import MetricPoint, Status
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from colabtui.client import SessionError
from colabtui.config import SessionConfig, Settings
from colabtui.curves import ResumeMark, run_curves
from colabtui.figures import ENDED_STATES, clock_offset_s
from colabtui.ledger import Ledger
from colabtui.poller import Poller, internal_error
from colabtui.session_client import SessionClient
from colabtui.transport import make_client, transport_text
from colabtui.widgets.chart_data import thin_points
from colabtui.widgets.checkpoint_view import CheckpointView
from colabtui.widgets.connection_line import connection_text
from colabtui.widgets.gpu_view import GpuView
from colabtui.widgets.loss_chart import LossChart
from colabtui.widgets.panel_commands import TokenRefused, follow_command
from colabtui.widgets.poll_result import (
    IDLE_AFTER_POLLS,
    PollResult,
    merge_results,
    poll_delay,
    result_news,
)
from colabtui.widgets.progress_view import ProgressView
from colabtui.widgets.text_block import text_key

MAX_POINTS_IN_MEMORY = 4_000
"""Above this many points a series shown is thinned to half as many (:func:`thin_points`), so
memory stays flat however long a run goes; a chart (at most two points a column) loses nothing
it could show."""

URGENT_RESULTS_AFTER_COMMAND = 2
"""Poll results applied at once after a save or stop ends: the poll already under way may
predate the end, so the one after it is shown at once too."""

STALE_AFTER_POLLS = 3
"""Poll intervals without a good poll after which a connected panel says "no answer for"."""

RELAUNCH_HINT = "R relaunches it"
"""Said in the header of a launched session that is not connected (the app's ``R`` key)."""


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
        observe: called with the session, each poll result as it arrives (before any
            coalescing) and the client it came through (the app's alerts).
    """

    def __init__(self, session: SessionConfig, index: int, *, clock: Callable[[], float],
                 settings: Settings, ledger: Ledger | None, poll: bool = True,
                 backoff_max_s: float = 30.0, log_scale: bool = False, x_axis: str = "step",
                 starting: Callable[[], bool] | None = None,
                 observe: Callable[[SessionConfig, PollResult, SessionClient | None], None]
                 | None = None
                 ) -> None:
        super().__init__(id=session.key)
        self._observe = observe
        self.session = session
        self.index = index
        self._clock = clock
        self._chart_drawn_at = float("-inf")  # monotonic time of the last live chart draw
        self._settings = settings
        self._ledger = ledger
        self._poll_enabled = poll
        self._backoff_max_s = backoff_max_s
        self._client: SessionClient | None = None
        self._poller: Poller | None = None
        self._timer = None
        self._failures = 0
        self._quiet = 0
        # what is shown, changed only by apply()
        self.status: Status | None = None
        self.conn_kind = "waiting"
        self.conn_message = ""
        self.unreachable_since: float | None = None
        self.seen_at: float | None = None
        self.note: str | None = None
        self.launched = False
        """Started by ``colabtui launch``: ``o`` shows its output, and while it is not
        connected the header says R relaunches it."""
        self._last_ok_at: float | None = None  # the clock at the last poll without an error
        self.clock_offset = 0.0
        self.series: dict[str, list[MetricPoint]] = {}
        self.resumes: tuple[ResumeMark, ...] = ()
        self._log_scale = log_scale
        self._x_axis = x_axis
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
        chart.x_axis = self._x_axis
        yield chart

    def on_mount(self) -> None:
        if self._poll_enabled:
            self._client = make_client(self.session)
            self._poller = Poller(self._client, self.session, self._ledger, self._clock)
        if self._ledger is not None or self._poll_enabled:
            # the history is read in a thread, then the first poll follows in the same worker
            self.run_worker(self._start(), group=self._poll_group, exclusive=True,
                            exit_on_error=False, description=f"start {self.session.key}")

    async def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._poller is not None:
            self._poller.flush_kept()  # a last try for what a locked history file kept
        for client in (self._client, *self._retired):
            if client is not None:
                await client.aclose()

    async def _start(self) -> None:
        """Show what the ledger holds of this session at once, then poll (the poll worker)."""
        if self._ledger is not None:
            try:
                shown = await asyncio.to_thread(self._read_history)
            except Exception as exc:  # noqa: BLE001 - a bad history file never stops the polls
                self._show_failure(internal_error("reading the history file", exc))
            else:
                if isinstance(shown, PollResult):
                    if self.status is None:  # no poll came first
                        self.apply(shown)
                elif shown is not None and not self.series:  # no poll came first
                    self.series, self.resumes = shown
                    self.query_one(LossChart).set_series(self.series, self.resumes)
        if self._poller is not None:
            await self._poll_once()

    def _read_history(self) -> PollResult | tuple[dict[str, list[MetricPoint]],
                                                    tuple[ResumeMark, ...]] | None:
        """The curve of this session's newest run from the ledger (in a thread) and, when
        that session ended (finished, stopped, failed), its last status too, as a result to
        apply: a server gone after the end shows "finished at step N", not an unreachable
        session with nothing logged."""
        assert self._ledger is not None
        if (ended := self._ledger.ended_status(self.session.key)) is not None:
            row, status = ended
            seen = row.last_seen if row.last_seen is not None else self._clock()
            history, resumes = run_curves(self._ledger, row.run)
            return PollResult(self.session.key, seen, status=status, history=history,
                              resumes=resumes,
                              error=SessionError("unreachable", "not asked yet"))
        for row in self._ledger.sessions():  # newest first
            if row.session_key == self.session.key:
                history, resumes = run_curves(self._ledger, row.run)
                return (history, resumes) if history else None
        return None

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
        dead = self.launched and self.conn_kind == "unreachable"
        text.append_text(connection_text(self.conn_kind, self.conn_message,
                                         self.unreachable_since, self._clock(), ended,
                                         silent_s=self.silent_s, note=self.note,
                                         hint=RELAUNCH_HINT if dead else None))
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
        """Whether what the panel shows is current: from the latest poll, that poll recent
        (:attr:`silent_s`), and (over a mailbox) not a status the runtime stopped refreshing."""
        return self.conn_kind == "connected" and self.silent_s is None and not (
            self.ended is None and self._client is not None and self._client.stale)

    @property
    def silent_s(self) -> float | None:
        """Seconds since the last good poll when that is more than :data:`STALE_AFTER_POLLS`
        poll intervals ago (a poll that hangs, a worker that died), else ``None``."""
        if self._poller is None or self._last_ok_at is None:
            return None
        silent = self._clock() - self._last_ok_at
        return silent if silent > STALE_AFTER_POLLS * self.poll_delay_s else None

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

    def set_x_axis(self, axis: str) -> None:
        """Draw the chart by ``"step"`` or by wall ``"time"``."""
        self._x_axis = axis
        self.query_one(LossChart).x_axis = axis

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
            except Exception as exc:  # noqa: BLE001 - an error on this panel, never the app's
                self._show_failure(internal_error("showing a poll result", exc))
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
        if self.status is not None and progress.live != self.live:  # polls went silent
            self.set_class(not self.live and self.ended is None, "-stale")
            progress.show(self.status, live=self.live, seen_at=self.seen_at)
            checkpoint.show(self.status, self.clock_offset, live=self.live)
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
        self.note = result.note
        if result.history is not None:
            self.series = {k: list(v) for k, v in result.history.items()}
            self.resumes = result.resumes
        for name, pts in result.new_points.items():
            self._append(name, pts)
        # an ended session's values are final, not stale, and its server going away is expected
        ended = self.ended is not None
        self.set_class(self.status is not None and not self.live and not ended, "-stale")
        self.set_class(self.conn_kind not in ("connected", "waiting") and not self.is_starting
                       and not (ended and self.conn_kind == "unreachable"), "-error")
        if self.status is not None:
            self.query_one(GpuView).show(self.status.gpus, self.status.gpu_error,
                                         self.status.world)
            self.query_one(ProgressView).show(self.status, live=self.live, seen_at=self.seen_at)
            self.query_one(CheckpointView).show(self.status, self.clock_offset, live=self.live)
        if result.history is not None:  # a new run's history: drawn afresh, at once
            self._chart_drawn_at = time.monotonic()
            self.query_one(LossChart).set_series(self.series, self.resumes)
        elif result.new_points:
            chart = self.query_one(LossChart)
            chart.update_series(self.series, self.resumes)
            if not self._poll_enabled:
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
        if len(current) > MAX_POINTS_IN_MEMORY:
            self.series[name] = thin_points(current, MAX_POINTS_IN_MEMORY // 2)

    def on_poll_result(self, message: PollResult) -> None:
        message.stop()
        if self._observe is not None:
            self._observe(self.session, message, self._client)
        failed = message.error is not None
        if failed and message.error.kind == "token_refused":
            self.post_message(TokenRefused(self.session.key))  # bubbles up to the app
        if not failed:
            self._last_ok_at = message.at
        try:
            news = self.receive(message)
        except NoMatches:  # being removed, or the app torn down
            return
        except Exception as exc:  # noqa: BLE001 - an error on this panel, never the app's
            self._pending = None
            self._show_failure(internal_error("showing a poll result", exc))
            news = failed = True
        # no back-off while it starts: it answers any moment now
        self._failures = self._failures + 1 if failed and not self.is_starting else 0
        self._quiet = 0 if news else self._quiet + 1
        self._schedule_next()

    def _show_failure(self, error: SessionError) -> None:
        """Say ``error`` when showing a result failed: only the header is drawn again (what
        the failure left half-made is not), and the next poll reads the history again."""
        if self._poller is not None:
            self._poller.restart()
        if self.conn_kind != error.kind or self.unreachable_since is None:
            self.unreachable_since = self._clock()
        self.conn_kind, self.conn_message = error.kind, error.message
        self._received = (self.status, self.conn_kind, self.conn_message)
        self.set_class(True, "-error")
        self._header_shown = None
        self.query_one("#header", Static).update(self._header_text(), layout=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Worker.StateChanged does not bubble: hand an error on to the app's one handler
        if event.state == WorkerState.ERROR:
            event.stop()
            self.app.post_message(Worker.StateChanged(event.worker, event.state))

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
        self.post_message(PollResult(self.session.key, self._clock(),
                                     error=internal_error("polling", error)))

    def poll_now(self) -> None:
        """Start a poll unless one is running (the running one reschedules itself)."""
        if self._poller is None:
            return
        if any(w.group == self._poll_group and not w.is_finished for w in self.workers):
            return
        self.run_worker(self._poll_once(), group=self._poll_group, exclusive=True,
                        exit_on_error=False, description=f"poll {self.session.key}")

    @property
    def _poll_group(self) -> str:
        return f"poll-{self.session.key}"

    async def _poll_once(self) -> None:
        assert self._poller is not None
        got = await self._poller.poll()
        self.post_message(PollResult(self.session.key, self._clock(), status=got.status,
                                     new_points=got.new_points, history=got.history,
                                     resumes=got.resumes, error=got.error, note=got.note))

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
            if self._poller is not None:
                self._poller.client, self._poller.session = self._client, session
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
