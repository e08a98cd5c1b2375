"""Triangle surfaces of a volume for the page's 3-D view: each lesion, and the head as context.

Conventions: volumes are ``(Z, H, W)`` arrays; ``spacing`` is millimetres per voxel in that order
(``None`` or a non-finite entry: 1 mm, i.e. voxel units). Vertices are millimetres in the same
``(z, row, col)`` order, measured from the centre of voxel ``(0, 0, 0)``. A binary surface sits at
half a voxel outside the outermost lesion voxels, so a lesion spanning ``a..b`` along an axis has
vertices from ``(a - 0.5) * s`` to ``(b + 0.5) * s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import marching_cubes

from metaseg_viewer.lesions import ranked_labels


@dataclass(frozen=True)
class Surface:
    """A triangle mesh: ``vertices`` (N, 3) in mm, ``(z, row, col)``; ``faces`` (M, 3) vertex indices."""

    vertices: np.ndarray
    faces: np.ndarray


def voxel_mm(spacing: Sequence[float] | None) -> tuple[float, float, float]:
    """The spacing to draw with: the scan's, or 1 mm where it is unknown."""
    if spacing is None or len(spacing) != 3:
        return 1.0, 1.0, 1.0
    return tuple(float(s) if math.isfinite(s) and s > 0 else 1.0 for s in spacing)  # type: ignore[return-value]


def _surface(volume: np.ndarray, level: float, spacing: tuple[float, float, float],
             origin: Sequence[int] = (0, 0, 0)) -> Surface:
    """Marching cubes on ``volume`` padded by one voxel (closed surfaces at the borders too);
    ``origin`` is the index of ``volume[0, 0, 0]`` in the whole scan."""
    padded = np.pad(volume.astype(np.float32), 1)
    vertices, faces, _, _ = marching_cubes(padded, level, spacing=spacing)
    shift = (np.asarray(origin, np.float64) - 1) * np.asarray(spacing)
    return Surface(vertices + shift, faces)


def lesion_surfaces(mask: np.ndarray, spacing: Sequence[float] | None) -> list[Surface]:
    """One surface per lesion of a ``(Z, H, W)`` mask, in the core lesion table's order (largest
    first, as :func:`metaseg_viewer.lesions.lesion_table` numbers them); ``[]`` for an empty mask."""
    labels, _ = ranked_labels(mask)
    mm = voxel_mm(spacing)
    return [_surface(labels[box] == label, 0.5, mm, [s.start for s in box])
            for label, box in enumerate(ndimage.find_objects(labels), start=1)]


def head_surface(image: np.ndarray, spacing: Sequence[float] | None, size: int = 64) -> Surface | None:
    """A coarse outline of the head to show the lesions in: the Otsu level of the image on at most
    ``size`` rows and columns (every 4th of a 256-pixel slice), so it stays light to draw; ``None``
    for a flat image (no level separates anything)."""
    step = max(1, -(-max(image.shape[1:]) // size))
    coarse = np.asarray(image, np.float32)[:, ::step, ::step]
    if coarse.max() <= coarse.min():
        return None
    mm = voxel_mm(spacing)
    return _surface(coarse, float(threshold_otsu(coarse)), (mm[0], mm[1] * step, mm[2] * step))
