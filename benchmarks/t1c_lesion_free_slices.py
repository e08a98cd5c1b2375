"""How often a T1c model marks something on slices without a tumour — which BRISC cannot show.

Every BRISC training slice holds a tumour, so its validation Dice says nothing about false
positives on the many tumour-free slices of a real volume. The three LGG patients kept in the
original kaggle_3m layout (``../shared/data/lgg_kaggle3m_sample``) carry a real post-contrast T1
channel beside the FLAIR; their FLAIR-abnormality masks mark where the tumour is. This prints, per
patient and in total, for the T1c model on the post-contrast channel (and the FLAIR model on the
FLAIR channel, for scale): slices without a FLAIR lesion on which the model marks anything, the
pixels it marks there, and on lesion slices the share of its pixels inside the FLAIR abnormality
(enhancing tumour lies inside it). Lower-grade gliomas often do not enhance: a T1c model that
marks little on them is expected, and their Dice is not reported as a T1c score.

    python benchmarks/t1c_lesion_free_slices.py [--t1c-model t1c-attention-unet] [--flair-model ensemble]
        [--threshold T --min-lesion-size N]   (the T1c model's settings; default: its card's)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile

from metaseg_viewer.inference import Predictor
from metaseg_viewer.prediction import binarize

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgg_kaggle3m_sample" / "kaggle_3m"
CHANNELS = {"post-contrast T1": 2, "FLAIR": 1}  # channel order of the kaggle_3m TIFFs (data README)


def _patient(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(Z, H, W, 3) images and (Z, H, W) FLAIR-abnormality masks, slices in order."""
    images = sorted((f for f in folder.glob("*.tif") if not f.stem.endswith("_mask")),
                    key=lambda f: int(f.stem.rsplit("_", 1)[1]))
    pixels = np.stack([tifffile.imread(f) for f in images])
    masks = np.stack([tifffile.imread(f.with_name(f.stem + "_mask.tif")) > 0 for f in images])
    return pixels, masks


def _row(predictor: Predictor, stack: np.ndarray, truth: np.ndarray, threshold: float | None = None,
         min_size: int | None = None) -> dict[str, float]:
    settings = predictor.defaults.override(threshold=threshold, min_lesion_size=min_size)
    probs = predictor.probabilities(stack, settings.tta)[0]
    pred = binarize(probs, settings.threshold, settings.min_lesion_size, volume=False)
    free = ~truth.any(axis=(1, 2))
    marked = pred.any(axis=(1, 2))
    on_lesion = pred[~free]
    return {"slices": len(stack), "lesion_free": int(free.sum()), "free_marked": int((free & marked).sum()),
            "free_pixels": int(pred[free].sum()),
            "inside_share": float((on_lesion & truth[~free]).sum() / max(1, on_lesion.sum()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t1c-model", default="t1c-attention-unet")
    parser.add_argument("--flair-model", default="ensemble")
    parser.add_argument("--threshold", type=float, default=None, help="T1c model's threshold (default: its card's)")
    parser.add_argument("--min-lesion-size", type=int, default=None, help="T1c model's minimum size (default: its card's)")
    args = parser.parse_args()
    if not SAMPLE.is_dir():
        raise SystemExit(f"skipped: {SAMPLE} not found (the shared data lives beside the repository)")
    runs = {"post-contrast T1": Predictor.load(args.t1c_model), "FLAIR": Predictor.load(args.flair_model)}
    totals: dict[str, dict[str, float]] = {}
    print(f"{'patient':24s} {'channel':17s} {'model':20s} slices lesion-free marked-there pixels-there inside-FLAIR-lesion")
    for folder in sorted(p for p in SAMPLE.iterdir() if p.is_dir()):
        pixels, truth = _patient(folder)
        for channel, predictor in runs.items():
            t1c = channel == "post-contrast T1"
            row = _row(predictor, np.ascontiguousarray(pixels[..., CHANNELS[channel]]), truth,
                       args.threshold if t1c else None, args.min_lesion_size if t1c else None)
            total = totals.setdefault(channel, {k: 0.0 for k in row})
            for k in ("slices", "lesion_free", "free_marked", "free_pixels"):
                total[k] += row[k]
            total["inside_share"] += row["inside_share"] / 3
            print(f"{folder.name:24s} {channel:17s} {predictor.name:20s} {row['slices']:6d} {row['lesion_free']:11d} "
                  f"{row['free_marked']:12d} {row['free_pixels']:12d} {row['inside_share']:18.2f}")
    for channel, t in totals.items():
        print(f"{'all 3 patients':24s} {channel:17s} {runs[channel].name:20s} {int(t['slices']):6d} "
              f"{int(t['lesion_free']):11d} {int(t['free_marked']):12d} {int(t['free_pixels']):12d} "
              f"{t['inside_share']:18.2f} (mean)")


if __name__ == "__main__":
    main()
