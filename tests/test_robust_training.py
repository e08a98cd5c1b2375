"""Training for data outside LGG: bf16 steps, robustness-augmented samples, report patients kept
apart, and the robustness table — on real slices from ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metaseg_viewer.config import InferenceConfig, ModelConfig, PreprocessConfig
from metaseg_viewer.errors import InputError
from metaseg_viewer.inference import Predictor
from metaseg_viewer.models import build_model
from metaseg_viewer.precision import autocast, cpu_has_native_bf16, resolve_precision
from training.cli import main
from training.data import find_slices, load_slices
from training.sampling import SliceSampler

TINY = {"channels": [4, 8, 16], "strides": [2, 2]}


def _patients(shared_data: Path, n: int = 2, per: int = 6) -> list:
    slices = find_slices(shared_data / "lgg_flair")
    lesion = {s.volume for s in slices if s.volume.startswith("TCGA_CS")}
    chosen = sorted(lesion)[:n]
    picked = []
    for volume in chosen:
        mine = [s for s in slices if s.volume == volume]
        picked += mine[len(mine) // 2 - per // 2: len(mine) // 2 + per // 2]
    return picked


def _copy(slices: list, folder: Path) -> Path:
    """The slices (and their masks) in the per-patient images/ + masks/ layout under ``folder``."""
    for s in slices:
        for kind, path in (("images", s.image), ("masks", s.mask)):
            target = folder / s.volume / kind / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return folder


def test_precision_auto_follows_the_cpu_flags_and_refuses_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    import metaseg_viewer.precision as precision

    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"  # a CPU without native bf16 never gets it
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    with pytest.raises(InputError, match="accepted: auto, fp32, bf16"):
        resolve_precision("fp16", "cpu")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert cpu_has_native_bf16.__wrapped__() == (" amx_bf16" in flags or " avx512_bf16" in flags)


def test_bf16_training_steps_decrease_the_loss_on_real_slices(shared_data: Path) -> None:
    from monai.losses import DiceCELoss

    data = load_slices(_patients(shared_data, n=1, per=8), PreprocessConfig(size=256))
    torch.manual_seed(0)
    model = build_model(ModelConfig("attention-unet", TINY))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    x = torch.from_numpy(data.images[:, None])
    y = torch.from_numpy(data.masks[:, None].astype(np.float32))
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        with autocast("bf16", "cpu"):
            out = model(x)
            assert out.dtype == torch.bfloat16  # the convolutions really ran in bf16
            loss = loss_fn(out.float(), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert losses[-1] < losses[0]


def test_robust_samples_are_shifted_raw_slices_preprocessed_again(shared_data: Path) -> None:
    data = load_slices(_patients(shared_data, n=1, per=4), PreprocessConfig())
    assert data.raw.dtype == np.uint8 and data.raw.shape == data.images.shape
    plain = SliceSampler(data, None, 0.0, seed=3)
    robust = SliceSampler(data, None, 0.0, seed=3, robust_fraction=1.0)
    same = sum(np.array_equal(plain.sample()[0], robust.sample()[0]) for _ in range(12))
    assert same < 12  # the shifts change what the network sees
    first = SliceSampler(data, None, 0.0, seed=5, robust_fraction=1.0).sample()[0]
    assert np.array_equal(first, SliceSampler(data, None, 0.0, seed=5, robust_fraction=1.0).sample()[0])  # seeded
    image, mask = SliceSampler(data, None, 0.0, seed=3, robust_fraction=1.0).sample()
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0 and mask.shape == image.shape


def test_report_patients_are_kept_apart_and_scored_in_the_robustness_table(shared_data: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = _copy(_patients(shared_data, n=4, per=2), tmp_path / "data")
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--arch", "attention-unet", "--model-params",
            json.dumps(TINY), "--epochs", "1", "--samples-per-epoch", "4", "--batch-size", "2", "--crop", "64",
            "--val-fraction", "0.5", "--report-fraction", "0.5", "--robust-fraction", "0.5", "--threads", "1"]
    assert main(args) == 0
    split = json.loads((run / "split.json").read_text())
    assert len(split["validation"]) == 1 and len(split["report"]) == 1
    assert not set(split["report"]) & (set(split["train"]) | set(split["validation"]))
    card = json.loads((run / "best.json").read_text())["training"]
    assert card["report_patients"] == split["report"] and card["precision"] in ("fp32", "bf16")
    assert sorted(card["validation_patients"]) == sorted(split["validation"] + split["report"])
    out = tmp_path / "eval" / "r.json"
    assert main(["evaluate", "--model", str(run / "best.safetensors"), "--data", str(data), "--split",
                 str(run / "split.json"), "--group", "report", "--robustness", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    from training.augment import ROBUSTNESS_CONDITIONS
    from training.robustness import COLUMNS

    assert all(name in printed for name in ROBUSTNESS_CONDITIONS)
    import csv

    rows = list(csv.DictReader(open(out.with_name("r_robustness.csv"))))
    assert [r["condition"] for r in rows] == list(ROBUSTNESS_CONDITIONS)
    assert all(r[c] != "" for r in rows for c in COLUMNS)  # every column written
    assert all(r["n_volumes"] == "1" for r in rows)  # the one report patient
    assert main(["evaluate", "--model", str(run / "best.safetensors"), "--data", str(data), "--split",
                 str(run / "split.json"), "--group", "report", "--robustness", "--conditions", "as is",
                 "skull-stripped", "--json", str(out)]) == 0
    rows = list(csv.DictReader(open(out.with_name("r_robustness.csv"))))
    assert [r["condition"] for r in rows] == ["as is", "skull-stripped"]


def test_robustness_table_is_repeatable_and_refuses_unknown_conditions(shared_data: Path, tiny_checkpoint: Path) -> None:
    from training.robustness import robustness_table

    slices = _patients(shared_data, n=1, per=2)
    predictor = Predictor.load(tiny_checkpoint, "cpu")
    settings = InferenceConfig(0.5, False, 0)
    first = robustness_table(predictor, slices, settings, ("as is", "Rician noise 3%"))
    again = robustness_table(predictor, slices, settings, ("as is", "Rician noise 3%"))
    assert first == again
    with pytest.raises(ValueError, match="unknown condition"):
        robustness_table(predictor, slices, settings, ("sideways",))


def test_validation_under_a_shift_scores_both_and_selects_on_their_mean(shared_data: Path, tmp_path: Path) -> None:
    import csv

    from training.validation import shifted_set

    data = load_slices(_patients(shared_data, n=1, per=4), PreprocessConfig(size=256))
    stripped = shifted_set(data, "skull-stripped, brain fills frame", PreprocessConfig(size=256))
    again = shifted_set(data, "skull-stripped, brain fills frame", PreprocessConfig(size=256))
    assert np.array_equal(stripped.images, again.images)  # the same shifted slices at every validation
    assert stripped.images.shape == data.images.shape and not np.array_equal(stripped.images, data.images)
    for before, after in zip(data.raw, stripped.raw):  # the stripped brain now fills the frame
        rows, cols = np.nonzero(after > 0)
        assert max(np.ptp(rows), np.ptp(cols)) >= 0.9 * after.shape[0]
        assert np.count_nonzero(after) < np.count_nonzero(before > 0) * 1.5
    with pytest.raises(ValueError, match="unknown condition"):
        shifted_set(data, "upside down", PreprocessConfig(size=256))

    folder = _copy(_patients(shared_data, n=2, per=2), tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--out", str(run), "--arch", "attention-unet", "--model-params",
                 json.dumps(TINY), "--epochs", "2", "--samples-per-epoch", "4", "--batch-size", "2", "--crop", "64",
                 "--val-fraction", "0.5", "--val-shift", "skull-stripped", "--threads", "1"]) == 0
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    for row in rows:
        clean, shifted = float(row["val_volume_dice_mean"]), float(row["val_shifted_volume_dice_mean"])
        assert float(row["val_selection_score"]) == pytest.approx((clean + shifted) / 2)
    best = json.loads((run / "best.json").read_text())["metrics"]["validation"]
    assert best["shifted"]["condition"] == "skull-stripped"
    assert best["selection_score"] == pytest.approx(max(float(r["val_selection_score"]) for r in rows))
    assert main(["train", "--data", str(folder), "--out", str(tmp_path / "bad"), "--val-shift", "upside down"]) == 2
