"""Inference: original size, card defaults, TTA, ensembles, small-component removal, progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metaseg_viewer.checkpoints import load_checkpoint
from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.inference import Predictor, network_probabilities
from metaseg_viewer.prediction import binarize
from metaseg_viewer.samples import make_slice, make_volume
from metaseg_viewer.scan import Scan


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor.load(tiny_checkpoint, device="cpu")


def test_prediction_has_the_input_size_and_follows_the_threshold(predictor: Predictor) -> None:
    image = make_slice(size=256, seed=1).image[20:220, 10:250]  # 200 x 240, not square
    result = predictor.predict(Scan(image[None]), threshold=0.3)
    assert result.probabilities.shape == result.mask.shape == (1, 200, 240)
    assert result.probabilities.dtype == np.float32
    assert 0.0 <= result.probabilities.min() and result.probabilities.max() <= 1.0
    np.testing.assert_array_equal(result.mask, result.probabilities >= 0.3)
    assert result.settings == InferenceConfig(threshold=0.3, tta=False, min_lesion_size=0)
    assert result.model_name == "tiny" and len(result.model_version) == 12


def test_card_defaults_apply_unless_overridden(tiny_checkpoint: Path) -> None:
    net, card = load_checkpoint(tiny_checkpoint)
    p = Predictor([(net, card)], "x", InferenceConfig(threshold=0.7, tta=True, min_lesion_size=5), "cpu")
    scan = Scan(make_slice(size=64, seed=2).image[None])
    assert p.predict(scan).settings == InferenceConfig(0.7, True, 5)
    assert p.predict(scan, tta=False, min_lesion_size=0).settings == InferenceConfig(0.7, False, 0)


def test_flip_tta_is_flip_equivariant(predictor: Predictor) -> None:
    # On network input (CLAHE itself is not exactly mirror-symmetric in OpenCV).
    net = predictor.members[0][0]
    x = make_slice(size=96, seed=3).image[None].astype(np.float32) / 255
    a = network_probabilities(net, x, True, "cpu")
    b = network_probabilities(net, x[:, :, ::-1].copy(), True, "cpu")
    np.testing.assert_allclose(a, b[:, :, ::-1], atol=1e-5)
    plain = network_probabilities(net, x, False, "cpu")
    plain_flipped = network_probabilities(net, x[:, :, ::-1].copy(), False, "cpu")
    assert np.abs(plain - plain_flipped[:, :, ::-1]).max() > 1e-2  # the untrained net is not symmetric
    np.testing.assert_allclose(a, (plain + plain_flipped[:, :, ::-1]) / 2, atol=1e-5)


def test_ensemble_averages_member_probabilities(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import torch

    from metaseg_viewer.checkpoints import save_checkpoint
    from metaseg_viewer.models import build_model

    net_a, card = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(5)
    save_checkpoint(build_model(card.model), card, tmp_path / "b.safetensors")
    net_b, card_b = load_checkpoint(tmp_path / "b.safetensors")
    scan = Scan(make_slice(size=64, seed=4).image[None])
    pa = Predictor([(net_a, card)], "a", InferenceConfig(), "cpu").predict(scan).probabilities
    pb = Predictor([(net_b, card_b)], "b", InferenceConfig(), "cpu").predict(scan).probabilities
    both = Predictor([(net_a, card), (net_b, card_b)], "ab", InferenceConfig(), "cpu").predict(scan)
    np.testing.assert_allclose(both.probabilities, (pa + pb) / 2, atol=1e-6)
    assert "+" in both.model_version


def test_volume_is_batched_and_progress_reported(predictor: Predictor) -> None:
    volume = make_volume(n_slices=11, size=64, seed=0)
    seen: list[tuple[int, int]] = []
    result = predictor.predict(Scan(volume.image, is_volume=True), progress=lambda d, t: seen.append((d, t)))
    assert result.mask.shape == (11, 64, 64)
    assert seen[-1] == (11, 11) and [d for d, _ in seen] == [8, 11]


def test_progress_callback_can_cancel(predictor: Predictor) -> None:
    def cancel(done: int, total: int) -> None:
        raise InterruptedError("cancelled by user")

    with pytest.raises(InterruptedError):
        predictor.predict(Scan(make_volume(n_slices=10, size=64).image, is_volume=True), progress=cancel)


def test_binarize_removes_small_components_in_2d_or_3d() -> None:
    probs = np.zeros((3, 10, 10), np.float32)
    probs[0, 1:3, 1:3] = 0.9  # 4 px in slice 0 only
    probs[0:3, 6:8, 6:8] = 0.9  # 4 px per slice, 12 voxels in 3-D
    per_slice = binarize(probs, 0.5, min_lesion_size=5, volume=False)
    assert per_slice.sum() == 0
    in_3d = binarize(probs, 0.5, min_lesion_size=5, volume=True)
    assert in_3d.sum() == 12 and not in_3d[0, 1:3, 1:3].any()
    assert binarize(probs, 0.5).sum() == 16


def test_stacks_run_as_one_batch_give_each_the_prediction_it_gets_alone(tiny_checkpoint) -> None:
    """prepare + member_maps over several stacks + predict_prepared: what a server batching
    requests relies on."""
    from metaseg_viewer.samples import make_slice
    from metaseg_viewer.scan import Scan

    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    scans = [Scan(make_slice(96, seed=1).image[None]), Scan(make_slice(64, seed=2).image[None, :, :40]),
             Scan(np.stack([make_slice(80, seed=s).image for s in (3, 4, 5)]), is_volume=True)]
    prepared = [predictor.prepare(s.pixels) for s in scans]
    maps = predictor.member_maps(prepared, tta=True)
    for scan, p, m in zip(scans, prepared, maps):
        merged = predictor.predict_prepared(scan, p, m, tta=True)
        alone = predictor.predict(scan, tta=True)
        np.testing.assert_allclose(merged.probabilities, alone.probabilities, atol=1e-6)
        assert np.array_equal(merged.mask, alone.mask) and merged.settings == alone.settings
