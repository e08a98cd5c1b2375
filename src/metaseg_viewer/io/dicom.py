"""DICOM input: one file (2-D or multi-frame) or a folder holding one series, as a :class:`Scan`.

Conventions: slices are sorted ascending along the slice normal ``cross(row cosine, column
cosine)`` (for a standard axial series: most inferior first), falling back to InstanceNumber
when positions are missing; in-plane pixel order is kept as stored. The modality LUT
(RescaleSlope/Intercept) is applied, giving float32 when it is not the identity; MONOCHROME1 is
inverted so bright means high signal. Spacing is ``(dz, dy, dx)`` with PixelSpacing =
``[row spacing dy, column spacing dx]``. The affine maps ``(z, row, column)`` to RAS+ mm
(DICOM's LPS with x and y negated). Called through :func:`metaseg_viewer.io.read_scan`.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from metaseg_viewer.errors import InputError, UnsupportedFormatError
from metaseg_viewer.io.channels import ColorMode, reduce_channels
from metaseg_viewer.io.decoding import ErrorTypes, corrupt
from metaseg_viewer.io.detect import HEAD_BYTES, detect
from metaseg_viewer.io.dicom_values import (
    check_functional_groups,
    check_pixel_module,
    integer,
    number,
)
from metaseg_viewer.io.limits import ACCEPTED_FORMATS, ReadLimits, check_dims, check_size
from metaseg_viewer.scan import DicomSource, Scan

#: What pydicom raises on truncated or corrupt DICOM data, in dcmread and when an element is
#: first accessed (pydicom converts element values lazily): InvalidDicomError (not DICOM after
#: all), OSError and EOFError from short reads, struct.error from truncated tag headers,
#: BytesLengthException from a value whose length does not fit its VR, ValueError from values
#: that do not convert (numbers, UIDs, text encodings), and NotImplementedError for an unknown
#: VR ("Unknown Value Representation") or transfer syntax. The AttributeError and TypeError that
#: its pixel decoders raise for a missing or multi-valued Image Pixel element are pre-empted by
#: :func:`~metaseg_viewer.io.dicom_values.check_pixel_module` (a ValueError), so those two types
#: always mean a bug.
DICOM_ERRORS: ErrorTypes = (InvalidDicomError, OSError, EOFError, struct.error,
                             BytesLengthException, ValueError, NotImplementedError)
#: Decoding pixel data adds RuntimeError: pydicom's "Unable to decompress ... because all plugins
#: are missing dependencies" for a compressed transfer syntax no installed plugin decodes.
_PIXEL_ERRORS: ErrorTypes = (*DICOM_ERRORS, RuntimeError)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_NO_PIXELS_IN_FOLDER = ("the DICOM files have no pixel data (PixelData element missing): DICOMDIRs, reports "
                        "and other non-image objects hold none. Give image DICOM files")


@dataclass
class _Frame:
    """One 2-D frame with the geometry DICOM gives for it (LPS, mm)."""

    pixels: np.ndarray
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    instance: int
    monochrome1: bool
    slice_gap: float | None  # SpacingBetweenSlices, else SliceThickness
    source: tuple[int, int]  # (index of its dataset, 1-based frame number): DicomSource.frames


def read_dicom_file(fh: BinaryIO, *, label: str, color: ColorMode, limits: ReadLimits,
                    preamble: bool) -> Scan | None:
    """Read one DICOM file; without ``preamble`` return None unless it parses with pixel data."""
    try:
        ds = pydicom.dcmread(fh, force=not preamble)
    except DICOM_ERRORS as err:
        if not preamble:
            return None
        raise corrupt(label, "DICOM", err) from err
    if not _has_pixels(ds):
        if not preamble:
            return None
        raise InputError(f"{label}: {_no_pixels(ds)}. Accepted: {ACCEPTED_FORMATS}.")
    return _interpret([ds], label, color, limits)


def _no_pixels(ds: Dataset) -> str:
    """Why a DICOM file has no image: nothing after its header (truncated), or another kind of
    object (its SOP class named where it says)."""
    if len(ds) == 0:
        return ("the DICOM file ends after its file meta header, with no data set: it is truncated "
                "or not a DICOM image. Give complete image DICOM files")
    sop = ds.get("SOPClassUID")
    kind = f" (SOP class {getattr(sop, 'name', sop)})" if sop else ""
    return f"the DICOM file{kind} has no pixel data (PixelData element missing). Give image DICOM files"


def read_dicom_folder(folder: Path, *, label: str, color: ColorMode, limits: ReadLimits) -> Scan:
    """Read the one series in ``folder`` (not its subfolders), ignoring non-DICOM files."""
    datasets: list[Dataset] = []
    n_dicom = 0
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        ds = _read_header(path, limits)
        if ds is None:
            continue
        n_dicom += 1
        if _has_pixels(ds):
            datasets.append(ds)
    if not datasets:
        problem = _NO_PIXELS_IN_FOLDER if n_dicom else "the folder holds no DICOM files (subfolders are " \
                                             "not searched)"
        raise InputError(f"{label}: {problem}. Accepted: {ACCEPTED_FORMATS}.")
    return _interpret(datasets, label, color, limits)


def series_uid(data: bytes) -> str | None:
    """The SeriesInstanceUID of a DICOM file's bytes (header only), None when it has none or
    does not parse (such a file is then read, and reported, on its own)."""
    try:
        ds = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, force=True)
        uid = ds.get("SeriesInstanceUID")
    except DICOM_ERRORS:
        return None
    return str(uid) if uid else None


def read_dicom_uploads(files: Sequence[tuple[str, bytes]], *, label: str, color: ColorMode,
                       limits: ReadLimits) -> Scan:
    """Read one series from the bytes of its files (a browser upload of a series' files)."""
    datasets: list[Dataset] = []
    total = 0
    for name, data in files:
        check_size(name, len(data), limits)
        total += len(data)
        check_size(label, total, limits)
        kind = detect(data[:HEAD_BYTES])
        if kind not in ("dicom", "dicom-raw"):
            raise UnsupportedFormatError(f"{name}: not a DICOM file, so it cannot be part of a DICOM series. "
                                         "Accepted: the .dcm files of one series together, or any one "
                                         f"other file on its own ({ACCEPTED_FORMATS}).")
        try:
            ds = pydicom.dcmread(BytesIO(data), force=kind == "dicom-raw")
        except DICOM_ERRORS as err:
            raise corrupt(name, "DICOM", err) from err
        if _has_pixels(ds):
            datasets.append(ds)
    if not datasets:
        raise InputError(f"{label}: {_NO_PIXELS_IN_FOLDER}. Accepted: {ACCEPTED_FORMATS}.")
    return _interpret(datasets, label, color, limits)


def _has_pixels(ds: Dataset) -> bool:
    return "PixelData" in ds and "Rows" in ds and "Columns" in ds


def _interpret(datasets: list[Dataset], label: str, color: ColorMode,
               limits: ReadLimits) -> Scan:
    """Check, decode and assemble the datasets of one series.

    pydicom converts elements only when they are accessed, so a corrupt element surfaces here
    rather than in ``dcmread``; it is reported as InputError like any decoder error.
    """
    try:
        series = Counter(str(ds.get("SeriesInstanceUID", "")) for ds in datasets)
        if len(series) > 1:
            listed = "; ".join(f"{uid or '(none)'} ({n} files)" for uid, n in series.items())
            raise InputError(f"{label}: the folder holds {len(series)} DICOM series ({listed}). "
                             "Accepted: a folder holding the files of one series.")
        for ds in datasets:
            _set_transfer_syntax(ds, label)
        _check_headers(datasets, label, limits)
        frames = [frame for index, ds in enumerate(datasets) for frame in _frames(ds, index, label)]
        return _to_scan(frames, datasets, label, color)
    except InputError:
        raise
    except DICOM_ERRORS as err:
        raise corrupt(label, "DICOM", err) from err


def _read_header(path: Path, limits: ReadLimits) -> Dataset | None:
    """The dataset of a DICOM file (pixels read lazily), or None for a non-DICOM file."""
    kind = None
    try:
        with path.open("rb") as fh:
            kind = detect(fh.read(HEAD_BYTES))
        if kind not in ("dicom", "dicom-raw"):
            return None
        check_size(str(path), path.stat().st_size, limits)
        return pydicom.dcmread(path, defer_size="64 KB", force=kind == "dicom-raw")
    except InputError:
        raise
    except DICOM_ERRORS as err:
        if kind == "dicom-raw":
            return None
        raise corrupt(str(path), "DICOM", err) from err


def _set_transfer_syntax(ds: Dataset, label: str) -> Dataset:
    """Give a file without meta header the syntax it was parsed with, so pixels can decode."""
    meta = getattr(ds, "file_meta", {})
    syntax = meta.get("TransferSyntaxUID")
    if "TransferSyntaxUID" in meta and not (isinstance(syntax, UID) and syntax):
        # pydicom's decoders would fail on it with AttributeError or TypeError
        raise corrupt(label, "DICOM", f"TransferSyntaxUID is {syntax!r}, not one UID")
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        ds.ensure_file_meta()
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _check_headers(datasets: list[Dataset], label: str, limits: ReadLimits) -> None:
    for ds in datasets:
        check_functional_groups(ds, label)
    sizes = {(integer(ds.get("Rows"), "Rows", label, 0),
              integer(ds.get("Columns"), "Columns", label, 0)) for ds in datasets}
    if len(sizes) > 1:
        raise InputError(f"{label}: the slices have different sizes {sorted(sizes)}. "
                         "Accepted: a series whose slices all have the same rows and columns.")
    rows, columns = sizes.pop()
    n_frames = sum(integer(ds.get("NumberOfFrames"), "NumberOfFrames", label, 0) or 1
                   for ds in datasets)
    first = datasets[0]
    bits = integer(first.get("BitsAllocated"), "BitsAllocated", label, 8) or 8
    samples = integer(first.get("SamplesPerPixel"), "SamplesPerPixel", label, 1) or 1
    check_dims(label, n_frames, rows, columns, limits, max(1, bits // 8) * samples)


def _frames(ds: Dataset, index: int, label: str) -> list[_Frame]:
    """Decode a dataset's frames and attach each one's geometry (``index``: the dataset's place)."""
    try:
        check_pixel_module(ds)
        pixels = ds.pixel_array
    except _PIXEL_ERRORS as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        which = f"{syntax.name} ({syntax})" if syntax else "unknown transfer syntax"
        raise InputError(f"{label}: cannot decode DICOM pixel data with {which}: {err}. "
                         f"Accepted: DICOM in one of {_decodable_syntaxes()}.") from err
    n_frames = integer(ds.get("NumberOfFrames"), "NumberOfFrames", label, 0) or 1
    colour = integer(ds.get("SamplesPerPixel"), "SamplesPerPixel", label, 1) > 1
    if n_frames == 1 or pixels.ndim == (3 if colour else 2):
        pixels = pixels[None]
    mono1 = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    frames = []
    for i in range(pixels.shape[0]):
        position = _functional(ds, i, "PlanePositionSequence", "ImagePositionPatient",
                               top_level=i == 0)
        orientation = _functional(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _functional(ds, i, "PixelMeasuresSequence", "PixelSpacing")
        slope = number(_functional(ds, i, "PixelValueTransformationSequence", "RescaleSlope"),
                        "RescaleSlope", label)
        intercept = number(_functional(ds, i, "PixelValueTransformationSequence",
                                        "RescaleIntercept"), "RescaleIntercept", label)
        gaps = (number(_functional(ds, i, "PixelMeasuresSequence", k), k, label)
                for k in ("SpacingBetweenSlices", "SliceThickness"))
        gap = next((g for g in gaps if g is not None and g > 0), None)
        frames.append(_Frame(
            pixels=pixels[i],
            position=_vector(position, 3),
            orientation=_vector(orientation, 6),
            pixel_spacing=_pair(_vector(spacing, 2)),
            slope=1.0 if slope is None else slope,
            intercept=0.0 if intercept is None else intercept,
            instance=integer(ds.get("InstanceNumber"), "InstanceNumber", label, 0),
            monochrome1=mono1,
            slice_gap=gap,
            source=(index, i + 1),
        ))
    return frames


def _functional(ds: Dataset, index: int, sequence: str, keyword: str,
                top_level: bool = True) -> Any:
    """An attribute from the per-frame or shared functional groups, else from the dataset."""
    for groups, item in (("PerFrameFunctionalGroupsSequence", index),
                         ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        inner = seq[item].get(sequence) if seq is not None and len(seq) > item else None
        if inner and keyword in inner[0]:
            return inner[0].get(keyword)
    return ds.get(keyword) if top_level else None


def _vector(value: Any, length: int) -> np.ndarray | None:
    try:
        vector = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return vector if vector.shape == (length,) and np.all(np.isfinite(vector)) else None


def _pair(vector: np.ndarray | None) -> tuple[float, float] | None:
    return None if vector is None else (float(vector[0]), float(vector[1]))


def _to_scan(frames: list[_Frame], datasets: list[Dataset], label: str, color: ColorMode) -> Scan:
    notes = [f"DICOM, {len(frames)} slice{'s' if len(frames) > 1 else ''}"]
    frames, geometry = _sort(frames, label, notes)
    if any(f.slope != 1.0 or f.intercept != 0.0 for f in frames):
        stack = np.stack([f.pixels.astype(np.float32) * np.float32(f.slope)
                          + np.float32(f.intercept) for f in frames])
        notes.append("modality LUT (RescaleSlope/Intercept) applied, float32")
    else:
        stack = np.stack([f.pixels for f in frames])
    if stack.ndim == 4:
        stack, note = reduce_channels(stack, "flair" if color == "flair" else "gray")
        notes.append(note)
    inverted = np.array([f.monochrome1 for f in frames])
    if inverted.any():  # v -> max + min - v keeps the dtype's range and the series' range
        wide = stack.astype(np.float64 if stack.dtype.kind == "f" else np.int64)
        flipped = wide.max() + wide.min() - wide
        stack = np.where(inverted[:, None, None], flipped, wide).astype(stack.dtype)
        notes.append("MONOCHROME1 inverted")
    spacing, affine = geometry
    first = datasets[0]
    metadata = {key: str(first.get(keyword, "")) for key, keyword in (
        ("modality", "Modality"), ("series_description", "SeriesDescription"),
        ("protocol_name", "ProtocolName"), ("contrast_agent", "ContrastBolusAgent"),
        ("series_uid", "SeriesInstanceUID"))}
    dicom = DicomSource(tuple(_header(ds) for ds in datasets), tuple(f.source for f in frames))
    return Scan(pixels=np.ascontiguousarray(stack), spacing=spacing, affine=affine,
                is_volume=True, source=label, description=", ".join(notes), metadata=metadata, dicom=dicom)


_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _header(ds: Dataset) -> Dataset:
    """``ds`` without its pixel data (elements shared, not converted), kept for the SEG writer."""
    drop = {Tag(keyword) for keyword in _PIXEL_KEYWORDS}
    header = Dataset({tag: ds.get_item(tag) for tag in ds.keys() if tag not in drop})
    header.file_meta = getattr(ds, "file_meta", FileMetaDataset())
    return header


def _sort(frames: list[_Frame], label: str, notes: list[str]
          ) -> tuple[list[_Frame], tuple[tuple[float, float, float] | None, np.ndarray | None]]:
    """Order frames along the slice normal and derive spacing and affine from them."""
    first = frames[0]
    if first.orientation is not None:
        for f in frames:
            if f.orientation is None or not np.allclose(f.orientation, first.orientation,
                                                        atol=1e-4):
                raise InputError(f"{label}: the slices have different orientations (e.g. a "
                                 "localizer). Accepted: a series of parallel slices.")
    positioned = first.orientation is not None and all(f.position is not None for f in frames)
    if positioned:
        normal = np.cross(first.orientation[:3], first.orientation[3:])
        keys = np.array([float(f.position @ normal) for f in frames])
        order = np.argsort(keys, kind="stable")
        frames, keys = [frames[i] for i in order], keys[order]
        if len(frames) > 1 and np.min(np.diff(keys)) < 1e-4:
            raise InputError(f"{label}: several images lie at the same slice position "
                             "(multi-echo, diffusion or time series?). Accepted: one image per "
                             "position, i.e. a single 3-D series.")
        notes.append("sorted along the slice normal")
    else:
        frames = sorted(frames, key=lambda f: f.instance)
        notes.append("sorted by InstanceNumber (positions missing)")
    first = frames[0]
    if first.pixel_spacing is None:
        return frames, (None, None)
    dy, dx = first.pixel_spacing
    if positioned and len(frames) > 1:
        gaps = np.diff(keys)
        dz = float((keys[-1] - keys[0]) / (len(frames) - 1))
        if gaps.max() - gaps.min() > 0.01 * dz:
            notes.append(f"uneven slice gaps {gaps.min():.3g}-{gaps.max():.3g} mm")
    else:
        dz = first.slice_gap if first.slice_gap is not None else float("nan")
    spacing = (dz, float(dy), float(dx))
    if first.orientation is None or first.position is None:
        return frames, (spacing, None)
    row_cos, col_cos = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_cos, col_cos)
    affine = np.eye(4)
    affine[:3, 0] = _LPS_TO_RAS @ normal * (dz if np.isfinite(dz) else 1.0)
    affine[:3, 1] = _LPS_TO_RAS @ col_cos * dy
    affine[:3, 2] = _LPS_TO_RAS @ row_cos * dx
    affine[:3, 3] = _LPS_TO_RAS @ first.position
    return frames, (spacing, affine)


def _decodable_syntaxes() -> str:
    """Names of the transfer syntaxes that pydicom can decode with what is installed."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import AllTransferSyntaxes

    names = []
    for uid in AllTransferSyntaxes:
        try:
            if get_decoder(uid).is_available:
                names.append(uid.name)
        except NotImplementedError:  # pydicom has no decoder at all for this syntax
            continue
    return ", ".join(names)
