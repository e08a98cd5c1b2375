"""Segment files and write what a user keeps: mask, overlay picture and lesion table.

The command line reads a file, chooses its model, predicts, then calls :func:`write_outputs`; it is
a library function so other tools get the same outputs and names: ``<stem>_mask.png`` (or ``_mask.nii.gz`` for a volume or stack),
``<stem>_overlay.png`` and ``<stem>_lesions.csv``; on request the mask as 3D Slicer's ``_mask.seg.nrrd``
or, for a DICOM series, a DICOM SEG ``_mask.seg.dcm``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metaseg_viewer.errors import InputError
from metaseg_viewer.io import encode_mask_nifti, encode_mask_png, strip_suffix
from metaseg_viewer.lesions import lesion_table, lesions_to_rows
from metaseg_viewer.mask_formats import MASK_FORMATS, MEDIA_TYPES, SUFFIXES, MaskFormat
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.preprocessing import DISPLAY_PERCENTILES, window_to_uint8
from metaseg_viewer.render import encode_png, overlay_stack
from metaseg_viewer.scan import Scan


@dataclass(frozen=True)
class SegmentOutputs:
    """The files written for one input, and what the user must know about how it was read."""

    mask: Path
    overlay: Path
    lesions: Path
    n_lesions: int
    description: str = ""  # how the pixels were obtained (channel, reorientation), Scan.description
    warnings: tuple[str, ...] = ()  # Scan.warnings: the result may be partial or meaningless
    rows: tuple[dict, ...] = ()  # the lesion table written to ``lesions``, as :func:`lesion_rows` gives it


def output_stem(source: str | Path) -> str:
    """File name without (double) extension: ``a/b.nii.gz`` → ``b``; a folder → its name."""
    return strip_suffix(Path(source).name)


def deidentified_stem(source: str | Path) -> str:
    """An output name that does not repeat the input's (DICOM file and folder names often carry
    the patient's name): ``scan-`` and 12 hex digits of the sha256 of ``source`` (a path or an
    upload's name), stable across runs."""
    return "scan-" + hashlib.sha256(str(source).encode()).hexdigest()[:12]


def lesion_rows(scan: Scan, mask: np.ndarray, probabilities: np.ndarray | None = None) -> list[dict]:
    """The lesion table as flat rows: 3-D lesions for a volume, else per 2-D image.

    Centroids are 0-based indices into the scan's ``(Z, H, W)`` array; where the scan has an
    affine they are also given in world millimetres (RAS+, ``centroid_x_mm`` ...), which any
    viewer showing the original file understands.
    """
    spacing = scan.spacing
    if scan.is_volume:
        lesions = lesion_table(mask, probabilities, spacing)
        rows = lesions_to_rows(lesions)
        if scan.affine is not None:
            for row, lesion in zip(rows, lesions):
                world = scan.affine @ np.array([*lesion.centroid, 1.0])
                row.update({"centroid_x_mm": world[0], "centroid_y_mm": world[1], "centroid_z_mm": world[2]})
        return rows
    rows = []
    for z in range(scan.n_slices):
        in_plane = None if spacing is None else spacing[1:]
        probs = None if probabilities is None else probabilities[z]
        for row in lesions_to_rows(lesion_table(mask[z], probs, in_plane)):
            rows.append({"slice_index": z, **row} if scan.n_slices > 1 else row)
    return rows




def mask_suffix(scan: Scan, fmt: MaskFormat = "auto") -> str:
    """The suffix of ``scan``'s mask file in ``fmt``: ``auto`` gives PNG (0/255) for a 2-D image
    and gzipped NIfTI for a volume or stack; ``nrrd`` is 3D Slicer's ``.seg.nrrd``; ``dicom-seg``
    a DICOM SEG, for a DICOM series only. Refuses PNG for more than one slice and DICOM SEG for
    other input — checked before any inference by callers that let the user choose."""
    if fmt not in MASK_FORMATS:
        raise InputError(f"mask format {fmt!r} unknown; accepted: {', '.join(MASK_FORMATS)}")
    if fmt == "png" and scan.n_slices != 1:
        raise InputError(f"a PNG mask holds one slice, but this input has {scan.n_slices}; "
                         "accepted for volumes and stacks: nifti or nrrd")
    if fmt == "dicom-seg" and (scan.dicom is None or scan.affine is None):
        raise InputError("a DICOM SEG is made for a DICOM series (it references the source images), but this "
                         "input is not one with slice positions; accepted for it: auto, png (one slice), nifti or nrrd")
    if fmt == "auto":
        fmt = "png" if scan.n_slices == 1 and not scan.is_volume else "nifti"
    return SUFFIXES[fmt]


def mask_file(scan: Scan, mask: np.ndarray, fmt: MaskFormat = "auto",
              model: tuple[str, str] = ("", "")) -> tuple[bytes, str]:
    """The mask as a user keeps it, with its suffix (:func:`mask_suffix`); NIfTI and NRRD are
    in the input's geometry. ``model``: ``(name, version)`` of the model that made the mask,
    which a DICOM SEG records as its algorithm."""
    suffix = mask_suffix(scan, fmt)
    if suffix == "_mask.png":
        return encode_mask_png(mask[0]), suffix
    if suffix == "_mask.seg.nrrd":
        from metaseg_viewer.io.nrrd import nrrd_bytes

        return nrrd_bytes(mask, scan), suffix
    if suffix == "_mask.seg.dcm":
        from metaseg_viewer.io.dicom_seg import seg_bytes

        return seg_bytes(mask, scan, model[0] or "unknown", model[1]), suffix
    return encode_mask_nifti(mask, scan), suffix


def lesion_csv(rows: list[dict]) -> str:
    """The lesion table as CSV text (a header only when there are no lesions)."""
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["label", "size_px", "centroid_row", "centroid_col", "mean_probability"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name, then rename: an interrupted run never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_outputs(scan: Scan, prediction: Prediction, out_dir: Path, stem: str,
                  fmt: MaskFormat = "auto") -> SegmentOutputs:
    """Write the mask (in ``fmt``, see :func:`mask_suffix`), overlay and lesion table of one input."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data, suffix = mask_file(scan, prediction.mask, fmt, (prediction.model_name, prediction.model_version))
    mask_path = out_dir / f"{stem}{suffix}"
    display = window_to_uint8(scan.pixels, DISPLAY_PERCENTILES)
    overlay_path = out_dir / f"{stem}_overlay.png"
    overlay = encode_png(overlay_stack(display, prediction.mask))
    rows = lesion_rows(scan, prediction.mask, prediction.probabilities)
    lesions_path = out_dir / f"{stem}_lesions.csv"
    write_atomic(mask_path, data)
    write_atomic(overlay_path, overlay)
    write_atomic(lesions_path, lesion_csv(rows).encode())
    return SegmentOutputs(mask_path, overlay_path, lesions_path, len(rows), scan.description, scan.warnings,
                          tuple(rows))


__all__ = ["MASK_FORMATS", "MEDIA_TYPES", "MaskFormat", "SegmentOutputs", "deidentified_stem", "lesion_csv", "lesion_rows", "mask_file", "mask_suffix", "output_stem", "write_atomic",
           "write_outputs"]
