"""The one preprocessing path, shared by training and every kind of inference.

Buda et al.'s LGG code kept preprocessing inside a training Dataset, so a new image could not be
prepared the way training saw it. Here :func:`preprocess` is the only way a slice becomes network
input, and the settings it used travel in the model card (:class:`PreprocessConfig`).

Steps, per stack of slices ``(Z, H, W)`` (already one channel; see ``io.to_single_channel``):
1. 16-bit, signed or float data are windowed to 8 bits between robust percentiles of the whole
   stack (so all slices of a volume share one window); 8-bit data pass unchanged.
2. CLAHE per slice at the original resolution (clip limit and tile grid from the config).
3. Zero-padding to a square (keeps the aspect ratio), then resizing to ``size x size``.
4. Scaling to float32 in [0, 1].
:func:`restore` maps network-sized maps back to the input's original ``(H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from metaseg_viewer.config import PreprocessConfig
from metaseg_viewer.errors import InputError


DISPLAY_PERCENTILES = (0.5, 99.5)
"""Window for showing non-8-bit images to people (overlays, sheets): the preprocessing default."""


@dataclass(frozen=True)
class Geometry:
    """What :func:`restore` needs to undo padding and resizing: original size and padding."""

    height: int
    width: int
    pad_top: int
    pad_left: int
    side: int  # side of the padded square, before resizing to the network size


@dataclass(frozen=True)
class Preprocessed:
    """Network input ``(Z, size, size)`` float32 in [0, 1], plus the CLAHE image for display."""

    network_input: np.ndarray
    enhanced: np.ndarray  # (Z, H, W) uint8: windowed + CLAHE at the original size
    geometry: Geometry


def window_to_uint8(pixels: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """8-bit data unchanged; anything else linearly windowed to 0..255 between percentiles.

    Percentiles are taken over all finite values of the array, so a volume gets one window.
    NaN and infinite values become 0. A constant array becomes all zeros.
    """
    if pixels.dtype == np.uint8:
        return pixels
    data = pixels.astype(np.float32, copy=False)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(pixels.shape, np.uint8)
    low, high = np.percentile(data[finite], percentiles)
    if high <= low:
        return np.zeros(pixels.shape, np.uint8)
    scaled = (np.where(finite, data, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _as_stack(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3:
        raise InputError(
            f"preprocessing takes one-channel slices shaped (H, W) or (Z, H, W), got {pixels.shape}; "
            "convert colour images with io.to_single_channel first"
        )
    if 0 in pixels.shape:
        raise InputError(f"cannot preprocess an empty array of shape {pixels.shape}")
    if pixels.dtype == bool or not (np.issubdtype(pixels.dtype, np.number)):
        raise InputError(f"pixels must be numeric (uint8, uint16, int16, float), got {pixels.dtype}")
    return pixels


def preprocess(pixels: np.ndarray, config: PreprocessConfig = PreprocessConfig()) -> Preprocessed:
    """Turn ``(H, W)`` or ``(Z, H, W)`` one-channel pixels into network input (module docstring)."""
    stack = _as_stack(pixels)
    z, height, width = stack.shape
    eight_bit = window_to_uint8(stack, config.window_percentiles)
    tiles = (config.clahe_tile_grid, config.clahe_tile_grid)
    clahe = cv2.createCLAHE(clipLimit=config.clahe_clip_limit, tileGridSize=tiles)
    enhanced = np.stack([clahe.apply(np.ascontiguousarray(s)) for s in eight_bit])

    side = max(height, width)
    pad_top, pad_left = (side - height) // 2, (side - width) // 2
    geometry = Geometry(height, width, pad_top, pad_left, side)
    size = config.size
    out = np.empty((z, size, size), np.float32)
    square = np.zeros((side, side), np.uint8)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    for i, enhanced_slice in enumerate(enhanced):
        square[pad_top : pad_top + height, pad_left : pad_left + width] = enhanced_slice
        resized = square if side == size else cv2.resize(square, (size, size), interpolation=interpolation)
        out[i] = resized.astype(np.float32) / 255.0
    return Preprocessed(out, enhanced, geometry)


def restore(maps: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map ``(Z, size, size)`` float maps (e.g. probabilities) back to ``(Z, H, W)``."""
    if maps.ndim != 3:
        raise ValueError(f"restore takes (Z, size, size) maps, got shape {maps.shape}")
    g = geometry
    out = np.empty((maps.shape[0], g.height, g.width), np.float32)
    for i, m in enumerate(maps.astype(np.float32, copy=False)):
        square = m if m.shape[0] == g.side else cv2.resize(m, (g.side, g.side), interpolation=cv2.INTER_LINEAR)
        out[i] = square[g.pad_top : g.pad_top + g.height, g.pad_left : g.pad_left + g.width]
    return out
