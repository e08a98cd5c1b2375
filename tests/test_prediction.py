"""The core's result type: one re-thresholding rule, edits carried over, HD95's empty cases worded once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.evaluation import hd95_text, score_against
from metaseg_viewer.prediction import Prediction, binarize, carry_edits


def _probabilities() -> np.ndarray:
    """Three slices: a 3x3 blob (p 0.9) in slices 0-2 at the same place and a 2x2 blob (p 0.6) in slice 1."""
    p = np.zeros((3, 12, 12), np.float32)
    p[:, 2:5, 2:5] = 0.9
    p[1, 8:10, 8:10] = 0.6
    return p


def test_rethreshold_uses_the_stored_probabilities_and_the_same_rule() -> None:
    pred = Prediction.from_probabilities(_probabilities(), InferenceConfig(0.5, False, 0), volume=True)
    assert pred.mask.sum() == 27 + 4
    high = pred.rethreshold(threshold=0.7)
    assert high.mask.sum() == 27 and high.settings.threshold == 0.7 and high.settings.min_lesion_size == 0
    assert high.probabilities is pred.probabilities  # no copy, no network
    assert pred.rethreshold() is pred  # nothing changed
    assert np.array_equal(pred.rethreshold(0.3, 5).mask, binarize(pred.probabilities, 0.3, 5, volume=True))


def test_minimum_size_counts_3d_components_for_volumes_and_2d_ones_otherwise() -> None:
    settings = InferenceConfig(0.5, False, 10)
    volume = Prediction.from_probabilities(_probabilities(), settings, volume=True)
    slices = Prediction.from_probabilities(_probabilities(), settings, volume=False)
    assert volume.mask.sum() == 27  # the 27-voxel blob survives, the 4-voxel one does not
    assert slices.mask.sum() == 0  # per slice the blob has 9 pixels < 10


def test_with_slice_re_derives_the_whole_volume_by_the_3d_rule() -> None:
    settings = InferenceConfig(0.5, False, 20)
    p = _probabilities()
    p[1] = 0  # slice 1 not segmented yet: the blob is two 9-voxel pieces, both dropped
    pred = Prediction.from_probabilities(p, settings, volume=True)
    assert pred.mask.sum() == 0
    updated = pred.with_slice(1, _probabilities()[1])
    assert updated.mask.sum() == 27  # now one 27-voxel component through slices 0-2
    assert np.array_equal(updated.mask, Prediction.from_probabilities(_probabilities(), settings, True).mask)


def test_carry_edits_keeps_painted_and_erased_pixels() -> None:
    before = np.zeros((1, 4, 4), bool)
    before[0, 0, 0] = True
    after = np.zeros((1, 4, 4), bool)
    after[0, 3, 3] = after[0, 0, 0] = True
    labels = before.astype(np.uint8)
    labels[0, 0, 0] = 0  # erased by hand
    labels[0, 1, 1] = 2  # painted with another label
    out = carry_edits(labels, before, after)
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[0, 1, 1] == 2 and out[0, 3, 3] == 1
    assert out.sum() == 3


@pytest.mark.parametrize(("pred_px", "ref_px", "value", "text"), [
    (0, 0, 0.0, "0.0 px (both masks empty)"),
    (0, 4, None, "undefined (the prediction is empty)"),
    (4, 0, None, "undefined (the true mask is empty)"),
])
def test_hd95_empty_cases_are_json_safe_and_worded_once(pred_px: int, ref_px: int, value, text: str) -> None:
    pred, ref = np.zeros((1, 8, 8), bool), np.zeros((1, 8, 8), bool)
    pred[0, :2, :pred_px // 2] = True
    ref[0, 4:6, 4:4 + ref_px // 2] = True
    scores = score_against(pred, ref)
    assert scores["hd95"] == value
    assert hd95_text(scores) == text
    assert "NaN" not in json.dumps(scores) and "Infinity" not in json.dumps(scores)


def test_hd95_text_of_two_lesions_gives_the_distance_and_unit() -> None:
    pred, ref = np.zeros((1, 8, 8), bool), np.zeros((1, 8, 8), bool)
    pred[0, 1, 1] = ref[0, 1, 4] = True
    scores = score_against(pred, ref, spacing=(1.0, 0.5, 0.5))
    assert scores["hd95"] == pytest.approx(1.5) and hd95_text(scores) == "1.5 mm"
