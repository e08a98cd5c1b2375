"""Score one prediction against a true mask the user supplies: what every app shows.

The server's ``/evaluate``, the Streamlit page and the napari widget all call
:func:`score_against` (and show its HD95 with :func:`hd95_text`), so a score shown anywhere is
the same number, with the same words for the empty cases.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from metaseg_viewer.errors import InputError
from metaseg_viewer.io import ReadLimits, Source, read_scan
from metaseg_viewer.lesions import lesion_scores
from metaseg_viewer.metrics import dice, hd95, iou
from metaseg_viewer.scan import Scan


def read_true_mask(source: Source, image: Scan | tuple[int, int, int], name: str | None = None,
                   limits: ReadLimits = ReadLimits()) -> np.ndarray:
    """A mask file as a bool ``(Z, H, W)`` array of the image's shape; any nonzero value is lesion.

    ``image`` is the image's :class:`Scan` (or only its shape). A DICOM SEG or NRRD mask
    (3D Slicer's ``.seg.nrrd``) is laid on the image by geometry, not array order, so it needs
    the Scan; a SEG made on another series is refused, naming both (:mod:`metaseg_viewer.io.masks`).
    Any other mask file (PNG/TIFF 0/255, NIfTI labels, ...) must have the image's size: the
    message names both sizes.
    """
    from metaseg_viewer.io.masks import needs_geometry, placed_kind, read_placed_mask

    shape = image.shape if isinstance(image, Scan) else tuple(image)
    label = name or (str(source) if not isinstance(source, (bytes, bytearray, memoryview)) else "mask")
    if isinstance(image, Scan):
        placed = read_placed_mask(source, image, label, limits)
        if placed is not None:
            return placed
    elif isinstance(source, (bytes, bytearray, memoryview)) and placed_kind(bytes(source)) is not None:
        raise needs_geometry(label)
    scan = read_scan(source, name=name or "", color="gray", limits=limits)
    if scan.shape != tuple(shape):
        raise InputError(f"{scan.source}: the mask is {_size(scan.shape)} but the image is {_size(shape)}; "
                         "accepted: a mask with exactly the image's rows, columns and slices")
    return np.asarray(scan.pixels) != 0


def score_against(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """Dice, IoU, HD95 and lesion-wise scores of ``pred`` against ``ref`` (both ``(Z, H, W)``).

    A one-slice pair is scored in 2-D, more slices in 3-D (a lesion spanning slices is one
    lesion). HD95 is in millimetres when ``spacing`` is known (every value finite and > 0),
    else in pixels (``hd95_unit``). Empty masks follow :func:`metaseg_viewer.metrics.hd95`:
    both empty → 0.0; exactly one empty → ``None`` here (the distance is undefined; ``None``
    keeps every answer JSON-safe — never NaN or inf). :func:`hd95_text` words it for display.
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if pred.shape != ref.shape:
        raise InputError(f"prediction {_size(pred.shape)} and true mask {_size(ref.shape)} differ in size")
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred, ref = pred[0], ref[0]
        spacing = None if spacing is None else tuple(spacing[1:])
    known = spacing is not None and all(np.isfinite(s) and s > 0 for s in spacing)
    spacing_used = tuple(float(s) for s in spacing) if known else None
    distance = hd95(pred, ref, spacing_used)
    return {
        "dice": dice(pred, ref),
        "iou": iou(pred, ref),
        "hd95": distance if math.isfinite(distance) else None,
        "hd95_unit": "mm" if spacing_used is not None else "px",
        "true_voxels": int(ref.sum()),
        "predicted_voxels": int(pred.sum()),
        "lesions": lesion_scores(pred, ref).as_dict(),
    }


def hd95_text(scores: dict[str, Any]) -> str:
    """The HD95 of :func:`score_against`'s ``scores`` as every app shows it, empty cases named."""
    pred_empty, ref_empty = scores["predicted_voxels"] == 0, scores["true_voxels"] == 0
    if pred_empty and ref_empty:
        return f"0.0 {scores['hd95_unit']} (both masks empty)"
    if pred_empty or ref_empty:
        return "undefined (" + ("the prediction" if pred_empty else "the true mask") + " is empty)"
    return f"{scores['hd95']:.1f} {scores['hd95_unit']}"


def _size(shape: tuple[int, ...]) -> str:
    z, h, w = shape if len(shape) == 3 else (1, *shape)
    return f"{h} x {w} pixels" + ("" if z == 1 else f" x {z} slices")


def compare_models(first: np.ndarray, second: np.ndarray) -> dict[str, float | int]:
    """How two predictions of one scan agree: Dice between them and the pixels each adds."""
    a, b = np.asarray(first, bool), np.asarray(second, bool)
    if a.shape != b.shape:
        raise InputError(f"the two masks differ in size: {a.shape} vs {b.shape}")
    return {"dice_between": dice(a, b), "both": int((a & b).sum()), "first_only": int((a & ~b).sum()),
            "second_only": int((~a & b).sum())}
