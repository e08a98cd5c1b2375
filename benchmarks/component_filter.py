"""Would a component-level false-positive filter help? (issue 13, item 3) — measured, not assumed.

False-positive components are the shipped models' main error. Two filters that need no training:
(a) components found in 3-D across a patient's neighbouring slices instead of per slice, so a
size limit counts a lesion's whole extent (a real lesion spans slices, a speck does not), and
(b) hysteresis: keep a component only if its peak probability reaches ``peak`` (a confident core).
The ensemble's probabilities for the 18 validation patients are computed once (bf16, flip TTA);
every setting is chosen on the 9 selection patients and reported on the 9 report patients no
choice saw (``runs``' split: ``training/splits/shipped_validation.json`` with the same seed).

    python benchmarks/component_filter.py [--model ensemble] [--cache eval/component_filter_probabilities.npz]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from metaseg_viewer.inference import Predictor
from metaseg_viewer.lesions import label_components
from training.data import find_slices, split_volumes
from training.evaluate import VolumePrediction, predict_folder, score_masks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgg_flair"
SPLIT = Path(__file__).resolve().parents[1] / "training" / "splits" / "shipped_validation.json"


def filtered(probs: np.ndarray, threshold: float, min_size: int, peak: float, in_3d: bool) -> np.ndarray:
    """``probs >= threshold``, without components smaller than ``min_size`` voxels or whose peak
    probability is below ``peak``; components (the core's full connectivity) are 3-D when
    ``in_3d``, else per slice."""
    mask = probs >= threshold
    if not in_3d:
        return np.stack([filtered(p[None], threshold, min_size, peak, True)[0] for p in probs])
    labels, n = label_components(mask, "full")
    if n == 0:
        return mask
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(mask, labels, index)
    peaks = ndimage.maximum(probs, labels, index)
    keep = np.zeros(n + 1, bool)
    keep[1:] = (sizes >= min_size) & (peaks >= peak)
    return keep[labels]


def _cached_predictions(predictor: Predictor, slices, cache: Path) -> list[VolumePrediction]:
    """The probabilities once per model version (a grid is re-run without the networks)."""
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if str(data["version"]) == predictor.version:
            volumes = [str(v) for v in data["volumes"]]
            return [VolumePrediction(v, [], [], list(data[f"p{i}"].astype(np.float32)), list(data[f"r{i}"]))
                    for i, v in enumerate(volumes)]
    predictions, _ = predict_folder(predictor, slices, tta=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"p{i}": np.stack(v.probabilities).astype(np.float16) for i, v in enumerate(predictions)}
    arrays.update({f"r{i}": np.stack(v.references) for i, v in enumerate(predictions)})
    np.savez_compressed(cache, version=predictor.version, volumes=[v.volume for v in predictions], **arrays)
    return predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ensemble")
    parser.add_argument("--cache", type=Path, default=Path("eval/component_filter_probabilities.npz"))
    args = parser.parse_args()
    validation = json.loads(SPLIT.read_text())["validation"]
    selection, report = split_volumes(validation, 0.5, 0)  # as training's --report-fraction 0.5 --seed 0
    predictor = Predictor.load(args.model)
    slices = [s for s in find_slices(DATA) if s.volume in set(validation)]
    predictions = _cached_predictions(predictor, slices, args.cache)
    groups = {"selection": [p for p in predictions if p.volume in set(selection)],
              "report": [p for p in predictions if p.volume in set(report)]}
    card = predictor.defaults
    baseline = (card.threshold, card.min_lesion_size, 0.0, False)
    grid = list(itertools.product((0.35, 0.4, 0.45, 0.5), (50, 100, 150, 250), (0.0, 0.7, 0.8, 0.9), (False, True)))
    objective = {}
    for setting in grid:
        r = score_masks(groups["selection"], [filtered(np.stack(v.probabilities), *setting) for v in groups["selection"]])[0]
        objective[setting] = (r["per_volume_dice_mean"] + r["pooled_dice"]) / 2
    rules = {"size per slice (today's rule, re-tuned)": lambda s: s[2] == 0 and not s[3],
             "size in 3-D": lambda s: s[2] == 0 and s[3],
             "size per slice + peak": lambda s: not s[3],
             "size in 3-D + peak": lambda s: s[3]}
    chosen = {name: max((s for s in grid if rule(s)), key=objective.__getitem__) for name, rule in rules.items()}
    print(f"model {predictor.name} ({predictor.version}) in {predictor.precision}, flip TTA; "
          f"{len(selection)} selection / {len(report)} report patients; chosen on selection by "
          "(per-volume Dice + pooled Dice) / 2")
    print(f"{'rule':40s} {'threshold':>9s} {'min size':>8s} {'peak':>5s}  group      per-vol  pooled  lesion-prec  lesion-sens")
    for name, setting in {"card settings (shipped)": baseline, **chosen}.items():
        for group, preds in groups.items():
            r = score_masks(preds, [filtered(np.stack(v.probabilities), *setting) for v in preds])[0]
            print(f"{name:40s} {setting[0]:9.2f} {setting[1]:8d} {setting[2]:5.1f}  {group:9s}  {r['per_volume_dice_mean']:.4f}  "
                  f"{r['pooled_dice']:.4f}  {r['lesion_precision']:11.3f}  {r['lesion_sensitivity']:11.3f}", flush=True)


if __name__ == "__main__":
    main()
