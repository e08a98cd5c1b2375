"""Write masks and volumes back: 2-D masks as PNG, anything in a scan's geometry as NIfTI.

The NIfTI writers are implemented in :mod:`metaseg_viewer.io.nifti`, imported on first use so
that importing :mod:`metaseg_viewer.io` loads no nibabel.
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from metaseg_viewer.errors import InputError
from metaseg_viewer.scan import Scan


def write_mask_png(mask2d: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a 2-D mask as an 8-bit PNG: nonzero → 255, zero → 0 (the LGG masks' convention).

    ``(1, H, W)`` is accepted as well, so a mask of a 2-D :class:`Scan` can be passed as is.
    """
    Path(path).write_bytes(encode_mask_png(mask2d))


def encode_mask_png(mask2d: np.ndarray) -> bytes:
    """The bytes :func:`write_mask_png` writes, for answers that never touch the disk."""
    mask = np.asarray(mask2d)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2 or 0 in mask.shape:
        raise InputError(f"write_mask_png needs a non-empty (H, W) mask, got shape {mask.shape}")
    buffer = BytesIO()
    Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_mask_nifti(mask3d: np.ndarray, scan: Scan, path: str | os.PathLike[str]) -> None:
    """Write a ``(Z, H, W)`` label mask of ``scan`` as NIfTI (uint8 labels, ``.nii``/``.nii.gz``).

    With ``scan.source_affine`` (NIfTI input) the mask goes back to the source file's voxel order
    and affine, so it overlays the input in any viewer (a 2-D input gets a third axis of length
    1, a 4-D input with one volume is written 3-D). Otherwise, with ``scan.affine`` (DICOM), it
    is stored in ``(column, row, z)`` order with the affine's columns permuted to match, the
    order viewers expect; otherwise with a diagonal affine from the spacing that reads back unchanged.
    """
    from metaseg_viewer.io.nifti import write_mask

    write_mask(mask3d, scan, path)


def encode_mask_nifti(mask3d: np.ndarray, scan: Scan) -> bytes:
    """The bytes of a ``.nii.gz`` :func:`write_mask_nifti` would write (same geometry rules)."""
    from metaseg_viewer.io.nifti import mask_bytes

    return mask_bytes(mask3d, scan)


def encode_nifti(volume: np.ndarray, scan: Scan) -> bytes:
    """The bytes of a ``.nii.gz`` :func:`write_nifti` would write (same geometry rules)."""
    from metaseg_viewer.io.nifti import volume_bytes

    return volume_bytes(np.asarray(volume), scan)


def write_nifti(volume: np.ndarray, scan: Scan, path: str | os.PathLike[str]) -> None:
    """Write a ``(Z, H, W)`` array in ``scan``'s geometry as NIfTI, keeping its dtype.

    Same geometry rules as :func:`write_mask_nifti`; with neither affine, the diagonal affine
    encodes the array's own orientation convention so that
    :func:`~metaseg_viewer.io.read_scan` returns it as is.
    """
    from metaseg_viewer.io.nifti import write_volume

    write_volume(np.asarray(volume), scan, path)
