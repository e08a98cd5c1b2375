"""Validation during training: whole preprocessed slices, scored per patient volume.

With a validation shift (``TrainConfig.val_shift``, a name of
:data:`training.augment.ROBUSTNESS_CONDITIONS`) the same patients are also scored as that shift
makes them look (e.g. skull-stripped), and the checkpoint is chosen on the mean of both per-volume
figures: a robust model should not be picked for its LGG look alone.
"""

from __future__ import annotations

import numpy as np

from metaseg_viewer.config import PreprocessConfig
from metaseg_viewer.inference import network_probabilities
from metaseg_viewer.metrics import per_volume_dice, pooled_dice, summarize_scores
from metaseg_viewer.preprocessing import preprocess
from training.augment import ROBUSTNESS_CONDITIONS
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


def shifted_set(data: SliceSet, condition: str, config: PreprocessConfig, seed: int = 0) -> SliceSet:
    """``data`` as ``condition`` makes it look: each raw slice and its mask shifted (a fixed-seed
    generator, so every validation sees the same slices), then preprocessed as the apps do."""
    if condition not in ROBUSTNESS_CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; accepted: {', '.join(ROBUSTNESS_CONDITIONS)}")
    transform, rng = ROBUSTNESS_CONDITIONS[condition], np.random.default_rng(seed)
    raws, masks = [], []
    for raw, mask in zip(data.raw, data.masks, strict=True):
        shifted_raw, shifted_mask = transform(raw, mask, rng)
        raws.append(shifted_raw)
        masks.append(shifted_mask.astype(bool))
    raw = np.stack(raws)
    images = np.stack([preprocess(r[None], config).network_input[0] for r in raw])
    return SliceSet(images, np.stack(masks), list(data.volumes), raw)
