"""NIfTI-1/NIfTI-2 input (reoriented to axial slices) and NIfTI mask output.

Reading brings every volume to axis codes ``("S", "P", "L")`` for ``(z, row, column)``: slice 0
is the most inferior, rows run anterior to posterior and columns patient-right to patient-left
(radiological display), whatever voxel order the file stores (sagittal, LPS, ...). The returned
affine maps the new indices to the same RAS+ world points as the file's affine does for the
stored ones; the file's affine is kept as ``source_affine`` so that masks can be written back in
the file's own voxel order. Called through :mod:`metaseg_viewer.io`.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from typing import BinaryIO

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.fileholders import FileHolder
from nibabel.orientations import (
    aff2axcodes,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from nibabel.spatialimages import HeaderDataError
from nibabel.wrapstruct import WrapStructError

from metaseg_viewer.errors import InputError
from metaseg_viewer.io.decoding import ErrorTypes, corrupt
from metaseg_viewer.io.limits import ReadLimits, check_dims
from metaseg_viewer.scan import Scan

#: What nibabel (and the gzip stream under it) raises on truncated or corrupt NIfTI data, seen
#: by fuzzing valid files: WrapStructError ("Binary block is wrong size") for a short header;
#: HeaderDataError ("data code ... not recognized") and ImageFileError for headers nibabel
#: refuses; ValueError from header values and voxel reads that do not fit (numpy's LinAlgError,
#: from the orientation of a NaN affine, is one); OverflowError from numpy for offsets or sizes
#: beyond a C long; OSError ("Expected 432 bytes, got 340") and EOFError from short reads;
#: gzip.BadGzipFile (an OSError) and zlib.error from a corrupt .nii.gz; struct.error from the
#: sizeof_hdr probe of a stream shorter than 4 bytes.
NIFTI_ERRORS: ErrorTypes = (
    WrapStructError, HeaderDataError, ImageFileError, ValueError, OverflowError, OSError,
    EOFError, gzip.BadGzipFile, zlib.error, struct.error)

#: Axis codes of Scan.pixels for (z, row, column).
AXIAL_CODES = ("S", "P", "L")


def read_nifti(stream: BinaryIO, *, label: str, limits: ReadLimits) -> Scan:
    """Read a NIfTI volume from a seekable binary stream (a file or a gzip stream over one).

    The header is checked against ``limits`` before any voxel is read, so the stream is never
    decompressed further than the header's own dimensions allow.
    """
    try:
        first = stream.read(4)
        stream.seek(0)
        version = 2 if 540 in (struct.unpack("<i", first)[0], struct.unpack(">i", first)[0]) else 1
        klass = nib.Nifti2Image if version == 2 else nib.Nifti1Image
        image = klass.from_file_map({"image": FileHolder(fileobj=stream)})
        header = image.header
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        affine = np.asarray(image.affine, dtype=float)
        if not np.isfinite(affine).all():
            raise InputError(f"{label}: the NIfTI affine (sform/qform, or pixdim) holds NaN or infinite values "
                             f"({affine.tolist()}), so the voxels have no position. Accepted: volumes with a "
                             "finite affine.")
        spatial, notes = _spatial_shape(shape, label)
        if header.get_data_offset() > limits.max_bytes:  # seeking there would inflate a .gz
            raise InputError(f"{label}: NIfTI vox_offset {header.get_data_offset()} is beyond "
                             "ReadLimits.max_bytes. Accepted: a NIfTI volume up to that size.")
        transform = _to_axial(affine, spatial, label)
        z, h, w = (spatial[int(axis)] for axis in transform[:, 0].argsort())
        if dtype.kind not in "biuf":
            raise InputError(f"{label}: NIfTI data type {dtype} not accepted. Accepted: a "
                             "single-channel integer or float volume.")
        scaled = float(image.dataobj.slope) != 1.0 or float(image.dataobj.inter) != 0.0
        check_dims(label, z, h, w, limits, max(dtype.itemsize, 4 if scaled else 1))
        raw = np.asarray(image.dataobj.get_unscaled()).reshape(spatial)
    except InputError:
        raise
    except NIFTI_ERRORS as err:
        raise corrupt(label, "NIfTI", err) from err
    # The loaded header's scl_* are reset to nan; the proxy keeps the file's scaling.
    slope, inter = float(image.dataobj.slope), float(image.dataobj.inter)
    if slope != 1.0 or inter != 0.0:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow → inf, refused by read_scan
            data = raw.astype(np.float32) * np.float32(slope) + np.float32(inter)
        notes.append("scl_slope/scl_inter applied, float32")
    else:
        data = raw if raw.dtype.isnative else raw.astype(raw.dtype.newbyteorder("="))
    pixels = np.ascontiguousarray(apply_orientation(data, transform))
    new_affine = affine @ inv_ornt_aff(transform, spatial)
    spacing = tuple(float(np.linalg.norm(new_affine[:3, i])) for i in range(3))
    stored = "".join(str(c) for c in aff2axcodes(affine))
    codes = "".join(str(c) for c in aff2axcodes(new_affine))
    plane = "axial slices, inferior first" if codes == "".join(AXIAL_CODES) else "one non-axial slice in its own plane"
    notes.insert(0, f"NIfTI-{version} volume {shape} stored as {stored}, reoriented to {codes} ({plane})")
    return Scan(pixels=pixels, spacing=spacing, affine=new_affine, source_affine=affine,
                is_volume=True, source=label, description=", ".join(notes), metadata={"axcodes": codes})


def write_mask(mask3d: np.ndarray, scan: Scan, path: str | os.PathLike[str]) -> None:
    """Implementation of :func:`metaseg_viewer.io.write_mask_nifti` (see there)."""
    write_volume(_as_labels(mask3d, scan.shape), scan, path)


def mask_bytes(mask3d: np.ndarray, scan: Scan) -> bytes:
    """Implementation of :func:`metaseg_viewer.io.encode_mask_nifti` (see there)."""
    return volume_bytes(_as_labels(mask3d, scan.shape), scan)


def volume_bytes(volume: np.ndarray, scan: Scan) -> bytes:
    """Implementation of :func:`metaseg_viewer.io.encode_nifti` (see there)."""
    return gzip.compress(volume_image(volume, scan).to_bytes(), compresslevel=6, mtime=0)


def write_volume(volume: np.ndarray, scan: Scan, path: str | os.PathLike[str]) -> None:
    """Implementation of :func:`metaseg_viewer.io.write_nifti` (see there)."""
    if not str(path).endswith((".nii", ".nii.gz")):
        raise InputError(f"{path}: a NIfTI path must end in .nii or .nii.gz")
    nib.save(volume_image(volume, scan), str(path))


def volume_image(volume: np.ndarray, scan: Scan) -> nib.Nifti1Image:
    """``volume`` (``scan.shape``) as a NIfTI image in the scan's geometry (see write_nifti)."""
    if volume.shape != scan.shape:
        raise InputError(f"volume shape {volume.shape} does not match the scan's {scan.shape}")
    if scan.source_affine is not None:
        affine = np.asarray(scan.source_affine, dtype=float)
        codes = tuple(scan.metadata.get("axcodes", "".join(AXIAL_CODES)))
        back = ornt_transform(axcodes2ornt(codes), io_orientation(affine))
        data, code = apply_orientation(volume, back), 1
    elif scan.affine is not None:
        data, code = volume.transpose(2, 1, 0), 1
        affine = np.asarray(scan.affine, dtype=float)[:, [2, 1, 0, 3]]
    else:
        # No geometry: encode the array's own convention (columns patient-right to left, rows
        # anterior to posterior, slices inferior to superior) so reading it back is the identity.
        dz, dy, dx = scan.spacing if scan.spacing is not None else (1.0, 1.0, 1.0)
        data, code = volume.transpose(2, 1, 0), 0
        affine = np.diag([-dx, -dy, dz if np.isfinite(dz) else 1.0, 1.0])
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.set_data_dtype(volume.dtype)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=code)
    image.set_sform(affine, code=code or 2)
    return image


