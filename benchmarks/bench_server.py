"""Print the server's throughput and latency (not a test): requests per second, p50 and p95.

Usage: python benchmarks/bench_server.py [--url http://127.0.0.1:8000] [--model attention-unet]
       [--clients 1 4 16] [--rounds 3] [--volume-slices 30]

Without ``--url`` it starts ``uvicorn server.app:app`` on a free port of 127.0.0.1 (with
``METASEG_QUEUE_SIZE`` large enough for the most clients) and stops it afterwards. For each
number of concurrent clients, each client sends ``--rounds`` requests back to back: first single
256x256 slices (PNG), then a ``--volume-slices``-slice NIfTI volume. 503 answers are counted,
not retried.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from metaseg_viewer.io import write_nifti
from metaseg_viewer.samples import make_slice, make_volume
from metaseg_viewer.scan import Scan

REPO = Path(__file__).resolve().parents[1]


def slice_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(make_slice(256, seed=0).image).save(buffer, format="PNG")
    return buffer.getvalue()


def volume_nifti(n_slices: int) -> bytes:
    sample = make_volume(n_slices, 256, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii.gz"
        write_nifti(sample.image, Scan(pixels=sample.image, spacing=sample.spacing, is_volume=True), path)
        return path.read_bytes()


def start(model: str, clients: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "METASEG_MODELS": json.dumps([model]), "METASEG_DEFAULT_MODEL": model,
           "METASEG_QUEUE_SIZE": str(max(32, clients * 2))}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "server.app:app", "--port", str(port),
                                "--log-level", "warning"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def run_level(url: str, name: str, payload: bytes, clients: int, rounds: int) -> None:
    def client(_: int) -> list[tuple[float, int]]:
        out = []
        with httpx.Client(timeout=1800) as http:
            for _ in range(rounds):
                start = time.perf_counter()
                status = http.post(url + "/predict", files={"file": (name, payload)}).status_code
                out.append((time.perf_counter() - start, status))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    ok = sorted(t for t, status in results if status == 200)
    p95 = ok[min(len(ok) - 1, int(round(0.95 * (len(ok) - 1))))] if ok else float("nan")
    print(f"{name:14s} clients {clients:3d}  requests {len(results):4d}  ok {len(ok):4d}  "
          f"{len(ok) / wall:7.2f} req/s  p50 {statistics.median(ok) if ok else float('nan'):7.2f} s  "
          f"p95 {p95:7.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--model", default="attention-unet")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--volume-slices", type=int, default=30)
    args = parser.parse_args()
    process, url = (None, args.url) if args.url else start(args.model, max(args.clients))
    try:
        print(f"server {url}, model {args.model}, {os.cpu_count()} CPUs here", flush=True)
        slice_bytes, volume_bytes = slice_png(), volume_nifti(args.volume_slices)
        for clients in args.clients:
            run_level(url, "slice.png", slice_bytes, clients, args.rounds)
        for clients in args.clients:
            run_level(url, f"volume{args.volume_slices}.nii.gz", volume_bytes, clients, args.rounds)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
