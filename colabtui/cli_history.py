"""``colabtui history [RUN] [--json | --csv]``: every session the ledger recorded, one line each,
and per run a summary by GPU type (see :mod:`colabtui.history`).

Rows stream page by page: thousands of sessions print as they are read. Text from sessions is
cleaned at parse time and again as it is read back; it is printed as plain text.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TextIO

from colabtui.config import default_ledger_path

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(sub, fmt) -> None:
    """Add the ``history`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "history", formatter_class=fmt, help="every session recorded, and GPUs ranked per run",
        description="One line per session of each run, from the history the app and `colabtui "
                    "status` keep: platform, GPU, start, lifetime, how it ended (finished, "
                    "stopped, lost, failed, interrupted, running), steps, median steps/s, "
                    "checkpoints written and, for a lost session, the work lost after its last "
                    "durable checkpoint. Then, per run, its GPU types ranked by median steps/s.",
        epilog="examples:\n  colabtui history\n  colabtui history resnet-lr3e-4\n"
               "  colabtui history --json | jq '.runs[].by_gpu'\n"
               "  colabtui history --csv > sessions.csv     (sessions only)\n"
               "  colabtui history --demo                   the demo's runs")
    p.add_argument("run", nargs="?", default=None, help="only this run")
    p.add_argument("--demo", action="store_true",
                   help="the demo's history (`colabtui demo` keeps its own, apart from yours)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON on stdout (times: Unix s)")
    out.add_argument("--csv", action="store_true", help="CSV of the sessions on stdout")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the history; returns the exit code (1 when the file cannot be read)."""
    from colabtui.ledger import Ledger

    out = sys.stdout if out is None else out
    path = default_ledger_path()
    if getattr(args, "demo", False):
        from colabtui.demo import demo_dir

        path = demo_dir() / "ledger.sqlite3"
    if not path.exists():  # nothing recorded: do not create the file to say so
        return _print(out, args, None, None)
    try:
        ledger = Ledger(path)
    except Exception as exc:  # noqa: BLE001 - any failure: say why, in one line
        print(f"colabtui: cannot open the history {path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    with ledger:
        return _print(out, args, ledger, path)


def _print(out: TextIO, args: argparse.Namespace, ledger, path: Path | None) -> int:
    from colabtui.history import iter_history

    rows = iter_history(ledger, run=args.run) if ledger is not None else iter(())
    if args.json:
        _json(out, rows, path)
    elif args.csv:
        _csv(out, rows)
    else:
        _text(out, rows, args.run)
    return EXIT_OK


def _by_run(rows):
    """``(run, its rows)`` groups of ``rows`` (ordered by run), each group an iterator."""
    import itertools

    return itertools.groupby(rows, key=lambda r: r.run)


def _json(out: TextIO, rows, path: Path | None) -> None:
    from colabtui.history import GpuRanking, gpu_json, session_json

    out.write('{"ledger": ' + json.dumps(None if path is None else str(path)) + ', "runs": [')
    for n, (run, group) in enumerate(_by_run(rows)):
        ranking = GpuRanking()
        out.write(("," if n else "") + '\n  {"run": ' + json.dumps(run) + ', "sessions": [')
        for i, row in enumerate(group):
            ranking.add(row)
            out.write(("," if i else "") + "\n    " + json.dumps(session_json(row),
                                                                 allow_nan=False))
        by_gpu = [gpu_json(s) for s in ranking.result()]
        out.write('\n  ], "by_gpu": ' + json.dumps(by_gpu, allow_nan=False) + "}")
    out.write("\n]}\n")


def _csv(out: TextIO, rows) -> None:
    from colabtui.history import session_json

    writer = None
    for row in rows:
        record = {"run": row.run, **session_json(row)}
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(record), lineterminator="\n")
            writer.writeheader()
        writer.writerow(record)
    if writer is None:
        out.write("run,session_id,label,platform,gpu,started_at,lifetime_s,ended,steps,"
                  "median_steps_per_s,checkpoints,lost_steps,lost_s\n")


WIDTHS = (22, 8, 24, 16, 8, 11, 10, 8, 5)
"""Column widths of the text table (the last column, work lost, is not padded)."""


def _line(cells: list[str]) -> str:
    def fit(text: str, width: int) -> str:
        return text if len(text) <= width else text[:width - 1] + "…"

    return "  ".join(fit(c, w).ljust(w) for c, w in zip(cells, WIDTHS, strict=False)) \
        + "  " + cells[-1]


def _text(out: TextIO, rows, run: str | None) -> None:
    from colabtui.history import (
        EMPTY,
        GPU_COLUMNS,
        SESSION_COLUMNS,
        GpuRanking,
        gpu_cells,
        session_cells,
    )

    any_rows = False
    for run_name, group in _by_run(rows):
        out.write(("\n" if any_rows else "") + f"run {run_name}\n")
        any_rows = True
        out.write(_line(list(SESSION_COLUMNS)) + "\n")
        ranking = GpuRanking()
        for row in group:
            ranking.add(row)
            out.write(_line(session_cells(row)) + "\n")
        out.write("by GPU, fastest first:\n")
        table = [list(GPU_COLUMNS)] + [gpu_cells(s) for s in ranking.result()]
        widths = [max(len(r[i]) for r in table) for i in range(len(GPU_COLUMNS))]
        for r in table:
            out.write("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                      .rstrip() + "\n")
    if not any_rows:
        out.write(f"{EMPTY}" + (f" for run {run}" if run is not None else "")
                  + " (the app and `colabtui status` record every session they see)\n")
