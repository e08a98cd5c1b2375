"""Evaluation on a data folder with the apps' own inference path, and tuning of its settings.

Predictions come from :class:`metaseg_viewer.inference.Predictor` (reading with the core, the
card's preprocessing, batching, TTA, ensemble averaging), so the figures describe what users get.
Stage 1 (:func:`predict_folder`) computes probabilities once; stage 2 (:func:`score`) thresholds,
removes small components and scores, so a grid of settings costs no extra network time.

Conventions: every slice file is segmented as its own 2-D image (as an app would); minimum lesion
size is applied per slice in 2-D. For scoring, the slices of one volume (patient) are stacked:
per-volume Dice, 3-D lesion-wise detection and HD95 (in pixels: the slice files carry no spacing)
are computed per volume; pooled Dice/IoU over all slices.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import cv2
import numpy as np

from metaseg_viewer.inference import Predictor
from metaseg_viewer.prediction import binarize
from metaseg_viewer.io import read_scan
from metaseg_viewer.lesions import lesion_scores, pool_lesion_scores
from metaseg_viewer.metrics import dice, hd95, pooled_dice, pooled_iou, summarize_scores
from metaseg_viewer.preprocessing import DISPLAY_PERCENTILES, window_to_uint8
from metaseg_viewer.render import montage, overlay
from training.data import LayoutError, SliceFile


@dataclass
class VolumePrediction:
    volume: str
    indices: list[int]
    images: list[np.ndarray]  # 8-bit display images, one per slice
    probabilities: list[np.ndarray]
    references: list[np.ndarray]


def predict_folder(predictor: Predictor, slices: list[SliceFile], tta: bool,
                   transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                   ) -> tuple[list[VolumePrediction], float]:
    """Probabilities for every slice, grouped by volume; returns them and seconds per slice.

    ``transform(image, mask)`` (the robustness table's shifts) changes each raw 8-bit slice and its
    true mask before the model sees them; slices of other dtypes are refused with it."""
    from tqdm import tqdm

    if not slices:
        raise LayoutError("no slices to evaluate (check --data and --split)")
    out: list[VolumePrediction] = []
    seconds = 0.0
    bar = tqdm(total=len(slices), desc=f"predicting (tta={tta})", unit="slice", mininterval=5)
    for volume, group in groupby(slices, key=lambda s: s.volume):
        files = list(group)
        scans = [read_scan(s.image) for s in files]
        refs = [read_scan(s.mask, color="gray").pixels[0] > 0 for s in files]
        pixels = [s.pixels for s in scans]
        for f, p, r in zip(files, pixels, refs):
            if p.shape[1:] != r.shape:
                raise LayoutError(f"mask {f.mask} has size {r.shape} but its image {f.image} has {p.shape[1:]}")
        if transform is not None:
            if any(p.dtype != np.uint8 for p in pixels):
                raise LayoutError("the robustness shifts act on 8-bit slices; this data folder holds others")
            shifted = [transform(p[0], r) for p, r in zip(pixels, refs)]
            pixels, refs = [s[0][None] for s in shifted], [np.asarray(s[1], bool) for s in shifted]
        start = time.perf_counter()
        if all(p.dtype == np.uint8 and p.shape == pixels[0].shape for p in pixels):
            probs = list(predictor.probabilities(np.concatenate(pixels), tta)[0])  # identical to one by one
        else:
            probs = [predictor.probabilities(p[:1], tta)[0][0] for p in pixels]
        seconds += time.perf_counter() - start
        images = [window_to_uint8(p[0], DISPLAY_PERCENTILES) for p in pixels]
        out.append(VolumePrediction(volume, [s.index for s in files], images, probs, refs))
        bar.update(len(files))
    bar.close()
    return out, seconds / max(1, len(slices))


def score(predictions: list[VolumePrediction], threshold: float, min_lesion_size: int) -> tuple[dict, list[dict]]:
    """Summary (the JSON keys of ``evaluate``) and one row per volume, at the apps' thresholding."""
    masks = [binarize(np.stack(v.probabilities), threshold, min_lesion_size, volume=False) for v in predictions]
    return score_masks(predictions, masks)


def score_masks(predictions: list[VolumePrediction], masks: list[np.ndarray]) -> tuple[dict, list[dict]]:
    """:func:`score` for masks made some other way (one ``(Z, H, W)`` mask per volume), so a
    post-processing experiment is scored exactly as the shipped settings are."""
    rows, lesions_per_volume = [], []
    all_pred, all_ref = [], []
    for v, pred in zip(predictions, masks, strict=True):
        ref = np.stack(v.references)
        all_pred += list(pred)
        all_ref += list(ref)
        lesions = lesion_scores(pred, ref)
        lesions_per_volume.append(lesions)
        rows.append({
            "volume": v.volume, "slices": len(ref), "dice": dice(pred, ref), "true_voxels": int(ref.sum()),
            "predicted_voxels": int(pred.sum()), "hd95_px": _defined(hd95(pred, ref)), "true_lesions": lesions.n_ref,
            "found_lesions": lesions.tp_ref, "false_positive_lesions": lesions.fp_pred,
            "lesionwise_dice": lesions.lesion_dice,
        })
    pooled = pool_lesion_scores(lesions_per_volume)
    volume_dice = summarize_scores(r["dice"] for r in rows)
    # The core's HD95 convention (metaseg_viewer.metrics.hd95): 0 when both sides are empty,
    # undefined (None here, never inf or NaN) when one is; the median is over volumes where both
    # sides have lesions, None when there is none.
    defined = [r["hd95_px"] for r in rows if r["hd95_px"] is not None and r["true_voxels"] and r["predicted_voxels"]]
    summary = {
        "pooled_dice": pooled_dice(all_pred, all_ref),
        "pooled_iou": pooled_iou(all_pred, all_ref),
        "per_volume_dice_mean": volume_dice.mean,
        "per_volume_dice_median": volume_dice.median,
        "lesion_sensitivity": pooled.sensitivity,
        "lesion_precision": pooled.precision,
        "lesion_f1": pooled.f1,
        "lesionwise_dice": pooled.lesion_dice,
        "hd95_median": float(np.median(defined)) if defined else None,
        "hd95_volumes": len(defined),
        "n_volumes": len(rows),
        "n_slices": len(all_ref),
    }
    return summary, rows


def breakdown(rows: list[dict], pattern: str) -> dict[str, dict[str, dict[str, float]]]:
    """Per-volume Dice grouped by the named groups of ``pattern`` matched in each volume name,
    e.g. ``_(?P<tumour>gl|me|pi)_(?P<plane>ax|co|sa)`` for BRISC file names: group → value →
    ``{"volumes", "dice_mean", "dice_median"}``. Volumes the pattern misses are counted under
    ``(no match)``."""
    import re

    regex = re.compile(pattern)
    if not regex.groupindex:
        raise LayoutError(f"--breakdown needs named groups such as (?P<plane>ax|co|sa), got {pattern!r}")
    table: dict[str, dict[str, list[float]]] = {name: {} for name in regex.groupindex}
    for row in rows:
        found = regex.search(row["volume"])
        for name in regex.groupindex:
            value = (found.group(name) if found else None) or "(no match)"
            table[name].setdefault(value, []).append(row["dice"])
    return {name: {value: {"volumes": len(d), "dice_mean": float(np.mean(d)), "dice_median": float(np.median(d))}
                   for value, d in sorted(values.items())} for name, values in table.items()}


def mask_agreement(a: list[VolumePrediction], b: list[VolumePrediction], threshold: float,
                   min_lesion_size: int) -> float:
    """Pooled Dice between the masks of two runs over the same slices (e.g. bf16 against fp32):
    how far a change of arithmetic moves the outlines, whatever the truth."""
    masks = [[binarize(np.stack(v.probabilities), threshold, min_lesion_size, volume=False) for v in run]
             for run in (a, b)]
    return pooled_dice([s for m in masks[0] for s in m], [s for m in masks[1] for s in m])


def _defined(distance: float) -> float | None:
    return distance if math.isfinite(distance) else None


def tune(predictor: Predictor, slices: list[SliceFile], thresholds=None,
         min_sizes=(0, 10, 25, 50, 100, 150, 250, 400)) -> tuple[dict, dict]:
    """Grid over TTA, threshold and minimum lesion size; best by the mean of per-volume mean
    Dice and pooled Dice. Returns (settings, summary with seconds_per_slice)."""
    thresholds = thresholds if thresholds is not None else [round(t, 2) for t in np.arange(0.3, 0.76, 0.05)]
    best: tuple[float, dict, dict] | None = None
    for tta in (False, True):
        predictions, seconds = predict_folder(predictor, slices, tta)
        for threshold in thresholds:
            for min_size in min_sizes:
                summary, _ = score(predictions, threshold, min_size)
                objective = (summary["per_volume_dice_mean"] + summary["pooled_dice"]) / 2
                if best is None or objective > best[0] + 1e-9:
                    settings = {"threshold": float(threshold), "tta": tta, "min_lesion_size": int(min_size)}
                    best = (objective, settings, {**summary, "seconds_per_slice": seconds})
    assert best is not None
    return best[1], best[2]


def write_per_volume_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_sheet(predictions: list[VolumePrediction], threshold: float, min_size: int, path: Path, n: int = 6) -> None:
    """Best and worst ``n`` lesion slices by Dice: reference outline green, prediction red."""
    scored = []
    for v in predictions:
        for i, (prob, ref) in enumerate(zip(v.probabilities, v.references)):
            if ref.any():
                pred = binarize(prob[None], threshold, min_size)[0]
                scored.append((dice(pred, ref), v, i, pred))
    scored.sort(key=lambda t: t[0])
    picks = scored[::-1] if len(scored) <= 2 * n else scored[-n:][::-1] + scored[:n]  # best, then worst
    tiles, labels = [], []
    for d, v, i, pred in picks:
        tile = overlay(v.images[i], pred, color=(255, 40, 40), alpha=0.3)
        contours, _ = cv2.findContours(v.references[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(tile, contours, -1, (40, 255, 40), 1)
        tiles.append(tile)
        labels.append(f"{v.volume[-13:]} #{v.indices[i]} Dice {d:.2f}")
    if not tiles:  # no slice with a true lesion: say so in the picture rather than write nothing
        blank = np.zeros((64, 256, 3), np.uint8)
        cv2.putText(blank, "no slices with lesions", (8, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        tiles, labels = [blank], [""]
    cv2.imwrite(str(path), cv2.cvtColor(montage(tiles, columns=n, labels=labels), cv2.COLOR_RGB2BGR))
