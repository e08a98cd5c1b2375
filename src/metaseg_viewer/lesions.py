"""Lesions as objects: connected components, lesion-wise detection scores, the lesion table.

Voxel overlap (:mod:`metaseg_viewer.metrics`) says how well the pixels agree; it does not say
whether a small second lesion was found at all. The stages stay separate, as in panoptica:
find components (:func:`label_components`) → match them (:func:`match_components`) → score the
match (:func:`score_match`). :func:`lesion_scores` chains the three; :func:`pool_lesion_scores`
adds up the scores of many slices or volumes.

Conventions: masks are bool or 0/1 arrays, 2-D ``(H, W)`` for one slice (components are found
in-plane) or 3-D ``(Z, H, W)`` for a volume (components are found in 3-D, so a lesion spanning
two slices is one lesion). ``connectivity="full"`` joins diagonal neighbours (8 in 2-D, 26 in
3-D); ``"face"`` joins only face neighbours (4 in 2-D, 6 in 3-D). ``spacing`` is in millimetres
in the array's axis order, ``None`` when unknown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from metaseg_viewer.errors import InputError

__all__ = [
    "CONNECTIVITIES",
    "Lesion",
    "LesionMatch",
    "LesionScores",
    "label_components",
    "lesion_scores",
    "lesion_table",
    "lesions_to_rows",
    "match_components",
    "match_lesions",
    "pool_lesion_scores",
    "ranked_labels",
    "slice_span",
    "remove_small_components",
    "score_match",
]

#: Connectivity name → ``rank`` argument of :func:`scipy.ndimage.generate_binary_structure`
#: relative to the array's dimension (``None`` = full: the array's own rank).
CONNECTIVITIES: dict[str, int | None] = {"full": None, "face": 1}


def _as_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """A 2-D or 3-D bool array (non-zero = foreground)."""
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise InputError(f"{name} must be 2-D (H, W) or 3-D (Z, H, W), got shape {arr.shape}")
    return arr != 0


def _structure(ndim: int, connectivity: str) -> np.ndarray:
    if connectivity not in CONNECTIVITIES:
        raise InputError(
            f"unknown connectivity {connectivity!r}; valid: {', '.join(sorted(CONNECTIVITIES))}"
        )
    rank = CONNECTIVITIES[connectivity]
    return ndimage.generate_binary_structure(ndim, ndim if rank is None else rank)


def label_components(mask: np.ndarray, connectivity: str = "full") -> tuple[np.ndarray, int]:
    """Connected components of a mask: ``(labels, n)``.

    ``labels`` has the mask's shape, 0 for background and 1..n for the components (scipy's
    raster order of each component's first voxel); an empty mask gives all zeros and ``n = 0``.
    """
    m = _as_mask(mask)
    labels, n = ndimage.label(m, structure=_structure(m.ndim, connectivity))
    return labels, int(n)


def remove_small_components(
    mask: np.ndarray, min_size: int, connectivity: str = "full"
) -> np.ndarray:
    """The mask without the components smaller than ``min_size`` pixels (2-D) or voxels (3-D).

    Used to drop speckle from a prediction before it is shown or scored. ``min_size <= 1``
    keeps every component; the result is always a new bool array.
    """
    m = _as_mask(mask)
    if min_size <= 1:
        return m.copy()
    labels, n = label_components(m, connectivity)
    if n == 0:
        return m.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


@dataclass(frozen=True)
class LesionMatch:
    """Which predicted components touch which true lesions (overlap of at least one voxel).

    Attributes:
        n_ref: number of true (reference) lesions.
        n_pred: number of predicted components.
        ref_sizes: voxels of true lesion ``i + 1`` at index ``i``.
        ref_hits: for each true lesion, the labels of the predicted components overlapping it
            (empty tuple = missed).
        ref_dice: for each true lesion, Dice between it and the union of the predicted
            components overlapping it; 0.0 for a missed lesion (BraTS-style lesion-wise Dice, without BraTS's dilation or small-lesion filter).
        pred_hit: for each predicted component, whether it overlaps any true lesion.
    """

    n_ref: int
    n_pred: int
    ref_sizes: tuple[int, ...]
    ref_hits: tuple[tuple[int, ...], ...]
    ref_dice: tuple[float, ...]
    pred_hit: tuple[bool, ...]

    @property
    def tp_ref(self) -> int:
        """True lesions found (overlapped by at least one predicted component)."""
        return sum(1 for hits in self.ref_hits if hits)

    @property
    def fn(self) -> int:
        """True lesions missed."""
        return self.n_ref - self.tp_ref

    @property
    def tp_pred(self) -> int:
        """Predicted components that overlap at least one true lesion."""
        return sum(self.pred_hit)

    @property
    def fp_pred(self) -> int:
        """Predicted components that overlap no true lesion."""
        return self.n_pred - self.tp_pred


def match_components(
    pred_labels: np.ndarray, n_pred: int, ref_labels: np.ndarray, n_ref: int
) -> LesionMatch:
    """Match labelled components (as :func:`label_components` returns them) by any overlap.

    A predicted voxel inside a true lesion always belongs to a component that overlaps it, so
    the intersection of a lesion with the union of its overlapping components is simply the
    number of predicted voxels inside the lesion.
    """
    if pred_labels.shape != ref_labels.shape:
        raise InputError(
            f"prediction and reference shapes differ: {pred_labels.shape} vs {ref_labels.shape}"
        )
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    ref_sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)
    both = (pred_labels > 0) & (ref_labels > 0)
    ref_in = ref_labels[both].astype(np.int64)
    inside = np.bincount(ref_in, minlength=n_ref + 1)
    # One code per overlapping (true lesion, predicted component) pair.
    codes = np.unique(ref_in * (n_pred + 1) + pred_labels[both].astype(np.int64))

    hits: list[list[int]] = [[] for _ in range(n_ref + 1)]
    pred_hit = np.zeros(n_pred + 1, dtype=bool)
    for code in codes.tolist():
        ref_label, pred_label = divmod(code, n_pred + 1)
        hits[ref_label].append(pred_label)
        pred_hit[pred_label] = True

    ref_dice = []
    for label in range(1, n_ref + 1):
        union_size = int(sum(pred_sizes[p] for p in hits[label]))
        total = int(ref_sizes[label]) + union_size
        ref_dice.append(2.0 * int(inside[label]) / total if union_size else 0.0)

    return LesionMatch(
        n_ref=n_ref,
        n_pred=n_pred,
        ref_sizes=tuple(int(s) for s in ref_sizes[1:]),
        ref_hits=tuple(tuple(h) for h in hits[1:]),
        ref_dice=tuple(ref_dice),
        pred_hit=tuple(bool(h) for h in pred_hit[1:]),
    )


def match_lesions(pred: np.ndarray, ref: np.ndarray, connectivity: str = "full") -> LesionMatch:
    """Label both masks and match their components (see :class:`LesionMatch`)."""
    p, r = _as_mask(pred, "pred"), _as_mask(ref, "ref")
    if p.shape != r.shape:
        raise InputError(f"prediction and reference shapes differ: {p.shape} vs {r.shape}")
    pred_labels, n_pred = label_components(p, connectivity)
    ref_labels, n_ref = label_components(r, connectivity)
    return match_components(pred_labels, n_pred, ref_labels, n_ref)


@dataclass(frozen=True)
class LesionScores:
    """Lesion-wise detection scores of one slice or volume (see :func:`score_match`)."""

    n_ref: int
    n_pred: int
    tp_ref: int
    tp_pred: int
    fp_pred: int
    fn: int
    sensitivity: float
    precision: float
    f1: float
    lesion_dice: float

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


def score_match(match: LesionMatch) -> LesionScores:
    """Scores from a match.

    * sensitivity = found true lesions / true lesions.
    * precision = predicted components overlapping a true lesion / predicted components.
    * f1 = 2 * precision * sensitivity / (precision + sensitivity); 0.0 when both are 0.
    * lesion_dice (BraTS-style; no dilation of true lesions, no size filter) = sum of per-true-lesion Dice / (true lesions + false-positive
      components); each missed lesion and each false-positive component counts as 0.

    Empty cases:

    * no true lesions and no predicted components → every score 1.0;
    * no true lesions but predicted components → sensitivity 1.0 (nothing to find, nothing
      missed), precision, f1 and lesion_dice 0.0;
    * true lesions but no predicted components → sensitivity 0.0, precision 0.0 (precision is
      1.0 without predictions only when there is also nothing to find), f1 and lesion_dice 0.0.
    """
    return _scores(match.n_ref, match.n_pred, match.tp_ref, match.tp_pred, sum(match.ref_dice))


def _scores(n_ref: int, n_pred: int, tp_ref: int, tp_pred: int, dice_sum: float) -> LesionScores:
    """The rule of :func:`score_match`, from counts and the sum of per-true-lesion Dice."""
    sensitivity = 1.0 if n_ref == 0 else tp_ref / n_ref
    if n_pred == 0:
        precision = 1.0 if n_ref == 0 else 0.0
    else:
        precision = tp_pred / n_pred
    denom = precision + sensitivity
    f1 = 0.0 if denom == 0 else 2.0 * precision * sensitivity / denom
    fp_pred = n_pred - tp_pred
    n_scored = n_ref + fp_pred
    lesion_dice = 1.0 if n_scored == 0 else dice_sum / n_scored
    return LesionScores(
        n_ref=n_ref,
        n_pred=n_pred,
        tp_ref=tp_ref,
        tp_pred=tp_pred,
        fp_pred=fp_pred,
        fn=n_ref - tp_ref,
        sensitivity=float(sensitivity),
        precision=float(precision),
        f1=float(f1),
        lesion_dice=float(lesion_dice),
    )


def pool_lesion_scores(scores: Iterable[LesionScores]) -> LesionScores:
    """The scores of several slices or volumes taken together, as one set of lesions.

    Counts add up and the rates follow from the sums by the rule of :func:`score_match`, so a
    case with many lesions weighs more than one with few (unlike a mean of per-case rates).
    lesion_dice pools each case's per-true-lesion Dice: the sum over cases of ``lesion_dice *
    (n_ref + fp_pred)`` / the sum of ``(n_ref + fp_pred)``.

    Empty cases follow :func:`score_match` on the pooled counts: no cases, or none with a true
    lesion or a predicted component → every score 1.0; predicted components but no true lesion
    anywhere → sensitivity 1.0, precision, f1 and lesion_dice 0.0; true lesions but no predicted
    component anywhere → every score 0.0.
    """
    n_ref = n_pred = tp_ref = tp_pred = 0
    dice_sum = 0.0
    for s in scores:
        n_ref, n_pred = n_ref + s.n_ref, n_pred + s.n_pred
        tp_ref, tp_pred = tp_ref + s.tp_ref, tp_pred + s.tp_pred
        dice_sum += s.lesion_dice * (s.n_ref + s.fp_pred)
    return _scores(n_ref, n_pred, tp_ref, tp_pred, dice_sum)


def lesion_scores(pred: np.ndarray, ref: np.ndarray, connectivity: str = "full") -> LesionScores:
    """Lesion-wise sensitivity, precision, F1 and Dice of a prediction against a reference.

    A 2-D pair is scored in-plane, a 3-D pair with 3-D components. Conventions and empty cases:
    :func:`score_match`.
    """
    return score_match(match_lesions(pred, ref, connectivity))


@dataclass(frozen=True)
class Lesion:
    """One connected component of a mask.

    Attributes:
        label: 1..n, largest lesion first (ties in scan order of the first voxel).
        size_px: pixels (2-D) or voxels (3-D).
        size_mm: mm² (2-D) or mm³ (3-D); ``None`` when the spacing is unknown.
        centroid: centre of mass in array index units, ``(row, col)`` or ``(z, row, col)``.
        bbox: ``(start, stop)`` per axis, stop exclusive; :attr:`slices` indexes the array.
        mean_probability: mean of the probability map over the lesion, ``None`` without one.
    """

    label: int
    size_px: int
    size_mm: float | None
    centroid: tuple[float, ...]
    bbox: tuple[tuple[int, int], ...]
    mean_probability: float | None = None

    @property
    def slices(self) -> tuple[slice, ...]:
        """The bounding box as slices, e.g. ``mask[lesion.slices]``."""
        return tuple(slice(start, stop) for start, stop in self.bbox)


def _voxel_size(spacing: Sequence[float] | None, ndim: int) -> float | None:
    """Area (2-D) or volume (3-D) of one voxel in mm; ``None`` when any spacing is unknown."""
    if spacing is None:
        return None
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim:
        raise InputError(f"spacing {values} has {len(values)} entries for a {ndim}-D mask")
    if any(math.isnan(v) for v in values):
        return None
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise InputError(f"spacing must be positive millimetres, got {values}")
    return math.prod(values)


def ranked_labels(mask: np.ndarray, connectivity: str = "full") -> tuple[np.ndarray, int]:
    """Components numbered as :func:`lesion_table` numbers its lesions: ``(labels, n)`` with 1 the
    largest (ties in scan order of the first voxel), so ``labels == lesion.label`` is its voxels."""
    labels, n = label_components(mask, connectivity)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    rank = np.zeros(n + 1, labels.dtype)
    rank[1 + np.argsort(-sizes, kind="stable")] = np.arange(1, n + 1)
    return rank[labels], n


def lesion_table(
    mask: np.ndarray,
    probabilities: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    connectivity: str = "full",
) -> list[Lesion]:
    """The lesions of one mask, largest first; an empty mask gives ``[]``.

    ``probabilities`` (same shape as ``mask``) adds each lesion's mean probability. A ``nan``
    entry in ``spacing`` (e.g. unknown slice thickness) makes ``size_mm`` ``None``.
    """
    labels, n = ranked_labels(mask, connectivity)
    voxel = _voxel_size(spacing, labels.ndim)
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=float)
        if probabilities.shape != labels.shape:
            raise InputError(
                f"probabilities shape {probabilities.shape} differs from mask {labels.shape}"
            )
    if n == 0:
        return []

    index = np.arange(1, n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    centroids = ndimage.center_of_mass(labels > 0, labels, index)
    boxes = ndimage.find_objects(labels)
    means = (
        ndimage.mean(probabilities, labels, index) if probabilities is not None else None
    )
    lesions = []
    for i in range(n):
        box = boxes[i]
        assert box is not None  # every label 1..n has at least one voxel
        lesions.append(
            Lesion(
                label=i + 1,
                size_px=int(sizes[i]),
                size_mm=None if voxel is None else float(sizes[i]) * voxel,
                centroid=tuple(float(c) for c in centroids[i]),
                bbox=tuple((int(s.start), int(s.stop)) for s in box),
                mean_probability=None if means is None else float(means[i]),
            )
        )
    return lesions


def slice_span(row: dict) -> str:
    """A 3-D lesion row's slices as every app shows them: ``"7"`` or ``"5–9"`` (0-based)."""
    first, last = row["first_slice"], row["last_slice"]
    return f"{first}" if first == last else f"{first}–{last}"


def lesions_to_rows(lesions: Iterable[Lesion]) -> list[dict[str, float | int | None]]:
    """Flat dicts for CSV or table output, one per lesion.

    Keys: ``label, size_px, area_mm2`` (2-D) or ``volume_mm3`` (3-D) ``, first_slice,
    last_slice, centroid_z`` (3-D only: the slices the lesion spans, inclusive) ``, centroid_row,
    centroid_col, mean_probability``; slices and centroids are 0-based array indices (as napari's
    slider counts); ``None`` where a value is unknown.
    """
    rows: list[dict[str, float | int | None]] = []
    for lesion in lesions:
        row: dict[str, float | int | None] = {
            "label": lesion.label,
            "size_px": lesion.size_px,
            ("volume_mm3" if len(lesion.centroid) == 3 else "area_mm2"): lesion.size_mm,
        }
        if len(lesion.centroid) == 3:
            row["first_slice"], row["last_slice"] = lesion.bbox[0][0], lesion.bbox[0][1] - 1
            row["centroid_z"] = lesion.centroid[0]
        row["centroid_row"] = lesion.centroid[-2]
        row["centroid_col"] = lesion.centroid[-1]
        row["mean_probability"] = lesion.mean_probability
        rows.append(row)
    return rows
