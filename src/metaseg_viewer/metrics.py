"""Overlap and surface-distance scores between a predicted and a reference mask.

Pure numpy/scipy so that the apps and the training evaluation can score masks without torch.

Conventions shared by every function here:

* A mask is any array whose non-zero entries are foreground (bool or 0/1); a prediction and its
  reference must have the same shape. 2-D arrays are one slice ``(H, W)``, 3-D arrays a volume
  ``(Z, H, W)`` with axis 0 the slice axis.
* ``spacing`` is in millimetres in the array's axis order (``(dy, dx)`` or ``(dz, dy, dx)``);
  ``None`` means unknown, and distances are then in pixels (voxels).
* Empty cases are part of the definition, not errors: see each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from metaseg_viewer.errors import InputError

__all__ = [
    "ScoreSummary",
    "dice",
    "hd95",
    "iou",
    "per_volume_dice",
    "pooled_dice",
    "pooled_iou",
    "summarize_scores",
]


def _as_masks(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as bool arrays of one shape (non-zero = foreground)."""
    p = np.asarray(pred) != 0
    r = np.asarray(ref) != 0
    if p.shape != r.shape:
        raise InputError(f"prediction and reference shapes differ: {p.shape} vs {r.shape}")
    return p, r


def _counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int]:
    """``(|A ∩ B|, |A|, |B|)`` of one pair."""
    p, r = _as_masks(pred, ref)
    return int(np.count_nonzero(p & r)), int(np.count_nonzero(p)), int(np.count_nonzero(r))


def _dice_from_counts(inter: int, size_p: int, size_r: int) -> float:
    total = size_p + size_r
    return 1.0 if total == 0 else 2.0 * inter / total


def _iou_from_counts(inter: int, size_p: int, size_r: int) -> float:
    union = size_p + size_r - inter
    return 1.0 if union == 0 else inter / union


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A|+|B|)`` of one slice or one volume.

    Empty cases: both empty → 1.0 (nothing to find, nothing claimed); exactly one empty → 0.0.
    """
    return _dice_from_counts(*_counts(pred, ref))


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|A∩B| / |A∪B|`` of one slice or one volume.

    Empty cases: both empty → 1.0; exactly one empty → 0.0. Always ``iou = dice / (2 - dice)``.
    """
    return _iou_from_counts(*_counts(pred, ref))


def _pooled_counts(preds: Iterable[np.ndarray], refs: Iterable[np.ndarray]) -> tuple[int, int, int]:
    inter = size_p = size_r = 0
    for pred, ref in zip(preds, refs, strict=True):
        i, p, r = _counts(pred, ref)
        inter, size_p, size_r = inter + i, size_p + p, size_r + r
    return inter, size_p, size_r


def pooled_dice(preds: Iterable[np.ndarray], refs: Iterable[np.ndarray]) -> float:
    """Dice of all pairs pooled: ``2 Σ|A∩B| / Σ(|A|+|B|)``.

    Pooling weights every pixel equally, so large lesions dominate and empty slices cost
    nothing; this differs from the mean of per-pair Dice. ``preds`` and ``refs`` must have the
    same length (``ValueError`` otherwise). All pairs empty, or no pairs at all → 1.0.
    """
    return _dice_from_counts(*_pooled_counts(preds, refs))


def pooled_iou(preds: Iterable[np.ndarray], refs: Iterable[np.ndarray]) -> float:
    """IoU of all pairs pooled: ``Σ|A∩B| / Σ|A∪B|``. All pairs empty, or no pairs → 1.0."""
    return _iou_from_counts(*_pooled_counts(preds, refs))


