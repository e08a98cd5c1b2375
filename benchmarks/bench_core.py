"""Print speed figures of the core side by side in one run (not a test): every inference route
against fp32 eager, per network and for the default path, on real LGG slices.

Usage: python benchmarks/bench_core.py [--slices 32] [--repeats 3] [--threads N] [--compile]

Machines are noisy, so each figure is the best of ``--repeats`` and every route is timed in the
same run as its fp32 baseline. Routes tried: fp32 eager (the old path), bf16 autocast (what
``precision=auto`` picks on a CPU with AMX / AVX512-BF16), both again with ``channels_last``
memory format, and with ``--compile`` also ``torch.compile`` (minutes of compiling on a small
CPU, so off by default). FLOPs per slice are counted with ``torch.utils.flop_counter``; the
achieved rate is compared with this machine's measured matmul rate in the same precision.
Real slices come from ``../shared/data`` (patient TCGA_CS_4942_19970222, as the issue measured);
the synthetic volume (``metaseg sample``) runs too, to compare the two inputs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from metaseg_viewer.inference import Predictor, network_probabilities
from metaseg_viewer.io import read_scan
from metaseg_viewer.precision import autocast, cpu_has_native_bf16
from metaseg_viewer.preprocessing import preprocess
from metaseg_viewer.registry import DEFAULT_MODEL, SINGLE_MODELS
from metaseg_viewer.samples import make_volume
from metaseg_viewer.scan import Scan

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lgg_flair" / "TCGA_CS_4942_19970222"


def best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def real_slices(n: int) -> np.ndarray | None:
    """``n`` consecutive real FLAIR slices from the middle of one patient, or None without the data."""
    files = sorted((REAL / "images").glob("*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not files:
        return None
    start = max(0, len(files) // 2 - n // 2)
    return np.concatenate([read_scan(f).pixels for f in files[start : start + n]])


def matmul_rate(precision: str, repeats: int) -> float:
    """GFLOP/s of a 2048 x 2048 matmul in ``precision`` (the machine's ceiling for the networks)."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)

    def run() -> None:
        with autocast(precision, "cpu"):  # type: ignore[arg-type]
            torch.mm(a, b)

    run()
    return 2 * n**3 / best_of(run, repeats) / 1e9


def flops_per_slice(net: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(torch.zeros(1, 1, 256, 256))
    return counter.get_total_flops()


def network_route(net: torch.nn.Module, precision: str, channels_last: bool, compiled: bool) -> Callable:
    """A callable ``(batch) -> probabilities`` for one route (the network in that configuration),
    through the core's own :func:`network_probabilities`."""
    module = net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if compiled:
        module = torch.compile(module)
    return lambda batch: network_probabilities(module, batch, False, "cpu", precision, channels_last)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    real = real_slices(args.slices)
    synthetic = make_volume(n_slices=args.slices, seed=0).image
    pixels = real if real is not None else synthetic
    source = f"{len(pixels)} real LGG slices ({REAL.name})" if real is not None else f"{len(pixels)} synthetic slices"
    bf16 = cpu_has_native_bf16()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {bf16}, input: {source}")
    rates = {p: matmul_rate(p, args.repeats) for p in (("fp32", "bf16") if bf16 else ("fp32",))}
    print("matmul 2048^3: " + ", ".join(f"{p} {r:.0f} GFLOP/s" for p, r in rates.items()))
    batch_input = preprocess(pixels).network_input
    routes = [("fp32", False, False)] + ([("bf16", False, False)] if bf16 else []) + [("fp32", True, False)] \
        + ([("bf16", True, False)] if bf16 else []) + ([("fp32", False, True)] if args.compile else []) \
        + ([("bf16", False, True)] if args.compile and bf16 else [])
    print(f"\n{'network':15s} {'route':22s} {'batch':>5s} {'ms/slice':>9s} {'x fp32':>7s} {'GFLOP/s':>8s} {'of matmul':>9s}")
    for name in SINGLE_MODELS:
        net = Predictor.load(name, device="cpu", precision="fp32").members[0][0]
        flops = flops_per_slice(net)
        baseline: dict[int, float] = {}
        for precision, channels_last, compiled in routes:
            label = precision + (" channels_last" if channels_last else "") + (" compiled" if compiled else "")
            run = network_route(net, precision, channels_last, compiled)
            for batch in (1, 8):
                chunks = [batch_input[i : i + batch] for i in range(0, len(batch_input), batch)]
                run(chunks[0])  # warm-up (and compilation)
                seconds = best_of(lambda: [run(c) for c in chunks], args.repeats) / len(batch_input)
                baseline.setdefault(batch, seconds)
                rate = flops / seconds / 1e9
                print(f"{name:15s} {label:22s} {batch:5d} {1000 * seconds:9.1f} {seconds / baseline[batch]:7.2f} "
                      f"{rate:8.0f} {rate / rates[precision]:9.2f}")
        net.to(memory_format=torch.contiguous_format)
        print(f"{name:15s} {flops / 1e9:.2f} GFLOP per slice")

    print(f"\ndefault path ({DEFAULT_MODEL}, card settings incl. TTA, preprocessing to probabilities):")
    scan = Scan(pixels)
    repeats = max(1, args.repeats - 1)
    old = Predictor.load(DEFAULT_MODEL, device="cpu", precision="fp32")
    for net, _ in old.members:
        net.to(memory_format=torch.contiguous_format)
    tta = old.defaults.tta

    def old_path() -> None:  # the path before this change: fp32, default layout, TTA as a second call
        for net, card in old.members:
            prepared = preprocess(scan.pixels, card.preprocess)
            for i in range(0, len(scan.pixels), 8):
                batch = prepared.network_input[i : i + 8]
                network_probabilities(net, batch, False, "cpu", "fp32", channels_last=False)
                if tta:
                    network_probabilities(net, batch[:, :, ::-1].copy(), False, "cpu", "fp32", channels_last=False)

    old_path()
    baseline = best_of(old_path, repeats) / len(pixels)
    print(f"  old path (fp32, default layout): {1000 * baseline:.1f} ms/slice")
    for precision in ("fp32", "auto"):
        predictor = Predictor.load(DEFAULT_MODEL, device="cpu", precision=precision)
        predictor.predict(Scan(pixels[:2]))
        seconds = best_of(lambda: predictor.probabilities(scan.pixels, tta), repeats) / len(pixels)
        print(f"  Predictor, precision {precision} -> {predictor.precision}, channels_last: "
              f"{1000 * seconds:.1f} ms/slice, x old path {seconds / baseline:.2f}")
    if real is not None:
        net = Predictor.load("attention-unet", device="cpu", precision="fp32").members[0][0]
        per_input = {}
        for label, stack in (("real", real), ("synthetic", synthetic)):
            x = preprocess(stack).network_input
            network_probabilities(net, x[:8], False, "cpu")
            per_input[label] = best_of(lambda: [network_probabilities(net, x[i : i + 8], False, "cpu")
                                               for i in range(0, len(x), 8)], args.repeats) / len(x)
        print(f"\nattention-unet fp32 network time, batch 8: real {1000 * per_input['real']:.1f} ms/slice, "
              f"synthetic {1000 * per_input['synthetic']:.1f} ms/slice (x {per_input['synthetic'] / per_input['real']:.2f})")


if __name__ == "__main__":
    main()
