"""Put a mask stored in its own voxel grid onto a scan's grid by geometry, never by array order.

A DICOM SEG holds only some frames, possibly flipped or transposed against the image; a
``.seg.nrrd`` from 3D Slicer may store its axes in another order. Both give voxel-to-world
affines, so each lesion voxel is mapped to the scan's ``(z, row, column)`` index through the
two affines. Only grids that coincide with the scan's voxels are accepted (axes permuted or
flipped, offsets whole voxels); a mask that would need resampling is refused, because the
score of a resampled truth is not the score of the truth.
"""

from __future__ import annotations

import numpy as np

from metaseg_viewer.errors import InputError
from metaseg_viewer.scan import Scan

#: DICOM's LPS patient coordinates to the RAS+ that :attr:`Scan.affine` uses (and back).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

#: How far (in voxels) a mapped voxel centre may lie from the scan's nearest voxel centre.
TOLERANCE = 0.1


def grid_affine(scan: Scan) -> np.ndarray:
    """The scan's voxel-to-RAS affine; without one (PNG, TIFF stacks), the diagonal affine the
    NIfTI writer uses for such scans (columns to patient left, rows posterior, slices superior),
    so that masks written for such a scan in any format read back onto it."""
    if scan.affine is not None:
        return np.asarray(scan.affine, dtype=float)
    dz, dy, dx = scan.spacing if scan.spacing is not None else (1.0, 1.0, 1.0)
    affine = np.zeros((4, 4))
    affine[:3, :3] = [[0, 0, -dx], [0, -dy, 0], [dz if np.isfinite(dz) else 1.0, 0, 0]]
    affine[3, 3] = 1.0
    return affine


def onto_scan(mask: np.ndarray, affine: np.ndarray, scan: Scan, label: str,
              out: np.ndarray | None = None) -> np.ndarray:
    """The nonzero voxels of ``mask`` (3-D, any axis order) set in a bool array of ``scan.shape``.

    ``affine`` maps ``mask``'s indices to RAS+ millimetres. ``out``, when given, is updated in
    place (a SEG's frames are placed one at a time). Raises InputError when the grids do not
    coincide or a lesion voxel falls outside the scan.
    """
    out = np.zeros(scan.shape, bool) if out is None else out
    to_scan = np.linalg.inv(grid_affine(scan)) @ np.asarray(affine, dtype=float)
    linear, offset = to_scan[:3, :3], to_scan[:3, 3]
    used = [axis for axis in range(3) if mask.shape[axis] > 1]  # a length-1 axis has no direction to check
    steps = np.rint(linear[:, used])
    permutation = all(np.count_nonzero(steps[:, k]) == 1 and np.abs(steps[:, k]).sum() == 1 for k in range(len(used)))
    if not permutation or np.abs(linear[:, used] - steps).max() > TOLERANCE / max(mask.shape) \
            or np.abs(offset - np.rint(offset)).max() > TOLERANCE:
        raise InputError(f"{label}: the mask's voxel grid does not coincide with the image's (its position, "
                         "orientation or spacing differ), so it cannot be laid on the image voxel for voxel. "
                         "Accepted: a mask made on this image's own grid (any axis order)")
    points = np.argwhere(mask != 0)
    if points.size == 0:
        return out
    index = np.rint(points @ linear.T + offset).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(scan.shape)), axis=1)
    if not inside.all():
        raise InputError(f"{label}: {int((~inside).sum())} lesion voxels of the mask lie outside the image. "
                         "Accepted: a mask made on this image")
    out[tuple(index.T)] = True
    return out
