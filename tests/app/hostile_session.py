"""A hostile session: a loopback server speaking the real ``/v1`` protocol (bearer token,
protocol version, JSON error bodies) whose every string carries terminal escapes and whose
numbers are out of range, as a compromised runtime, a buggy script or a tunnel could send.

It stands in for what cannot run here: a real ``colabtui_remote`` refuses to build such
numbers. The strings also go through a real Monitor in the tests (its run, label and metric
names may hold anything).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from colabtui_remote import schema, wire

TOKEN = "hostile-token-0123456789abcdef"

OSC_TITLE = "\x1b]0;pwned\x07"
OSC_CLIPBOARD = "\x1b]52;c;aGVsbG8=\x07"
CSI_CLEAR = "\x1b[2J"
SGR_BLINK = "\x1b[5m"
BEL = "\x07"
C1_CSI = "\x9b"
DEL = "\x7f"
RTL_OVERRIDE = "\u202e"

HOSTILE = {"osc 0 title": OSC_TITLE, "osc 52 clipboard": OSC_CLIPBOARD, "csi 2J": CSI_CLEAR,
           "sgr blink": SGR_BLINK, "bel": BEL, "c1 csi": C1_CSI, "del": DEL,
           "rtl override": RTL_OVERRIDE, "newline": "\n", "tab": "\t"}
"""Each hostile string by what it is."""

EVERYTHING = "".join(HOSTILE.values())

RUN = f"RUNMARK{OSC_CLIPBOARD}{OSC_TITLE}r\n● connected"
"""A run name that writes the clipboard, sets the title and spoofs the header's second row."""

LABEL = f"LABELMARK{CSI_CLEAR}{SGR_BLINK}{BEL}{C1_CSI}{DEL}{RTL_OVERRIDE}gnp.exe"
METRIC = f"loss{SGR_BLINK}{OSC_TITLE}"
"""A metric name (charted: it holds ``loss``)."""

HUGE = 10**400
"""Beyond the float range (the issue's OverflowError) and beyond 100 digits."""
DIGITS_5000 = "9" * 5000
"""An integer literal Python's ``int()`` refuses (4,300 digits by default)."""
_SPLICE = 777_000_777_000_777  # an int in the document, replaced by DIGITS_5000 as text


def hostile_status(now: float) -> dict:
    """A ``/v1/status`` document: hostile text everywhere, numbers out of range."""
    status = schema.Status(
        protocol=schema.PROTOCOL_VERSION, run=RUN, session_id=f"sess{EVERYTHING}",
        label=LABEL, state="running", step=3, total_steps=20, epoch=0, steps_per_s=2.0,
        metrics={METRIC: 0.5}, last_seq=3, started_at=now - 60, uptime_s=60.0, server_time=now,
        gpus=[schema.GpuStats(index=0, name=f"GPUMARK{OSC_CLIPBOARD}T4{EVERYTHING}",
                              uuid=f"GPU-{EVERYTHING}", utilization_pct=50.0,
                              memory_used_bytes=1, memory_total_bytes=16 * 2**30,
                              temperature_c=40.0, power_w=30.0, power_limit_w=70.0,
                              unsupported={f"fan{BEL}": f"NVML_ERROR{EVERYTHING}"})],
        checkpoint=schema.CheckpointStatus(
            dir=f"/ckpt{EVERYTHING}",
            last=schema.CheckpointInfo(step=2, path=f"/ckpt/{EVERYTHING}.pt", bytes=1,
                                       sha256=f"ab{EVERYTHING}", saved_at=now - 30),
            in_progress=schema.SaveProgress(step=3, phase=f"PHASEMARK{CSI_CLEAR}writing",
                                            bytes_written=10, bytes_total=100),
            last_error=f"ERRMARK disk{OSC_TITLE}\nfull{RTL_OVERRIDE}", last_error_at=now - 10,
            count=1),
        host=schema.HostInfo(python=f"3.11{EVERYTHING}", torch=f"2{BEL}",
                             platform=f"linux{CSI_CLEAR}", hostname=f"host{OSC_CLIPBOARD}"),
        error=f"no{EVERYTHING}")
    doc = schema.status_to_wire(status)
    doc["step"] = 1e30  # SQLite's INTEGER cannot hold it
    doc["total_steps"] = HUGE
    doc["gpus"][0]["memory_used_bytes"] = HUGE
    doc["checkpoint"]["last"]["bytes"] = _SPLICE
    return doc


def hostile_metrics() -> dict:
    """A ``/v1/metrics`` page: a hostile series name; one point with a seq out of range."""
    return {"protocol": schema.PROTOCOL_VERSION, "after": 0, "next_after": 3, "last_seq": 3,
            "more": False, "thinned": False,
            "series": {METRIC: [[1, 1, 1.0, 2.0, None], [2, 2, 2.0, 1.0, None],
                                [3, 3, 3.0, 0.5, None], [HUGE, 4, 4.0, 0.25, None]]}}


def hostile_command(command_id: str, now: float) -> dict:
    """A finished save whose checkpoint is out of range and whose fields carry escapes."""
    record = schema.CommandRecord(
        id=command_id, action="save", state="done", created_at=now, finished_at=now,
        checkpoint=schema.CheckpointInfo(step=3, path=f"/c/{EVERYTHING}", bytes=1,
                                         sha256="ab", saved_at=now),
        error=f"ok{EVERYTHING}")
    doc = schema.command_to_wire(record)
    doc["checkpoint"]["bytes"] = HUGE
    return doc


def encode(doc: dict) -> bytes:
    """``doc`` as JSON, with the spliced integer written as 5,000 digits."""
    return json.dumps(doc).replace(str(_SPLICE), DIGITS_5000).encode()


class HostileSession:
    """The server, on 127.0.0.1 and a free port; ``error_message`` set makes every route
    answer 500 with that message in the protocol's error body."""

    def __init__(self) -> None:
        self.error_message: str | None = None
        session = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = self.rfile.read(length) if length else b""
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, wire.dumps(schema.error_body("unauthorized", "token")))
                    return
                if session.error_message is not None:
                    self._send(500, json.dumps(schema.error_body(
                        "internal", session.error_message)).encode())
                    return
                path, now = self.path.split("?")[0], time.time()
                if path == "/v1/status":
                    self._send(200, encode(hostile_status(now)))
                elif path == "/v1/metrics":
                    self._send(200, encode(hostile_metrics()))
                elif path == "/v1/commands" and self.command == "POST":
                    self._send(202, encode(hostile_command(json.loads(request)["id"], now)))
                elif path.startswith("/v1/commands/"):
                    self._send(200, encode(hostile_command(path.rsplit("/", 1)[1], now)))
                else:
                    self._send(404, wire.dumps(schema.error_body("not_found", path)))

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