def _as_labels(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Check a mask against ``shape`` and return it as uint8 labels (bool → 0/1)."""
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise InputError(f"mask shape {mask.shape} does not match the scan's {shape}")
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if mask.size and (not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 255
                      or not np.all(mask == np.round(mask))):
        raise InputError("mask must hold bool or integer labels 0..255")
    return mask.astype(np.uint8)


def _spatial_shape(shape: tuple[int, ...], label: str) -> tuple[tuple[int, int, int], list[str]]:
    """3-D shape to read: 2-D gets a slice axis; trailing singleton dimensions are dropped."""
    notes = []
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
        notes.append("singleton trailing dimension dropped")
    if len(shape) > 3:
        raise InputError(f"{label}: {len(shape)}-D NIfTI volume (shape {shape}) not accepted: "
                         "give one 3-D volume.")
    if len(shape) < 2:
        raise InputError(f"{label}: {len(shape)}-D NIfTI data (shape {shape}) not accepted: "
                         "give a 2-D image or one 3-D volume.")
    if len(shape) == 2:
        shape = (*shape, 1)
        notes.append("2-D image as one slice")
    if 0 in shape:
        raise InputError(f"{label}: the NIfTI volume has zero size {shape}. Accepted: "
                         "volumes with at least one voxel along each axis.")
    return (shape[0], shape[1], shape[2]), notes


# A single coronal or sagittal slice stays in its own plane (reorienting it to axial would cut
# it into one-pixel strips): slice axis first, rows superior to inferior, radiological columns.
_SINGLE_SLICE_CODES = {0: ("L", "I", "P"), 1: ("A", "I", "L"), 2: AXIAL_CODES}


def _to_axial(affine: np.ndarray, spatial: tuple[int, int, int], label: str) -> np.ndarray:
    """The nibabel orientation transform from the file's voxel axes to :data:`AXIAL_CODES`
    (or, for a lone non-axial slice, to its own plane's display orientation)."""
    ornt = io_orientation(affine)
    if np.isnan(ornt).any():
        raise InputError(f"{label}: the NIfTI affine is degenerate ({affine.tolist()}). "
                         "Accepted: volumes whose affine maps voxel axes to distinct directions.")
    singletons = [axis for axis, n in enumerate(spatial) if n == 1]
    codes = AXIAL_CODES
    if len(singletons) == 1:
        codes = _SINGLE_SLICE_CODES[int(ornt[singletons[0], 0])]
    return ornt_transform(ornt, axcodes2ornt(codes))
