"""Latency of GET /v1/status: idle, and while a trainer runs in the same process.

Reference, measured in the same run: a bare stdlib ThreadingHTTPServer answering a constant JSON
body of the same size (the floor any stdlib server pays). Targets (notebook-side issue): p50 ≤ 5 ms
with the trainer idle, p99 ≤ 50 ms while the trainer runs.

    python bench/bench_status_latency.py [--requests 500]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import torch
from bench_monitor_overhead import make_step
from colabtui_remote import Monitor


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1e3, s[int(0.99 * (len(s) - 1))] * 1e3


def measure(url: str, token: str, n: int) -> list[float]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        for _ in range(20):
            c.get("/v1/status")
        out = []
        for _ in range(n):
            t = time.perf_counter()
            r = c.get("/v1/status")
            out.append(time.perf_counter() - t)
            assert r.status_code == 200
            time.sleep(0.002)
        return out


def bare_server(body: bytes) -> ThreadingHTTPServer:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as ours: else each answer waits 40 ms for a delayed ACK

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    mon = Monitor(run="latency", autosave_every=None, handle_sigterm=False)
    for i in range(1000):
        mon.log(step=i, loss=1 / (i + 1), lr=1e-3)
    url = mon.serve(port=0, quiet=True)
    size = len(httpx.get(url + "/v1/status", headers={"Authorization": f"Bearer {mon.token}"}).content)
    bare = bare_server(b"{" + b" " * (size - 2) + b"}")
    bare_url = f"http://127.0.0.1:{bare.server_address[1]}"

    ref_idle = measure(bare_url, "none", args.requests)
    idle = measure(url, mon.token, args.requests)

    stop = threading.Event()
    step = make_step()

    def train():
        it = mon.steps(10**12)
        for _ in it:
            mon.log(loss=step())
            if stop.is_set():
                break
        it.close()

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    time.sleep(0.5)
    busy = measure(url, mon.token, args.requests)
    ref_busy = measure(bare_url, "none", args.requests)
    stop.set()
    trainer.join()
    mon.close()
    bare.shutdown()

    rows = [("idle", idle, ref_idle), ("trainer running", busy, ref_busy)]
    print(f"bench_status_latency: {args.requests} sequential GET /v1/status ({size} bytes), keep-alive")
    for name, got, ref in rows:
        p50, p99 = percentiles(got)
        r50, r99 = percentiles(ref)
        print(f"  {name:16s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms   | bare stdlib server p50 {r50:6.2f} ms"
              f"  p99 {r99:6.2f} ms   | ratio p50 {p50 / r50:4.2f}  p99 {p99 / r99:4.2f}")
    idle_p50 = percentiles(idle)[0]
    busy_p99 = percentiles(busy)[1]
    print(f"  target p50 idle ≤ 5 ms: {idle_p50:.2f} ms {'PASS' if idle_p50 <= 5 else 'FAIL'}; "
          f"p99 trainer running ≤ 50 ms: {busy_p99:.2f} ms {'PASS' if busy_p99 <= 50 else 'FAIL'}")


if __name__ == "__main__":
    main()
