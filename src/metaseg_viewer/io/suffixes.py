"""The file suffixes the readers accept, written down once for every app that needs names.

The readers themselves detect formats by content; suffixes only serve where a name is all there
is: naming outputs after an input, keeping an upload's suffix when it is saved, and claiming
files in napari (whose ``napari.yaml`` lists the same suffixes; a test keeps them equal).
"""

from __future__ import annotations

#: Lower-case suffixes of the accepted formats, in the order napari's reader looks for a mask
#: beside an image. No suffix ends another, so at most one matches a name.
SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz")
#: Suffixes of files that hold only masks, never an image: NRRD (3D Slicer's ``.seg.nrrd``), read
#: as a true mask by geometry (:func:`metaseg_viewer.evaluation.read_true_mask`). A DICOM SEG
#: ends in ``.dcm`` like an image and is told by its content.
MASK_SUFFIXES = (".nrrd",)


def suffix_of(name: str) -> str:
    """The accepted suffix ``name`` ends with (case-insensitive), in lower case; ``""`` if none."""
    lower = name.lower()
    return next((suffix for suffix in SUFFIXES if lower.endswith(suffix)), "")


def strip_suffix(name: str) -> str:
    """``name`` without its accepted suffix: ``b.nii.gz`` → ``b``, ``notes.txt`` unchanged."""
    return name[: len(name) - len(suffix_of(name))]
