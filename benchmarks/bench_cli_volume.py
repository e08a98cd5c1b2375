"""Time ``metaseg segment`` end to end on a 155-slice NIfTI volume (not a test).

End to end means what a user waits for: a new process (Python and PyTorch start-up, model
loading), reading, inference of every slice with the default model, and writing mask, overlay and
lesion table. The volume is synthetic (155 slices of 240 x 240, as a BraTS-sized 1 mm scan), so
timing does not depend on the data folder. Each precision runs ``--repeats`` times, alternating,
so both see the same machine; ``fp32`` is the path before bf16.

    python benchmarks/bench_cli_volume.py [--slices 155] [--repeats 2] [--precisions fp32 auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metaseg_viewer.io import write_nifti
from metaseg_viewer.samples import make_volume
from metaseg_viewer.scan import Scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=155)
    parser.add_argument("--size", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    parser.add_argument("--model", default=None, help="default: the CLI's own choice")
    args = parser.parse_args()
    metaseg = Path(sys.executable).with_name("metaseg")
    with tempfile.TemporaryDirectory() as tmp:
        volume = Path(tmp) / "volume.nii.gz"
        sample = make_volume(args.slices, args.size, seed=0)
        write_nifti(sample.image, Scan(pixels=sample.image, spacing=sample.spacing, is_volume=True), volume)
        print(f"{args.slices}-slice NIfTI {args.size}x{args.size}; {os.cpu_count()} CPUs; "
              f"command: metaseg segment {volume.name} --precision P{' --model ' + args.model if args.model else ''}")
        times: dict[str, list[float]] = {p: [] for p in args.precisions}
        for _ in range(args.repeats):
            for precision in args.precisions:
                command = [str(metaseg), "segment", str(volume), "--out", str(Path(tmp) / precision), "--precision", precision]
                if args.model:
                    command += ["--model", args.model]
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                times[precision].append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise SystemExit(f"metaseg failed ({done.returncode}): {done.stderr[-2000:]}")
        base = statistics.median(times[args.precisions[0]])
        for precision, seconds in times.items():
            median = statistics.median(seconds)
            print(f"  --precision {precision:5s} median {median:6.1f} s  (runs: {', '.join(f'{s:.1f}' for s in seconds)})"
                  f"  x {args.precisions[0]} {median / base:.2f}")


if __name__ == "__main__":
    main()
