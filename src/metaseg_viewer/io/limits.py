"""What the readers accept and how much of it, checked the same way in every format.

Size limits (:class:`ReadLimits`) are checked from headers *before* pixels are decoded, so a
decompression bomb or an oversized upload fails fast instead of exhausting memory; every refusal
names the limit and says what is accepted (:data:`ACCEPTED_FORMATS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from metaseg_viewer.errors import InputError, TooLargeError

ACCEPTED_FORMATS = (
    "PNG, JPEG or TIFF images (8- or 16-bit, grayscale or colour; float TIFF; multi-page TIFF "
    "stacks), DICOM image files or a folder holding one DICOM series, and NIfTI-1/NIfTI-2 "
    "volumes (.nii or .nii.gz)"
)


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds on what :func:`~metaseg_viewer.io.read_scan` will decode, checked from
    headers first.

    Pixel counts alone do not bound memory: a slice is padded to a square before it is resized
    (so its longer side sets the size of that square), and a float64 voxel takes eight times the
    bytes of a uint8 one. Hence the side, aspect and decoded-bytes limits.

    Attributes:
        max_bytes: size of the file or upload (for a DICOM folder, of each file in it).
        max_slice_pixels: rows x columns of one slice (the decompression-bomb guard).
        max_voxels: all slices together.
        max_slices: slices of one volume or stack.
        max_side: the longer side of a slice, in pixels (the square it is padded to).
        max_aspect: longer side over shorter side of a slice; MRI slices are near square, a
            1 x 16,000,000 "image" is not a slice.
        max_decoded_bytes: the decoded pixels in memory (voxels x channels x bytes per sample).
    """

    max_bytes: int = 1 << 30
    max_slice_pixels: int = 8192 * 8192
    max_voxels: int = 512 * 512 * 1024
    max_slices: int = 4096
    max_side: int = 8192
    max_aspect: int = 16
    max_decoded_bytes: int = 512 << 20

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_slice_pixels", "max_voxels", "max_slices", "max_side", "max_aspect",
                     "max_decoded_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ReadLimits.{name} must be a positive int, got {value!r}")


def check_size(label: str, size: int, limits: ReadLimits) -> None:
    """Refuse an empty file and one over ``limits.max_bytes``."""
    if size == 0:
        raise InputError(f"{label}: the file is empty (0 bytes). Accepted: {ACCEPTED_FORMATS}.")
    if size > limits.max_bytes:
        raise TooLargeError(f"{label}: {size} bytes is larger than the limit of {limits.max_bytes} "
                         f"bytes (ReadLimits.max_bytes). Accepted: files up to that size.")


def check_dims(label: str, n_slices: int, height: int, width: int, limits: ReadLimits,
               bytes_per_pixel: int = 1) -> None:
    """Refuse empty images and, before decoding, images larger than ``limits``.

    ``bytes_per_pixel`` is what one decoded pixel of one slice takes (channels x bytes per sample),
    for the decoded-bytes limit."""
    if n_slices <= 0 or height <= 0 or width <= 0:
        raise InputError(f"{label}: the image has zero size ({n_slices} x {height} x {width}). "
                         "Accepted: images with at least one row, one column and one slice.")
    if height * width > limits.max_slice_pixels:
        raise TooLargeError(
            f"{label}: a slice of {height} x {width} pixels exceeds the limit of "
            f"{limits.max_slice_pixels} pixels (ReadLimits.max_slice_pixels); refused before "
            "decoding as a possible decompression bomb. Accepted: slices up to that size.")
    if max(height, width) > limits.max_side:
        raise TooLargeError(
            f"{label}: a slice of {height} x {width} pixels has a longer side of {max(height, width)} "
            f"pixels, over the limit of {limits.max_side} (ReadLimits.max_side): slices are padded to a "
            "square of that side. Accepted: slices whose sides are both at most that long.")
    if max(height, width) > limits.max_aspect * min(height, width):
        raise InputError(
            f"{label}: a slice of {height} x {width} pixels is too elongated to be an MRI slice "
            f"(sides {max(height, width) / min(height, width):.0f}:1). Accepted: slices whose longer side "
            f"is at most {limits.max_aspect} times the shorter (ReadLimits.max_aspect).")
    if n_slices > limits.max_slices:
        raise TooLargeError(
            f"{label}: {n_slices} slices exceed the limit of {limits.max_slices} "
            "(ReadLimits.max_slices); refused before decoding. Accepted: volumes up to that many slices.")
    if n_slices * height * width > limits.max_voxels:
        raise TooLargeError(
            f"{label}: {n_slices} x {height} x {width} voxels exceed the limit of "
            f"{limits.max_voxels} (ReadLimits.max_voxels); refused before decoding. "
            "Accepted: volumes up to that size.")
    decoded = n_slices * height * width * bytes_per_pixel
    if decoded > limits.max_decoded_bytes:
        raise TooLargeError(
            f"{label}: decoded, its {n_slices} x {height} x {width} voxels at {bytes_per_pixel} bytes each "
            f"would take {decoded / 2**20:.0f} MiB (decoded bytes), over the limit of "
            f"{limits.max_decoded_bytes / 2**20:.0f} MiB (ReadLimits.max_decoded_bytes); refused before decoding. "
            "Accepted: volumes that fit, e.g. stored as 16-bit integers or 32-bit floats instead of 64-bit.")
