"""Overlap and distance scores on hand-drawn masks with exact expected values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist

from metaseg_viewer.errors import InputError
from metaseg_viewer.metrics import (
    ScoreSummary,
    dice,
    hd95,
    iou,
    per_volume_dice,
    pooled_dice,
    pooled_iou,
    summarize_scores,
)


def _mask(shape: tuple[int, ...], *boxes: tuple[slice, ...]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for box in boxes:
        m[box] = True
    return m


# --- Dice and IoU -----------------------------------------------------------------------------


def test_two_squares_overlapping_by_two_pixels() -> None:
    a = _mask((5, 5), np.s_[0:2, 0:2])
    b = _mask((5, 5), np.s_[0:2, 1:3])  # shares column 1: 2 pixels
    assert dice(a, b) == pytest.approx(0.5)  # 2*2 / (4+4)
    assert iou(a, b) == pytest.approx(1 / 3)  # 2 / 6


def test_partial_overlap_in_3d() -> None:
    a = _mask((3, 4, 4), np.s_[0:2, 0:2, 0:2])  # 8 voxels
    b = _mask((3, 4, 4), np.s_[1:3, 0:2, 0:2])  # 8 voxels, 4 shared (slice 1)
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(4 / 12)


@pytest.mark.parametrize("score", [dice, iou])
def test_empty_cases(score) -> None:
    empty = np.zeros((4, 4), dtype=bool)
    full = _mask((4, 4), np.s_[1:3, 1:3])
    assert score(empty, empty) == 1.0
    assert score(full, empty) == 0.0
    assert score(empty, full) == 0.0


def test_one_pixel_masks() -> None:
    a = _mask((3, 3), np.s_[1, 1])
    b = _mask((3, 3), np.s_[1, 2])
    assert dice(a, a) == 1.0
    assert dice(a, b) == 0.0  # adjacent is not overlapping
    assert iou(a, b) == 0.0


def test_disjoint_masks_score_zero() -> None:
    a = _mask((6, 6), np.s_[0:2, 0:2])
    b = _mask((6, 6), np.s_[4:6, 4:6])
    assert dice(a, b) == 0.0
    assert iou(a, b) == 0.0


def test_nonzero_is_foreground() -> None:
    a = np.array([[0, 255], [0, 0]], dtype=np.uint8)
    b = np.array([[0, 1], [1, 0]], dtype=np.int64)
    assert dice(a, b) == pytest.approx(2 / 3)  # 2*1 / (1+2)


def test_shape_mismatch_is_an_input_error() -> None:
    with pytest.raises(InputError, match="shapes differ"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


# --- pooled and per-volume --------------------------------------------------------------------


def test_pooled_differs_from_mean_of_slices() -> None:
    # Slice 1: a 1-pixel prediction next to a 1-pixel lesion -> Dice 0.
    # Slice 2: a 3x3 lesion found exactly -> Dice 1.
    # Mean of slices = 0.5; pooled = 2*9 / ((1+1) + (9+9)) = 18/20 = 0.9.
    preds = [_mask((4, 4), np.s_[0, 0]), _mask((4, 4), np.s_[0:3, 0:3])]
    refs = [_mask((4, 4), np.s_[3, 3]), _mask((4, 4), np.s_[0:3, 0:3])]
    per_slice = [dice(p, r) for p, r in zip(preds, refs, strict=True)]
    assert np.mean(per_slice) == pytest.approx(0.5)
    assert pooled_dice(preds, refs) == pytest.approx(0.9)
    assert pooled_iou(preds, refs) == pytest.approx(9 / 11)  # 9 / ((1+1) + 9)


def test_pooled_empty_cases() -> None:
    empty = np.zeros((3, 3), dtype=bool)
    lesion = _mask((3, 3), np.s_[1, 1])
    assert pooled_dice([empty, empty], [empty, empty]) == 1.0
    assert pooled_iou([empty, empty], [empty, empty]) == 1.0
    assert pooled_dice([], []) == 1.0
    # Empty slices contribute nothing to the pool: one miss makes it 0.
    assert pooled_dice([empty, empty], [empty, lesion]) == 0.0


def test_pooled_accepts_generators_and_rejects_unequal_lengths() -> None:
    a = _mask((3, 3), np.s_[0:2, 0:2])
    assert pooled_dice((m for m in [a, a]), (m for m in [a, a])) == 1.0
    with pytest.raises(ValueError):
        pooled_dice([a, a], [a])


def test_per_volume_dice_and_summary() -> None:
    shape = (2, 4, 4)
    ref = _mask(shape, np.s_[:, 0:2, 0:2])  # 8 voxels
    volumes = {
        "perfect": (ref, ref),
        "half": (_mask(shape, np.s_[0, 0:2, 0:2]), ref),  # 2*4 / (4+8) = 2/3
        "missed": (np.zeros(shape, dtype=bool), ref),
        "empty": (np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)),
    }
    scores = per_volume_dice(volumes)
    assert list(scores) == ["perfect", "half", "missed", "empty"]
    assert scores == pytest.approx({"perfect": 1.0, "half": 2 / 3, "missed": 0.0, "empty": 1.0})
    summary = summarize_scores(scores)
    assert summary.n == 4
    assert summary.mean == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert summary.median == pytest.approx((2 / 3 + 1) / 2)


def test_summary_of_nothing_and_of_infinities() -> None:
    empty = summarize_scores([])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.median)
    with_inf = summarize_scores([1.0, 2.0, math.inf])
    assert with_inf == ScoreSummary(n=3, mean=math.inf, median=2.0)
    assert with_inf.as_dict() == {"n": 3, "mean": math.inf, "median": 2.0}


# --- HD95 -------------------------------------------------------------------------------------
# A k x k square's surface is its outer ring. Shifting a 3x3 square by s >= 3 rows: every ring
# pixel in row r (0, 1, 2) of one square is nearest to the same column of the facing row of the
# other, at s - r rows; the 8 distances are s-2 (x3), s-1 (x2), s (x3), so the 95th percentile
# (linear interpolation between the 7th and 8th sorted values, both s) is exactly s.


@pytest.mark.parametrize(
    ("shift", "spacing", "expected"),
    [
        ((10, 0), None, 10.0),
        ((10, 0), (2.0, 0.5), 20.0),  # rows are 2 mm apart
        ((0, 10), None, 10.0),
        ((0, 10), (2.0, 0.5), 5.0),  # columns are 0.5 mm apart
    ],
)
def test_hd95_of_shifted_square(shift, spacing, expected) -> None:
    a = _mask((20, 20), np.s_[2:5, 2:5])
    b = np.roll(a, shift, axis=(0, 1))
    assert hd95(a, b, spacing) == pytest.approx(expected)
    assert hd95(b, a, spacing) == pytest.approx(expected)


def test_hd95_of_square_shifted_by_one_row() -> None:
    # Overlapping by two rows: ring distances are 0 (x4) and 1 row (x4) in both directions.
    a = _mask((8, 8), np.s_[2:5, 2:5])
    b = _mask((8, 8), np.s_[3:6, 2:5])
    assert hd95(a, b) == pytest.approx(1.0)
    assert hd95(a, b, spacing=(2.0, 0.5)) == pytest.approx(2.0)


@pytest.mark.parametrize(("spacing", "expected"), [(None, 10.0), ((3.0, 1.0, 1.0), 30.0)])
def test_hd95_of_cube_shifted_along_slices(spacing, expected) -> None:
    # 3x3x3 cube, surface = 26 voxels; shifted 10 slices: distances 8 (x9), 9 (x8), 10 (x9).
    a = _mask((16, 5, 5), np.s_[1:4, 1:4, 1:4])
    b = np.roll(a, 10, axis=0)
    assert hd95(a, b, spacing) == pytest.approx(expected)


def test_hd95_single_pixels_with_anisotropic_spacing() -> None:
    a = _mask((10, 10), np.s_[1, 1])
    b = _mask((10, 10), np.s_[4, 5])  # 3 rows, 4 columns away
    assert hd95(a, b) == pytest.approx(5.0)
    assert hd95(a, b, spacing=(2.0, 1.0)) == pytest.approx(math.sqrt(6.0**2 + 4.0**2))


def test_hd95_empty_cases_and_identity() -> None:
    empty = np.zeros((6, 6), dtype=bool)
    lesion = _mask((6, 6), np.s_[1:4, 1:4])
    assert hd95(empty, empty) == 0.0
    assert hd95(lesion, empty) == math.inf
    assert hd95(empty, lesion) == math.inf
    assert hd95(lesion, lesion) == 0.0


def test_hd95_mask_on_array_edge() -> None:
    # Outside the array is background, so a mask filling the 3x3 array has its outer ring as
    # surface. a -> b (b = left column): ring distances 0 (x3), 1 (x2), 2 (x3) -> 95th pct 2;
    # b -> a: b lies on a's ring -> 0.
    a = np.ones((3, 3), dtype=bool)
    b = _mask((3, 3), np.s_[:, 0])
    assert hd95(a, b) == pytest.approx(2.0)


def test_hd95_spacing_checks() -> None:
    a = _mask((1, 4, 4), np.s_[0, 0:2, 0:2])
    b = _mask((1, 4, 4), np.s_[0, 2:4, 0:2])
    # dz is irrelevant on a single slice, so an unknown (nan) thickness is accepted.
    assert hd95(a, b, spacing=(math.nan, 1.5, 1.0)) == pytest.approx(hd95(a, b, (1.0, 1.5, 1.0)))
    with pytest.raises(InputError, match="entries"):
        hd95(a, b, spacing=(1.0, 1.0))
    with pytest.raises(InputError, match="positive"):
        hd95(a, b, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="positive"):
        hd95(a[0], b[0], spacing=(math.nan, 1.0))


def _brute_hd95(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Independent reference: surface by explicit face-neighbour shifts, all-pairs distances."""

    def surface_points(m: np.ndarray) -> np.ndarray:
        padded = np.pad(m, 1)
        inner = tuple(slice(1, -1) for _ in range(m.ndim))
        interior = m.copy()
        for axis in range(m.ndim):
            for step in (-1, 1):
                interior &= np.roll(padded, step, axis=axis)[inner]
        return np.argwhere(m & ~interior) * np.asarray(spacing)

    d = cdist(surface_points(a), surface_points(b))
    return float(max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95)))


