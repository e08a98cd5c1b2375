"""Print training-step and inference speed of each architecture as configured (not a test).

Usage: python benchmarks/bench_training_step.py [--threads N] [--batch 16] [--crop 128]
One line per architecture: parameters, weight-file size (float32), milliseconds per sample for a
forward+backward+AdamW step on crops and on whole 256x256 slices, and per slice at inference.
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.losses import DiceCELoss

from metaseg_viewer.config import ModelConfig
from metaseg_viewer.models import ARCHITECTURES, build_model


def step_ms(model: torch.nn.Module, size: int, batch: int, repeats: int = 3) -> float:
    opt = torch.optim.AdamW(model.parameters())
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    x = torch.rand(batch, 1, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.9).float()
    model.train()
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if i:  # the first step warms up allocators
            times.append(time.perf_counter() - start)
    return 1000 * min(times) / batch


def infer_ms(model: torch.nn.Module, batch: int = 8) -> float:
    model.eval()
    x = torch.rand(batch, 1, 256, 256)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        model(x)
    return 1000 * (time.perf_counter() - start) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for arch in ARCHITECTURES:
        torch.manual_seed(0)
        model = build_model(ModelConfig(arch))
        params = sum(p.numel() for p in model.parameters())
        tensors = sum(t.numel() for t in model.state_dict().values())
        print(f"{arch}: {params / 1e6:.2f} M parameters, {4 * tensors / 2**20:.1f} MiB as float32; "
              f"train {step_ms(model, args.crop, args.batch):.0f} ms/crop ({args.crop}px), "
              f"{step_ms(model, 256, max(1, args.batch // 2)):.0f} ms/slice (256px); "
              f"inference {infer_ms(model):.0f} ms/slice", flush=True)


if __name__ == "__main__":
    main()
