"""Pictures of a result for people: mask overlays with lesion outlines, and volume montages.

Shared by the command line and the apps so an overlay looks the same everywhere.
"""

from __future__ import annotations

import cv2
import numpy as np


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = (255, 40, 40),
    alpha: float = 0.35,
    outline: bool = True,
) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: the 8-bit ``image`` with ``mask`` filled at ``alpha`` and outlined."""
    if image.shape != mask.shape or image.ndim != 2:
        raise ValueError(f"overlay needs a 2-D image and mask of one shape, got {image.shape} and {mask.shape}")
    rgb = np.repeat(image.astype(np.uint8)[..., None], 3, axis=2)
    m = mask.astype(bool)
    if m.any():
        tint = np.array(color, np.float32)
        rgb[m] = np.clip((1 - alpha) * rgb[m] + alpha * tint, 0, 255).astype(np.uint8)
        if outline:
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(rgb, contours, -1, color, 1)
    return rgb


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB (or gray) uint8 picture."""
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not encode a picture of shape {rgb.shape} as PNG")
    return data.tobytes()


def slices_to_show(mask: np.ndarray, limit: int = 12) -> list[int]:
    """Indices of up to ``limit`` slices of a ``(Z, H, W)`` mask: those with the largest lesion area
    (in slice order), or evenly spaced slices when the mask is empty."""
    z = mask.shape[0]
    areas = mask.reshape(z, -1).sum(axis=1)
    with_lesion = np.flatnonzero(areas)
    if len(with_lesion) == 0:
        return sorted({int(i) for i in np.linspace(0, z - 1, min(limit, z))})
    largest = with_lesion[np.argsort(-areas[with_lesion], kind="stable")[:limit]]
    return sorted(int(i) for i in largest)


def montage(images: list[np.ndarray], columns: int = 4, labels: list[str] | None = None) -> np.ndarray:
    """Tile RGB images into one picture, optionally labelled in the corner; images of other sizes
    (slices of a folder of photos, e.g. 512 and 480 px) sit top-left in cells of the largest."""
    if not images:
        raise ValueError("montage needs at least one image")
    h, w = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        tile = img.copy()
        if labels:
            cv2.putText(tile, labels[i], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        sheet[r * h : r * h + tile.shape[0], c * w : c * w + tile.shape[1]] = tile
    return sheet


def overlay_stack(enhanced: np.ndarray, mask: np.ndarray, limit: int = 12) -> np.ndarray:
    """One picture for a ``(Z, H, W)`` result: the slice itself for Z == 1, else a montage labelled
    with 0-based slice numbers (as the lesion CSV and napari's slider)."""
    if enhanced.shape[0] == 1:
        return overlay(enhanced[0], mask[0])
    picks = slices_to_show(mask, limit)
    return montage([overlay(enhanced[i], mask[i]) for i in picks], labels=[f"slice {i}" for i in picks])


def probability_map(probabilities: np.ndarray) -> np.ndarray:
    """RGB uint8 picture of a 2-D probability map in [0, 1] (perceptually uniform 'inferno')."""
    if probabilities.ndim != 2:
        raise ValueError(f"probability_map needs a 2-D array, got shape {probabilities.shape}")
    scaled = np.rint(np.clip(probabilities, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


#: Colours of :func:`disagreement_overlay`: found by the first model only, by the second only, by both.
DISAGREEMENT_COLORS = {"first only": (255, 170, 0), "second only": (0, 160, 255), "both": (80, 220, 80)}


def disagreement_overlay(image: np.ndarray, first: np.ndarray, second: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB picture of where two masks of one 2-D image agree and disagree (colours above)."""
    if not image.shape == first.shape == second.shape or image.ndim != 2:
        raise ValueError(f"needs one 2-D shape, got {image.shape}, {first.shape}, {second.shape}")
    a, b = first.astype(bool), second.astype(bool)
    rgb = np.repeat(image.astype(np.uint8)[..., None], 3, axis=2)
    for region, key in ((a & ~b, "first only"), (~a & b, "second only"), (a & b, "both")):
        if region.any():
            tint = np.array(DISAGREEMENT_COLORS[key], np.float32)
            rgb[region] = np.clip((1 - alpha) * rgb[region] + alpha * tint, 0, 255).astype(np.uint8)
    return rgb
