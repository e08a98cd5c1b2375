"""Score one prediction against a true mask the user supplies: what every app shows.

The server's ``/evaluate``, the Streamlit page and the napari widget all call
:func:`score_against`, so a Dice shown anywhere is the same number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metaseg_viewer.errors import InputError
from metaseg_viewer.io import ReadLimits, Source, read_scan
from metaseg_viewer.lesions import lesion_scores
from metaseg_viewer.metrics import dice, hd95, iou


def read_true_mask(source: Source, shape: tuple[int, int, int], name: str | None = None,
                   limits: ReadLimits = ReadLimits()) -> np.ndarray:
    """A mask file (PNG/TIFF 0/255, NIfTI labels, ...) as a bool ``(Z, H, W)`` array of ``shape``.

    Any nonzero value is lesion. A mask whose size differs from the image's is refused: the
    message names both sizes.
    """
    scan = read_scan(source, name=name, color="gray", limits=limits)
    if scan.shape != tuple(shape):
        raise InputError(f"{scan.source}: the mask is {_size(scan.shape)} but the image is {_size(shape)}; "
                         "accepted: a mask with exactly the image's rows, columns and slices")
    return np.asarray(scan.pixels) != 0


def score_against(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """Dice, IoU, HD95 and lesion-wise scores of ``pred`` against ``ref`` (both ``(Z, H, W)``).

    A one-slice pair is scored in 2-D, more slices in 3-D (a lesion spanning slices is one
    lesion). HD95 is in millimetres when ``spacing`` is known (every value finite and > 0),
    else in pixels (``hd95_unit``); it is NaN when either mask is empty, inf when only one is.
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if pred.shape != ref.shape:
        raise InputError(f"prediction {_size(pred.shape)} and true mask {_size(ref.shape)} differ in size")
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred, ref = pred[0], ref[0]
        spacing = None if spacing is None else tuple(spacing[1:])
    known = spacing is not None and all(np.isfinite(s) and s > 0 for s in spacing)
    spacing_used = tuple(float(s) for s in spacing) if known else None
    return {
        "dice": dice(pred, ref),
        "iou": iou(pred, ref),
        "hd95": hd95(pred, ref, spacing_used),
        "hd95_unit": "mm" if spacing_used is not None else "px",
        "true_voxels": int(ref.sum()),
        "predicted_voxels": int(pred.sum()),
        "lesions": lesion_scores(pred, ref).as_dict(),
    }


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
