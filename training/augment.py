"""Robustness augmentation: make raw LGG FLAIR slices look like other collections.

The shipped FLAIR models learned the LGG look only (skull present, the head filling most of the
frame, one 8-bit rendering, one resolution) and fail on skull-stripped, zoomed, re-normalised,
resampled or noisier scans. These transforms act on the RAW slice, before
``metaseg_viewer.preprocessing.preprocess`` (CLAHE, resize), so that the network sees shifted
inputs after the very preprocessing the apps apply.

Conventions, for every transform:
- ``image`` is a raw ``(H, W)`` uint8 slice; ``mask`` is ``(H, W)`` bool or uint8 (0/1 or 0/255)
  and comes back in its own dtype and values. Outputs are new arrays of the input's shape; inputs
  are never modified.
- All randomness comes from the ``numpy.random.Generator`` passed in, so the same generator state
  gives the same output (a resumed run draws the same samples).
- A strength is a ``(low, high)`` range drawn uniformly; ``(v, v)`` fixes it, which is how
  :data:`ROBUSTNESS_CONDITIONS` builds its fixed-strength shifts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
from scipy.ndimage import median_filter

Range = tuple[float, float]
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]

# brain_mask's ray search (lengths are fractions of the head's equivalent radius).
_RAYS = 120
_RING_SEARCH = 0.3  # the scalp + skull ring is looked for this deep inside the head's edge
_RAY_MEDIAN = 7  # rays in the circular median that removes single-ray misses
_BRIGHT_SCALP = 1.3  # a ray's outer peak above this x brain level is scalp ...
_DARK_SKULL = 0.6  # ... and a valley below this x brain level is skull; neither: nothing to strip


def _check(image: np.ndarray, mask: np.ndarray | None = None) -> None:
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"augmentation takes a raw (H, W) uint8 slice, got {image.dtype} {image.shape}")
    if mask is not None and mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")


def _to_uint8(values: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``values * scale`` rounded and saturated to 0..255 (negative values become 0)."""
    return cv2.convertScaleAbs(np.maximum(values, 0), alpha=scale)


def head_mask(image: np.ndarray) -> np.ndarray:
    """Everything that is not background: the smoothed image (7x7 box mean) above half its Otsu
    threshold, largest blob, holes filled. Half of Otsu keeps a dark brain whose bright scalp
    ring alone would pass Otsu. On a skull-stripped image this is the brain; all False when blank."""
    _check(image)
    return _head(cv2.blur(image, (7, 7)))[0] > 0


