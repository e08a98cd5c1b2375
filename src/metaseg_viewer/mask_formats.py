"""The mask file formats a user may ask for, their suffixes and media types, named once.

Kept apart from :mod:`metaseg_viewer.segment` so that the command line and the apps can list the
choices without importing the segmentation code.
"""

from __future__ import annotations

from typing import Literal

MaskFormat = Literal["auto", "png", "nifti", "nrrd", "dicom-seg"]
#: ``auto``: PNG for a 2-D image, NIfTI for a volume or stack; ``nrrd``: 3D Slicer's ``.seg.nrrd``;
#: ``dicom-seg``: a DICOM SEG on the source series (DICOM series input only).
MASK_FORMATS: tuple[str, ...] = ("auto", "png", "nifti", "nrrd", "dicom-seg")
SUFFIXES = {"png": "_mask.png", "nifti": "_mask.nii.gz", "nrrd": "_mask.seg.nrrd", "dicom-seg": "_mask.seg.dcm"}
#: Media type of each mask file suffix, for the apps' downloads.
MEDIA_TYPES = {"_mask.png": "image/png", "_mask.nii.gz": "application/gzip",
               "_mask.seg.nrrd": "application/octet-stream", "_mask.seg.dcm": "application/dicom"}
