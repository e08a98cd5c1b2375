"""Print the server's throughput and latency (not a test): slices per second, p50 and p95.

Usage: python benchmarks/bench_server.py [--url http://127.0.0.1:8000] [--model attention-unet]
       [--clients 1 4 16] [--rounds 3] [--volume-slices 30] [--compare-batching]

Without ``--url`` it starts ``uvicorn server.app:app`` on a free port of 127.0.0.1 (with
``METASEG_QUEUE_SIZE`` large enough for the most clients and the other ``METASEG_*`` variables of
this shell) and stops it afterwards; ``--compare-batching`` does so twice, with merging of single
slices off (``METASEG_MAX_BATCH_SLICES=1``) and then on (the server's defaults), and prints both
side by side. For each number of concurrent clients, each client sends ``--rounds`` requests back
to back: first single 256x256 slices (PNG), then a ``--volume-slices``-slice NIfTI volume. 503
answers are counted, not retried. ``batch`` is the mean number of slices per merged network call
the server logged for the single slices (a server started here only).
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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


def start(model: str, clients: int, log: IO[str], extra_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """The server on a free port of 127.0.0.1, its log (one JSON line per request) written to ``log``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "METASEG_MODELS": json.dumps([model]), "METASEG_DEFAULT_MODEL": model,
           "METASEG_QUEUE_SIZE": str(max(32, clients * 2)), **extra_env}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "server.app:app", "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}; its log: {log.name}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


@dataclass
class Point:
    slices_per_s: float
    p50: float
    p95: float
    ok: int
    requests: int
    batch: float | None  # mean slices per merged network call, from the server's log


def run_level(url: str, name: str, payload: bytes, n_slices: int, clients: int, rounds: int,
              log_path: Path | None, tag: str) -> Point:
    def client(index: int) -> list[tuple[float, int]]:
        out = []
        with httpx.Client(timeout=1800) as http:
            for round_ in range(rounds):
                start = time.perf_counter()
                status = http.post(url + "/predict", files={"file": (name, payload)},
                                   headers={"X-Request-ID": f"{tag}-{index}-{round_}"}).status_code
                out.append((time.perf_counter() - start, status))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    ok = sorted(t for t, status in results if status == 200)
    nan = float("nan")
    p95 = ok[min(len(ok) - 1, int(round(0.95 * (len(ok) - 1))))] if ok else nan
    point = Point(len(ok) * n_slices / wall, statistics.median(ok) if ok else nan, p95, len(ok), len(results),
                  _mean_batch(log_path, tag))
    batch = "" if point.batch is None else f"  batch {point.batch:4.1f}"
    print(f"{name:18s} clients {clients:3d}  requests {len(results):4d}  ok {len(ok):4d}  "
          f"{point.slices_per_s:7.2f} slices/s  p50 {point.p50:7.2f} s  p95 {p95:7.2f} s{batch}", flush=True)
    return point


def _mean_batch(log_path: Path | None, tag: str) -> float | None:
    """Mean ``batch`` of the log lines of this level's requests (``None``: no merged call logged)."""
    if log_path is None:
        return None
    time.sleep(0.2)  # the last lines are written just after the last answers
    lines = [line for line in log_path.read_text(errors="replace").splitlines()
             if f'"request_id": "{tag}-' in line]
    merged = [batch for line in lines if (batch := json.loads(line[line.index("{"):]).get("batch")) is not None]
    return statistics.mean(merged) if merged else None


def run_all(url: str, args: argparse.Namespace, log_path: Path | None, mode: str) -> dict[tuple[str, int], Point]:
    slice_bytes, volume_bytes = slice_png(), volume_nifti(args.volume_slices)
    points = {}
    for kind, name, payload, n_slices in [("slice", "slice.png", slice_bytes, 1),
                                          ("volume", f"volume{args.volume_slices}.nii.gz", volume_bytes,
                                           args.volume_slices)]:
        for clients in args.clients:
            points[kind, clients] = run_level(url, name, payload, n_slices, clients, args.rounds, log_path,
                                              f"{mode}-{kind}-{clients}")
    return points


def served(args: argparse.Namespace, mode: str, env: dict[str, str]) -> dict[tuple[str, int], Point]:
    """Start a server with ``env``, run every level against it, stop it."""
    with tempfile.NamedTemporaryFile("w", prefix=f"bench-server-{mode}-", suffix=".log", delete=False) as log:
        process, url = start(args.model, max(args.clients), log, env)
        try:
            print(f"\n{mode}: server {url}, model {args.model}, {os.cpu_count()} CPUs here, "
                  f"{', '.join(f'{k}={v}' for k, v in env.items()) or 'server defaults'}", flush=True)
            return run_all(url, args, Path(log.name), mode)
        finally:
            process.terminate()
            process.wait(timeout=30)
            Path(log.name).unlink()


def print_side_by_side(off: dict[tuple[str, int], Point], on: dict[tuple[str, int], Point]) -> None:
    print("\n" + " " * 16 + f"{'batching off':^30s}  {'batching on':^38s}")
    print(f"{'kind':8s}{'clients':>8s}  {'slices/s':>9s}{'p50 s':>9s}{'p95 s':>9s}   "
          f"{'slices/s':>9s}{'p50 s':>9s}{'p95 s':>9s}{'batch':>8s}   speed-up")
    for key in off:
        a, b = off[key], on[key]
        batch = "-" if b.batch is None else f"{b.batch:.1f}"
        print(f"{key[0]:8s}{key[1]:8d}  {a.slices_per_s:9.2f}{a.p50:9.2f}{a.p95:9.2f}   "
              f"{b.slices_per_s:9.2f}{b.p50:9.2f}{b.p95:9.2f}{batch:>8s}   {b.slices_per_s / a.slices_per_s:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: start one here)")
    parser.add_argument("--model", default="attention-unet")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3, help="requests per client at each level")
    parser.add_argument("--volume-slices", type=int, default=30)
    parser.add_argument("--compare-batching", action="store_true",
                        help="run a server with merging of single slices off, then one with it on")
    args = parser.parse_args()
    if args.url:
        if args.compare_batching:
            parser.error("--compare-batching starts its own servers; leave out --url")
        print(f"server {args.url}, model {args.model}, {os.cpu_count()} CPUs here", flush=True)
        run_all(args.url, args, None, "given")
    elif args.compare_batching:
        off = served(args, "batching-off", {"METASEG_MAX_BATCH_SLICES": "1"})
        on = served(args, "batching-on", {})
        print_side_by_side(off, on)
    else:
        served(args, "server", {})


if __name__ == "__main__":
    main()