spacings = st.sampled_from([0.5, 1.0, 2.5])


@settings(max_examples=60, deadline=None)
@given(a=arrays(bool, (4, 7, 6)), b=arrays(bool, (4, 7, 6)), spacing=st.tuples(*[spacings] * 3))
def test_hd95_matches_brute_force_3d(a, b, spacing) -> None:
    if a.any() and b.any():
        assert hd95(a, b, spacing) == pytest.approx(_brute_hd95(a, b, spacing))


@settings(max_examples=60, deadline=None)
@given(a=arrays(bool, (9, 8)), b=arrays(bool, (9, 8)), spacing=st.tuples(spacings, spacings))
def test_hd95_matches_brute_force_2d(a, b, spacing) -> None:
    if a.any() and b.any():
        assert hd95(a, b, spacing) == pytest.approx(_brute_hd95(a, b, spacing))


def test_hd95_large_volume_value() -> None:
    # Two ellipsoids filling most of a 150x256x256 volume (speed is measured in benchmarks/).
    z, y, x = np.ogrid[:150, :256, :256]
    a = (z - 75) ** 2 / 60**2 + (y - 128) ** 2 / 100**2 + (x - 128) ** 2 / 100**2 < 1
    b = (z - 72) ** 2 / 58**2 + (y - 124) ** 2 / 104**2 + (x - 130) ** 2 / 96**2 < 1
    assert 0.0 < hd95(a, b, spacing=(1.0, 0.5, 0.5)) < 10.0


# --- properties -------------------------------------------------------------------------------

masks = arrays(bool, st.tuples(st.integers(1, 6), st.integers(1, 6)))


@given(data=st.data())
def test_dice_properties(data) -> None:
    a = data.draw(masks)
    b = data.draw(arrays(bool, a.shape))
    d = dice(a, b)
    assert 0.0 <= d <= 1.0
    assert d == dice(b, a)
    assert dice(a, a) == 1.0
    assert iou(a, b) == pytest.approx(d / (2.0 - d))
