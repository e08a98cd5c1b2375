"""Run-length encoding of masks and the one scoring function every app shows."""

from __future__ import annotations

import numpy as np
import pytest

from metaseg_viewer.errors import InputError
from metaseg_viewer.evaluation import read_true_mask, score_against
from metaseg_viewer.io import encode_mask_png
from metaseg_viewer.encoding import rle_decode, rle_encode


@pytest.mark.parametrize("shape", [(1, 5, 7), (3, 4, 4), (4,), (0, 3)])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_rle_round_trip(shape: tuple[int, ...], fraction: float) -> None:
    mask = np.random.default_rng(0).random(shape) < fraction
    encoded = rle_encode(mask)
    assert sum(encoded["counts"]) == mask.size
    assert np.array_equal(rle_decode(encoded), mask)


def test_rle_hand_computed_and_malformed() -> None:
    assert rle_encode(np.array([[1, 1, 0], [0, 1, 1]]))["counts"] == [0, 2, 2, 2]
    assert rle_encode(np.array([0, 0, 1]))["counts"] == [2, 1]
    with pytest.raises(InputError, match="sum to 3"):
        rle_decode({"shape": [2, 2], "counts": [1, 2]})
    with pytest.raises(InputError, match="shape and counts"):
        rle_decode({"counts": [1]})
    with pytest.raises(InputError, match="non-negative"):
        rle_decode({"shape": [2], "counts": [3, -1]})


def test_score_against_hand_drawn_masks() -> None:
    ref = np.zeros((1, 10, 10), bool)
    ref[0, 1:3, 1:3] = True  # lesion A, 4 px
    ref[0, 6:8, 6:8] = True  # lesion B, 4 px, missed
    pred = np.zeros_like(ref)
    pred[0, 1:3, 1:4] = True  # 6 px over A
    pred[0, 9, 0] = True  # a false positive
    scores = score_against(pred, ref)
    assert scores["dice"] == pytest.approx(2 * 4 / (7 + 8))
    assert scores["iou"] == pytest.approx(4 / 11)
    assert scores["lesions"]["n_ref"] == 2 and scores["lesions"]["tp_ref"] == 1 and scores["lesions"]["fp_pred"] == 1
    assert scores["hd95_unit"] == "px"
    assert score_against(pred, ref, spacing=(3.0, 0.5, 0.5))["hd95_unit"] == "mm"
    empty = score_against(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    assert empty["dice"] == 1.0 and empty["lesions"]["sensitivity"] == 1.0
    with pytest.raises(InputError, match="differ in size"):
        score_against(pred, ref[:, :5])


def test_true_mask_of_another_size_is_refused() -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[5:9, 5:9] = 1
    assert read_true_mask(encode_mask_png(mask), (1, 20, 30)).sum() == 16
    with pytest.raises(InputError, match="mask is 20 x 30 pixels but the image is 40 x 30 pixels"):
        read_true_mask(encode_mask_png(mask), (1, 40, 30))
