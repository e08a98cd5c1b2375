"""The robustness table: one model scored on the same patients as they are and under each shift
users' scans have (skull-stripped, zoomed, resampled, re-normalised, noisier), side by side.

Each condition of :data:`training.augment.ROBUSTNESS_CONDITIONS` is applied to the raw 8-bit slice
and to its true mask before the model sees it (a lesion the shift removes, e.g. outside a skull
strip, leaves the truth too), then the slice goes through the apps' own inference path. The random
patterns of a condition (bias field, noise) come from a generator seeded per condition, so the
table is repeatable and every model of a comparison sees the very same shifted slices.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.inference import Predictor
from training.augment import ROBUSTNESS_CONDITIONS
from training.data import SliceFile
from training.evaluate import predict_folder, score

#: Summary figures the table shows, in this order.
COLUMNS = ("per_volume_dice_mean", "per_volume_dice_median", "pooled_dice", "lesion_sensitivity",
           "lesion_precision", "lesionwise_dice")


def robustness_table(predictor: Predictor, slices: list[SliceFile], settings: InferenceConfig,
                     conditions: tuple[str, ...] | None = None, seed: int = 0) -> list[dict]:
    """One row per condition: its name, :data:`COLUMNS` and the number of volumes and slices."""
    rows = []
    for name in conditions or tuple(ROBUSTNESS_CONDITIONS):
        if name not in ROBUSTNESS_CONDITIONS:
            raise ValueError(f"unknown condition {name!r}; accepted: {', '.join(ROBUSTNESS_CONDITIONS)}")
        condition = ROBUSTNESS_CONDITIONS[name]
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        predictions, _ = predict_folder(predictor, slices, settings.tta,
                                        transform=lambda image, mask: condition(image, mask, rng))
        summary, _ = score(predictions, settings.threshold, settings.min_lesion_size)
        rows.append({"condition": name, **{k: summary[k] for k in COLUMNS},
                     "n_volumes": summary["n_volumes"], "n_slices": summary["n_slices"]})
    return rows


def format_table(rows: list[dict]) -> str:
    """The table as aligned text, for the terminal and for notes."""
    width = max(len(r["condition"]) for r in rows)
    header = f"{'condition':{width}s}  " + "  ".join(f"{c[:14]:>14s}" for c in COLUMNS)
    lines = [header]
    for row in rows:
        cells = "  ".join(f"{row[c]:14.3f}" if row[c] is not None else f"{'-':>14s}" for c in COLUMNS)
        lines.append(f"{row['condition']:{width}s}  {cells}")
    return "\n".join(lines)


def write_table_csv(rows: list[dict], path: Path) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
