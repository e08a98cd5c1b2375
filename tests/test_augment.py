"""Robustness augmentation on real LGG FLAIR slices (skipped where ../shared/data is absent).

Each transform is checked for what its docstring promises; outputs are always new uint8 arrays of
the input's shape, and the generator alone decides them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from metaseg_viewer.io import read_scan
from training.augment import (
    ROBUSTNESS_CONDITIONS,
    RobustnessAugment,
    brain_mask,
    field_of_view,
    head_mask,
    intensity,
    noise,
    renormalise,
    resolution,
    skull_strip,
)

Slice = tuple[np.ndarray, np.ndarray]


def _read(shared_data: Path, patient: str, number: int) -> Slice:
    folder = shared_data / "lgg_flair" / patient
    image = read_scan(folder / "images" / f"{patient}_{number}.png").pixels[0]
    mask = read_scan(folder / "masks" / f"{patient}_{number}.png").pixels[0]
    return image, mask


@pytest.fixture(scope="module")
def lesion_slice(shared_data: Path) -> Slice:
    """A mid slice (1383 lesion pixels, mask 0/255) with a bright scalp and a dark skull gap."""
    return _read(shared_data, "TCGA_CS_4942_19970222", 12)


@pytest.fixture(scope="module")
def cortical_lesion(shared_data: Path) -> Slice:
    """A large lesion (7929 pixels) that reaches the cortex under the skull; the head nearly fills the frame."""
    return _read(shared_data, "TCGA_FG_A4MU_20030903", 16)


def _bbox_fraction(image: np.ndarray) -> float:
    """The head's larger bounding-box side over the frame side (square slices)."""
    x, y, w, h = cv2.boundingRect(head_mask(image).astype(np.uint8))
    return max(w, h) / image.shape[0]


def _sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(image, cv2.CV_32F).var())


