"""Read brain MRI from the files users hold into one :class:`Scan`: detect, check, dispatch.

Formats are recognised by their content (:func:`~metaseg_viewer.io.detect.detect`), never by the
file name, because uploads and downloads lose or change extensions. Every problem with the input
surfaces as :class:`InputError` whose message says what was wrong and what is accepted
(:data:`ACCEPTED_FORMATS`); a decoder's error for corrupt data never escapes :func:`read_scan`,
while a bug in a reader surfaces as itself.

The DICOM and NIfTI readers are imported only when such a file is read, which keeps importing
:mod:`metaseg_viewer.io` cheap (no pydicom, no nibabel).
"""

from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np

from metaseg_viewer.errors import InputError, UnsupportedFormatError
from metaseg_viewer.io.channels import COLOR_MODES, ColorMode
from metaseg_viewer.io.detect import HEAD_BYTES, detect
from metaseg_viewer.io.limits import ACCEPTED_FORMATS, ReadLimits, check_size
from metaseg_viewer.io.raster import read_pillow, read_tiff
from metaseg_viewer.scan import Scan

Source = str | os.PathLike[str] | bytes


def read_scan(
    source: Source,
    *,
    name: str = "",
    color: ColorMode = "auto",
    limits: ReadLimits = ReadLimits(),
) -> Scan:
    """Read an image, a DICOM file or series folder, or a NIfTI volume into a :class:`Scan`.

    Args:
        source: a file path, a folder of one DICOM series, or the bytes of an upload.
        name: the upload's original file name (also overrides the path's name), used only in
            messages and for the ``auto`` colour rule.
        color: how a multi-channel image becomes one channel (see
            :func:`~metaseg_viewer.io.to_single_channel`).
            ``auto``: a 3-channel TIFF named like an LGG kaggle_3m image
            (``TCGA_<site>_<id>_<date>_<N>.tif``, not ``..._mask.tif``) is that data set's
            pre-contrast T1 / FLAIR / post-contrast T1 stack, so its FLAIR channel (1) is taken;
            the file name is the only thing that tells it apart from an ordinary colour picture,
            which gets luminance. ``flair`` forces channel 1, ``gray`` forces luminance.
        limits: size limits checked before decoding.

    Returns:
        A Scan as documented there: images keep their dtype with ``spacing`` None; DICOM and
        NIfTI give ``is_volume`` True with spacing and a RAS+ affine. ``description`` records
        how the pixels were obtained (which channel, LUT, reorientation).

    Raises:
        InputError: for anything that cannot be read, saying what is accepted.

    Decoders' warnings (numpy overflow, libraries' notes on odd headers) never reach the
    user's terminal; what matters to the result is in ``Scan.warnings`` (:func:`check_values`).
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return check_values(_read_scan(source, name, color, limits))


def _read_scan(source: Source, name: str, color: ColorMode, limits: ReadLimits) -> Scan:
    if color not in COLOR_MODES:
        raise InputError(f"color must be one of {COLOR_MODES}, got {color!r}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "upload"
        check_size(label, len(data), limits)
        return _read_stream(BytesIO(data), data[:HEAD_BYTES], label, name, color, limits)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"read_scan takes a path or bytes, got {type(source).__name__}. "
                         f"Accepted: {ACCEPTED_FORMATS}.")
    path = Path(source)
    label = str(path)
    if not path.exists():
        raise InputError(f"{label}: no such file or folder. Accepted: {ACCEPTED_FORMATS}.")
    try:
        if path.is_dir():
            from metaseg_viewer.io.dicom import read_dicom_folder

            return read_dicom_folder(path, label=label, color=color, limits=limits)
        check_size(label, path.stat().st_size, limits)
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
            fh.seek(0)
            return _read_stream(fh, head, label, name or path.name, color, limits)
    except OSError as err:  # permission denied, I/O error while opening
        raise InputError(f"{label}: cannot be opened ({err}). Accepted: {ACCEPTED_FORMATS}.") \
            from err


def read_scans(
    files: list[tuple[str, bytes]],
    *,
    color: ColorMode = "auto",
    limits: ReadLimits = ReadLimits(),
) -> list[tuple[str, Scan | InputError]]:
    """Several uploaded files as scans, each with a label: DICOM files of one series (same
    SeriesInstanceUID) together form one volume, sorted along the slice normal as a series
    folder would be; any other file — a lone DICOM image too — is one scan. A file that cannot
    be read gives its InputError in place of a scan, so the others are still usable.

    ``files`` are ``(name, bytes)``; results come in upload order (a series at the place of its
    first file).
    """
    if not files:
        raise InputError(f"no files given. Accepted: {ACCEPTED_FORMATS}.")
    from metaseg_viewer.io.dicom import series_uid

    groups: dict[str, list[int]] = {}
    for index, (_, data) in enumerate(files):
        if detect(data[:HEAD_BYTES]) in ("dicom", "dicom-raw"):
            uid = series_uid(data)
            if uid is not None:
                groups.setdefault(uid, []).append(index)
    series_of = {i: members for members in groups.values() if len(members) > 1 for i in members}
    results: list[tuple[str, Scan | InputError]] = []
    for index, (name, data) in enumerate(files):
        if index in series_of:
            if index == series_of[index][0]:
                results.append(_read_series([files[i] for i in series_of[index]], color, limits))
            continue
        try:
            results.append((name, read_scan(data, name=name, color=color, limits=limits)))
        except InputError as err:
            results.append((name, err))
    return results


def _read_series(files: list[tuple[str, bytes]], color: ColorMode, limits: ReadLimits) -> tuple[str, Scan | InputError]:
    from metaseg_viewer.io.dicom import read_dicom_uploads

    label = f"DICOM series ({len(files)} files)"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return label, check_values(read_dicom_uploads(files, label=label, color=color, limits=limits))
    except InputError as err:
        return label, err


def check_values(scan: Scan) -> Scan:
    """Refuse pixels with no finite value; warn about NaN or infinite voxels and blank images,
    which would otherwise give "0 lesions" without a word."""
    pixels = scan.pixels
    notes = list(scan.warnings)
    if pixels.dtype.kind == "f":
        finite = np.isfinite(pixels)
        n_finite = int(np.count_nonzero(finite))
        if n_finite == 0:
            raise InputError(f"{scan.source}: the image holds no finite values (all {pixels.size} voxels are NaN "
                             "or infinite, e.g. from a broken scaling); there is nothing to segment. Accepted: "
                             "images with finite pixel values.")
        if n_finite < pixels.size:
            notes.append(f"{pixels.size - n_finite} of {pixels.size} voxels are NaN or infinite; they are "
                         "treated as the darkest value")
            values = pixels[finite]
        else:
            values = pixels
    else:
        values = pixels
    low, high = values.min(), values.max()
    if low == high:
        notes.append(f"the image is blank (every pixel is {low.item():g}): there is nothing to segment")
    return scan if len(notes) == len(scan.warnings) else replace(scan, warnings=tuple(notes))


def _read_stream(fh: BinaryIO, head: bytes, label: str, file_name: str, color: ColorMode,
                 limits: ReadLimits) -> Scan:
    kind = detect(head)
    if kind in ("png", "jpeg"):
        return read_pillow(fh, head, label, kind, color, limits)
    if kind == "tiff":
        return read_tiff(fh, label, file_name, color, limits)
    if kind in ("dicom", "dicom-raw"):
        from metaseg_viewer.io.dicom import read_dicom_file

        scan = read_dicom_file(fh, label=label, color=color, limits=limits,
                               preamble=kind == "dicom")
        if scan is not None:
            return scan
        kind = None
    if kind in ("nifti", "nifti-gz"):
        from metaseg_viewer.io.nifti import read_nifti

        stream = gzip.GzipFile(fileobj=fh, mode="rb") if kind == "nifti-gz" else fh
        return read_nifti(stream, label=label, limits=limits)
    problems = {
        "nifti-pair": "a NIfTI header of a .hdr/.img pair (the voxels are in another file); "
                      "convert it to a single .nii or .nii.gz",
        "gzip": "a gzip file that does not hold a NIfTI volume",
        "zip": "a ZIP archive; unpack it and give the image, volume or series folder inside",
        "nrrd": "a NRRD file, which is read only as a true mask (3D Slicer's .seg.nrrd), not as an image",
    }
    problem = problems.get(kind or "", "not an image or volume format this reader knows")
    raise UnsupportedFormatError(f"{label}: {problem}. Accepted: {ACCEPTED_FORMATS}.")
