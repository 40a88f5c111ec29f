"""Checkpoint upload throughput through the Drive API client against one plain HTTP PUT.

The same N MiB file (random bytes) goes to the Drive v2 stand-in on loopback
(tests/remote/drive_standin.py) two ways: through ``DriveFolder.upload`` (pydrive2's service,
googleapiclient's resumable upload in ``chunk_bytes`` chunks, md5 computed on the way, one request
per chunk plus the lookup by title and the session start; the md5 given, as the checkpoint
replicator gives it from the read that verifies the local file), and as one plain ``PUT /bench/put`` of
the whole file from http.client (1 MiB reads), which the stand-in stores the same way (to disk,
md5 computed). Best of ``--trials`` each. Target: the client reaches ≥ 0.7 of the plain PUT, i.e.
chunking, auth and the libraries cost at most 30 % on a link with no latency (on a real link to
Google the network dominates both).

    python bench/bench_drive_upload.py [--mib 64] [--trials 3] [--chunk-mib 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "remote"))

from colabtui_remote.drive.auth import connect  # noqa: E402
from colabtui_remote.drive.client import DEFAULT_CHUNK_BYTES, DriveFolder, md5_file  # noqa: E402
from drive_standin import DriveStandin  # noqa: E402

MiB = 1024 * 1024


def plain_put(standin: DriveStandin, path: Path) -> tuple[float, str]:
    """Seconds for one PUT of the file, and the md5 the stand-in computed."""
    size = path.stat().st_size
    conn = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=600, blocksize=MiB)
    try:
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            conn.request("PUT", "/bench/put", body=f,
                         headers={"Content-Length": str(size),
                                  "Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            body = resp.read()
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    if resp.status != 200:
        raise SystemExit(f"bench_drive_upload: plain PUT answered {resp.status}: {body[:200]!r}")
    return elapsed, json.loads(body)["md5Checksum"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="file size, MiB")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--chunk-mib", type=float, default=DEFAULT_CHUNK_BYTES / MiB,
                    help="DriveFolder chunk_bytes, MiB (a multiple of 0.25)")
    args = ap.parse_args()
    chunk_bytes = int(args.chunk_mib * MiB)
    with tempfile.TemporaryDirectory() as tmp, DriveStandin(Path(tmp) / "drive") as standin:
        local = Path(tmp) / "ckpt.pt"
        with open(local, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(MiB))
        want = md5_file(local)
        drive = connect(standin.make_credentials_file(Path(tmp) / "creds.json"),
                        standin.api_endpoint)
        folder = DriveFolder(standin.create_folder("bench"), drive, chunk_bytes=chunk_bytes)
        client_s, hashing_s, put_s = [], [], []
        for _ in range(args.trials):  # interleaved, so all see the same machine load
            t0 = time.perf_counter()
            result = folder.upload(local, "ckpt.pt", md5=want)  # the replicator's call
            client_s.append(time.perf_counter() - t0)
            if result.md5 != want:
                raise SystemExit("bench_drive_upload: the upload's md5 differs")
            t0 = time.perf_counter()
            result = folder.upload(local, "ckpt.pt")  # md5 computed while sending
            hashing_s.append(time.perf_counter() - t0)
            if result.md5 != want:
                raise SystemExit("bench_drive_upload: the upload's md5 differs")
            elapsed, md5 = plain_put(standin, local)
            put_s.append(elapsed)
            if md5 != want:
                raise SystemExit("bench_drive_upload: the plain PUT's md5 differs")
    size_mb = args.mib * MiB / 1e6
    client, plain = size_mb / min(client_s), size_mb / min(put_s)
    hashing = size_mb / min(hashing_s)
    ratio = client / plain
    print(f"drive upload of {args.mib} MiB to the Drive v2 stand-in on loopback, best of "
          f"{args.trials}; DriveFolder chunk_bytes {chunk_bytes / MiB:g} MiB")
    print(f"  DriveFolder.upload(md5=known), as the replicator calls it: {client:.0f} MB/s; all: "
          f"{' '.join(f'{size_mb / s:.0f}' for s in client_s)}")
    print(f"  (hashing md5 while sending, no md5 given: {hashing:.0f} MB/s, "
          f"{hashing / plain:.2f} of the PUT)")
    print(f"  plain single PUT:   {plain:.0f} MB/s; all: "
          f"{' '.join(f'{size_mb / s:.0f}' for s in put_s)}")
    print(f"  ratio upload/PUT: {ratio:.2f}  {'PASS' if ratio >= 0.7 else 'FAIL'} (target ≥ 0.70)")


if __name__ == "__main__":
    main()
