"""The one in-memory form of everything the library reads: :class:`Scan`.

A 2-D image is a stack of one slice, so every consumer handles a single shape, ``(Z, H, W)``.
Pixels keep the file's dtype (uint8, uint16, int16, float32, ...): windowing to 8 bits is a
preprocessing step, not a reading step, so training and inference do it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DicomSource:
    """The DICOM instances a scan's slices were read from, so that a result can refer back to them
    (a DICOM SEG references the source instances and copies their patient and study modules).

    Attributes:
        headers: the source files' ``pydicom.Dataset`` objects without pixel data, in the order
            the files were read (typed ``Any`` so this module needs no pydicom).
        frames: for each slice ``z`` of :attr:`Scan.pixels`, ``(i, f)``: ``headers[i]``, frame ``f``
            (1-based; 1 for a single-frame file).
    """

    headers: tuple[Any, ...]
    frames: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Scan:
    """One image or a stack of axial slices, single channel.

    Attributes:
        pixels: ``(Z, H, W)`` array in the file's dtype; ``Z == 1`` for a 2-D image. NIfTI
            volumes are reoriented to axial: slice 0 most inferior, rows anterior to posterior,
            columns patient-right to patient-left (radiological display). DICOM series keep
            their acquisition plane and stored pixel order, slices sorted along the normal.
        spacing: ``(dz, dy, dx)`` in millimetres, or ``None`` when the format does not say
            (PNG, JPEG, TIFF). ``dz`` is ``nan`` for a single DICOM slice without thickness.
        affine: 4x4 voxel-to-world matrix (RAS+, millimetres, nibabel's convention) for the
            ``(z, row, column)`` indices of :attr:`pixels`, or ``None``.
        source_affine: the file's own affine for NIfTI input, so a mask can be written back in the
            file's voxel order (same shape and affine as the input); ``None`` otherwise.
        is_volume: ``True`` for NIfTI and DICOM input: masks are written as NIfTI, not PNG.
        source: the path (or upload name) the scan came from, for messages and output names.
        description: how the pixels were obtained (e.g. "FLAIR channel of LGG 3-channel TIFF").
        metadata: reader-specific strings (e.g. DICOM identifiers; ``axcodes``, the orientation
            a NIfTI was reoriented to, which the NIfTI writer uses to go back).
        warnings: what a user must know about how the file was read because the result may be
            wrong or partial (pages skipped, NaN voxels, a blank image); every app shows them.
        dicom: for DICOM input, the source instances of the slices (:class:`DicomSource`).
    """

    pixels: np.ndarray
    spacing: tuple[float, float, float] | None = None
    affine: np.ndarray | None = None
    source_affine: np.ndarray | None = None
    is_volume: bool = False
    source: str = ""
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    dicom: DicomSource | None = None

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3:
            raise ValueError(f"Scan.pixels must be (Z, H, W), got shape {self.pixels.shape}")

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        z, h, w = self.pixels.shape
        return int(z), int(h), int(w)
