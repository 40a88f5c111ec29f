"""Fixtures of the notebook-side tests: a Monitor training for real and serving on loopback."""

from __future__ import annotations

import httpx
import pytest
from colabtui_remote import Monitor
from digits_training import TrainingThread, make_training


@pytest.fixture
def served():
    """``start(checkpointer=None, **monitor_kwargs) -> (mon, client, thread)``: a Monitor
    training the digits model on a thread and serving on a free loopback port, with an
    ``httpx.Client`` that carries its token; ``checkpointer`` replaces the Monitor's own.
    Everything is stopped and closed at the end of the test."""
    made = []

    def start(checkpointer=None, **kw):
        mon = Monitor(run="digits", checkpoint_dir=kw.pop("checkpoint_dir", None),
                      autosave_every=None, handle_sigterm=False, **kw)
        if checkpointer is not None:
            mon.checkpointer = checkpointer
        training = make_training()
        mon.track(model=training.model, optimizer=training.optimizer, scheduler=training.scheduler)
        url = mon.serve(port=0, quiet=True)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {mon.token}"},
                              timeout=10)
        thread = TrainingThread(mon, training, 1_000_000, delay=0.002)
        thread.start()
        made.append((mon, client, thread))
        return mon, client, thread

    yield start
    for mon, client, thread in made:
        mon._stop = True
        thread.join(30)
        client.close()
        mon.close()
