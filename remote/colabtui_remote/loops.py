"""The loop shapes people write, as they drive the step boundary: ``for step in
mon.steps(total)``, ``for epoch in mon.epochs(first, stop)`` around a batch loop, and the
explicit form's :meth:`TrainingLoops.finish`. Also how a loop ends: finished, interrupted
(the kernel's stop button: saved at the next boundary, ``KeyboardInterrupt`` raised there),
left early, or ended by an exception (``failed``)."""

from __future__ import annotations

from collections.abc import Iterator

from . import schema
from .lifecycle import watch_cells

__all__ = ["TrainingLoops"]


class TrainingLoops:
    """The loops of a :class:`~.monitor.Monitor`, mixed into it. It uses the Monitor's
    ``run``, ``step``, ``epoch``, ``total_steps``, ``state``, ``error``, ``finished``,
    :meth:`~.monitor.Monitor.resume`, :meth:`~.monitor.Monitor.at_step_boundary` and the
    private ``_resumed``, ``_stop``, ``_sigint``, ``_sigterm``, ``_interrupt``, ``_loaders``,
    ``_saver``, ``_job``, ``_launched``, ``_mailbox``, ``_set_state``, and
    :meth:`~.monitor.Monitor.serve_mailbox`."""

    def steps(self, total: int) -> Iterator[int]:
        """Yield step indices from the resumed step to ``total - 1``.

        Between steps it carries out commands and autosaves; when asked to stop it saves and
        ends early. At the end it saves a last checkpoint and the run is ``finished``: run again,
        it trains nothing ("already finished at step N"), unless ``total`` is larger. An
        interrupt (the kernel's stop button) saves at the next boundary and raises
        ``KeyboardInterrupt`` there; re-running the loop goes on from that step.
        """
        self.total_steps = int(total)
        self.resume()
        self._serve_launched()
        step = self.step
        if self.finished and step >= total:
            self._say_finished()
            return
        self.finished = False
        try:
            while step < total:
                yield step
                step += 1
                if self.at_step_boundary(step):
                    return
            self.finish()
        except GeneratorExit:  # the loop left early: an exception, or a break
            self._left_loop()
            raise
        finally:
            self._interrupt.restore()

    def epochs(self, first: int, stop: int) -> Iterator[int]:
        """Yield epochs from the one to continue in (:attr:`epoch` after a resume, else
        ``first``) to ``stop - 1``, for a nested epoch/batch loop (see the README). After each
        epoch's body (its evaluation and ``scheduler.step()`` included) comes a boundary: a
        save due there holds the closed epoch, and resumes into the next one."""
        self.resume()
        self._serve_launched()
        start = self.epoch if self.epoch is not None else first
        if self.finished and start >= stop:
            self._say_finished()
            return
        self.finished = False
        for epoch in range(start, stop):
            self.epoch = epoch
            yield epoch
            for sampler in self._loaders:
                sampler.end_epoch()
            self.epoch = epoch + 1
            if self.at_step_boundary(self.step):
                return

    def _serve_launched(self) -> None:
        """Serve the mailbox ``colabtui launch`` named (``$COLABTUI_MAILBOX``, read when the
        Monitor was made) from the moment the run is resumed: a loop's start, the first step
        boundary, or :meth:`close` for a run that ended before either. Not earlier: the
        laptop never sees step 0 of a run about to resume, or a run that cannot."""
        if self._launched is not None:
            folder, interval_s = self._launched
            self._launched = None
            if self._mailbox is None:
                self.serve_mailbox(folder, interval_s=interval_s, quiet=True)
                print(f"colabtui: serving {folder} every {interval_s:g} s for `colabtui "
                      "launch` (the laptop watches it as colab://)", flush=True)
            else:  # the script serves a mailbox of its own: it is kept
                print(f"colabtui: not serving {folder} ($COLABTUI_MAILBOX): this script serves "
                      "a mailbox of its own; the laptop reads that one", flush=True)

    def _on_sigterm(self) -> bool:
        if self._sigterm or self._stop or self.state in ("finished", "stopped"):
            return False  # a second SIGTERM, or nothing left to save
        self._sigterm = True
        return True

    def _start_loop(self) -> None:
        """A loop starts (or a cell runs it again): clear a stop, ``running``, interrupts on."""
        self._stop = False  # a stop from the laptop ended the last loop: a re-run trains again
        self._sigint = False
        self._set_state("running")
        self._interrupt.install()
        watch_cells(self)

    def finish(self) -> None:
        """End a run that completed: save a last checkpoint (waiting until it is durable),
        state ``finished``; the explicit form's last call. A finished run resumed again says
        "already finished at step N" and trains nothing. After a stop it does nothing: the
        run was not completed, and goes on when started again."""
        if self._stop or (self.finished and self.state == "finished"):
            return  # stopped (the run goes on next time), or finished and nothing trained since
        self.finished = True
        self._saver.finish(self.step, self.epoch)
        self._interrupt.restore()
        if self._job is None or self._job.ranks.is_main:  # one voice for a job
            print(f"colabtui: {self.run} finished at step {self.step}", flush=True)

    def _say_finished(self) -> None:
        self._set_state("finished")
        if self._job is not None and not self._job.ranks.is_main:
            return
        print(f"colabtui: {self.run} already finished at step {self.step}; nothing to train "
              "(ask for more steps or epochs, or Monitor(..., start_over=True))", flush=True)

    def _left_loop(self) -> None:
        if self.state in ("running", "saving"):
            self._set_state("interrupted")
            self.error = f"the loop left mon.steps() at step {self.step}"

    def _on_sigint(self) -> bool:
        if self._sigint:
            return False  # a second one before the boundary: at once, nothing saved
        if self.state == "stopping":
            self._sigint = True  # the stop under way ends the loop: let it finish, stopped
            return True
        if self.state not in ("running", "saving"):
            return False
        self._set_state("interrupted")
        self._sigint = True
        return True

    def cell_ended(self) -> None:
        """A notebook cell ended: interrupts are Python's again until a loop runs."""
        self._interrupt.restore()

    def ended_by(self, exc: BaseException | None) -> None:
        """An exception ended the cell or the script while this run trained (see
        :func:`~.lifecycle.watch_cells`): ``interrupted`` for ``KeyboardInterrupt``, else
        ``failed`` with the exception's type and message."""
        if exc is None or self.state in ("finished", "stopped", "failed"):
            return
        if self._job is not None:  # the other ranks are told; a rank lost is named first
            self._job.failed(exc)
        if isinstance(exc, KeyboardInterrupt):
            self._set_state("interrupted")
        elif self.state != "failed":
            self.error = f"{type(exc).__name__}: {exc}"[: schema.MAX_TEXT]
            self._set_state("failed")
        self._interrupt.restore()
        if self._job is not None:
            self._job.linger()
