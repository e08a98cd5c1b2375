"""Lesion-wise detection and the lesion table on hand-drawn masks with exact expected values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from metaseg_viewer.errors import InputError
from metaseg_viewer.lesions import (
    Lesion,
    label_components,
    lesion_scores,
    lesion_table,
    lesions_to_rows,
    match_lesions,
    pool_lesion_scores,
    remove_small_components,
)


def _mask(shape: tuple[int, ...], *boxes: tuple[slice, ...] | tuple[int, ...]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for box in boxes:
        m[box] = True
    return m


# --- components -------------------------------------------------------------------------------


def test_diagonal_pixels_join_only_with_full_connectivity() -> None:
    m = _mask((3, 3), (0, 0), (1, 1))
    assert label_components(m)[1] == 1
    assert label_components(m, "full")[1] == 1
    assert label_components(m, "face")[1] == 2


def test_diagonal_voxels_across_slices() -> None:
    m = _mask((2, 3, 3), (0, 0, 0), (1, 1, 1))
    assert label_components(m, "full")[1] == 1  # 26-neighbourhood
    assert label_components(m, "face")[1] == 2  # 6-neighbourhood


def test_lesion_spanning_two_slices_is_one_3d_lesion_but_two_2d_lesions() -> None:
    volume = _mask((3, 5, 5), np.s_[0:2, 1:3, 1:3])
    labels, n = label_components(volume)
    assert n == 1
    assert set(np.unique(labels)) == {0, 1}
    assert sum(label_components(slice_)[1] for slice_ in volume) == 2


def test_label_components_empty_and_bad_input() -> None:
    labels, n = label_components(np.zeros((4, 4), dtype=bool))
    assert n == 0 and not labels.any()
    with pytest.raises(InputError, match="2-D"):
        label_components(np.zeros(4, dtype=bool))
    with pytest.raises(InputError, match="face, full"):
        label_components(np.zeros((4, 4), dtype=bool), connectivity="edge")


def test_remove_small_components_2d() -> None:
    m = _mask((6, 8), (0, 0), np.s_[2, 2:5], np.s_[4:6, 5:8])  # sizes 1, 3, 6
    kept = remove_small_components(m, 3)
    assert kept.dtype == bool
    assert np.array_equal(kept, _mask((6, 8), np.s_[2, 2:5], np.s_[4:6, 5:8]))
    assert np.array_equal(remove_small_components(m, 4), _mask((6, 8), np.s_[4:6, 5:8]))
    assert not remove_small_components(m, 7).any()


def test_remove_small_components_min_size_one_returns_a_copy() -> None:
    m = _mask((3, 3), (1, 1))
    for min_size in (1, 0, -5):
        out = remove_small_components(m, min_size)
        assert np.array_equal(out, m)
        assert out is not m
    out[0, 0] = True
    assert not m[0, 0]


def test_remove_small_components_counts_voxels_in_3d() -> None:
    # One voxel in each of two slices, same pixel: one 2-voxel lesion in 3-D.
    volume = _mask((2, 3, 3), (0, 1, 1), (1, 1, 1))
    assert np.array_equal(remove_small_components(volume, 2), volume)
    # Per slice each is a 1-pixel component and is dropped.
    assert not any(remove_small_components(s, 2).any() for s in volume)


def test_remove_small_components_on_empty_and_0_1_input() -> None:
    assert not remove_small_components(np.zeros((3, 3), dtype=np.uint8), 2).any()
    m = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=np.uint8)
    expected = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)  # the 1-px one goes
    assert np.array_equal(remove_small_components(m, 2), expected)


# --- matching and lesion-wise scores ----------------------------------------------------------
# Reference (8x10): R1 = 2x2 square rows 0-1, cols 0-1 (4 px); R2 = one pixel at (6, 6).
# Prediction: P1 = 2x3 block rows 0-1, cols 1-3 (6 px), overlapping R1 in column 1 (2 px);
# P2 = one pixel at (4, 9) and P3 = one pixel at (7, 0), both touching nothing.
#   R1 found (Dice with P1 = 2*2 / (4+6) = 0.4), R2 missed (0); P2, P3 false positives.
#   sensitivity = 1/2, precision = 1/3, F1 = 2*(1/3)*(1/2) / (1/3 + 1/2) = 0.4,
#   lesion-wise Dice = (0.4 + 0) / (2 true lesions + 2 false positives) = 0.1.

REF = _mask((8, 10), np.s_[0:2, 0:2], (6, 6))
PRED = _mask((8, 10), np.s_[0:2, 1:4], (4, 9), (7, 0))


def test_match_counts_a_missed_lesion_and_false_positives() -> None:
    match = match_lesions(PRED, REF)
    assert (match.n_ref, match.n_pred) == (2, 3)
    assert (match.tp_ref, match.fn) == (1, 1)
    assert (match.tp_pred, match.fp_pred) == (1, 2)
    assert match.ref_sizes == (4, 1)
    assert match.ref_hits == ((1,), ())
    assert match.ref_dice == pytest.approx((0.4, 0.0))


def test_lesion_scores_with_a_miss_and_false_positives() -> None:
    scores = lesion_scores(PRED, REF)
    assert scores.sensitivity == pytest.approx(0.5)
    assert scores.precision == pytest.approx(1 / 3)
    assert scores.f1 == pytest.approx(0.4)
    assert scores.lesion_dice == pytest.approx(0.1)
    d = scores.as_dict()
    assert d["fp_pred"] == 2 and d["fn"] == 1 and d["lesion_dice"] == pytest.approx(0.1)
    assert set(d) == {
        "n_ref", "n_pred", "tp_ref", "tp_pred", "fp_pred", "fn",
        "sensitivity", "precision", "f1", "lesion_dice",
    }  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.f1 = 1.0  # type: ignore[misc]


def test_lesion_dice_uses_the_union_of_overlapping_components() -> None:
    # R = row 0, cols 0-5 (6 px). P1 = cols 0-1 (2 px), P2 = cols 4-6 (3 px), 4 px inside R.
    # Dice(R, P1 ∪ P2) = 2*4 / (6 + 5) = 8/11; no false positives, so lesion Dice = 8/11.
    ref = _mask((3, 8), np.s_[0, 0:6])
    pred = _mask((3, 8), np.s_[0, 0:2], np.s_[0, 4:7])
    match = match_lesions(pred, ref)
    assert match.ref_hits == ((1, 2),)
    scores = lesion_scores(pred, ref)
    assert scores.lesion_dice == pytest.approx(8 / 11)
    assert (scores.sensitivity, scores.precision) == (1.0, 1.0)


def test_one_component_covering_two_lesions_finds_both() -> None:
    # R1 = (0, 0), R2 = (0, 4); P = row 0, cols 0-4 (5 px). Each lesion: 2*1 / (1+5) = 1/3.
    ref = _mask((2, 6), (0, 0), (0, 4))
    pred = _mask((2, 6), np.s_[0, 0:5])
    scores = lesion_scores(pred, ref)
    assert (scores.tp_ref, scores.tp_pred, scores.fp_pred) == (2, 1, 0)
    assert scores.sensitivity == 1.0 and scores.precision == 1.0
    assert scores.lesion_dice == pytest.approx(1 / 3)  # (1/3 + 1/3) / 2


def test_one_pixel_lesions() -> None:
    ref = _mask((5, 5), (0, 0), (4, 4))
    assert lesion_scores(ref, ref).as_dict() == {
        "n_ref": 2, "n_pred": 2, "tp_ref": 2, "tp_pred": 2, "fp_pred": 0, "fn": 0,
        "sensitivity": 1.0, "precision": 1.0, "f1": 1.0, "lesion_dice": 1.0,
    }  # fmt: skip
    shifted = _mask((5, 5), (0, 2), (4, 4))  # first one moved away: a miss and an FP
    scores = lesion_scores(shifted, ref)
    assert (scores.sensitivity, scores.precision) == (0.5, 0.5)
    assert scores.lesion_dice == pytest.approx(1 / 3)  # (0 + 1) / (2 + 1)


def test_empty_cases() -> None:
    empty = np.zeros((4, 4), dtype=bool)
    lesion = _mask((4, 4), np.s_[1:3, 1:3])

    both = lesion_scores(empty, empty)
    assert (both.sensitivity, both.precision, both.f1, both.lesion_dice) == (1.0, 1.0, 1.0, 1.0)
    assert (both.n_ref, both.n_pred) == (0, 0)

    only_pred = lesion_scores(lesion, empty)  # nothing to find, one false positive
    assert (only_pred.sensitivity, only_pred.precision) == (1.0, 0.0)
    assert (only_pred.f1, only_pred.lesion_dice) == (0.0, 0.0)
    assert only_pred.fp_pred == 1

    only_ref = lesion_scores(empty, lesion)  # one lesion, nothing predicted
    assert (only_ref.sensitivity, only_ref.precision) == (0.0, 0.0)
    assert (only_ref.f1, only_ref.lesion_dice) == (0.0, 0.0)
    assert only_ref.fn == 1


def test_3d_scoring_versus_per_slice_scoring() -> None:
    # A 2x2 lesion on slices 0 and 1; the prediction marks it on slice 0 only.
    ref = _mask((2, 4, 4), np.s_[0:2, 0:2, 0:2])
    pred = _mask((2, 4, 4), np.s_[0, 0:2, 0:2])
    volume = lesion_scores(pred, ref)
    assert (volume.n_ref, volume.tp_ref) == (1, 1)  # one 3-D lesion, found
    assert volume.lesion_dice == pytest.approx(2 / 3)  # 2*4 / (8 + 4)
    per_slice = [match_lesions(p, r) for p, r in zip(pred, ref, strict=True)]
    assert sum(m.n_ref for m in per_slice) == 2  # two 2-D lesions
    assert sum(m.tp_ref for m in per_slice) == 1  # the one on slice 1 is missed


def test_face_connectivity_changes_the_lesion_count_in_scores() -> None:
    ref = _mask((3, 3), (0, 0), (1, 1))  # diagonal pair
    pred = _mask((3, 3), (0, 0))
    assert lesion_scores(pred, ref, "full").sensitivity == 1.0
    assert lesion_scores(pred, ref, "face").sensitivity == 0.5


def test_match_rejects_mismatched_shapes() -> None:
    with pytest.raises(InputError, match="shapes differ"):
        match_lesions(np.zeros((3, 3)), np.zeros((3, 4)))


@given(data=st.data())
def test_lesion_score_properties(data) -> None:
    shape = data.draw(st.tuples(st.integers(1, 7), st.integers(1, 7)))
    pred = data.draw(arrays(bool, shape))
    ref = data.draw(arrays(bool, shape))
    scores = lesion_scores(pred, ref)
    assert scores.tp_ref + scores.fn == scores.n_ref
    assert scores.tp_pred + scores.fp_pred == scores.n_pred
    for value in (scores.sensitivity, scores.precision, scores.f1, scores.lesion_dice):
        assert 0.0 <= value <= 1.0
    perfect = lesion_scores(ref, ref)
    assert (perfect.sensitivity, perfect.precision, perfect.f1, perfect.lesion_dice) == (
        1.0, 1.0, 1.0, 1.0,
    )  # fmt: skip


# --- lesion table -----------------------------------------------------------------------------


def test_lesion_table_2d() -> None:
    # Small lesion: (0, 0), 1 px. Large lesion: rows 2-3, cols 4-6 (6 px), centroid (2.5, 5).
    mask = _mask((5, 8), (0, 0), np.s_[2:4, 4:7])
    probs = np.zeros((5, 8))
    probs[0, 0] = 0.3
    probs[2, 4:7] = 0.9
    probs[3, 4:7] = 0.5
    lesions = lesion_table(mask, probabilities=probs, spacing=(0.5, 2.0))  # 1 mm² per pixel
    assert len(lesions) == 2
    big, small = lesions
    assert big == Lesion(
        label=1,
        size_px=6,
        size_mm=6.0,
        centroid=(2.5, 5.0),
        bbox=((2, 4), (4, 7)),
        mean_probability=pytest.approx(0.7),
    )
    assert small == Lesion(2, 1, 1.0, (0.0, 0.0), ((0, 1), (0, 1)), pytest.approx(0.3))
    assert mask[big.slices].sum() == 6


def test_lesion_table_without_spacing_or_probabilities() -> None:
    (lesion,) = lesion_table(_mask((4, 4), np.s_[1:3, 1]))
    assert lesion.size_px == 2
    assert lesion.size_mm is None and lesion.mean_probability is None
    assert lesion.centroid == (1.5, 1.0)


def test_lesion_table_ties_keep_scan_order() -> None:
    mask = _mask((3, 7), (2, 0), (0, 3), (1, 6))  # three 1-px lesions
    lesions = lesion_table(mask)
    assert [lesion.centroid for lesion in lesions] == [(0.0, 3.0), (1.0, 6.0), (2.0, 0.0)]
    assert [lesion.label for lesion in lesions] == [1, 2, 3]


def test_lesion_table_3d() -> None:
    # Slices 1-2, rows 0-1, col 2: 4 voxels, centroid (1.5, 0.5, 2); plus one voxel elsewhere.
    mask = _mask((4, 5, 5), np.s_[1:3, 0:2, 2], (3, 4, 4))
    lesions = lesion_table(mask, spacing=(3.0, 0.5, 0.5))  # 0.75 mm³ per voxel
    assert [lesion.size_px for lesion in lesions] == [4, 1]
    assert lesions[0].centroid == (1.5, 0.5, 2.0)
    assert lesions[0].size_mm == pytest.approx(3.0)
    assert lesions[0].bbox == ((1, 3), (0, 2), (2, 3))
    assert lesions[1].size_mm == pytest.approx(0.75)
    # Unknown slice thickness: the volume in mm³ is unknown too.
    assert lesion_table(mask, spacing=(math.nan, 0.5, 0.5))[0].size_mm is None


def test_lesion_table_empty_and_bad_input() -> None:
    assert lesion_table(np.zeros((4, 4), dtype=bool)) == []
    with pytest.raises(InputError, match="probabilities"):
        lesion_table(np.zeros((4, 4), dtype=bool), probabilities=np.zeros((4, 5)))
    with pytest.raises(InputError, match="entries"):
        lesion_table(np.ones((4, 4), dtype=bool), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="positive"):
        lesion_table(np.ones((4, 4), dtype=bool), spacing=(-1.0, 1.0))


def test_lesions_to_rows() -> None:
    rows_2d = lesions_to_rows(lesion_table(_mask((4, 4), np.s_[1:3, 1])))
    assert rows_2d == [
        {
            "label": 1,
            "size_px": 2,
            "area_mm2": None,
            "centroid_row": 1.5,
            "centroid_col": 1.0,
            "mean_probability": None,
        }
    ]
    volume = _mask((3, 4, 4), np.s_[0:2, 1, 2])  # centroid (0.5, 1, 2)
    rows_3d = lesions_to_rows(lesion_table(volume, np.full(volume.shape, 0.25), (2.0, 1.0, 1.0)))
    assert list(rows_3d[0]) == [
        "label", "size_px", "volume_mm3", "first_slice", "last_slice", "centroid_z", "centroid_row",
        "centroid_col", "mean_probability",
    ]  # fmt: skip
    assert (rows_3d[0]["first_slice"], rows_3d[0]["last_slice"]) == (0, 1)
    assert (rows_3d[0]["centroid_z"], rows_3d[0]["centroid_row"], rows_3d[0]["centroid_col"]) == (
        0.5, 1.0, 2.0,
    )  # fmt: skip
    assert rows_3d[0]["volume_mm3"] == pytest.approx(4.0)
    assert rows_3d[0]["mean_probability"] == pytest.approx(0.25)
    assert lesions_to_rows([]) == []


# --- pooling the scores of several cases ------------------------------------------------------
# Case A = PRED vs REF above (2 true lesions, 1 found; 3 components, 1 hit; lesion Dice 0.1 over
# 4 scored objects); case B = one lesion found exactly (Dice 1 over 1); case C = both empty.
#   pooled: 3 true lesions, 2 found; 4 components, 2 hit, 2 false positives, 1 missed;
#   sensitivity 2/3, precision 2/4, F1 = 2*(2/3)*(1/2) / (2/3 + 1/2) = 4/7,
#   lesion-wise Dice = (0.1*4 + 1*1 + 1*0) / (4 + 1 + 0) = 0.28.


def test_pool_lesion_scores_adds_counts_and_recomputes_rates() -> None:
    one = _mask((5, 5), np.s_[1:3, 1:3])
    empty = np.zeros((5, 5), dtype=bool)
    pooled = pool_lesion_scores([lesion_scores(PRED, REF), lesion_scores(one, one), lesion_scores(empty, empty)])
    assert (pooled.n_ref, pooled.n_pred, pooled.tp_ref, pooled.tp_pred) == (3, 4, 2, 2)
    assert (pooled.fp_pred, pooled.fn) == (2, 1)
    assert pooled.sensitivity == pytest.approx(2 / 3, abs=1e-12)
    assert pooled.precision == pytest.approx(0.5, abs=1e-12)
    assert pooled.f1 == pytest.approx(4 / 7, abs=1e-12)
    assert pooled.lesion_dice == pytest.approx(0.28, abs=1e-12)


def test_pool_lesion_scores_empty_cases() -> None:
    empty = np.zeros((4, 4), dtype=bool)
    lesion = _mask((4, 4), np.s_[1:3, 1:3])
    assert pool_lesion_scores([]) == lesion_scores(empty, empty)  # nothing at all: every score 1.0
    assert pool_lesion_scores([]).as_dict() == {
        "n_ref": 0, "n_pred": 0, "tp_ref": 0, "tp_pred": 0, "fp_pred": 0, "fn": 0,
        "sensitivity": 1.0, "precision": 1.0, "f1": 1.0, "lesion_dice": 1.0,
    }  # fmt: skip
    only_pred = pool_lesion_scores([lesion_scores(lesion, empty), lesion_scores(empty, empty)])
    assert (only_pred.sensitivity, only_pred.precision, only_pred.f1, only_pred.lesion_dice) == (1.0, 0.0, 0.0, 0.0)
    only_ref = pool_lesion_scores([lesion_scores(empty, lesion), lesion_scores(empty, empty)])
    assert (only_ref.sensitivity, only_ref.precision, only_ref.f1, only_ref.lesion_dice) == (0.0, 0.0, 0.0, 0.0)
    assert (only_ref.n_ref, only_ref.fn) == (1, 1)