def test_brain_mask_keeps_the_lesion_and_leaves_out_corners_and_scalp(lesion_slice: Slice) -> None:
    image, mask = lesion_slice
    lesion, head, brain = mask > 0, head_mask(image), brain_mask(image)
    assert brain.dtype == bool and brain.shape == image.shape
    assert (brain & lesion).sum() == lesion.sum()
    for corner in (brain[:32, :32], brain[:32, -32:], brain[-32:, :32], brain[-32:, -32:]):
        assert not corner.any()
    edge = head & ~(cv2.erode(head.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)  # outer 3 px
    assert (edge & brain).sum() < 0.05 * edge.sum()
    scalp = head & ~lesion & (image > np.percentile(image[head & ~lesion], 95))  # bright scalp fat
    assert (scalp & brain).sum() < 0.05 * scalp.sum()
    assert 0.6 < brain.sum() / head.sum() < 0.85


def test_brain_mask_keeps_a_lesion_at_the_cortex(cortical_lesion: Slice) -> None:
    image, mask = cortical_lesion
    lesion = mask > 0
    assert (brain_mask(image) & lesion).sum() >= 0.99 * lesion.sum()


def test_brain_mask_over_a_quarter_of_the_development_lesion_slices(shared_data: Path) -> None:
    """Every 4th lesion slice of slices.csv (285 slices): 0.02% of their lesion pixels fall
    outside the mask, 1 slice keeps under 95% of its lesion, the median brain is 78% of the head."""
    with open(shared_data / "lgg_flair" / "slices.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["mask_pixels"]) > 0][::4]
    lost = total = poor = 0
    ratios = []
    for row in rows:
        image, mask = _read(shared_data, row["patient"], int(row["slice"]))
        lesion, brain = mask > 0, brain_mask(image)
        missed = int((lesion & ~brain).sum())
        lost, total, poor = lost + missed, total + int(lesion.sum()), poor + (missed > 0.05 * lesion.sum())
        ratios.append(brain.sum() / head_mask(image).sum())
    assert lost < 0.005 * total
    assert poor <= 0.02 * len(rows)
    assert 0.65 < np.median(ratios) < 0.85


def test_a_blank_slice_has_no_head_and_no_brain() -> None:
    blank = np.zeros((256, 256), np.uint8)
    assert not head_mask(blank).any() and not brain_mask(blank).any()


@pytest.mark.parametrize("as_bool", [False, True])
def test_skull_strip_zeroes_outside_the_brain_and_keeps_the_lesion(lesion_slice: Slice, as_bool: bool) -> None:
    image, mask = lesion_slice
    mask = mask > 0 if as_bool else mask
    brain = brain_mask(image)
    out, out_mask = skull_strip(image, mask, np.random.default_rng(0), extra_erosion=(0, 0))
    assert not out[~brain].any()
    assert np.array_equal(out[brain], image[brain])
    assert out_mask.dtype == mask.dtype and np.array_equal(out_mask, mask)  # the whole lesion is inside

    eroded, eroded_mask = skull_strip(image, mask, np.random.default_rng(0), extra_erosion=(4, 4))
    assert (eroded > 0).sum() < (out > 0).sum()
    assert not eroded[~brain].any()


def test_skull_strip_drops_lesion_pixels_outside_the_brain(lesion_slice: Slice) -> None:
    image, mask = lesion_slice
    marked = mask.copy()
    marked[:10, :10] = 255  # a "lesion" in the background
    _, out_mask = skull_strip(image, marked, np.random.default_rng(0))
    assert not out_mask[:10, :10].any()
    assert set(np.unique(out_mask)) == {0, 255}


@pytest.mark.parametrize("fill", [0.5, 0.75, 1.0])
def test_field_of_view_sets_the_head_extent(lesion_slice: Slice, fill: float) -> None:
    image, mask = lesion_slice
    out, _ = field_of_view(image, mask, np.random.default_rng(0), fill=(fill, fill))
    assert _bbox_fraction(out) == pytest.approx(fill, abs=0.03)


def test_field_of_view_ranges_and_shifts(lesion_slice: Slice) -> None:
    image, mask = lesion_slice
    centres = []
    for seed in range(8):
        out, _ = field_of_view(image, mask, np.random.default_rng(seed))
        assert 0.47 <= _bbox_fraction(out) <= 1.0
        x, y, w, h = cv2.boundingRect(head_mask(out).astype(np.uint8))
        centres.append((x + w / 2, y + h / 2))
    assert np.ptp(np.array(centres), axis=0).min() > 5  # off centre, by different amounts


@pytest.mark.parametrize("fill", [0.5, 1.0])
def test_field_of_view_moves_mask_and_image_together(lesion_slice: Slice, fill: float) -> None:
    image, mask = lesion_slice
    burnt = np.where(mask > 0, 255, image).astype(np.uint8)  # the lesion painted white (the scalp peaks at 229)
    for seed in range(3):
        out, out_mask = field_of_view(burnt, mask, np.random.default_rng(seed), fill=(fill, fill))
        white, lesion = out > 240, out_mask > 0
        assert (white & lesion).sum() / (white | lesion).sum() > 0.85
        assert out_mask.dtype == mask.dtype and set(np.unique(out_mask)) == {0, 255}


def test_skull_stripped_brain_fills_the_frame(lesion_slice: Slice) -> None:
    image, mask = lesion_slice
    out, out_mask = ROBUSTNESS_CONDITIONS["skull-stripped, brain fills frame"](image, mask, np.random.default_rng(0))
    assert _bbox_fraction(out) > 0.97
    assert out_mask.sum() > 1.5 * mask.sum()  # zoomed in with the image
    assert out[out_mask > 0].mean() > 1.3 * out[(out > 0) & (out_mask == 0)].mean()


def test_intensity_changes_the_histogram_but_the_lesion_stays_brighter(lesion_slice: Slice) -> None:
    image, mask = lesion_slice
    lesion, rest = mask > 0, head_mask(image) & (mask == 0)
    histogram = np.bincount(image.ravel(), minlength=256) / image.size
    for seed in range(10):
        out = intensity(image, np.random.default_rng(seed))
        assert np.abs(np.bincount(out.ravel(), minlength=256) / out.size - histogram).sum() > 0.2
        assert out[lesion].mean() > out[rest].mean() + 10


def test_gamma_below_one_brightens(lesion_slice: Slice) -> None:
    image, mask = lesion_slice
    out, _ = ROBUSTNESS_CONDITIONS["gamma 0.7 + bias field ±25%"](image, mask, np.random.default_rng(0))
    brain = brain_mask(image)
    assert out[brain].mean() > image[brain].mean() + 15


def test_resolution_removes_fine_detail(lesion_slice: Slice) -> None:
    image, _ = lesion_slice
    for seed in range(10):
        assert _sharpness(resolution(image, np.random.default_rng(seed))) < 0.8 * _sharpness(image)


def test_noise_adds_fine_detail_and_rician_lifts_the_background(lesion_slice: Slice) -> None:
    image, _ = lesion_slice
    for seed in range(10):
        assert _sharpness(noise(image, np.random.default_rng(seed))) > 1.5 * _sharpness(image)
    rician = noise(image, np.random.default_rng(0), sigma=(0.03, 0.03), p_rician=1.0)
    assert rician[:32, :32].mean() > image[:32, :32].mean() + 5  # noise floor ~1.25 sigma = 9.6


def test_renormalise_zscore_puts_the_brain_at_mid_grey(lesion_slice: Slice) -> None:
    image, _ = lesion_slice
    brain = brain_mask(image)
    assert image[brain].mean() < 100
    for seed in range(5):
        out = renormalise(image, np.random.default_rng(seed), p_zscore=1.0)
        assert out[brain].mean() == pytest.approx(127.5, abs=8)
        assert out[:32, :32].mean() < 60  # background: 0 or a dark grey, never brighter than the brain


def test_renormalise_min_max_stretches_the_brain(lesion_slice: Slice) -> None:
    image, _ = lesion_slice
    brain = brain_mask(image)
    out = renormalise(image, np.random.default_rng(0), p_zscore=0.0)
    low, high = np.percentile(out[brain], (0.5, 99.5))
    assert low <= 2 and high >= 253


TRANSFORMS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], Slice]] = {
    "skull_strip": skull_strip,
    "field_of_view": field_of_view,
    "intensity": lambda image, mask, rng: (intensity(image, rng), mask),
    "resolution": lambda image, mask, rng: (resolution(image, rng), mask),
    "noise": lambda image, mask, rng: (noise(image, rng), mask),
    "renormalise": lambda image, mask, rng: (renormalise(image, rng), mask),
    "augment": RobustnessAugment(p_skull_strip=1, p_field_of_view=1, p_intensity=1, p_resolution=1,
                                 p_noise=1, p_renormalise=1),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_transforms_are_uint8_of_the_input_shape_and_follow_the_seed(lesion_slice: Slice, name: str) -> None:
    image, mask = lesion_slice
    before = image.copy(), mask.copy()
    transform = TRANSFORMS[name]
    first = transform(image, mask, np.random.default_rng(7))
    again = transform(image, mask, np.random.default_rng(7))
    other = transform(image, mask, np.random.default_rng(8))
    for out, out_mask in (first, again, other):
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert out_mask.dtype == mask.dtype and out_mask.shape == mask.shape
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])  # inputs untouched


