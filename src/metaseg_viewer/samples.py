"""Synthetic FLAIR-like and T1c-like brain slices and volumes with an exact lesion mask.

Why: demos, docs and tests need brain-looking data with known ground truth and no download. The
pictures imitate the 256x256 8-bit axial FLAIR slices of the LGG data set (Buda et al., 2019):
black background, bright scalp, dark skull and CSF rim, mid-gray brain with sulci, two dark
ventricles, bright irregular lesions. ``sequence="t1c"`` draws the same head with lesions as a
contrast-enhanced T1 shows a tumour: a bright enhancing rim around a dark necrotic core (small
lesions enhance throughout), the mask covering rim and core. They are not anatomy: never use
them to measure a model.

Conventions:

- ``image`` is uint8, ``(H, W)`` for a slice or ``(Z, H, W)`` for a volume, rows anterior to
  posterior, slice 0 the most inferior (as :class:`metaseg_viewer.scan.Scan`); background about 0,
  brain about 90-120, lesions about 170-230. ``mask`` is bool, True exactly on lesion pixels.
- Lesion radii and centres are in pixels, ``z``/``depth`` in slices; ``spacing`` is in mm,
  ``(dy, dx)`` or ``(dz, dy, dx)``: a 240 mm field of view (0.9375 mm at 256 px), 3 mm slices.
- One ``numpy.random.Generator`` seeded with ``seed`` drives everything: the same arguments give
  identical arrays (on the same numpy/OpenCV build).
- ``lesions=None`` means :func:`default_lesions`; an empty sequence gives an empty mask. Lesions
  placed automatically lie in the brain, clear of ventricles, midline and each other, so each is
  its own connected component.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from numbers import Integral, Real

import cv2
import numpy as np

from metaseg_viewer.errors import InputError

__all__ = ["LesionSpec", "Sample", "default_lesions", "make_slice", "make_volume"]

FOV_MM = 240.0
SLICE_MM = 3.0
MIN_SIZE, MAX_SIZE = 32, 1024
MAX_SLICES = 256

_LOBE_MAX = 0.3  # a lesion outline wobbles by at most this fraction of its radius
_GAP_PX = 3.0  # clearance of auto-placed lesions (at 256 px; never below 0.5 px)
_NOISE = 4.5  # Rician noise sigma, gray levels
# Head layers as (depth inside the head outline at 256 px, gray level): scalp, bone, CSF rim.
_LAYERS = ((-1.0, 0.0), (0.0, 50.0), (1.0, 170.0), (3.5, 160.0), (4.5, 70.0), (5.5, 22.0),
           (6.5, 22.0), (7.5, 42.0), (8.5, 42.0))
_BRAIN_START = 8.5  # depth at 256 px where the brain begins
_HARMONICS = np.arange(2, 6, dtype=np.float32)  # outline wobble: low frequencies keep one blob


@dataclass(frozen=True)
class LesionSpec:
    """One requested lesion; fields left ``None`` are chosen by the generator.

    ``radius``: in-plane radius in pixels (the outline wobbles up to 30 % around it; the pixel
    nearest the centre is always lesion, so any radius > 0 gives a mask). ``center``: ``(row,
    col)`` in pixels, in brain parenchyma. Volumes only (a slice ignores them): ``z``, the central
    slice, and ``depth``, the half-extent in slices: the lesion narrows and vanishes there.
    """

    radius: float
    center: tuple[float, float] | None = None
    z: float | None = None
    depth: float | None = None

    def __post_init__(self) -> None:
        if not _is_real(self.radius) or self.radius <= 0:
            raise InputError(f"lesion radius must be a number of pixels > 0, got {self.radius!r}")
        if self.center is not None:
            if np.shape(self.center) != (2,) or not all(map(_is_real, self.center)):
                raise InputError(f"lesion center must be None or (row, col), got {self.center!r}")
            object.__setattr__(self, "center", tuple(float(c) for c in self.center))
        if self.z is not None and not _is_real(self.z):
            raise InputError(f"lesion z must be None or a slice index, got {self.z!r}")
        if self.depth is not None and (not _is_real(self.depth) or self.depth <= 0):
            raise InputError(f"lesion depth must be None or slices > 0, got {self.depth!r}")


LesionsArg = float | Iterable[float | LesionSpec] | None  # radii (px) and/or specs


@dataclass(frozen=True, eq=False)
class Sample:
    """A synthetic image and its exact lesion mask (conventions in the module docstring).

    ``lesions``: the lesions as drawn, in the order requested, ``center`` filled in (and ``z``,
    ``depth`` for a volume; ``None`` for a slice).
    """

    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, ...]
    description: str
    lesions: tuple[LesionSpec, ...] = ()


def default_lesions(size: int = 256) -> tuple[float, ...]:
    """Radii of a large, a medium and a tiny lesion: 18, 6, 2 px at 256 px, scaled with ``size``.

    Below 48 px a single 1-px lesion, the most that fits every seed's brain there.
    """
    if size < 48:
        return (1.0,)
    return tuple(max(1.0, round(r * size / 256, 2)) for r in (18.0, 6.0, 2.0))


def make_slice(size: int = 256, lesions: LesionsArg = None, seed: int = 0, sequence: str = "flair") -> Sample:
    """A ``size`` x ``size`` FLAIR-like (or, ``sequence="t1c"``, T1c-like) axial slice at the level
    of the ventricles.

    ``lesions``: radii in pixels and/or :class:`LesionSpec` (None: :func:`default_lesions`; ``()``:
    none). Raises :class:`InputError` (a ValueError) for bad arguments or lesions that do not fit.
    """
    return _make(size, 1, lesions, seed, volume=False, sequence=sequence)


def make_volume(n_slices: int = 16, size: int = 256, lesions: LesionsArg = None,
                seed: int = 0, sequence: str = "flair") -> Sample:
    """``n_slices`` axial slices 3 mm apart; the head narrows toward the first and last slice.

    Lesions are perturbed ellipsoids ``2 * depth`` slices tall (by default their radius in mm over
    3 mm, clipped to 1.5 .. ``n_slices / 4``): small ones cover 3 slices and, with the default
    lesions, some slices have none. Arguments and errors as :func:`make_slice`.
    """
    return _make(size, _check_int("n_slices", n_slices, 1, MAX_SLICES), lesions, seed, volume=True, sequence=sequence)


SEQUENCES = ("flair", "t1c")  # the looks a sample can have


def _make(size: int, n: int, lesions: LesionsArg, seed: int, volume: bool, sequence: str) -> Sample:
    size = _check_int("size", size, MIN_SIZE, MAX_SIZE)
    if sequence not in SEQUENCES:
        raise InputError(f"sample sequence must be one of {', '.join(SEQUENCES)}, got {sequence!r}")
    specs = _lesion_specs(lesions, size)
    image, mask, placed = _render(size, n, specs, _check_int("seed", seed, 0, 2**63 - 1), volume, sequence)
    dx = FOV_MM / size
    spacing = (SLICE_MM, dx, dx) if volume else (dx, dx)
    if not volume:
        image, mask = image[0], mask[0]
    what = f"synthetic {'T1c' if sequence == 't1c' else 'FLAIR'} {'volume' if volume else 'slice'} {'x'.join(map(str, image.shape))}"
    radii = ", ".join(f"{p.radius:g}" for p in placed)
    lesion_text = f"{len(placed)} lesion(s) of radius {radii} px" if placed else "no lesion"
    return Sample(image, mask, spacing, f"{what}, seed {seed}, {lesion_text}", placed)


def _is_real(x: object) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or not lo <= value <= hi:
        raise InputError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


def _lesion_specs(lesions: LesionsArg, size: int) -> tuple[LesionSpec, ...]:
    if lesions is None:
        lesions = default_lesions(size)
    elif _is_real(lesions):
        lesions = (lesions,)
    if isinstance(lesions, (str, bytes)) or not isinstance(lesions, Iterable):
        raise InputError("lesions must be None, a radius or a sequence of radii (pixels > 0) "
                         f"and LesionSpec, got {lesions!r}")
    return tuple(x if isinstance(x, LesionSpec) else LesionSpec(x) for x in lesions)


@dataclass(frozen=True)
class _Frame:
    """Head geometry shared by every slice of one sample (float32 pixel grids)."""

    size: int
    u: np.ndarray  # lateral coordinate from the head centre
    v: np.ndarray  # anterior (-) to posterior (+) coordinate
    r: np.ndarray  # distance from the head centre
    outline: np.ndarray  # distance from the centre to the (wobbly) head outline along each ray
    ax: float  # lateral semi-axis
    ay: float  # anterior-posterior semi-axis
    bias: np.ndarray  # smooth multiplicative coil-sensitivity field


def _frame(rng: np.random.Generator, size: int) -> _Frame:
    cy, cx = (size / 2 + float(d) * size for d in rng.uniform(-0.02, 0.02, 2))
    ax, ay = size * rng.uniform(0.29, 0.32), size * rng.uniform(0.37, 0.40)
    angle = rng.uniform(-0.06, 0.06)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = y - cy, x - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    psi = np.arctan2(v, u)
    ellipse = 1.0 / np.sqrt((np.cos(psi) / ax) ** 2 + (np.sin(psi) / ay) ** 2)
    for k in (2, 3, 4):
        ellipse *= 1 + rng.uniform(0.004, 0.015) * np.cos(k * psi + rng.uniform(0, 2 * np.pi))
    un, vn = dx / size, dy / size
    c = [float(a) for a in rng.uniform(-0.1, 0.1, 2)]
    bias = 1.0 + c[0] * un + c[1] * vn + rng.uniform(0.1, 0.3) * (un**2 + vn**2)
    return _Frame(size, u, v, np.hypot(u, v), ellipse, ax, ay, bias.astype(np.float32))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std float32 noise with blobs about ``sigma`` pixels wide."""
    f = max(1, int(sigma // 3))  # blur a coarser grid for wide blobs: same look, fewer taps
    small = rng.standard_normal((-(-shape[0] // f), -(-shape[1] // f)), dtype=np.float32)
    small = cv2.GaussianBlur(small, (0, 0), max(sigma / f, 0.5), borderType=cv2.BORDER_REFLECT)
    noise = small if f == 1 else cv2.resize(small, shape[::-1], interpolation=cv2.INTER_LINEAR)
    noise -= noise.mean()
    return noise / max(float(noise.std()), 1e-6)


def _anatomy(rng: np.random.Generator, fr: _Frame,
             height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lesion-free slice (float32, before bias and noise), its brain mask and its CSF mask.

    ``height`` runs from -1 (bottom of the head) through 0 (ventricles' level) to 1 (top). CSF
    (ventricles, midline fissure) is where lesions must not go.
    """
    shrink = math.sqrt(1 - (0.8 * height) ** 2)  # head size
    vent = math.sqrt(max(0.0, 1 - (height / 0.6) ** 2))  # ventricle size
    shape, s = (fr.size, fr.size), fr.size / 256
    lay = max(s, 0.3)  # layer thickness scale, so layers stay visible on small images
    depth = fr.outline * shrink - fr.r
    xp, fp = zip(*_LAYERS)
    ring = np.interp(depth, np.asarray(xp) * lay, fp).astype(np.float32)
    ring *= 1 + 0.12 * _smooth_noise(rng, shape, 6 * s)
    into = depth - _BRAIN_START * lay  # depth inside the brain
    w_brain = np.clip(into / lay, 0, 1)

    brain = 104 + 5 * _smooth_noise(rng, shape, max(1.5 * s, 1))
    brain += 6 * _smooth_noise(rng, shape, 10 * s)
    brain += 8 * np.clip(1 - into / (5 * lay), 0, 1)  # cortex a little brighter than white matter
    sulci = np.exp(-((_smooth_noise(rng, shape, max(4 * s, 1.5)) / 0.2) ** 2))
    brain *= 1 - 0.6 * sulci * np.clip(1 - into / (14 * lay), 0, 1)
    ay = fr.ay * shrink
    fissure = np.exp(-((fr.u / max(lay, 0.7)) ** 2))  # midline, before and behind the ventricles
    fissure *= np.clip((np.abs(fr.v) - 0.3 * ay) / (0.15 * ay), 0, 1)
    brain *= 1 - 0.4 * fissure

    w_vent = np.zeros(shape, np.float32)
    if vent > 0:
        half_len, half_wid = 0.28 * ay * vent, max(0.035 * fr.ax * vent, 0.5)
        along = (fr.v + 0.03 * ay) / half_len
        for side in (-1.0, 1.0):  # banana shapes ")(": close at the middle, ends bending outward
            across = side * fr.u - 0.06 * fr.ax - 0.07 * fr.ax * along**2
            width = half_wid * (1.2 - 0.4 * np.clip(along, -1, 1))  # frontal horn wider
            rho = np.sqrt((across / width) ** 2 + np.abs(along) ** 3)  # blunt ends
            w_vent = np.maximum(w_vent, np.clip((1 - rho) * half_wid + 0.5, 0, 1))
    brain = brain * (1 - w_vent) + 42 * w_vent

    image = ring * (1 - w_brain) + brain * w_brain
    return image.astype(np.float32), w_brain >= 1, (w_vent > 0) | (fissure > 0.2)


@dataclass(frozen=True)
class _Blob:
    """One lesion's look (drawn before placing it: its wobble sets the room it needs) and place."""

    level: float  # mean gray level
    amps: np.ndarray  # relative wobble per harmonic
    phases: np.ndarray
    twists: np.ndarray  # phase drift from the lesion's bottom to its top
    wobble: float  # largest relative outward wobble, sampled finely, plus a margin
    spec: LesionSpec | None = None  # as placed (center filled; z, depth too for a volume)
    zc: float = 0.0  # central slice
    depth: float = math.inf  # half-extent in slices (inf for a slice)


def _look(rng: np.random.Generator) -> _Blob:
    weights = rng.uniform(0.3, 1.0, _HARMONICS.size) / _HARMONICS
    amps = (weights / weights.sum() * rng.uniform(0.15, _LOBE_MAX)).astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, _HARMONICS.size).astype(np.float32)
    twists = rng.uniform(-1.5, 1.5, _HARMONICS.size).astype(np.float32)
    theta = np.linspace(0, 2 * np.pi, 256, endpoint=False)[:, None, None]
    t = np.linspace(-1, 1, 9)[:, None]
    wobble = (amps * np.cos(_HARMONICS * theta + phases + twists * t)).sum(-1).max()
    return _Blob(float(rng.uniform(185, 212)), amps, phases, twists, float(wobble) + 0.02)


def _reach(radius: float, wobble: float, t: float) -> float:
    """Farthest outline pixel from the centre at relative height ``t`` (0: the lesion misses)."""
    return radius * math.sqrt(1 - t * t) * (1 + wobble) + 1 if t * t < 1 else 0.0


def _distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) from each pixel of ``region`` to the nearest pixel outside it."""
    return cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 5)


def _gap(size: int) -> float:
    return max(0.5, _GAP_PX * size / 256)


def _place(rng: np.random.Generator, spec: LesionSpec, blob: _Blob, brain: np.ndarray,
           csf: np.ndarray, taken: np.ndarray, volume: bool) -> _Blob:
    """``blob`` with ``spec``'s missing fields resolved so the lesion lies in the brain, or raise.

    Auto-placed lesions keep a gap clear of CSF and of ``taken`` (other lesions). They also stay
    inside the brain's outline, except that one too big for that may reach the cortex and is cut
    there (at worst 30 % of its reach stays inside).
    """
    n, size = brain.shape[0], brain.shape[1]
    if spec.center is not None and not all(0 <= c <= size - 1 for c in spec.center):
        raise InputError(f"lesion center must be (row, col) within 0..{size - 1}, "
                         f"got {spec.center!r}")
    depth, zs = math.inf, [0.0]
    if volume:
        depth = spec.depth or max(1.5, min(spec.radius * FOV_MM / size / SLICE_MM, n / 4))
        if spec.z is not None and not 0 <= spec.z <= n - 1:
            raise InputError(f"lesion z must be a slice index from 0 to {n - 1}, got {spec.z!r}")
        inside = [z for z in range(n) if z - depth >= -0.5 and z + depth <= n - 0.5]
        zs = [float(spec.z)] if spec.z is not None else [
            float(z) for z in rng.permutation(inside or range(n))]

    def placed(center: tuple[float, float], zc: float) -> _Blob:
        at = {"z": zc, "depth": depth} if volume else {}
        return replace(blob, spec=LesionSpec(spec.radius, center, **at), zc=zc, depth=depth)

    if spec.center is not None:
        row, col = (int(math.floor(c + 0.5)) for c in spec.center)
        for zc in zs:
            zi = int(math.floor(zc + 0.5))
            if brain[zi, row, col] and not csf[zi, row, col]:
                return placed(spec.center, zc)
    else:
        gap = _gap(size)
        for edge_share in (1.0, 0.5, 0.3):
            for zc in zs:
                ok = np.ones((size, size), bool)
                for z in range(n):  # each slice needs room for the lesion's cross-section there
                    need = _reach(spec.radius, blob.wobble, (z - zc) / depth)
                    if need > 0:
                        ok &= _distance(brain[z]) >= edge_share * need + gap
                        ok &= _distance(~csf[z] & ~taken[z]) >= need + gap
                candidates = np.flatnonzero(ok)
                if candidates.size:
                    row, col = divmod(int(rng.choice(candidates)), size)
                    return placed((float(row), float(col)), zc)
    where = f"at {spec.center!r} (not parenchyma)" if spec.center is not None else "anywhere"
    raise InputError(f"a lesion of radius {spec.radius:g} px does not fit {where} in the brain of "
                     f"a {size} px image, clear of ventricles, midline and other lesions; use "
                     "smaller or fewer lesions")


def _blobs(rng: np.random.Generator, specs: tuple[LesionSpec, ...], brain: np.ndarray,
           csf: np.ndarray, volume: bool) -> list[_Blob]:
    """Draw each lesion's look, then place them: fixed centres first, then largest first."""
    looks = [_look(rng) for _ in specs]
    n, size = brain.shape[0], brain.shape[1]
    taken = np.zeros(brain.shape, bool)
    blobs = list(looks)  # replaced by the placed ones
    for i in sorted(range(len(specs)), key=lambda i: (specs[i].center is None, -specs[i].radius)):
        b = blobs[i] = _place(rng, specs[i], looks[i], brain, csf, taken, volume)
        radius, (cy, cx) = b.spec.radius, b.spec.center
        for z in range(n):  # keep the others clear of it on its slices and the ones next to them
            need = max(_reach(radius, b.wobble, (z + dz - b.zc) / b.depth) for dz in (-1, 0, 1))
            if need > 0:
                y, x = np.ogrid[0:size, 0:size]
                taken[z] |= (y - cy) ** 2 + (x - cx) ** 2 <= (need + _gap(size)) ** 2
    return blobs


def _outline(blob: _Blob, z: int, size: int) -> tuple[slice, slice, np.ndarray] | None:
    """The lesion's pixels on slice ``z`` as (rows, cols, box mask), or None if it misses it."""
    t = (z - blob.zc) / blob.depth
    if t * t >= 1:
        return None
    radius = blob.spec.radius * math.sqrt(1 - t * t)
    central = z == int(math.floor(blob.zc + 0.5))
    if radius < 0.5 and not central:
        return None
    cy, cx = blob.spec.center
    reach = int(math.ceil(radius * (1 + blob.wobble))) + 1
    r0, c0 = max(0, int(cy) - reach), max(0, int(cx) - reach)
    r1, c1 = min(size, int(cy) + reach + 2), min(size, int(cx) + reach + 2)
    y, x = np.ogrid[r0:r1, c0:c1]
    dy, dx = (y - cy).astype(np.float32), (x - cx).astype(np.float32)
    theta = np.arctan2(dy, dx)[..., None]
    wobble = (blob.amps * np.cos(_HARMONICS * theta + blob.phases + blob.twists * t)).sum(-1)
    box = np.hypot(dy, dx) <= radius * (1 + wobble)
    if central:  # the pixel nearest the centre, so even a sub-pixel lesion shows
        box[int(math.floor(cy + 0.5)) - r0, int(math.floor(cx + 0.5)) - c0] = True
    return slice(r0, r1), slice(c0, c1), box


def _render(size: int, n: int, specs: tuple[LesionSpec, ...], seed: int, volume: bool,
            sequence: str = "flair") -> tuple[np.ndarray, np.ndarray, tuple[LesionSpec, ...]]:
    """``(Z, H, W)`` uint8 image and bool mask, and the lesions as placed."""
    rng = np.random.default_rng(seed)
    fr = _frame(rng, size)
    # height from -1 (bottom of the head) to 1 (top); a few slices make a slab mid-head
    slices = [_anatomy(rng, fr, (2 * z - (n - 1)) / max(n - 1, 15)) for z in range(n)]
    anatomy, brain, csf = (np.stack(a) for a in zip(*slices))

    blobs = _blobs(rng, specs, brain, csf, volume)
    parenchyma = brain & ~csf
    mask = np.zeros((n, size, size), bool)
    level = np.zeros((n, size, size), np.float32)
    for blob in blobs:
        for z in range(n):
            hit = _outline(blob, z, size)
            if hit is not None:
                rows, cols, box = hit
                box &= parenchyma[z, rows, cols]
                mask[z, rows, cols] |= box
                level[z, rows, cols][box] = blob.level

    image = np.empty((n, size, size), np.uint8)
    for z in range(n):
        img = anatomy[z]
        if mask[z].any():
            grain = 11 * _smooth_noise(rng, (size, size), max(2 * size / 256, 1))
            texture = np.clip(level[z] + grain, 165, 235)
            inside = _distance(mask[z])
            rise = np.clip(0.35 + 0.2 * inside, 0.55, 1)  # brightest a few px inside
            if sequence == "t1c":  # enhancing rim, dark necrotic core deeper than the rim
                core = inside > max(2.0, 4.0 * size / 256)
                texture = np.where(core, np.clip(40 + 0.5 * grain, 25, 60), texture)
                rise = np.where(core, 1.0, rise)
            img = np.where(mask[z], img + rise * (texture - img), img)
        img = cv2.GaussianBlur(img * fr.bias, (3, 3), 0.5)  # partial-volume softening of edges
        re = img + _NOISE * rng.standard_normal(img.shape, dtype=np.float32)
        im = _NOISE * rng.standard_normal(img.shape, dtype=np.float32)
        image[z] = np.clip(np.sqrt(re * re + im * im) + 0.5, 0, 255).astype(np.uint8)
    return image, mask, tuple(b.spec for b in blobs)
