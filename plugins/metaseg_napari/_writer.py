"""Writer: a labels layer as PNG (2-D, 0/255) or NIfTI (3-D, in the image's voxel grid and affine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metaseg_viewer.errors import InputError
from metaseg_viewer.io import write_mask_nifti, write_mask_png
from metaseg_viewer.scan import Scan
from metaseg_napari._layers import SCAN_KEY, as_stack


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


def scan_for(mask: np.ndarray, meta: dict) -> Scan:
    """The image geometry to save a mask in: the reader's Scan when the shapes agree, else the layer's scale."""
    scan = (meta.get("metadata") or {}).get(SCAN_KEY)
    stack = as_stack(mask)
    if isinstance(scan, Scan) and scan.shape == stack.shape:
        return scan
    scale = tuple(float(s) for s in meta.get("scale", (1.0,) * mask.ndim))
    spacing = scale if len(scale) == 3 else (1.0, *scale[-2:])
    return Scan(pixels=np.zeros(stack.shape, np.uint8), spacing=spacing, is_volume=True)