def per_volume_dice(volumes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Dice per volume, keyed like ``volumes`` (``{case_id: (pred3d, ref3d)}``).

    This is the figure Buda et al. (2019) report: all slices of one patient stacked into one
    ``(Z, H, W)`` volume, one Dice per patient, then mean and median over patients (see
    :func:`summarize_scores`). Empty cases follow :func:`dice`.
    """
    return {case: dice(pred, ref) for case, (pred, ref) in volumes.items()}


@dataclass(frozen=True)
class ScoreSummary:
    """Mean and median of per-case scores; both are ``nan`` when ``n == 0``."""

    n: int
    mean: float
    median: float

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "mean": self.mean, "median": self.median}


def summarize_scores(scores: Mapping[str, float] | Iterable[float]) -> ScoreSummary:
    """Mean and median over cases (a mapping's values, or any iterable of numbers).

    ``inf`` values (e.g. :func:`hd95` with one mask empty) make the mean ``inf`` but leave the
    median finite while fewer than half the cases are infinite; ``nan`` values propagate.
    No scores → ``ScoreSummary(0, nan, nan)``.
    """
    values = scores.values() if isinstance(scores, Mapping) else scores
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return ScoreSummary(n=0, mean=math.nan, median=math.nan)
    return ScoreSummary(n=int(arr.size), mean=float(np.mean(arr)), median=float(np.median(arr)))


def _check_spacing(spacing: Sequence[float] | None, shape: tuple[int, ...]) -> tuple[float, ...]:
    """Spacing as floats, one per axis; ``None`` → all 1.0 (pixel units).

    An axis of length 1 has no distances along it, so its spacing is irrelevant and may be
    ``nan`` (a single DICOM slice without thickness); it is replaced by 1.0.
    """
    if spacing is None:
        return (1.0,) * len(shape)
    values = tuple(float(s) for s in spacing)
    if len(values) != len(shape):
        raise InputError(f"spacing {values} has {len(values)} entries for a {len(shape)}-D mask")
    out = []
    for value, length in zip(values, shape, strict=True):
        if length == 1 and not math.isfinite(value):
            value = 1.0
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"spacing must be finite and positive (mm), got {values}")
        out.append(value)
    return tuple(out)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with at least one face-neighbour in the background.

    Outside the array counts as background, so foreground on the array's edge is surface.
    """
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _crop(p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their joint bounding box.

    Outside the box both masks are background, which is what :func:`_surface` assumes beyond
    the array's edge, so the surfaces (and the distances between them) do not change.
    """
    union = p | r
    bounds = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(np.any(union, axis=others))
        bounds.append(slice(int(hits[0]), int(hits[-1]) + 1))
    box = tuple(bounds)
    return p[box], r[box]


def _nearest_distances(from_points: np.ndarray, to_points: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of ``from_points`` to the nearest row of ``to_points``."""
    distances, _ = cKDTree(to_points).query(from_points, k=1)
    return np.asarray(distances, dtype=float)


def hd95(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None
) -> float:
    """Symmetric 95th-percentile Hausdorff distance between the surfaces of two masks.

    Surface voxels are foreground voxels with a face-neighbour in the background (outside the
    array counts as background). For each surface voxel of one mask the Euclidean distance to the
    nearest surface voxel of the other is taken; the result is the larger of the two directed
    95th percentiles (numpy's linear interpolation), as in MONAI and the BraTS evaluation.
    Works for 2-D and 3-D masks.

    Units: millimetres when ``spacing`` is given (array axis order), else pixels/voxels.

    Empty cases (the project's one convention): both empty → 0.0 (nothing to find, nothing
    found); exactly one empty → ``math.inf`` (no surface to measure to: undefined). Aggregate
    over cases with a median (:func:`summarize_scores`), which tolerates a few infs. Answers and
    displays never show inf or NaN: :func:`metaseg_viewer.evaluation.score_against` gives
    ``None`` for the undefined case and :func:`metaseg_viewer.evaluation.hd95_text` words both.

    The nearest-surface distances are the values a Euclidean distance transform of the other
    surface (``distance_transform_edt(~surface, sampling=spacing)``) holds at these voxels; they
    are found with a k-d tree over the surface voxels' millimetre coordinates instead, because
    its cost grows with the surface area, not the volume: a mask filling most of a 256x256x150
    volume stays within the 2 s that ``test_hd95_large_volume_is_fast`` allows, which the two
    transforms over that volume do not. Both masks are first cropped to their joint bounding
    box, so a typical lesion costs a few tens of milliseconds.
    """
    p, r = _as_masks(pred, ref)
    scale = np.asarray(_check_spacing(spacing, p.shape))
    has_p, has_r = bool(p.any()), bool(r.any())
    if not has_p and not has_r:
        return 0.0
    if has_p != has_r:
        return math.inf
    p, r = _crop(p, r)
    points_p = np.argwhere(_surface(p)) * scale
    points_r = np.argwhere(_surface(r)) * scale
    d_pr = _nearest_distances(points_p, points_r)
    d_rp = _nearest_distances(points_r, points_p)
    return float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
