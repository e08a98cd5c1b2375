"""Synthetic FLAIR samples: deterministic, shaped as documented, mask exactly on the lesions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from metaseg_viewer.samples import LesionSpec, Sample, default_lesions, make_slice, make_volume


def _ring(mask: np.ndarray, inner: int = 2, outer: int = 6) -> np.ndarray:
    """Pixels between ``inner`` and ``outer`` pixels outside ``mask`` (same dimensionality)."""
    structure = ndi.generate_binary_structure(mask.ndim, 1)
    if mask.ndim == 3:  # grow in-plane only
        structure[0] = structure[2] = False
    near = ndi.binary_dilation(mask, structure, iterations=inner)
    return ndi.binary_dilation(mask, structure, iterations=outer) & ~near


# --- determinism, shapes ------------------------------------------------------------------------


def test_same_seed_gives_identical_arrays() -> None:
    a, b = make_slice(seed=7), make_slice(seed=7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.lesions == b.lesions and a.description == b.description
    va, vb = make_volume(n_slices=6, seed=7), make_volume(n_slices=6, seed=7)
    assert np.array_equal(va.image, vb.image) and np.array_equal(va.mask, vb.mask)


def test_different_seeds_give_different_arrays() -> None:
    a, b = make_slice(seed=1), make_slice(seed=2)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.mask, b.mask)
    assert not np.array_equal(make_volume(n_slices=4, seed=1).image,
                              make_volume(n_slices=4, seed=2).image)


def test_slice_shape_dtype_and_spacing() -> None:
    s = make_slice()
    assert isinstance(s, Sample)
    assert s.image.shape == (256, 256) and s.image.dtype == np.uint8
    assert s.mask.shape == (256, 256) and s.mask.dtype == bool
    assert s.spacing == pytest.approx((0.9375, 0.9375))
    assert "slice" in s.description and "256x256" in s.description
    small = make_slice(size=64)
    assert small.image.shape == small.mask.shape == (64, 64)
    assert small.spacing == pytest.approx((3.75, 3.75))  # same 240 mm field of view


def test_volume_shape_dtype_and_spacing() -> None:
    v = make_volume(n_slices=5, size=96)
    assert v.image.shape == v.mask.shape == (5, 96, 96)
    assert v.image.dtype == np.uint8 and v.mask.dtype == bool
    assert v.spacing == pytest.approx((3.0, 2.5, 2.5))
    assert make_volume().image.shape == (16, 256, 256)


def test_sample_is_frozen() -> None:
    s = make_slice(size=32)
    with pytest.raises(AttributeError):
        s.image = np.zeros((2, 2), np.uint8)  # type: ignore[misc]


# --- what the image looks like ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 5])
def test_intensities_fill_a_flair_like_8_bit_range(seed: int) -> None:
    s = make_slice(seed=seed)
    corners = np.concatenate([s.image[:12, :12].ravel(), s.image[-12:, -12:].ravel()])
    assert corners.mean() < 15  # background is black up to noise
    assert corners.std() > 0.5  # ... and noisy (Rician floor), not flat zero
    brain = s.image[96:160, 60:196][~s.mask[96:160, 60:196]]
    assert 90 <= np.median(brain) <= 120
    assert 170 <= s.image[s.mask].mean() <= 230
    assert s.image.max() > 200


def test_head_has_bright_scalp_dark_rim_and_dark_ventricles() -> None:
    s = make_slice(lesions=(), seed=3)
    row = s.image[120:136].astype(float).mean(0)  # a band through the head's centre, left to right
    left = row[:128]
    scalp = int(np.argmax(left > 130))
    assert scalp > 0 and left[:scalp].max() < 60  # black, then a bright ring
    rim = left[scalp : scalp + 12]
    assert rim.min() < 70  # dark bone / CSF just inside the ring
    assert 90 <= np.median(left[scalp + 14 : scalp + 40]) <= 125  # then brain
    centre = s.image[96:160, 108:148]
    assert (centre < 65).sum() > 100  # ventricles: dark CSF near the middle


# --- lesions and mask ---------------------------------------------------------------------------


def test_mask_empty_without_lesions_and_nonempty_with() -> None:
    assert not make_slice(lesions=()).mask.any()
    assert not make_volume(n_slices=4, lesions=[]).mask.any()
    assert make_slice(lesions=()).description.endswith("no lesion")
    assert make_slice(lesions=(8,)).mask.any()
    assert make_volume(n_slices=8, lesions=(8,)).mask.any()


def test_default_lesions_are_used_when_none_given() -> None:
    s = make_slice(seed=4)
    assert tuple(p.radius for p in s.lesions) == default_lesions(256) == (18.0, 6.0, 2.0)
    assert ndi.label(s.mask)[1] == 3
    assert default_lesions(128) == (9.0, 3.0, 1.0)
    assert default_lesions(32) == (1.0,)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mask_lies_on_the_requested_lesions(seed: int) -> None:
    radii = (15, 7, 3)
    s = make_slice(lesions=radii, seed=seed)
    assert [p.radius for p in s.lesions] == list(radii)
    rows, cols = np.nonzero(s.mask)
    near_any = np.zeros(rows.size, bool)
    for p in s.lesions:
        cy, cx = p.center
        assert s.mask[round(cy), round(cx)]  # every lesion covers its own centre
        near_any |= np.hypot(rows - cy, cols - cx) <= p.radius * 1.3 + 1.5
    assert near_any.all()  # and there is no mask anywhere else


@pytest.mark.parametrize("seed", [0, 3])
def test_mask_edge_is_the_bright_region_edge(seed: int) -> None:
    s = make_slice(lesions=(14, 6, 3), seed=seed)
    just_outside = ndi.binary_dilation(s.mask) & ~s.mask
    assert (s.image[s.mask] > 135).mean() > 0.9  # nearly every mask pixel is lesion-bright
    assert (s.image[just_outside] > 135).mean() < 0.05  # the pixels touching it are not


@pytest.mark.parametrize(("seed", "radii"), [(0, (20,)), (1, (12, 4)), (2, (10, 6, 3)),
                                             (3, (8, 6, 4, 2, 1)), (4, (30,))])
def test_one_connected_component_per_lesion(seed: int, radii: tuple[float, ...]) -> None:
    s = make_slice(lesions=radii, seed=seed)
    _, n = ndi.label(s.mask)
    assert n == len(radii)


def test_auto_placed_lesions_stay_off_the_ventricles() -> None:
    for seed in range(10):
        s = make_slice(lesions=(10, 8, 6, 4), seed=seed)
        bare = make_slice(lesions=(), seed=seed)  # same head, no lesions
        dark = ndi.gaussian_filter(bare.image.astype(float), 1) < 70
        dark[:, :88] = dark[:, 168:] = False  # keep the middle, away from the skull
        ventricles = ndi.binary_opening(dark, iterations=2)  # drops thin sulci, keeps ventricles
        assert ventricles.sum() > 150
        assert not (s.mask & ndi.binary_dilation(ventricles)).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lesions_are_brighter_than_the_brain_around_them(seed: int) -> None:
    s = make_slice(lesions=(14, 5), seed=seed)
    around = _ring(s.mask) & (s.image > 50)  # surrounding tissue, not the dark CSF rim
    assert s.image[s.mask].mean() > s.image[around].mean() + 50


@pytest.mark.parametrize("radius", [1, 1.5, 2, 0.3])
def test_tiny_lesion_still_gives_a_small_bright_mask(radius: float) -> None:
    s = make_slice(lesions=(radius,), seed=9)
    assert 1 <= s.mask.sum() <= math.pi * (radius * 1.3 + 1.5) ** 2
    assert ndi.label(s.mask)[1] == 1
    assert s.image[s.mask].mean() > np.median(s.image[_ring(s.mask)]) + 25


def test_sub_pixel_lesion_off_the_pixel_grid_still_marks_its_nearest_pixel() -> None:
    spec = LesionSpec(0.3, center=(190.4, 99.6))
    s = make_slice(lesions=[spec], seed=0)
    assert np.flatnonzero(s.mask.ravel()).tolist() == [190 * 256 + 100]
    v = make_volume(n_slices=5, lesions=[LesionSpec(0.3, center=(190.4, 99.6), z=2)], seed=0)
    assert v.mask.sum() == 1 and v.mask[2, 190, 100]


def test_large_lesion_outline_is_irregular() -> None:
    s = make_slice(lesions=(25,), seed=2)
    (cy, cx) = s.lesions[0].center
    edge = s.mask & ~ndi.binary_erosion(s.mask)
    dist = np.hypot(*(np.nonzero(edge) - np.array([[cy], [cx]])))
    assert dist.max() - dist.min() > 4  # a pixelated circle would stay within ~1.5 px
    assert dist.std() / dist.mean() > 0.04


def test_fixed_center_is_honoured() -> None:
    s = make_slice(lesions=[LesionSpec(6, center=(190.0, 100.0))], seed=0)
    assert s.lesions[0].center == (190.0, 100.0)
    assert s.mask[190, 100] and ndi.label(s.mask)[1] == 1
    rows, cols = np.nonzero(s.mask)
    assert np.hypot(rows - 190, cols - 100).max() <= 6 * 1.3 + 1.5


# --- volumes ------------------------------------------------------------------------------------


def test_volume_lesions_span_several_slices_and_fade_out() -> None:
    v = make_volume(n_slices=16, lesions=(15, 6, 2), seed=1)
    labels, n = ndi.label(v.mask)  # 3-D components
    assert n == 3
    for spec in v.lesions:
        z, cy, cx = round(spec.z), round(spec.center[0]), round(spec.center[1])
        one = labels == labels[z, cy, cx]
        per_slice = one.sum((1, 2))
        slices = np.flatnonzero(per_slice)
        assert slices.size > 1  # a blob, not a disk on one slice
        assert np.all(np.diff(slices) == 1)  # ... in adjacent slices
        assert per_slice[z] == per_slice.max()  # widest at its centre
        assert per_slice[slices[0]] < per_slice[z] and per_slice[slices[-1]] < per_slice[z]


def test_default_volume_has_slices_without_lesion() -> None:
    v = make_volume(seed=0)
    has = v.mask.any((1, 2))
    assert has.any() and not has.all()
    assert not has[0] and not has[-1]  # lesions vanish before the volume's edges


def test_head_shrinks_toward_top_and_bottom() -> None:
    v = make_volume(n_slices=16, lesions=(), seed=0)
    area = (v.image > 40).sum((1, 2))
    assert area[0] < 0.8 * area[8] and area[-1] < 0.8 * area[8]
    assert area[:8].tolist() == sorted(area[:8].tolist())


def test_volume_fixed_z_and_depth() -> None:
    v = make_volume(n_slices=12, lesions=[LesionSpec(8, z=4, depth=2.5)], seed=3)
    assert v.lesions[0].z == 4 and v.lesions[0].depth == 2.5
    assert np.flatnonzero(v.mask.any((1, 2))).tolist() == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("n_slices", [1, 2, 3])
def test_thin_volumes_work(n_slices: int) -> None:
    v = make_volume(n_slices=n_slices, seed=0)
    assert v.image.shape[0] == n_slices and v.mask.any()


@pytest.mark.parametrize("size", [32, 33, 47, 48, 100])
def test_smallest_sizes_work_with_defaults(size: int) -> None:
    s = make_slice(size=size, seed=1)
    assert s.mask.any() and ndi.label(s.mask)[1] == len(default_lesions(size))
    assert make_volume(n_slices=4, size=size, seed=1).mask.any()


# --- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [31, 0, -5, 5000, 64.0, True, "256"])
def test_bad_size_is_rejected(size: object) -> None:
    with pytest.raises(ValueError, match="size must be an integer from 32"):
        make_slice(size=size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size must be an integer from 32"):
        make_volume(size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_slices", [0, -1, 2.0, 10_000])
def test_bad_n_slices_is_rejected(n_slices: object) -> None:
    with pytest.raises(ValueError, match="n_slices must be an integer from 1"):
        make_volume(n_slices=n_slices)  # type: ignore[arg-type]


@pytest.mark.parametrize("lesions", [(0,), (-3,), (5, float("nan")), (float("inf"),), ("a",),
                                     [None], "12", 0])
def test_bad_radii_are_rejected(lesions: object) -> None:
    with pytest.raises(ValueError, match="radius|radii"):
        make_slice(lesions=lesions)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"center": (5, 5, 5)}, {"center": (1, "x")}, {"center": 5},
                                    {"depth": 0}, {"depth": -1.0},
                                    {"z": float("nan")}])
def test_bad_lesion_spec_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="lesion"):
        LesionSpec(5, **kwargs)


def test_lesions_that_cannot_be_placed_are_rejected() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        make_slice(lesions=(80,))
    with pytest.raises(ValueError, match="does not fit"):
        make_slice(lesions=[LesionSpec(4, center=(3.0, 3.0))])  # background, not brain
    with pytest.raises(ValueError, match="within 0..255"):
        make_slice(lesions=[LesionSpec(4, center=(300.0, 10.0))])
    with pytest.raises(ValueError, match="slice index from 0 to 7"):
        make_volume(n_slices=8, lesions=[LesionSpec(4, z=8)])


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="seed must be an integer"):
        make_slice(seed=-1)


def test_a_single_number_means_one_lesion() -> None:
    s = make_slice(lesions=10, seed=0)
    assert len(s.lesions) == 1 and ndi.label(s.mask)[1] == 1