def _head(smooth: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The head as a 0/1 uint8 mask and its outer contour (None when there is no head)."""
    otsu = cv2.threshold(smooth, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]
    foreground = (smooth > 0.5 * otsu).astype(np.uint8)
    contours = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    out = np.zeros(smooth.shape, np.uint8)
    if not contours:
        return out, None
    outline = max(contours, key=cv2.contourArea)
    cv2.drawContours(out, [outline], -1, 1, thickness=cv2.FILLED)
    return out, outline


def brain_mask(image: np.ndarray) -> np.ndarray:
    """A simple brain mask for an axial FLAIR slice, by following rays out of the head.

    Steps: (1) :func:`head_mask`; (2) from its centroid, 120 rays sample the image (Gaussian
    sigma 1) out to the head's edge; (3) walking each ray inwards from the edge, the scalp is the
    brightest point of the outer 15% of the head radius and the brain starts at the first point
    after it where the intensity stops falling (the dark skull gap, or where bright scalp fat
    meets the cortex when the gap is not resolved); a ray whose outer peak is not bright (< 1.3 x
    the median of the head's inner half) and whose valley is not dark (> 0.6 x) has nothing to
    strip, so an already stripped slice keeps its edge; (4) a circular median over 7 rays removes
    single-ray misses; (5) the polygon of the brain edges, within the head.

    Known failures: inferior slices (orbits, sinuses, neck muscles and the cerebellum are one
    blob, so the mask keeps eyes or face), the top slices (little or dim brain inside a thick
    scalp: parts of the scalp stay in), slices where the head is cut by the frame, and blank
    slices (noise only: the "head" is arbitrary). Lesions sit in mid slices, where it does well:
    on every 4th lesion slice of the development set it keeps 99.98% of the lesion pixels and
    the brain is a median 78% of the head (``pytest tests/test_augment.py -k development``).
    """
    _check(image)
    head, outline = _head(cv2.blur(image, (7, 7)))
    moments = cv2.moments(outline) if outline is not None else {"m00": 0.0}
    if moments["m00"] <= 0:  # no head, or one without area (a line)
        return head > 0
    cy, cx = moments["m01"] / moments["m00"], moments["m10"] / moments["m00"]
    radius = np.sqrt(moments["m00"] / np.pi)
    x, y, w, h = cv2.boundingRect(outline)
    length = 2 + int(np.ceil(max(np.hypot(px - cx, py - cy) for px in (x, x + w) for py in (y, y + h))))
    angles = np.arange(_RAYS) * (2 * np.pi / _RAYS)
    steps = np.arange(length, dtype=np.float32)
    map_x = np.cos(angles).astype(np.float32)[:, None] * steps + np.float32(cx)
    map_y = np.sin(angles).astype(np.float32)[:, None] * steps + np.float32(cy)
    smooth = cv2.GaussianBlur(image, (0, 0), 1).astype(np.float32)
    rays = cv2.remap(smooth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = cv2.remap(head, map_x, map_y, cv2.INTER_NEAREST,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    # the outermost head sample of each ray (0 for a ray that starts outside the head)
    edge = np.where(inside.any(axis=1), length - 1 - np.argmax(inside[:, ::-1], axis=1), 0)
    inner = steps[None, :] < 0.5 * edge[::3, None]  # every 3rd ray is plenty for a median
    brain_level = float(np.median(rays[::3][inner])) if inner.any() else float(np.median(smooth[head > 0]))

    depth_max = max(3, int(_RING_SEARCH * radius))
    depths = np.arange(depth_max + 3)
    profile = np.take_along_axis(rays, np.clip(edge[:, None] - depths[None, :], 0, None), axis=1)  # edge inwards
    peak = np.argmax(profile[:, : depth_max // 2], axis=1)
    here, next1, next2 = profile[:, : depth_max + 1], profile[:, 1 : depth_max + 2], profile[:, 2:]
    stopped = (here <= next1 + 1) & (here <= next2 + 1) & (depths[None, : depth_max + 1] > peak[:, None])
    depth = np.where(stopped.any(axis=1), np.argmax(stopped, axis=1), depth_max).astype(np.float64)
    rows = np.arange(_RAYS)
    peak_value, valley_value = profile[rows, peak], profile[rows, depth.astype(np.int64)]
    depth[(peak_value < _BRIGHT_SCALP * brain_level) & (valley_value > _DARK_SKULL * brain_level)] = 0
    depth[edge <= 0] = 0
    depth = median_filter(depth, size=_RAY_MEDIAN, mode="wrap")

    reach = np.clip(edge - depth, 0, None)
    polygon = np.stack([cx + reach * np.cos(angles), cy + reach * np.sin(angles)], axis=1)
    out = np.zeros(image.shape, np.uint8)
    cv2.fillPoly(out, [np.rint(polygon).astype(np.int32)], 1)
    return (out & head) > 0


def _keep(mask: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``mask`` where ``where`` is True, 0 elsewhere, in the mask's own dtype and values."""
    return np.where(where, mask, np.zeros((), mask.dtype))


def skull_strip(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                extra_erosion: tuple[int, int] = (0, 4)) -> tuple[np.ndarray, np.ndarray]:
    """Zero everything outside :func:`brain_mask`, shrunk by a random ``extra_erosion`` (pixels,
    inclusive range) as tighter strippers do. Lesion pixels outside the kept brain are no longer
    visible, so they are dropped from the mask (a lesion is never labelled on black background)."""
    _check(image, mask)
    brain = brain_mask(image)
    erosion = int(rng.integers(extra_erosion[0], extra_erosion[1] + 1))
    if erosion:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erosion + 1, 2 * erosion + 1))
        brain = cv2.erode(brain.astype(np.uint8), disk) > 0
    return np.where(brain, image, 0).astype(np.uint8), _keep(mask, brain)


