#!/usr/bin/env python3
"""A stand-in for ``cloudflared tunnel --url http://127.0.0.1:PORT`` where Cloudflare cannot be
reached: this test machine.

It takes the arguments colabtui_remote gives cloudflared and logs to stderr in cloudflared's
format (``2024-05-01T10:00:00Z INF ...``), the quick tunnel's URL in the same box cloudflared
draws. Instead of Cloudflare's edge, it forwards TCP from a loopback port of its own to the
``--url`` target, so a test reaches the server through it like a laptop through the tunnel.
The line ``... INF standin forwarding 127.0.0.1:LPORT -> 127.0.0.1:PORT`` names that port; it
comes after a burst of log lines larger than a pipe's buffer, so it is read only by a reader
that keeps draining cloudflared's log after the URL.

``--standin-mode`` (our own option; cloudflared has none such):

- ``ok``: as above; runs until SIGTERM.
- ``fail``: logs the error cloudflared logs without internet (it names ``api.trycloudflare.com``)
  and exits with code 1.
- ``silent``: prints nothing and runs until SIGTERM.

It exits on SIGTERM with code 0 after an ``Initiated shutdown`` line, as cloudflared does.
"""

from __future__ import annotations

import argparse
import datetime
import secrets
import signal
import socket
import sys
import threading
from urllib.parse import urlsplit

WORDS = ["amber", "basin", "cedar", "delta", "ember", "fjord", "grove", "harbor", "island",
         "juniper", "kestrel", "lagoon", "meadow", "nectar", "orchid", "prairie"]
FLOOD_BYTES = 256 * 1024
"""Log bytes written after the URL: four times Linux's default 64 KiB pipe buffer."""


def log(level: str, message: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stderr.write(f"{stamp} {level} {message}\n")
    sys.stderr.flush()


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def forward(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
        except OSError as exc:
            log("ERR", f"Unable to reach the origin service error=\"{exc}\"")
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


def main() -> int:
    parser = argparse.ArgumentParser(prog="cloudflared")
    parser.add_argument("command", choices=["tunnel"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--no-autoupdate", action="store_true")
    parser.add_argument("--standin-mode", choices=["ok", "fail", "silent"], default="ok")
    args = parser.parse_args()

    stopped = threading.Event()

    def on_sigterm(signum, frame):
        stopped.set()

    signal.signal(signal.SIGTERM, on_sigterm)

    if args.standin_mode == "silent":
        while not stopped.wait(0.5):
            pass
        return 0

    log("INF", "Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, "
               "is a quick way to experiment and try it out.")
    log("INF", "Requesting new quick Tunnel on trycloudflare.com...")
    if args.standin_mode == "fail":
        log("ERR", 'Error requesting quick Tunnel error="Post \\"https://api.trycloudflare.com/'
                   'tunnel\\": dial tcp: lookup api.trycloudflare.com on 127.0.0.53:53: '
                   'server misbehaving"')
        log("INF", "failed to request quick Tunnel")
        return 1

    target = urlsplit(args.url)
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=forward, args=(listener, (target.hostname, target.port)),
                     daemon=True).start()
    name = "-".join(secrets.choice(WORDS) for _ in range(4))
    url = f"https://{name}.trycloudflare.com"
    box = 92
    log("INF", "+" + "-" * box + "+")
    log("INF", "|  " + "Your quick Tunnel has been created! Visit it at (it may take some time "
               "to be reachable):".ljust(box - 2) + "|")
    log("INF", "|  " + url.ljust(box - 2) + "|")
    log("INF", "+" + "-" * box + "+")
    written = 0
    while written < FLOOD_BYTES:
        line = (f"Registered tunnel connection connIndex={written % 4} "
                f"connection={secrets.token_hex(16)} event=0 ip=198.41.192.7 location=ams01 "
                "protocol=quic")
        log("INF", line)
        written += len(line) + 26
    log("INF", f"standin forwarding 127.0.0.1:{listener.getsockname()[1]} -> "
               f"{target.hostname}:{target.port}")
    while not stopped.wait(0.5):
        pass
    log("INF", "Initiated shutdown")
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
