"""Builders of real files for tests: the bytes of PNG, JPEG, TIFF, NIfTI and DICOM inputs.

Each writes with the format's own library (Pillow, tifffile, nibabel, pydicom), never with the
reader under test, so a test that reads them back checks the reader against the format. Imported
as ``from factories import ...`` (pytest puts ``tests/`` on ``sys.path``, as for live_server).
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from metaseg_viewer.io import write_nifti
from metaseg_viewer.samples import make_volume
from metaseg_viewer.scan import Scan


def png_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8 or uint16; (H, W), (H, W, 2|3|4)) as a PNG written by Pillow."""
    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(array: np.ndarray, **save_options: Any) -> bytes:
    """``array`` (uint8, gray or RGB) as a JPEG written by Pillow (lossy: compare with Pillow's
    own decoding, not with ``array``)."""
    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", **save_options)
    return buffer.getvalue()


def tiff_bytes(array: np.ndarray, **write_options: Any) -> bytes:
    """``array`` as a TIFF written by tifffile; ``write_options`` go to ``tifffile.imwrite``
    (``photometric``, ``byteorder``, ``bigtiff``, ``extrasamples``, ...)."""
    buffer = BytesIO()
    tifffile.imwrite(buffer, array, **write_options)
    return buffer.getvalue()


def nifti_bytes(volume: np.ndarray, affine: np.ndarray | None = None) -> bytes:
    """``volume`` as an uncompressed NIfTI-1 file (``.nii``) written by nibabel, with ``affine``
    (default identity); gzip the result for ``.nii.gz``."""
    return nib.Nifti1Image(volume, np.eye(4) if affine is None else affine).to_bytes()


def nifti_volume(tmp: Path, n_slices: int = 6, size: int = 96) -> tuple[bytes, np.ndarray]:
    """A synthetic FLAIR-like volume (``make_volume``, seed 1) as ``.nii.gz`` bytes, written to
    ``tmp`` by the core's writer, and its true ``(Z, H, W)`` mask."""
    sample = make_volume(n_slices, size, seed=1)
    path = tmp / "volume.nii.gz"
    write_nifti(sample.image, Scan(pixels=sample.image, spacing=sample.spacing, is_volume=True), path)
    return path.read_bytes(), sample.mask


def dicom_dataset(pixels: np.ndarray, *, position=(0.0, 0.0, 0.0),
                  orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), pixel_spacing=(0.9, 0.8),
                  instance: int = 1, series_uid: str = "1.2.3.4", slope=None, intercept=None,
                  photometric: str = "MONOCHROME2", **extra: Any) -> Dataset:
    """An MR image dataset with the geometry attributes a scanner writes.

    ``pixels`` is ``(H, W)``, ``(frames, H, W)`` with ``NumberOfFrames`` in ``extra``, or
    ``(H, W, 3)`` with ``photometric="RGB"``; None for ``position``, ``orientation`` or
    ``pixel_spacing`` leaves that attribute out; ``extra`` sets any other keyword.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "MR", series_uid, "1.2.3"
    ds.InstanceNumber = instance
    colour = pixels.ndim == 3 and photometric == "RGB"
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if position is not None:
        ds.ImagePositionPatient = list(position)
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    """``ds`` as the bytes of a DICOM file (preamble, meta header) written by pydicom."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def save_dicom(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a DICOM file at ``path``; return ``path``."""
    ds.save_as(path, enforce_file_format=True)
    return path
