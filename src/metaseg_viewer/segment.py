"""Segment files and write what a user keeps: mask, overlay picture and lesion table.

The command line calls :func:`segment_file`; it is a library function so other tools get the
same outputs and names: ``<stem>_mask.png`` (or ``_mask.nii.gz`` for a volume or stack),
``<stem>_overlay.png`` and ``<stem>_lesions.csv``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from metaseg_viewer.inference import Prediction, Predictor, Progress
from metaseg_viewer.io import read_scan, write_mask_nifti, write_mask_png
from metaseg_viewer.lesions import lesion_table, lesions_to_rows
from metaseg_viewer.preprocessing import DISPLAY_PERCENTILES, window_to_uint8
from metaseg_viewer.render import overlay_stack
from metaseg_viewer.scan import Scan


@dataclass(frozen=True)
class SegmentOutputs:
    mask: Path
    overlay: Path
    lesions: Path
    n_lesions: int


def output_stem(source: str | Path) -> str:
    """File name without (double) extension: ``a/b.nii.gz`` → ``b``; a folder → its name."""
    name = Path(source).name
    for ext in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def lesion_rows(scan: Scan, prediction: Prediction) -> list[dict]:
    """The lesion table as flat rows: 3-D lesions for a volume, else per 2-D image.

    Centroids are 0-based indices into the scan's ``(Z, H, W)`` array; where the scan has an
    affine they are also given in world millimetres (RAS+, ``centroid_x_mm`` ...), which any
    viewer showing the original file understands.
    """
    spacing = scan.spacing
    if scan.is_volume:
        lesions = lesion_table(prediction.mask, prediction.probabilities, spacing)
        rows = lesions_to_rows(lesions)
        if scan.affine is not None:
            for row, lesion in zip(rows, lesions):
                world = scan.affine @ np.array([*lesion.centroid, 1.0])
                row.update({"centroid_x_mm": world[0], "centroid_y_mm": world[1], "centroid_z_mm": world[2]})
        return rows
    rows = []
    for z in range(scan.n_slices):
        in_plane = None if spacing is None else spacing[1:]
        for row in lesions_to_rows(lesion_table(prediction.mask[z], prediction.probabilities[z], in_plane)):
            rows.append({"slice_index": z, **row} if scan.n_slices > 1 else row)
    return rows


def write_outputs(scan: Scan, prediction: Prediction, out_dir: Path, stem: str) -> SegmentOutputs:
    out_dir.mkdir(parents=True, exist_ok=True)
    if scan.n_slices == 1 and not scan.is_volume:
        mask_path = out_dir / f"{stem}_mask.png"
        write_mask_png(prediction.mask[0], mask_path)
    else:
        mask_path = out_dir / f"{stem}_mask.nii.gz"
        write_mask_nifti(prediction.mask, scan, mask_path)
    display = window_to_uint8(scan.pixels, DISPLAY_PERCENTILES)
    overlay_path = out_dir / f"{stem}_overlay.png"
    if not cv2.imwrite(str(overlay_path), cv2.cvtColor(overlay_stack(display, prediction.mask), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {overlay_path}")
    rows = lesion_rows(scan, prediction)
    lesions_path = out_dir / f"{stem}_lesions.csv"
    with open(lesions_path, "w", newline="") as fh:
        fields = list(rows[0]) if rows else ["label", "size_px", "centroid_row", "centroid_col", "mean_probability"]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return SegmentOutputs(mask_path, overlay_path, lesions_path, len(rows))


def segment_file(
    predictor: Predictor,
    source: str | Path,
    out_dir: str | Path,
    threshold: float | None = None,
    tta: bool | None = None,
    min_lesion_size: int | None = None,
    color: str = "auto",
    progress: Progress | None = None,
    stem: str | None = None,
) -> SegmentOutputs:
    """Read ``source``, segment it, write its outputs into ``out_dir`` as ``<stem>_*`` (default:
    the input's name); raises ``MetaSegError`` for bad input, ``OSError`` if it cannot write."""
    scan = read_scan(source, color=color)  # type: ignore[arg-type]
    prediction = predictor.predict(scan, threshold, tta, min_lesion_size, progress)
    return write_outputs(scan, prediction, Path(out_dir), stem or output_stem(source))


__all__ = ["SegmentOutputs", "lesion_rows", "output_stem", "segment_file", "write_outputs"]