def field_of_view(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                  fill: Range = (0.5, 1.0), shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Rescale so the head (the brain, after :func:`skull_strip`) fills a fraction ``fill`` of the
    frame, then move it off centre.

    ``fill`` is the head's bounding box over the frame along the tighter axis (the larger side on a
    square slice). The box's centre moves from the frame's centre by a uniform draw within the room
    the scaled box leaves, times ``shift`` (0: centred), so the head itself is never cut; at
    ``fill`` 1 it is centred. Zooming in crops, zooming out pads with 0; the image is interpolated
    linearly, the mask by nearest neighbour. A slice without a head comes back unchanged.
    """
    _check(image, mask)
    height, width = image.shape
    x, y, w, h = cv2.boundingRect(_head(cv2.blur(image, (7, 7)))[0])
    target = rng.uniform(*fill)
    room = rng.uniform(-0.5, 0.5, size=2) * shift
    if w == 0:
        return image.copy(), mask.copy()
    scale = target / max(w / width, h / height)
    centre_x = width / 2 + room[0] * max(width - scale * w, 0)
    centre_y = height / 2 + room[1] * max(height - scale * h, 0)
    # pixel centres are at integer coordinates: the box spans x - 0.5 .. x + w - 0.5
    matrix = np.array([[scale, 0, centre_x - 0.5 - scale * (x + w / 2 - 0.5)],
                       [0, scale, centre_y - 0.5 - scale * (y + h / 2 - 0.5)]])
    size = (width, height)
    out = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    warped = cv2.warpAffine(mask.astype(np.uint8), matrix, size, flags=cv2.INTER_NEAREST, borderValue=0)
    return out, warped.astype(mask.dtype)


def intensity(image: np.ndarray, rng: np.random.Generator, gamma: Range = (0.7, 1.5),
              bias: Range = (0.0, 0.3), low: Range = (0.0, 0.15), high: Range = (95.0, 100.0),
              peak: Range = (0.7, 1.0)) -> np.ndarray:
    """Another scanner's contrast and another 8-bit rendering, in the order they arise:

    - tissue contrast: gamma drawn log-uniformly from ``gamma`` (< 1 brightens dark tissue);
    - coil sensitivity: a smooth multiplicative bias field ``1 + a * f``, ``f`` a random
      2nd-order polynomial of the frame coordinates scaled to max |f| = 1, the amplitude ``a``
      drawn from ``bias`` (0.3 = ±30%);
    - rendering: a window re-rendered to 0..``peak`` x 255. Its top is the ``high`` percentile of
      the tissue (pixels above 5% of the range, so the background does not decide it; at most
      ``100 - high``% of it, bright scalp or lesion, saturates), its bottom ``low`` x the top
      (a raised black level: CSF and background go to 0); ``peak`` < 1 leaves the top unused.
    Gamma and window are monotonic and the field is smooth, so a lesion brighter than the tissue
    around it stays brighter.
    """
    _check(image)
    height, width = image.shape
    exponent = float(np.exp(rng.uniform(np.log(gamma[0]), np.log(gamma[1]))))
    curve = ((np.arange(256, dtype=np.float32) / 255) ** exponent).astype(np.float32)
    values = curve[image]
    c = [float(v) for v in rng.standard_normal(5)]
    u = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    v = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    field = (c[0] * u + c[1] * u * u) + (c[2] * v + c[3] * v * v) + c[4] * u * v
    values *= 1 + float(rng.uniform(*bias)) / max(float(np.abs(field).max()), 1e-6) * field
    sample = values[::4, ::4]
    tissue = sample[sample > 0.05]
    top = float(np.percentile(tissue, rng.uniform(*high))) if tissue.size else 1.0
    bottom = float(rng.uniform(*low)) * top
    scale = float(rng.uniform(*peak)) * 255 / max(top - bottom, 1e-6)
    return _to_uint8(np.minimum(values - bottom, top - bottom), scale)


UPSAMPLING = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
"""The smooth interpolations resampling pipelines use (nearest neighbour would add blocks)."""


def resolution(image: np.ndarray, rng: np.random.Generator, factor: Range = (1.5, 3.0),
               blur: Range = (0.5, 1.5), p_blur: float = 0.3,
               upsampling: tuple[int, ...] = UPSAMPLING) -> np.ndarray:
    """A coarser acquisition or a resampled volume: with probability ``p_blur`` a Gaussian blur
    (sigma in pixels from ``blur``); otherwise downsampling by ``factor`` with area averaging
    (larger voxels integrate the signal) and upsampling back with a random one of ``upsampling``
    (cv2 flags; how a viewer or pipeline brought it back to the grid)."""
    _check(image)
    if rng.random() < p_blur:
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(*blur))
    height, width = image.shape
    f = rng.uniform(*factor)
    coarse = (max(1, round(width / f)), max(1, round(height / f)))
    small = cv2.resize(image, coarse, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=int(rng.choice(upsampling)))


def noise(image: np.ndarray, rng: np.random.Generator, sigma: Range = (0.01, 0.05),
          p_rician: float = 0.5) -> np.ndarray:
    """Thermal noise of standard deviation ``sigma`` x 255: Gaussian, or with probability
    ``p_rician`` Rician (the magnitude of a complex signal with noise on both channels, as MR
    magnitude images have: the background turns into a positive noise floor)."""
    _check(image)
    std = float(rng.uniform(*sigma)) * 255
    values = image.astype(np.float32)
    if rng.random() < p_rician:
        real = values + rng.standard_normal(image.shape, dtype=np.float32) * std
        imaginary = rng.standard_normal(image.shape, dtype=np.float32) * std
        return _to_uint8(np.sqrt(real * real + imaginary * imaginary))
    return _to_uint8(values + rng.standard_normal(image.shape, dtype=np.float32) * std)


def renormalise(image: np.ndarray, rng: np.random.Generator, p_zscore: float = 0.7,
                clip_sd: Range = (2.5, 4.0), brain_percentiles: Range = (0.5, 99.5)) -> np.ndarray:
    """A user's already normalised volume saved as an 8-bit picture.

    With probability ``p_zscore``: z-scored over :func:`brain_mask`, clipped at ±k SD (k from
    ``clip_sd``) and rendered linearly to 0..255, so the brain's mean sits at mid-grey (127.5) and
    the background becomes a grey level or 0. Otherwise min-max of the brain: its
    ``brain_percentiles`` stretched to 0..255 (scalp and lesion may saturate). A slice with no brain found (< 64 pixels)
    uses every pixel above 0.
    """
    _check(image)
    brain = brain_mask(image)
    if brain.sum() < 64:
        brain = image > 0 if (image > 0).sum() >= 64 else np.ones(image.shape, bool)
    levels = np.arange(256, dtype=np.float32)  # uint8 in, so the mapping is a lookup table
    if rng.random() < p_zscore:
        k = float(rng.uniform(*clip_sd))
        mean, sd = (float(v[0, 0]) for v in cv2.meanStdDev(image, mask=brain.astype(np.uint8)))
        table = _to_uint8(np.clip((levels - mean) / max(sd, 1e-6), -k, k) + k, 255 / (2 * k))
    else:
        bottom, top = (float(v) for v in np.percentile(image[brain], brain_percentiles))
        table = _to_uint8(np.minimum(levels - bottom, top - bottom), 255 / max(top - bottom, 1e-6))
    return cv2.LUT(image, table)


def _image_only(transform: Callable[..., np.ndarray], **strength) -> Transform:
    def apply(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return transform(image, rng, **strength), mask.copy()
    return apply


def _chain(*transforms: Transform) -> Transform:
    def apply(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        for transform in transforms:
            image, mask = transform(image, mask, rng)
        return image, mask
    return apply


_PIPELINE: tuple[Transform, ...] = (skull_strip, field_of_view, _image_only(intensity),
                                    _image_only(resolution), _image_only(noise), _image_only(renormalise))


@dataclass(frozen=True)
class RobustnessAugment:
    """Each shift with its own probability, in the order a scan is made and then handled:
    geometry (skull strip, field of view), scanner contrast, resolution, noise, and last the
    user's 8-bit rendering of a normalised volume. Every probability is drawn on every call (the
    generator advances the same way whichever steps run). At the defaults a sample stays
    untouched with probability (1-0.3)(1-0.3)(1-0.4)(1-0.25)(1-0.25)(1-0.15) = 0.14.
    """

    p_skull_strip: float = 0.3
    p_field_of_view: float = 0.3
    p_intensity: float = 0.4
    p_resolution: float = 0.25
    p_noise: float = 0.25
    p_renormalise: float = 0.15

    def __call__(self, image: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        _check(image, mask)
        probabilities = (self.p_skull_strip, self.p_field_of_view, self.p_intensity,
                         self.p_resolution, self.p_noise, self.p_renormalise)
        image, mask = image.copy(), mask.copy()
        for p, step in zip(probabilities, _PIPELINE, strict=True):
            if rng.random() < p:
                image, mask = step(image, mask, rng)
        return image, mask


def _as_is(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return image.copy(), mask.copy()


_STRIPPED = partial(skull_strip, extra_erosion=(0, 0))

ROBUSTNESS_CONDITIONS: dict[str, Transform] = {
    "as is": _as_is,
    "skull-stripped": _STRIPPED,
    "skull-stripped, brain fills frame": _chain(_STRIPPED, partial(field_of_view, fill=(1.0, 1.0), shift=0)),
    "head fills half the frame": partial(field_of_view, fill=(0.5, 0.5), shift=0),
    "resampled 2x (area down, linear up)": _image_only(resolution, factor=(2.0, 2.0), p_blur=0.0,
                                                       upsampling=(cv2.INTER_LINEAR,)),
    "blurred (sigma 1.5 px)": _image_only(resolution, blur=(1.5, 1.5), p_blur=1.0),
    "gamma 0.7 + bias field ±25%": _image_only(intensity, gamma=(0.7, 0.7), bias=(0.25, 0.25),
                                               low=(0.0, 0.0), high=(100.0, 100.0), peak=(1.0, 1.0)),
    "Rician noise 3%": _image_only(noise, sigma=(0.03, 0.03), p_rician=1.0),
    "z-scored 8-bit (±3 SD)": _image_only(renormalise, p_zscore=1.0, clip_sd=(3.0, 3.0)),
}
"""Named shifts at fixed strengths for an evaluation table, each ``(image, mask, rng) -> (image,
mask)``. The generator draws only patterns (the bias field's shape, the noise); pass a generator
with a fixed seed for a repeatable table."""
