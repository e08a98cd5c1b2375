"""True masks that carry their own geometry — DICOM SEG and NRRD — read and laid on a scan.

Other mask files (PNG, TIFF, NIfTI, a DICOM image) are read as scans and must match the image's
array shape; these two are placed voxel by voxel through their position and orientation, so a
SEG holding only its lesion frames, or a ``.seg.nrrd`` stored in another axis order, still
scores against the right slices. Formats are told by content (:func:`placed_kind`).
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np

from metaseg_viewer.errors import InputError
from metaseg_viewer.io.detect import HEAD_BYTES, detect
from metaseg_viewer.io.limits import ReadLimits, check_size
from metaseg_viewer.io.read import Source
from metaseg_viewer.scan import Scan


def placed_kind(data: bytes) -> str | None:
    """``"dicom-seg"`` or ``"nrrd"`` for a mask placed by geometry, else ``None``."""
    kind = detect(data[:HEAD_BYTES])
    if kind == "nrrd":
        return kind
    if kind in ("dicom", "dicom-raw"):
        import pydicom

        from metaseg_viewer.io.dicom import DICOM_ERRORS
        from metaseg_viewer.io.dicom_seg import is_seg

        try:
            header = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, force=True)
        except DICOM_ERRORS:
            return None  # not parseable here: the ordinary reader says why
        return "dicom-seg" if is_seg(header) else None
    return None


def read_placed_mask(source: Source, scan: Scan, label: str,
                     limits: ReadLimits = ReadLimits()) -> np.ndarray | None:
    """The bool mask of ``scan.shape`` from a DICOM SEG or NRRD ``source`` (path or bytes);
    ``None`` when it is neither, so the caller reads it as an ordinary mask file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            if detect(fh.read(HEAD_BYTES)) not in ("nrrd", "dicom", "dicom-raw"):
                return None
        check_size(label, path.stat().st_size, limits)
        data = path.read_bytes()
    check_size(label, len(data), limits)
    kind = placed_kind(data)
    if kind is None:
        return None
    if kind == "nrrd":
        from metaseg_viewer.io.nrrd import read_nrrd_mask

        return read_nrrd_mask(data, scan, label, limits)
    from metaseg_viewer.io.dicom_seg import read_seg_mask

    return read_seg_mask(data, scan, label, limits)


def needs_geometry(label: str) -> InputError:
    """The error for a SEG or NRRD mask offered where only the image's shape is known."""
    return InputError(f"{label}: a DICOM SEG or NRRD mask is laid on the image by geometry, which was not given "
                      "here. Accepted: pass the image's Scan, or give a PNG/TIFF/NIfTI mask of the image's size")
