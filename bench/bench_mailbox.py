"""Drive mailbox round trip through a local folder: a save command written on the laptop side →
carried out by the runtime → the status showing the new checkpoint seen on the laptop.

The runtime is the digits example in another process serving only through the folder
(``--mailbox DIR --port -1 --mailbox-interval I``); the laptop side is :class:`MailboxClient`
following the command as the app does (every ``COMMAND_POLL_S``). Trials start at random
phases of the runtime's interval. Target (issue 4): round trip ≤ interval + 1 s; the figure is
the worst trial, the reference is the interval + 1 s (a sync client such as Google Drive for
desktop adds its own delay on top; not measured here).

    python bench/bench_mailbox.py [--interval 2] [--trials 8]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from colabtui.mailbox_client import MailboxClient
from colabtui.widgets.panel_commands import COMMAND_POLL_S


async def wait_for(probe, limit_s: float = 60.0):
    deadline = time.monotonic() + limit_s
    while True:
        try:
            value = await probe()
        except Exception:  # noqa: BLE001 — not there yet (no status.json, mid-sync)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit("bench_mailbox: gave up waiting")
        await asyncio.sleep(COMMAND_POLL_S)


async def round_trip(client: MailboxClient) -> float:
    t0 = time.perf_counter()
    sent = await client.send_command("save")

    async def done():
        record = await client.get_command(sent.id)
        return record if record.state in ("done", "failed") else None

    record = await wait_for(done)
    if record.state != "done":
        raise SystemExit(f"bench_mailbox: the save failed: {record.error}")

    async def shown():
        st = await client.status()
        return st.checkpoint.last is not None and st.checkpoint.last.step == record.checkpoint.step

    await wait_for(shown)
    return time.perf_counter() - t0


async def run(folder: Path, interval: float, trials: int) -> list[float]:
    client = MailboxClient(folder)
    await wait_for(client.status)
    out = []
    for _ in range(trials):
        await asyncio.sleep(random.uniform(0, interval))  # a random phase of the runtime's round
        out.append(await round_trip(client))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=2.0, help="runtime's mailbox interval, s")
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "drive" / "RUN"
        proc = subprocess.Popen(
            [sys.executable, "-m", "colabtui_remote.examples.digits", "--port", "-1",
             "--mailbox", str(folder), "--mailbox-interval", str(args.interval),
             "--checkpoint-dir", str(Path(tmp) / "ckpt"), "--steps", "10000000",
             "--step-delay", "0.01", "--autosave-every", "0", "--run", "bench"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            samples = asyncio.run(run(folder, args.interval, args.trials))
        finally:
            proc.kill()
            proc.wait(30)
    report("mailbox round trip (save written → done → status seen)", samples, args.interval)


def report(what: str, samples: list[float], interval: float, *extra: str) -> None:
    """Print the round trips beside their reference, the interval + 1 s, as a ratio."""
    worst, p50 = max(samples), statistics.median(samples)
    reference = interval + 1.0
    ratio = worst / reference
    print(f"{what}, {len(samples)} trials, runtime interval {interval:g} s, laptop follows "
          f"every {COMMAND_POLL_S:g} s")
    print(f"  median {p50:.2f} s, worst {worst:.2f} s; all: {' '.join(f'{s:.2f}' for s in samples)}")
    for line in extra:
        print(f"  {line}")
    print(f"  reference (interval + 1 s): {reference:.2f} s")
    print(f"  ratio worst/reference: {ratio:.2f}  {'PASS' if ratio <= 1.0 else 'FAIL'} (target ≤ 1.00)")


if __name__ == "__main__":
    main()
