"""The one place where colour becomes a single channel, for files and for arrays alike.

Raster images and DICOM both call :func:`reduce_channels`, so a colour DICOM and a colour PNG
with the same pixels give the same values.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from metaseg_viewer.errors import InputError

ColorMode = Literal["auto", "flair", "gray"]

COLOR_MODES = ("auto", "flair", "gray")
_BT601 = (0.299, 0.587, 0.114)


def to_single_channel(array: np.ndarray, mode: ColorMode) -> np.ndarray:
    """Reduce an ``(H, W)`` or ``(H, W, C)`` array to ``(H, W)`` in the same dtype.

    This is the one place where colour becomes a single channel, for files and for arrays from
    elsewhere alike. Rules, in order: 1 channel → itself; 2 channels (gray + alpha) → channel 0;
    4 channels → alpha dropped; then for 3 channels ``flair`` → channel 1 (FLAIR in the LGG
    kaggle_3m TIFFs), all channels equal → channel 0, otherwise luminance with ITU-R BT.601
    weights (0.299, 0.587, 0.114) computed in float and rounded back to the input dtype.
    ``auto`` here means ``gray``: only :func:`~metaseg_viewer.io.read_scan` has a file name to
    apply the LGG rule.
    """
    array = np.asarray(array)
    if mode not in COLOR_MODES:
        raise InputError(f"mode must be one of {COLOR_MODES}, got {mode!r}")
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise InputError(f"expected an (H, W) or (H, W, C) array, got shape {array.shape}")
    return reduce_channels(array, mode)[0]


def reduce_channels(array: np.ndarray, mode: ColorMode) -> tuple[np.ndarray, str]:
    """Apply the :func:`to_single_channel` rules to ``(..., C)``; return it with a note.

    Works on a whole stack at once so that every slice of a stack gets the same rule.
    """
    channels = array.shape[-1]
    check_channels(channels)
    if channels == 1:
        return np.ascontiguousarray(array[..., 0]), "single channel"
    if channels == 2:
        return np.ascontiguousarray(array[..., 0]), "gray channel (0) of gray+alpha image"
    kind, dropped = ("RGBA", ", alpha dropped") if channels == 4 else ("RGB", "")
    rgb = array[..., :3]
    if mode == "flair":
        return np.ascontiguousarray(rgb[..., 1]), f"channel 1 (FLAIR) of {kind} image{dropped}"
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0]), f"channel 0 of {kind} image with equal " \
                                                   f"channels{dropped}"
    return _luminance(rgb), f"luminance (BT.601) of {kind} image{dropped}"


def check_channels(channels: int) -> None:
    """Refuse a channel count the rules do not cover; readers call it before decoding, too."""
    if channels not in (1, 2, 3, 4):
        raise InputError(f"{channels} channels per pixel not accepted: give grayscale, "
                         "gray+alpha, RGB or RGBA")


def _luminance(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    lum = _BT601[0] * r + _BT601[1] * g + _BT601[2] * b  # not a matmul: .5 ties stay reproducible
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        return np.clip(np.rint(lum), info.min, info.max).astype(rgb.dtype)
    if rgb.dtype == bool:
        return lum >= 0.5
    return lum.astype(rgb.dtype)
