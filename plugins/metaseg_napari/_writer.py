"""Writers: a labels layer as PNG (2-D, 0/255), NIfTI (3-D, in the image's voxel grid and affine),
3D Slicer's ``.seg.nrrd`` (in the image's geometry) or, for a layer made on a DICOM series, a
DICOM SEG on that series.

A DICOM SEG names how its segment was made: a model's result as it came is ``AUTOMATIC`` (the
model's name and version recorded), a model's result the user edited ``SEMIAUTOMATIC`` (same
model named), a layer painted by hand ``MANUAL``. A layer that is not on a DICOM series is
refused with a napari error notification saying which formats fit it, and nothing is written
(raised, an InputError is a ValueError, which napari's save turns into "not a valid writer").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error

from metaseg_viewer.errors import InputError
from metaseg_viewer.io import write_mask_nifti, write_mask_png
from metaseg_viewer.scan import Scan
from metaseg_napari._layers import RESULT_KEY, SCAN_KEY, as_stack


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer; returns the path written."""
    mask = np.asarray(data)
    lower = path.lower()
    if lower.endswith(".png"):
        if mask.ndim != 2 and not (mask.ndim == 3 and mask.shape[0] == 1):
            raise InputError(f"a PNG holds one slice, but this labels layer is {mask.shape}; save it as .nii.gz")
        write_mask_png(mask, path)
    elif lower.endswith((".nii", ".nii.gz")):
        write_mask_nifti(as_stack(mask), scan_for(mask, meta), path)
    else:
        raise InputError(f"{Path(path).name}: save a mask as .png (2-D) or .nii / .nii.gz (3-D)")
    return [path]


def _refusal_notified(writer: Callable[[str, Any, dict], list[str]]) -> Callable[[str, Any, dict], list[str]]:
    """An InputError of ``writer`` as a napari error notification (no traceback); nothing written."""
    @wraps(writer)
    def write(path: str, data: Any, meta: dict) -> list[str]:
        try:
            return writer(path, data, meta)
        except InputError as exc:
            show_error(f"{Path(path).name} not saved: {exc}")
            return []

    return write


@_refusal_notified
def write_seg_nrrd(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: the labels layer as 3D Slicer's ``.seg.nrrd`` in its image's geometry."""
    from metaseg_viewer.io.nrrd import nrrd_bytes

    stack = as_stack(np.asarray(data))
    Path(path).write_bytes(nrrd_bytes(stack, scan_for(stack, meta)))
    return [path]


@_refusal_notified
def write_dicom_seg(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer: a labels layer made on a DICOM series as a DICOM SEG referencing that series."""
    from metaseg_viewer.io.dicom_seg import seg_bytes

    stack = as_stack(np.asarray(data))
    scan = dicom_scan_for(stack, meta)
    model, version, kind = algorithm_of(stack, meta)
    Path(path).write_bytes(seg_bytes(stack, scan, model, version, algorithm_type=kind))
    return [path]


def scan_for(mask: np.ndarray, meta: dict) -> Scan:
    """The image geometry to save a mask in: the reader's Scan when the shapes agree, else the layer's scale."""
    scan = (meta.get("metadata") or {}).get(SCAN_KEY)
    stack = as_stack(mask)
    if isinstance(scan, Scan) and scan.shape == stack.shape:
        return scan
    scale = tuple(float(s) for s in meta.get("scale", (1.0,) * mask.ndim))
    spacing = scale if len(scale) == 3 else (1.0, *scale[-2:])
    return Scan(pixels=np.zeros(stack.shape, np.uint8), spacing=spacing, is_volume=True)


def dicom_scan_for(stack: np.ndarray, meta: dict) -> Scan:
    """The DICOM series a labels layer was made on: the Scan it keeps (widget results, true masks
    opened beside their image), else, for a layer painted by hand, the one DICOM image layer of
    its shape open in the viewer. Raises InputError naming the formats that fit otherwise."""
    name = meta.get("name") or "this labels layer"
    scan = (meta.get("metadata") or {}).get(SCAN_KEY)
    if not isinstance(scan, Scan) or scan.shape != stack.shape:
        candidates = [s for s in _open_scans() if s.dicom is not None and s.shape == stack.shape]
        if len(candidates) > 1:
            raise InputError(f"{name}: {len(candidates)} open DICOM series have this layer's size, so which one it "
                             "segments is unknown. Save a segmentation the widget made, or close the other series")
        scan = candidates[0] if candidates else None
    if scan is None or scan.dicom is None:
        raise InputError(f"{name}: a DICOM SEG references the DICOM series it segments, but this labels layer was "
                         "not made on a DICOM series. Accepted for it: .seg.nrrd, .nii.gz or .png (one slice)")
    return scan


def _open_scans() -> list[Scan]:
    """The Scans behind the image layers of the current viewer (none without a viewer)."""
    from napari import current_viewer
    from napari.layers import Image

    viewer = current_viewer()
    layers = [] if viewer is None else viewer.layers
    return [layer.metadata[SCAN_KEY] for layer in layers
            if isinstance(layer, Image) and isinstance(layer.metadata.get(SCAN_KEY), Scan)]


def algorithm_of(stack: np.ndarray, meta: dict) -> tuple[str, str, str]:
    """``(model name, model version, algorithm type)`` of a labels layer: the widget's model for
    its result (``semiautomatic`` once the user edited it), else a manual segmentation."""
    result = (meta.get("metadata") or {}).get(RESULT_KEY)
    prediction = getattr(result, "prediction", None)
    if prediction is None:
        return "", "", "manual"
    unchanged = prediction.mask.shape == stack.shape and np.array_equal(prediction.mask, stack != 0)
    return prediction.model_name or str(result.model), prediction.model_version, \
        "automatic" if unchanged else "semiautomatic"
