"""The app on a real torchrun job (remote/examples/train_digits_ddp.py, 2 ranks, gloo on the
CPU): one panel for the job, its ranks shown, saved with ``s`` and stopped with ``x`` as any
session, every rank ending at the same step."""

from __future__ import annotations

from pathlib import Path

import torch
from test_ui_live import wait_for
from torchrun_job import TOKEN, Job

from colabtui.app import ColabTuiApp
from colabtui.config import Config, SessionConfig, Settings, save_config
from colabtui.widgets.gpu_view import GpuView


async def test_a_torchrun_job_is_one_session_watched_saved_and_stopped(tmp_path: Path):
    job = Job("train_digits_ddp.py", tmp_path, steps=2000, step_delay=0.05)
    try:
        job.wait_for(lambda s: s.get("step", 0) >= 2, "reached step 2")
        config = tmp_path / "config.toml"
        save_config(Config([SessionConfig(f"http://127.0.0.1:{job.port}", TOKEN, "ddp job")],
                           Settings(poll_interval_s=0.1)), config)
        app = ColabTuiApp(config, tmp_path / "ledger.sqlite3", backoff_max_s=0.4)
        async with app.run_test(size=(160, 48)) as pilot:
            assert len(app.panels) == 1
            panel = app.panels[0]
            await wait_for(pilot, lambda: panel.conn_kind == "connected" and panel.status.step,
                           "first status")
            assert panel.status.world.size == 2
            shown = panel.query_one(GpuView).render().plain
            assert "torchrun: 2 ranks" in shown, shown
            await pilot.press("s")
            await wait_for(pilot, lambda: panel.status.checkpoint.last is not None,
                           "the checkpoint to show")
            saved = torch.load(panel.status.checkpoint.last.path, weights_only=True)
            assert len(saved["ranks"]) == 2  # every rank's part
            await pilot.press("x", "y")
            await wait_for(pilot, lambda: panel.status.state == "stopped", "stopped")
            stopped_at = panel.status.step
        out = job.finish()
        assert job.proc.returncode == 0, out  # every rank ended cleanly
        assert f"stopped at step {stopped_at} from the laptop" in out
    finally:
        job.kill()
