"""Print speed figures of the core (not a test): preprocessing, inference per slice, HD95.

Usage: python benchmarks/bench_core.py [--models NAME ...] [--slices 32] (default: every shipped model)
Runs on whatever device inference picks (CPU or CUDA) and prints one line per figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metaseg_viewer.inference import Predictor
from metaseg_viewer.metrics import hd95
from metaseg_viewer.preprocessing import preprocess
from metaseg_viewer.registry import MODEL_NAMES
from metaseg_viewer.samples import make_volume
from metaseg_viewer.scan import Scan


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    parser.add_argument("--slices", type=int, default=32)
    args = parser.parse_args()
    volume = make_volume(n_slices=args.slices, seed=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cuda={torch.cuda.is_available()}")
    t = timed(lambda: preprocess(volume.image))
    print(f"preprocess: {1000 * t / args.slices:.2f} ms/slice ({args.slices} slices of 256x256)")
    scan = Scan(volume.image, spacing=volume.spacing, is_volume=True)
    for name in args.models:
        predictor = Predictor.load(name)
        for tta in (False, True):
            t = timed(lambda: predictor.predict(scan, tta=tta), repeats=2)
            print(f"{name} tta={tta}: {1000 * t / args.slices:.1f} ms/slice on {predictor.device}")
    pred = np.roll(volume.mask, 2, axis=2)
    t = timed(lambda: hd95(pred, volume.mask, volume.spacing))
    print(f"hd95 on a {volume.mask.shape} volume: {1000 * t:.1f} ms")


if __name__ == "__main__":
    main()
