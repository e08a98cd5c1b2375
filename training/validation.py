"""Validation during training: whole preprocessed slices, scored per patient volume."""

from __future__ import annotations

import numpy as np

from metaseg_viewer.inference import network_probabilities
from metaseg_viewer.metrics import per_volume_dice, pooled_dice, summarize_scores
from training.data import SliceSet


def validate(model: object, data: SliceSet, device: str, threshold: float = 0.5, batch: int = 16) -> dict[str, float]:
    """Pooled Dice over all slices, and mean/median of per-volume Dice (Buda et al.'s figure)."""
    probs = np.concatenate(
        [network_probabilities(model, data.images[i : i + batch], False, device) for i in range(0, len(data.images), batch)]
    )
    pred = probs >= threshold
    volumes = np.array(data.volumes)
    per_volume = summarize_scores(
        per_volume_dice({v: (pred[volumes == v], data.masks[volumes == v]) for v in sorted(set(data.volumes))})
    )
    return {
        "pooled_dice": float(pooled_dice(pred, data.masks)),
        "volume_dice_mean": per_volume.mean,
        "volume_dice_median": per_volume.median,
    }
