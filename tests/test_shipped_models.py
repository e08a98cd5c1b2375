"""The shipped models: found by name offline, verified, and useful on real slices of the sequence
each was trained for (LGG FLAIR; BRISC T1c slices the T1c model was not trained on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metaseg_viewer.checkpoints import read_card, sha256_of
from metaseg_viewer.inference import Predictor
from metaseg_viewer.io import read_scan
from metaseg_viewer.metrics import dice
from metaseg_viewer.registry import FAMILIES, MODEL_NAMES, SINGLE_MODELS, describe_models, weights_dir

MAX_WEIGHT_BYTES = 16 * 1024 * 1024


@pytest.mark.parametrize("name", list(SINGLE_MODELS))
def test_weights_are_small_verified_and_documented(name: str) -> None:
    card_path = weights_dir() / SINGLE_MODELS[name]
    card = read_card(card_path)
    weights = card_path.with_suffix(".safetensors")
    assert weights.stat().st_size <= MAX_WEIGHT_BYTES
    assert sha256_of(weights) == card.sha256
    assert card.purpose is not None and card.purpose.target.split(" (")[0] in card.description
    validation = card.metrics["validation"]
    assert validation["n_volumes"] >= 9 and 0 < validation["per_volume_dice_mean"] <= 1
    report = card.metrics.get("report")  # patients no epoch or setting was chosen on, where the run kept some
    assert report is None or (report["n_volumes"] >= 9 and 0 < report["per_volume_dice_mean"] <= 1)
    assert card.training["command"].startswith("python -m training train")


def test_registry_lists_every_name() -> None:
    assert [row["name"] for row in describe_models()] == list(MODEL_NAMES)


@pytest.fixture(scope="module")
def lesion_slice(shared_data: Path) -> tuple[Path, np.ndarray]:
    # A validation patient of the shipped models' split (none of them trained on it).
    patient = shared_data / "lgg_kaggle3m_sample" / "kaggle_3m" / "TCGA_DU_7014_19860618"
    best = max(patient.glob("*_mask.tif"), key=lambda p: (read_scan(p, color="gray").pixels > 0).sum())
    image = best.with_name(best.name.replace("_mask", ""))
    return image, read_scan(best, color="gray").pixels > 0


@pytest.mark.parametrize("name", FAMILIES["flair"])
def test_shipped_model_finds_a_real_tumour(name: str, lesion_slice: tuple[Path, np.ndarray]) -> None:
    image, truth = lesion_slice
    result = Predictor.load(name, device="cpu").predict(read_scan(image))
    assert dice(result.mask, truth) > 0.6


@pytest.mark.parametrize("name", FAMILIES["t1c"])
def test_shipped_t1c_model_finds_real_tumours_it_was_not_trained_on(name: str, shared_data: Path) -> None:
    """Report slices of the T1c run (no epoch or setting was chosen on them): one per tumour type."""
    card = read_card(weights_dir() / SINGLE_MODELS[name])
    report = card.training["report_patients"]
    predictor = Predictor.load(name, device="cpu")
    for tumour in ("gl", "me", "pi"):
        stem = next(s for s in report if f"_{tumour}_" in s)
        image = shared_data / "brisc_t1c" / "images" / f"{stem}_t1.jpg"
        truth = read_scan(image.parents[1] / "masks" / f"{stem}_t1.png", color="gray").pixels[0] > 0
        result = predictor.predict(read_scan(image))
        assert result.mask.shape[1:] == truth.shape  # 512 px in, 512 px out
        assert dice(result.mask[0], truth) > 0.5, stem
