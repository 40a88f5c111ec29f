"""Regenerate the screenshots under screenshots/ (SVG, and PNG via cairosvg).

    python scripts/screenshots.py [NAME...]     (names: only those shots)

Layouts, from fixed realistic data with a frozen clock (tests/app/ui_fixtures.py): three
sessions at 160x48 and 80x24, one session unreachable, one stopped, one interrupted, two with checkpoints on Drive (uploading; mount offline), two
torchrun jobs (DDP on 2×T4; FSDP on two nodes, a rank lost), the history, the alerts, the stop
confirmation
(also at 40x12), the remove confirmation, the welcome screen, the help screen, and the history
(two runs' sessions over a week, tests/app/history_fixtures.py; times in UTC), and the compare
view of the demo's three learning rates, by step and by wall time, and a launched Colab
session whose runtime ended (R relaunches it) with its confirmation.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "app"))

import cairosvg  # noqa: E402
from history_fixtures import fill_history, fill_learning_rates  # noqa: E402
from ui_fixtures import (  # noqa: E402
    distributed_sessions,
    drive_sessions,
    feed,
    fire_alerts,
    frozen_clock,
    interrupted_session,
    launched_session,
    stopped_session,
    three_sessions,
    unreachable_session,
    write_config,
    write_launches,
)

from colabtui.app import ColabTuiApp  # noqa: E402
from colabtui.ledger import Ledger  # noqa: E402

OUT = ROOT / "screenshots"

# The SVG asks for Fira Code; most machines rendering PNGs lack it, and the fallback is not
# monospaced. DejaVu Sans Mono has every glyph the app draws (blocks, quadrants, arrows).
FONT_SWAP = (('"Fira Code"', '"DejaVu Sans Mono"'),
             ("Fira Code, monospace", "DejaVu Sans Mono, monospace"))

# DejaVu Sans Mono has no braille patterns (the charts' dots); DejaVu Sans has. Each run of text
# in the SVG has its own x and textLength, so a run of braille in another font keeps its cells.
BRAILLE_TEXT = re.compile(r"<text ([^>]*)>([^<]*[\u2800-\u28ff][^<]*)</text>")
BRAILLE_FONT = r'<text style="font-family: DejaVu Sans" \1>\2</text>'

SHOTS = [
    # name, size, sessions, keys pressed after the data is in
    ("three-sessions-160x48", (160, 48), "three", ()),
    ("three-sessions-80x24", (80, 24), "three", ()),
    ("unreachable", (120, 36), "unreachable", ()),
    ("stop-confirmation", (120, 36), "three", ("2", "x")),
    ("stop-confirmation-40x12", (40, 12), "three", ("2", "x")),
    ("remove-confirmation", (120, 36), "three", ("3", "d")),
    ("welcome", (100, 32), "none", ()),
    ("help", (100, 32), "three", ("question_mark",)),
    ("stopped", (120, 36), "stopped", ()),
    ("interrupted", (120, 36), "interrupted", ()),
    ("checkpoints-on-drive", (120, 36), "drive", ()),
    ("distributed-jobs", (120, 36), "distributed", ()),
    ("history", (160, 30), "history", ("h", "down", "down")),
    ("alerts", (120, 30), "alerts", ("exclamation_mark",)),
    ("compare", (140, 36), "compare", ("c",)),
    ("compare-by-time", (140, 36), "compare", ("c", "t")),
    ("relaunch", (120, 36), "launched", ()),
    ("relaunch-confirmation", (120, 36), "launched", ("2", "R")),
]


def _sessions(kind: str):
    if kind in ("three", "history", "compare"):
        return three_sessions()
    if kind == "unreachable":
        return [three_sessions()[0], unreachable_session()]
    if kind == "stopped":
        return [three_sessions()[0], stopped_session()]
    if kind == "interrupted":
        return [three_sessions()[0], interrupted_session()]
    if kind == "drive":
        return drive_sessions()
    if kind == "distributed":
        return distributed_sessions()
    if kind == "alerts":
        return [*three_sessions(), unreachable_session()]
    if kind == "launched":
        return [three_sessions()[0], launched_session()]
    return []


async def shoot(name: str, size: tuple[int, int], kind: str, keys: tuple[str, ...],
                work: Path) -> Path:
    sessions = _sessions(kind)
    config = work / f"{name}.toml"
    if sessions:
        write_config(config, sessions)
    if kind in ("history", "compare"):
        with Ledger(work / f"{name}.sqlite3") as ledger:
            (fill_history if kind == "history" else fill_learning_rates)(ledger)
    launches = work / f"{name}-launches.json"
    if kind == "launched":  # what `colabtui launch` recorded for the second session
        write_launches(launches, sessions[1])
    app = ColabTuiApp(config, work / f"{name}.sqlite3", clock=frozen_clock, poll=False,
                      launches_path=launches)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        feed(app, sessions)
        if kind == "alerts":
            fire_alerts(app, sessions)  # a NaN loss, a lost session, a failed save…
            app.clear_notifications()
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
        svg = app.export_screenshot(title="colabtui")
    path = OUT / f"{name}.svg"
    path.write_text(svg, encoding="utf-8")
    for old, new in FONT_SWAP:
        svg = svg.replace(old, new)
    svg = BRAILLE_TEXT.sub(BRAILLE_FONT, svg)
    cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(path.with_suffix(".png")))
    return path


async def main() -> None:
    os.environ["TZ"] = "UTC"  # the history's start times, the same on every machine
    time.tzset()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wanted = set(sys.argv[1:])  # names given: only those
        for name, size, kind, keys in SHOTS:
            if wanted and name not in wanted:
                continue
            path = await shoot(name, size, kind, keys, Path(tmp))
            print(f"wrote {path.relative_to(ROOT)} and .png")


if __name__ == "__main__":
    asyncio.run(main())