@pytest.mark.parametrize("name", ROBUSTNESS_CONDITIONS)
def test_conditions_keep_the_shape_and_are_repeatable(lesion_slice: Slice, name: str) -> None:
    image, mask = lesion_slice
    out, out_mask = ROBUSTNESS_CONDITIONS[name](image, mask, np.random.default_rng(0))
    again, again_mask = ROBUSTNESS_CONDITIONS[name](image, mask, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == image.shape and out_mask.dtype == mask.dtype
    assert np.array_equal(out, again) and np.array_equal(out_mask, again_mask)
    assert (name == "as is") == np.array_equal(out, image)
    assert out_mask.any()


def test_augment_leaves_some_samples_untouched_and_never_blanks_a_slice(lesion_slice: Slice) -> None:
    image, mask = lesion_slice
    augment, rng = RobustnessAugment(), np.random.default_rng(0)
    untouched = 0
    for _ in range(50):
        out, out_mask = augment(image, mask, rng)
        assert out.dtype == np.uint8 and out.shape == image.shape and out.std() > 5
        assert out_mask.any()
        untouched += np.array_equal(out, image) and np.array_equal(out_mask, mask)
    assert 1 <= untouched <= 20  # 14% expected at the defaults


def test_rejects_what_is_not_a_raw_8_bit_slice(lesion_slice: Slice) -> None:
    image, mask = lesion_slice
    with pytest.raises(ValueError, match="uint8"):
        intensity(image.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        skull_strip(image, mask[:128], np.random.default_rng(0))
